/*
 * DKIM signing keys and key records. dkim_signing_table lists one key
 * per line in the value format of OpenDKIM's KeyTable,
 *
 *	example.org:sel:/etc/estafeta/dkim/example.org/sel.pem
 *
 * optionally after a key name column as in a KeyTable file
 * ("sel._domainkey.example.org example.org:sel:/path"), which is ignored.
 * Mail is signed with the line whose domain is the From: domain. The
 * table and the key files are read at start and on SIGHUP.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "config.h"
#include "dkim.h"
#include "dns.h"
#include "log.h"
#include "util.h"

#define KEY_FILE_MAX (64 * 1024)

struct key_entry {
	char domain[256];
	char selector[64];
	char *pem;
	int ed25519;
};

struct key_table {
	struct key_entry *entries;
	size_t count;
};

static DKIM_LIB *library;
static struct key_table keys;
static pthread_rwlock_t keys_lock = PTHREAD_RWLOCK_INITIALIZER;

DKIM_LIB *
dkim_library(void)
{
	return library;
}

static void
key_table_free(struct key_table *table)
{
	for (size_t i = 0; i < table->count; i++)
		free(table->entries[i].pem);
	free(table->entries);
	table->entries = NULL;
	table->count = 0;
}

/* Read PATH (a PEM private key) into ENTRY, and find its algorithm. */
static int
key_file_read(const char *path, struct key_entry *entry, char *err, size_t errsize)
{
	struct stat st;
	EVP_PKEY *pkey;
	BIO *bio;
	ssize_t got;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errsize, "cannot open DKIM key %s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || st.st_size <= 0 || st.st_size > KEY_FILE_MAX) {
		snprintf(err, errsize, "invalid DKIM key %s: empty or larger than %d bytes", path,
		    KEY_FILE_MAX);
		close(fd);
		return -1;
	}
	if ((st.st_mode & 077) != 0)
		log_warn("DKIM key %s is readable by other users (mode %04o); chmod 600 it",
		    path, (unsigned)(st.st_mode & 07777));

	entry->pem = xmalloc((size_t)st.st_size + 1);
	got = pread(fd, entry->pem, (size_t)st.st_size, 0);
	close(fd);
	if (got != st.st_size) {
		snprintf(err, errsize, "cannot read DKIM key %s", path);
		return -1;
	}
	entry->pem[got] = '\0';

	bio = BIO_new_mem_buf(entry->pem, (int)got);
	pkey = bio != NULL ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
	BIO_free(bio);
	if (pkey == NULL) {
		snprintf(err, errsize, "invalid DKIM key %s: not a PEM private key", path);
		return -1;
	}
	switch (EVP_PKEY_get_base_id(pkey)) {
	case EVP_PKEY_RSA:
		entry->ed25519 = 0;
		break;
	case EVP_PKEY_ED25519:
		entry->ed25519 = 1;
		break;
	default:
		snprintf(err, errsize, "invalid DKIM key %s: expected an RSA or Ed25519 key", path);
		EVP_PKEY_free(pkey);
		return -1;
	}
	EVP_PKEY_free(pkey);
	return 0;
}

/* Parse one table line (LINENO for messages) into ENTRY. Returns 1 for an
 * entry, 0 for a blank or comment line, -1 with ERR set. */
static int
table_line_parse(char *line, const char *path, int lineno, struct key_entry *entry,
    char *err, size_t errsize)
{
	char *value, *extra, *selector, *key_path, *save = NULL;

	line[strcspn(line, "#\r\n")] = '\0';
	value = strtok_r(line, " \t", &save);
	if (value == NULL)
		return 0;
	extra = strtok_r(NULL, " \t", &save);
	if (extra != NULL) {
		/* The KeyTable form: the first column is a key name. */
		value = extra;
		if (strtok_r(NULL, " \t", &save) != NULL)
			goto invalid;
	}

	selector = strchr(value, ':');
	if (selector == NULL)
		goto invalid;
	*selector++ = '\0';
	key_path = strchr(selector, ':');
	if (key_path == NULL)
		goto invalid;
	*key_path++ = '\0';
	if (value[0] == '\0' || selector[0] == '\0' || key_path[0] != '/')
		goto invalid;
	if (strlen(value) >= sizeof entry->domain || strlen(selector) >= sizeof entry->selector)
		goto invalid;

	memset(entry, 0, sizeof *entry);
	strlcpy_x(entry->domain, value, sizeof entry->domain);
	strlcpy_x(entry->selector, selector, sizeof entry->selector);
	ascii_lower(entry->domain);
	if (key_file_read(key_path, entry, err, errsize) < 0) {
		free(entry->pem);
		entry->pem = NULL;
		return -1;
	}
	return 1;

invalid:
	snprintf(err, errsize, "%s:%d: invalid line: expected DOMAIN:SELECTOR:/path/to/key.pem",
	    path, lineno);
	return -1;
}

static int
key_table_read(const char *path, struct key_table *table, char *err, size_t errsize)
{
	char line[2048];
	int lineno = 0, rc = 0;
	FILE *file;

	memset(table, 0, sizeof *table);
	if (path[0] == '\0')
		return 0;

	file = fopen(path, "re");
	if (file == NULL) {
		snprintf(err, errsize, "cannot open dkim_signing_table %s: %s", path,
		    strerror(errno));
		return -1;
	}
	while (rc == 0 && fgets(line, sizeof line, file) != NULL) {
		struct key_entry entry;
		int parsed;

		lineno++;
		parsed = table_line_parse(line, path, lineno, &entry, err, errsize);
		if (parsed < 0) {
			rc = -1;
		} else if (parsed > 0) {
			table->entries = xrealloc(table->entries,
			    (table->count + 1) * sizeof *table->entries);
			table->entries[table->count++] = entry;
		}
	}
	fclose(file);
	if (rc < 0)
		key_table_free(table);
	return rc;
}

static int
dkim_keys_reload(char *err, size_t errsize)
{
	struct key_table fresh, old;

	if (key_table_read(config_string("dkim_signing_table"), &fresh, err, errsize) < 0)
		return -1;

	pthread_rwlock_wrlock(&keys_lock);
	old = keys;
	keys = fresh;
	pthread_rwlock_unlock(&keys_lock);

	key_table_free(&old);
	log_info("DKIM signing keys loaded: %zu from %s", fresh.count,
	    config_string("dkim_signing_table"));
	return 0;
}

/* Create the shared libopendkim handle once. */
static int
library_create(char *err, size_t errsize)
{
	/* Every signature is checked at the end of the message, so one key
	 * lookup failure does not stop the others (DELAYSIGPROC), and a
	 * malformed signature gets a result of its own (BADSIGHANDLES). */
	unsigned int flags = DKIM_LIBFLAGS_DELAYSIGPROC | DKIM_LIBFLAGS_FIXCRLF |
	    DKIM_LIBFLAGS_BADSIGHANDLES;
	/* A second From: field added after signing breaks the signature. */
	const char *oversign[] = { "From", NULL };
	char *const *sign_headers = config_list("dkim_sign_headers");

	if (library != NULL)
		return 0;
	library = dkim_init(NULL, NULL);
	if (library == NULL) {
		snprintf(err, errsize, "cannot create the libopendkim handle: out of memory");
		return -1;
	}
	if (dkim_options(library, DKIM_OP_SETOPT, DKIM_OPTS_FLAGS, &flags, sizeof flags)
	    != DKIM_STAT_OK ||
	    dkim_options(library, DKIM_OP_SETOPT, DKIM_OPTS_OVERSIGNHDRS, oversign,
	    sizeof(char **)) != DKIM_STAT_OK ||
	    dkim_options(library, DKIM_OP_SETOPT, DKIM_OPTS_SIGNHDRS, (void *)sign_headers,
	    sizeof(char **)) != DKIM_STAT_OK ||
	    dkim_set_key_lookup(library, dkim_key_record_lookup) != DKIM_STAT_OK) {
		snprintf(err, errsize, "cannot set the libopendkim options (check dkim_sign_headers)");
		dkim_close(library);
		library = NULL;
		return -1;
	}
	return 0;
}

int
dkim_verify_init(char *err, size_t errsize)
{
	/* dns_init does its work once, whichever check calls it first. */
	if (dns_init(err, errsize) < 0)
		return -1;
	return library_create(err, errsize);
}

int
dkim_sign_init(char *err, size_t errsize)
{
	if (library_create(err, errsize) < 0)
		return -1;
	return dkim_keys_reload(err, errsize);
}

void
dkim_keys_stop(void)
{
	if (library != NULL)
		dkim_close(library);
	library = NULL;
	key_table_free(&keys);
}

int
dkim_signing_key_find(const char *domain, struct dkim_signing_key *key)
{
	int found = -1;

	pthread_rwlock_rdlock(&keys_lock);
	for (size_t i = 0; i < keys.count && found < 0; i++) {
		if (ascii_casecmp(keys.entries[i].domain, domain) != 0)
			continue;
		strlcpy_x(key->domain, keys.entries[i].domain, sizeof key->domain);
		strlcpy_x(key->selector, keys.entries[i].selector, sizeof key->selector);
		key->pem = xstrdup(keys.entries[i].pem);
		key->ed25519 = keys.entries[i].ed25519;
		found = 0;
	}
	pthread_rwlock_unlock(&keys_lock);
	return found;
}

enum txt_status
txt_lookup(const char *name, const char *prefix, char *buf, size_t size, char *err,
    size_t errsize)
{
	struct dns_answer answer;
	enum txt_status status = TXT_NONE;
	size_t prefixlen = strlen(prefix);

	if (dns_lookup(name, DNS_TYPE_TXT, &answer, err, errsize) < 0)
		return TXT_TEMPFAIL;

	for (size_t i = 0; i < answer.count; i++) {
		const char *text = answer.records[i].text;

		if (text == NULL || ascii_ncasecmp(text, prefix, prefixlen) != 0)
			continue;
		if (status == TXT_FOUND) {
			status = TXT_SEVERAL;
			break;
		}
		/* A record too long for BUF counts as no usable record. */
		if (strlen(text) >= size) {
			char clean[1024];

			log_warn("TXT record of %s ignored: longer than %zu bytes",
			    log_sanitize(clean, sizeof clean, name, strlen(name)), size - 1);
			continue;
		}
		strlcpy_x(buf, text, size);
		status = TXT_FOUND;
	}
	if (status == TXT_NONE)
		snprintf(err, errsize, "no usable %sTXT record at %s",
		    prefix[0] != '\0' ? "matching " : "", name);
	dns_answer_free(&answer);
	return status;
}
