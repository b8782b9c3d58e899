/*
 * filterd's MESSAGE stage for local submissions (sendmail(1)), so that
 * they are signed and scanned like mail that arrives over SMTP. queued
 * sends filterd the request after the COMMIT request and before the
 * envelope is committed. It waits for the reply on the event loop, so
 * smtpd's commits go on while filterd works. The request describes an authenticated client on
 * 127.0.0.1 called localhost, whose login is the submitting user's name,
 * so filterd treats the message as outbound.
 */
#ifndef ESTAFETA_QUEUED_LOCAL_FILTER_H
#define ESTAFETA_QUEUED_LOCAL_FILTER_H

#include <sys/types.h>

struct envelope;
struct ipc_msg;

enum local_filter_action {
	LOCAL_FILTER_COMMIT,		/* accepted, or filterd failed under the accept policy */
	LOCAL_FILTER_QUARANTINE,
	LOCAL_FILTER_DISCARD,
	LOCAL_FILTER_TEMPFAIL,
	LOCAL_FILTER_REJECT,
};

struct local_filter_verdict {
	enum local_filter_action action;
	char reply[512];	/* SMTP reply of a reject or tempfail */
};

typedef void (*local_filter_done_cb)(const struct local_filter_verdict *verdict, void *arg);

/*
 * As root with local_filter on, and a filterd_socket_mode that does not
 * let every uid connect, keep the group of filterd_socket
 * (filterd_socket_group, or smtpd_user's primary group) when queued
 * drops root, so that queued can connect to filterd. When that group
 * does not exist, it logs a warning and local submissions get the
 * failure policy.
 * NOTE: local_filter switched on by a SIGHUP finds the group missing,
 * so the failure policy applies until queued restarts.
 */
void local_filter_keep_group(void);

/*
 * Return 1 when the COMMIT REQUEST from UID is a local submission that
 * filterd must see. That needs smtpd_filter on, and a uid other than
 * root's and smtpd's, or a request that names a submitter and no SMTP
 * client, as sendmail(1) run by root sends. Mail that deliverd forwards
 * carries no submitter.
 */
int local_filter_wanted(const struct ipc_msg *request, uid_t uid);

/*
 * Ask filterd about the message of ENV, whose data file is DATA_FD
 * (read-write, ENV->size bytes), submitted by the user LOGIN. filterd
 * gets a read-only descriptor of that file. Header
 * edits of an accept or quarantine verdict are applied to the data file
 * and ENV->size is updated before DONE runs. DONE runs from the event
 * loop, never from inside this call. ENV and DATA_FD stay the caller's.
 */
void local_filter_start(struct envelope *env, int data_fd, const char *login,
    local_filter_done_cb done, void *arg);

#endif
