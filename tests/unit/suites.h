/*
 * The unit test suites, one SUITE(name) line each; name_suite() is
 * defined in tests/unit/test_<name>.c. main.c includes this list twice.
 */
SUITE(config)
SUITE(ipc)
SUITE(userdb)
SUITE(header)
SUITE(cdbmap)
SUITE(aliases)
SUITE(queue_envelope)
SUITE(addr)
SUITE(netaddr)
SUITE(smtp_data)
SUITE(mime)
SUITE(mime_section)
SUITE(mime_corpus)
SUITE(mime_dovecot)
SUITE(imap_parse)
SUITE(tls)
SUITE(tls_client)
SUITE(mta_sts)
SUITE(tls_policy_map)
SUITE(scram)
