/* mailq (sendmail -bp), newaliases (sendmail -bi) and sendmail -q. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "aliases.h"
#include "config.h"
#include "log.h"
#include "queue_admin.h"
#include "sendmail.h"
#include "util.h"

int
run_mailq(void)
{
	struct queue_entry *entries = NULL;
	size_t count = 0;
	char err[512];
	int rc;

	rc = queue_admin_list(config_string("queued_socket"), &entries, &count, err, sizeof err);
	if (rc < 0) {
		warnx_sendmail("cannot list the queue: %s", err);
		return rc == QUEUE_ADMIN_REFUSED ? EX_NOPERM : EX_UNAVAILABLE;
	}
	queue_list_print(stdout, entries, count);
	queue_entries_free(entries, count);
	return fflush(stdout) == 0 ? EX_OK : EX_IOERR;
}

/* Compile SOURCE (default alias_database) into SOURCE.cdb. */
int
run_newaliases(const char *source)
{
	char err[1024], *cdb_path;
	int rc;

	if (source == NULL)
		source = config_string("alias_database");
	if (access(source, R_OK) < 0) {
		warnx_sendmail("cannot read the aliases file %s: %s", source, strerror(errno));
		return EX_NOINPUT;
	}
	cdb_path = xasprintf("%s.cdb", source);
	/* The admin who runs newaliases must see the warnings (a name
	 * defined twice, say), not only syslog. */
	log_init("newaliases", 1, config_bool("syslog"));
	rc = aliases_compile(source, cdb_path, err, sizeof err);
	log_init("newaliases", 0, config_bool("syslog"));
	free(cdb_path);
	if (rc < 0) {
		warnx_sendmail("%s", err);
		return EX_DATAERR;
	}
	log_info("compiled %s into %s.cdb", source, source);
	return EX_OK;
}

int
run_flush(const char *queue_id)
{
	long long count = 0;
	char err[512];
	int rc;

	rc = queue_admin_flush(config_string("queued_socket"), queue_id, &count, err, sizeof err);
	if (rc < 0) {
		warnx_sendmail("cannot flush the queue: %s", err);
		if (rc == QUEUE_ADMIN_UNAVAILABLE)
			return EX_UNAVAILABLE;
		return strstr(err, "permission denied") != NULL ? EX_NOPERM : EX_DATAERR;
	}
	return EX_OK;
}
