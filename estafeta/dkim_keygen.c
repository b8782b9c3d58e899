/*
 * estafeta dkim keygen DOMAIN SELECTOR [--type rsa|ed25519] [--bits N] [--force]
 *
 * Generate a DKIM signing key into dkim_key_directory/DOMAIN/SELECTOR.pem
 * (directories 0750, file 0600, owned by filter_user when run as root),
 * then print the TXT record to publish and the dkim_signing_table line.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "config.h"
#include "estafeta.h"
#include "privsep.h"
#include "util.h"

/* A TXT character-string is at most 255 bytes long (RFC 1035 section 3.3). */
#define TXT_STRING_MAX 255

struct keygen_options {
	const char *domain;
	const char *selector;
	int ed25519;
	int bits;
	int force;
};

static const char usage_text[] =
    "usage: estafeta dkim keygen DOMAIN SELECTOR [--type rsa|ed25519] [--bits N] [--force]";

/* Whether NAME is a DNS name of letters, digits, hyphens and dots. */
static int
name_valid(const char *name)
{
	if (name[0] == '\0' || name[0] == '.' || name[0] == '-' || strlen(name) > 253 ||
	    strstr(name, "..") != NULL)
		return 0;
	for (const char *p = name; *p != '\0'; p++) {
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.' && *p != '_')
			return 0;
	}
	return 1;
}

static int
options_parse(int argc, char **argv, struct keygen_options *options)
{
	int positional = 0;

	memset(options, 0, sizeof *options);
	options->bits = 2048;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--force") == 0) {
			options->force = 1;
		} else if (strcmp(argv[i], "--type") == 0 && i + 1 < argc) {
			i++;
			if (strcmp(argv[i], "ed25519") == 0) {
				options->ed25519 = 1;
			} else if (strcmp(argv[i], "rsa") != 0) {
				print_error("invalid key type \"%s\": expected rsa or ed25519", argv[i]);
				return -1;
			}
		} else if (strcmp(argv[i], "--bits") == 0 && i + 1 < argc) {
			char *end;
			long bits = strtol(argv[++i], &end, 10);

			/* RFC 8301 section 3.2: at least 1024 bits, 2048 recommended. */
			if (*end != '\0' || bits < 1024 || bits > 8192) {
				print_error("invalid --bits \"%s\": expected 1024 to 8192", argv[i]);
				return -1;
			}
			options->bits = (int)bits;
		} else if (argv[i][0] == '-' || positional == 2) {
			print_error("%s", usage_text);
			return -1;
		} else if (positional++ == 0) {
			options->domain = argv[i];
		} else {
			options->selector = argv[i];
		}
	}
	if (positional != 2) {
		print_error("%s", usage_text);
		return -1;
	}
	if (!name_valid(options->domain) || !name_valid(options->selector)) {
		print_error("invalid domain or selector \"%s\" \"%s\": use letters, digits, hyphens and dots",
		    options->domain, options->selector);
		return -1;
	}
	return 0;
}

/* Create DIRECTORY with mode 0750, owned by UID and GID when CHOWN_IT. */
static int
directory_make(const char *directory, int chown_it, uid_t uid, gid_t gid)
{
	if (mkdir_p(directory, 0750) < 0 && errno != EEXIST) {
		print_error("cannot create %s: %s", directory, strerror(errno));
		return -1;
	}
	if (chown_it && chown(directory, uid, gid) < 0) {
		print_error("cannot give %s to filter_user: %s", directory, strerror(errno));
		return -1;
	}
	return 0;
}

/* Write PKEY to PATH (mode 0600) through a temporary file and rename. */
static int
key_write(EVP_PKEY *pkey, const char *path, int force, int chown_it, uid_t uid, gid_t gid)
{
	char *temporary = xasprintf("%s.tmp%ld", path, (long)getpid());
	FILE *file = NULL;
	int fd, rc = -1;

	fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		print_error("cannot create %s: %s", temporary, strerror(errno));
		free(temporary);
		return -1;
	}
	if (chown_it && fchown(fd, uid, gid) < 0) {
		print_error("cannot give %s to filter_user: %s", temporary, strerror(errno));
		goto out;
	}
	file = fdopen(fd, "w");
	if (file == NULL) {
		print_error("cannot write %s: %s", temporary, strerror(errno));
		goto out;
	}
	fd = -1;
	if (PEM_write_PrivateKey(file, pkey, NULL, NULL, 0, NULL, NULL) != 1 ||
	    fflush(file) != 0 || fsync(fileno(file)) < 0) {
		print_error("cannot write %s", temporary);
		goto out;
	}

	/* link() fails when PATH exists, so a key is replaced only with --force. */
	if (!force && link(temporary, path) < 0) {
		print_error(errno == EEXIST ? "%s exists; use --force to replace it" : "cannot create %s: %s",
		    path, strerror(errno));
		goto out;
	}
	if (force && rename(temporary, path) < 0) {
		print_error("cannot create %s: %s", path, strerror(errno));
		goto out;
	}
	rc = 0;

out:
	if (file != NULL)
		fclose(file);
	if (fd >= 0)
		close(fd);
	unlink(temporary);
	free(temporary);
	return rc;
}

/* The p= value: base64 of the SubjectPublicKeyInfo for RSA (RFC 6376
 * section 3.6.1), of the raw 32-byte key for Ed25519 (RFC 8463). */
static char *
public_key_base64(EVP_PKEY *pkey, int ed25519)
{
	unsigned char *der = NULL, raw[32];
	size_t len = sizeof raw;
	char *text;
	int derlen;

	if (ed25519) {
		if (EVP_PKEY_get_raw_public_key(pkey, raw, &len) != 1)
			return NULL;
		der = raw;
		derlen = (int)len;
	} else {
		derlen = i2d_PUBKEY(pkey, &der);
		if (derlen <= 0)
			return NULL;
	}
	text = xmalloc(4 * ((size_t)derlen + 2) / 3 + 1);
	EVP_EncodeBlock((unsigned char *)text, der, derlen);
	if (!ed25519)
		OPENSSL_free(der);
	return text;
}

/* Print the TXT record in zone file syntax, split into strings. */
static void
record_print(const struct keygen_options *options, const char *public_key)
{
	char *record = xasprintf("v=DKIM1; k=%s; p=%s", options->ed25519 ? "ed25519" : "rsa",
	    public_key);
	size_t len = strlen(record);

	printf("%s._domainkey.%s. IN TXT (", options->selector, options->domain);
	for (size_t at = 0; at < len; at += TXT_STRING_MAX) {
		size_t n = len - at < TXT_STRING_MAX ? len - at : TXT_STRING_MAX;

		printf(" \"%.*s\"", (int)n, record + at);
	}
	printf(" )\n");
	free(record);
}

int
dkim_command(int argc, char **argv)
{
	struct keygen_options options;
	char *directory, *path, *public_key;
	EVP_PKEY *pkey;
	uid_t uid = 0;
	gid_t gid = 0;
	int chown_it = 0, rc = EX_OK;

	if (argc < 1 || strcmp(argv[0], "keygen") != 0) {
		print_error("%s", usage_text);
		return EX_USAGE;
	}
	if (options_parse(argc - 1, argv + 1, &options) < 0)
		return EX_USAGE;

	if (privsep_is_root()) {
		if (privsep_lookup(config_string("filter_user"), &uid, &gid) < 0) {
			print_error("filter_user %s not found; create it or set filter_user",
			    config_string("filter_user"));
			return EX_NOUSER;
		}
		chown_it = 1;
	}

	directory = xasprintf("%s/%s", config_string("dkim_key_directory"), options.domain);
	path = xasprintf("%s/%s.pem", directory, options.selector);
	if (!options.force && access(path, F_OK) == 0) {
		print_error("%s exists; use --force to replace it", path);
		free(directory);
		free(path);
		return EX_CANTCREAT;
	}
	if (directory_make(config_string("dkim_key_directory"), chown_it, uid, gid) < 0 ||
	    directory_make(directory, chown_it, uid, gid) < 0) {
		free(directory);
		free(path);
		return EX_CANTCREAT;
	}

	pkey = options.ed25519 ? EVP_PKEY_Q_keygen(NULL, NULL, "ED25519") :
	    EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)options.bits);
	public_key = pkey != NULL ? public_key_base64(pkey, options.ed25519) : NULL;
	if (public_key == NULL) {
		print_error("key generation failed");
		rc = EX_SOFTWARE;
	} else if (key_write(pkey, path, options.force, chown_it, uid, gid) < 0) {
		rc = EX_CANTCREAT;
	} else {
		printf("# key written to %s\n", path);
		printf("# publish this record in the zone of %s:\n", options.domain);
		record_print(&options, public_key);
		printf("# add this line to dkim_signing_table:\n");
		printf("%s:%s:%s\n", options.domain, options.selector, path);
	}

	free(public_key);
	EVP_PKEY_free(pkey);
	free(directory);
	free(path);
	return rc;
}
