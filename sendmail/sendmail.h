/* sendmail, mailq, newaliases: the Sendmail-compatible command line. */
#ifndef ESTAFETA_SENDMAIL_H
#define ESTAFETA_SENDMAIL_H

#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#include "queue_proto.h"

/* A message as read, with LF line ends and without the fields we add. */
struct message {
	char *data;
	size_t len;
};

/* Growing list of addresses, each a new string. */
struct address_list {
	char **items;
	size_t count;
	size_t capacity;
};

/* The invoking user. */
struct local_user {
	char name[256];
	uid_t uid;
	char gecos_name[256];	/* first GECOS field, "" when none */
};

struct local_submission {
	const char *sender;		/* normalized; "" is the null sender */
	struct address_list *rcpts;	/* normalized; -t adds to it */
	int extract_recipients;		/* -t */
	const char *full_name;		/* for an added From:, NULL: none given */
	const char *body_type;		/* 7BIT, 8BITMIME or NULL to detect */
	const char *protocol;		/* LOCAL, SMTP or ESMTP */
	const char *helo;		/* -bs only, NULL otherwise */
	const struct local_user *user;
};

/* input.c */
#define MESSAGE_READ_ERROR	(-1)
#define MESSAGE_TOO_LARGE	(-2)
int message_read(FILE *in, int dot_ends, long long max_size, struct message *msg);
void message_free(struct message *msg);

/* address.c */
void address_list_add(struct address_list *list, const char *address);
void address_list_free(struct address_list *list);
const char *my_hostname(void);
/*
 * Normalize TEXT (an address, "<address>" or "Name <address>") into OUT:
 * the first address it contains, with @myhostname appended to a bare
 * local part. Returns 0, 1 when TEXT is the null address ("" or "<>"),
 * or -1 when no valid address is found.
 */
int address_normalize(const char *text, char *out, size_t outsize);
/* Add every address of the list TEXT to LIST, normalized. -1 when one is invalid. */
int address_list_add_text(struct address_list *list, const char *text);
int local_user_get(struct local_user *user);

/* submit_local.c: returns a sysexits code; prints errors on stderr. */
int submit_local(const struct local_submission *sub, const struct message *msg,
    char queue_id[QUEUE_ID_MAX]);

/* smtp_stdio.c: sendmail -bs. */
int smtp_stdio_run(FILE *in, FILE *out, const struct local_user *user);

/* admin.c: mailq, newaliases and sendmail -q. */
int run_mailq(void);
int run_newaliases(const char *alias_source);
int run_flush(const char *queue_id);

/* sendmail.c */
void warnx_sendmail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
