/*
 * Unit tests for lib/scram.c: the SCRAM-SHA-256 example exchange of
 * RFC 7677, section 3 (user "user", password "pencil"), Dovecot's stored
 * form, and the parsing of client messages.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scram.h"

#define RFC_CLIENT_FIRST	"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
#define RFC_SERVER_FIRST	"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0," \
				"s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
#define RFC_WITHOUT_PROOF	"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define RFC_CLIENT_FINAL	RFC_WITHOUT_PROOF ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define RFC_SERVER_SIGNATURE	"6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
#define RFC_SALT		"W22ZaJ0SNY7soEsUEjb6gQ=="

/* The RFC's salt, decoded by hand so the test does not rely on scram.c's decoder. */
static const unsigned char rfc_salt[] = {
	0x5b, 0x6d, 0x99, 0x68, 0x9d, 0x12, 0x35, 0x8e,
	0xec, 0xa0, 0x4b, 0x14, 0x12, 0x36, 0xfa, 0x81,
};

static enum scram_error
parse_first(const char *text, struct scram_client_first *first)
{
	return scram_parse_client_first(text, strlen(text), first);
}

static enum scram_error
parse_final(const char *text, struct scram_client_final *final)
{
	return scram_parse_client_final(text, strlen(text), final);
}

START_TEST(rfc7677_exchange)
{
	struct scram_client_first first;
	struct scram_client_final final;
	struct scram_keys keys;
	unsigned char signature[SCRAM_KEY_LEN];
	char *auth_message, *encoded;

	ck_assert_int_eq(parse_first(RFC_CLIENT_FIRST, &first), SCRAM_OK);
	ck_assert_int_eq(parse_final(RFC_CLIENT_FINAL, &final), SCRAM_OK);
	ck_assert_int_eq(scram_keys_derive("pencil", rfc_salt, sizeof rfc_salt, 4096, &keys), 0);

	auth_message = malloc(strlen(first.bare) + strlen(RFC_SERVER_FIRST) +
	    strlen(final.without_proof) + 3);
	strcpy(auth_message, first.bare);
	strcat(auth_message, "," RFC_SERVER_FIRST ",");
	strcat(auth_message, final.without_proof);

	ck_assert(scram_proof_matches(&keys, auth_message, final.proof, final.proof_len));
	scram_server_signature(&keys, auth_message, signature);
	encoded = scram_base64(signature, sizeof signature);
	ck_assert_str_eq(encoded, RFC_SERVER_SIGNATURE);

	/* One flipped bit of the proof must not pass. */
	final.proof[7] ^= 0x10;
	ck_assert(!scram_proof_matches(&keys, auth_message, final.proof, final.proof_len));
	ck_assert(!scram_proof_matches(&keys, auth_message, final.proof, final.proof_len - 1));

	free(encoded);
	free(auth_message);
	scram_client_first_clear(&first);
	scram_client_final_clear(&final);
}
END_TEST

START_TEST(stored_form_round_trip)
{
	struct scram_keys derived, parsed;
	char *salt, *stored_key, *server_key, text[256];

	ck_assert_int_eq(scram_keys_derive("pencil", rfc_salt, sizeof rfc_salt, 4096, &derived), 0);
	salt = scram_base64(derived.salt, derived.salt_len);
	stored_key = scram_base64(derived.stored_key, SCRAM_KEY_LEN);
	server_key = scram_base64(derived.server_key, SCRAM_KEY_LEN);
	ck_assert_str_eq(salt, RFC_SALT);
	snprintf(text, sizeof text, "4096,%s,%s,%s", salt, stored_key, server_key);

	ck_assert_int_eq(scram_keys_parse(text, &parsed), 0);
	ck_assert_uint_eq(parsed.iterations, 4096);
	ck_assert_uint_eq(parsed.salt_len, sizeof rfc_salt);
	ck_assert_mem_eq(parsed.salt, rfc_salt, sizeof rfc_salt);
	ck_assert_mem_eq(parsed.stored_key, derived.stored_key, SCRAM_KEY_LEN);
	ck_assert_mem_eq(parsed.server_key, derived.server_key, SCRAM_KEY_LEN);
	free(salt);
	free(stored_key);
	free(server_key);
}
END_TEST

START_TEST(stored_form_errors)
{
	static const char *const bad[] = {
		"",
		"0,W22ZaJ0SNY7soEsUEjb6gQ==,AAAA,AAAA",
		"abc,W22ZaJ0SNY7soEsUEjb6gQ==,AAAA,AAAA",
		"4096,W22ZaJ0SNY7soEsUEjb6gQ==",
		"4096,!!!!,AAAA,AAAA",
		/* StoredKey and ServerKey must be 32 bytes. */
		"4096,W22ZaJ0SNY7soEsUEjb6gQ==,AAAA,AAAA",
		"4096,,6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=,"
		"6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
		"4096,W22ZaJ0SNY7soEsUEjb6gQ==,6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=,"
		"6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=,extra",
		"99999999999,W22ZaJ0SNY7soEsUEjb6gQ==,6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=,"
		"6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
	};
	struct scram_keys keys;

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		ck_assert_msg(scram_keys_parse(bad[i], &keys) == -1, "accepted \"%s\"", bad[i]);
}
END_TEST

START_TEST(client_first_fields)
{
	struct scram_client_first first;

	ck_assert_int_eq(parse_first("p=tls-exporter,a=a=2Cb=3Dc,n=a=2Cb=3Dc,r=x,e=ext", &first),
	    SCRAM_OK);
	ck_assert_int_eq(first.cbind_flag, 'p');
	ck_assert_str_eq(first.cbind_type, "tls-exporter");
	ck_assert_str_eq(first.gs2_header, "p=tls-exporter,a=a=2Cb=3Dc,");
	ck_assert_str_eq(first.authzid, "a,b=c");
	ck_assert_str_eq(first.username, "a,b=c");
	ck_assert_str_eq(first.client_nonce, "x");
	ck_assert_str_eq(first.bare, "n=a=2Cb=3Dc,r=x,e=ext");
	scram_client_first_clear(&first);

	ck_assert_int_eq(parse_first("y,,n=J\xc3\xbcrgen,r=abc", &first), SCRAM_OK);
	ck_assert_int_eq(first.cbind_flag, 'y');
	ck_assert_str_eq(first.gs2_header, "y,,");
	ck_assert_ptr_null(first.authzid);
	ck_assert_str_eq(first.username, "J\xc3\xbcrgen");
	scram_client_first_clear(&first);
}
END_TEST

START_TEST(client_first_errors)
{
	static const struct {
		const char *text;
		enum scram_error error;
	} cases[] = {
		{ "", SCRAM_E_INVALID_ENCODING },
		{ "n=user,r=abc", SCRAM_E_INVALID_ENCODING },
		{ "x,,n=user,r=abc", SCRAM_E_INVALID_ENCODING },
		{ "n,n=user,r=abc", SCRAM_E_INVALID_ENCODING },
		{ "p=,,n=user,r=abc", SCRAM_E_INVALID_ENCODING },
		{ "p=tls_unique,,n=user,r=abc", SCRAM_E_INVALID_ENCODING },
		{ "n,,m=x,n=user,r=abc", SCRAM_E_EXTENSIONS_NOT_SUPPORTED },
		{ "n,,n=,r=abc", SCRAM_E_INVALID_USERNAME_ENCODING },
		{ "n,,n=us=er,r=abc", SCRAM_E_INVALID_USERNAME_ENCODING },
		{ "n,,n=us=2c,r=abc", SCRAM_E_INVALID_USERNAME_ENCODING },
		{ "n,,n=\xff,r=abc", SCRAM_E_INVALID_USERNAME_ENCODING },
		{ "n,,n=\xed\xa0\x80,r=abc", SCRAM_E_INVALID_USERNAME_ENCODING },
		{ "n,,n=\xe0\x80\xaf,r=abc", SCRAM_E_INVALID_USERNAME_ENCODING },
		{ "n,a=x=,n=user,r=abc", SCRAM_E_INVALID_USERNAME_ENCODING },
		{ "n,,n=user", SCRAM_E_INVALID_ENCODING },
		{ "n,,n=user,r=", SCRAM_E_INVALID_ENCODING },
		{ "n,,n=user,r=a b", SCRAM_E_INVALID_ENCODING },
		{ "n,,n=user,r=abc,", SCRAM_E_INVALID_ENCODING },
		{ "n,,n=user,r=abc,9=x", SCRAM_E_INVALID_ENCODING },
		{ "n,,r=abc,n=user", SCRAM_E_INVALID_ENCODING },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct scram_client_first first;

		ck_assert_msg(parse_first(cases[i].text, &first) == cases[i].error,
		    "wrong result for \"%s\"", cases[i].text);
		scram_client_first_clear(&first);
	}
}
END_TEST

START_TEST(client_first_nul_byte)
{
	static const char text[] = "n,,n=user,r=ab\0c";
	struct scram_client_first first;

	ck_assert_int_eq(scram_parse_client_first(text, sizeof text - 1, &first),
	    SCRAM_E_INVALID_ENCODING);
	scram_client_first_clear(&first);
}
END_TEST

START_TEST(client_final_errors)
{
	static const char *const bad[] = {
		"",
		"c=biws,r=abc",
		"c=biws,r=abc,p=",
		"c=biws,r=abc,p=!!!!",
		"c=biw,r=abc,p=AAAA",
		"c=biws,p=AAAA",
		"r=abc,c=biws,p=AAAA",
		"c=biws,r=abc,p=AAAA,x=y",
		"c=biws,r=a c,p=AAAA",
		"c=biws,r=abc,1=x,p=AAAA",
	};

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct scram_client_final final;

		ck_assert_msg(parse_final(bad[i], &final) == SCRAM_E_INVALID_ENCODING,
		    "accepted \"%s\"", bad[i]);
		scram_client_final_clear(&final);
	}
}
END_TEST

START_TEST(client_final_extension)
{
	struct scram_client_final final;

	ck_assert_int_eq(parse_final("c=eSws,r=abc,x=ext,p=AAAA", &final), SCRAM_OK);
	ck_assert_str_eq(final.without_proof, "c=eSws,r=abc,x=ext");
	ck_assert_str_eq(final.nonce, "abc");
	ck_assert_uint_eq(final.cbind_input_len, 3);
	ck_assert_mem_eq(final.cbind_input, "y,,", 3);
	ck_assert_uint_eq(final.proof_len, 3);
	scram_client_final_clear(&final);
}
END_TEST

START_TEST(error_names)
{
	ck_assert_str_eq(scram_error_name(SCRAM_E_INVALID_PROOF), "invalid-proof");
	ck_assert_str_eq(scram_error_name(SCRAM_E_CHANNEL_BINDINGS_DONT_MATCH),
	    "channel-bindings-dont-match");
	ck_assert_str_eq(scram_error_name(SCRAM_E_EXTENSIONS_NOT_SUPPORTED),
	    "extensions-not-supported");
}
END_TEST

Suite *
scram_suite(void)
{
	Suite *s = suite_create("scram");
	TCase *tc = tcase_create("scram");

	tcase_add_test(tc, rfc7677_exchange);
	tcase_add_test(tc, stored_form_round_trip);
	tcase_add_test(tc, stored_form_errors);
	tcase_add_test(tc, client_first_fields);
	tcase_add_test(tc, client_first_errors);
	tcase_add_test(tc, client_first_nul_byte);
	tcase_add_test(tc, client_final_errors);
	tcase_add_test(tc, client_final_extension);
	tcase_add_test(tc, error_names);
	suite_add_tcase(s, tc);
	return s;
}
