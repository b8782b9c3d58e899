/*
 * The certificate and key files a TLS server context is built from,
 * read in one step either directly or through the key reader
 * (lib/tls_files.c). Internal to lib/tls*.c.
 */
#ifndef ESTAFETA_TLS_FILES_H
#define ESTAFETA_TLS_FILES_H

#include <stddef.h>

/* Largest certificate or key file read, in bytes. */
#define TLS_FILE_MAX	(1024 * 1024)

struct tls_file {
	char *path;
	char *data;		/* the file's text, NUL-terminated; NULL on error */
	size_t length;
	int error;		/* errno of the failed open or read, EINVAL for a file
				 * that is not regular, EFBIG above TLS_FILE_MAX, or 0 */
};

struct tls_files {
	struct tls_file *files;
	size_t count;
};

/* Collect the paths the tls_* parameters name, each once. */
void tls_files_collect(struct tls_files *set);

/*
 * Fill in every file's data: from the key reader when it runs, else by
 * reading the files. Returns 0, or -1 with ERR set when the key reader
 * failed (a missing file is reported per file, in its error field).
 */
int tls_files_read(struct tls_files *set, char *err, size_t errsize);

/* The file with PATH, or NULL when PATH was not collected. */
const struct tls_file *tls_files_find(const struct tls_files *set, const char *path);

/* Wipe the key material and free everything. */
void tls_files_free(struct tls_files *set);

/*
 * Split one tls_sni_certificates item, [NAME=]CERT_FILE[:KEY_FILE], into
 * malloc'ed parts (NAME and KEY NULL when absent). Returns -1 when the
 * certificate path is empty.
 */
int tls_sni_item_parse(const char *item, char **name, char **cert, char **key);

#endif
