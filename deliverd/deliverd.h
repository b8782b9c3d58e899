/*
 * deliverd: local delivery over LMTP (RFC 2033).
 *
 * Processes:
 *   master (root)      binds lmtp_socket, accepts connections and forks
 *                      one session per connection and one worker per
 *                      delivery; it parses no LMTP input itself.
 *   session            drops to smtpd_user before it reads a byte, speaks
 *                      LMTP, resolves recipients (aliases, authd userdb),
 *                      keeps the message in an unlinked temporary file and
 *                      sends one DELIVER request per destination to the
 *                      master, with the file attached.
 *   worker             looks the user up again as root, creates a missing
 *                      home directory, switches to the recipient's uid (or
 *                      default_privs for alias commands and files), delivers
 *                      and sends one RESULT back.
 *
 * Master <-> session frames (lib/ipc.h), over a socketpair per session:
 *   -> DELIVER id=N kind=mailbox|command|file session=ID sender=ADDR
 *              recipient=ADDR orig_recipient=ADDR [user=NAME forward=yes|no]
 *              [detail=TEXT] [text=COMMAND-OR-PATH] [privs=default|user]
 *              [quarantine=yes]
 *              with the message file attached
 *   quarantine=yes sends a mailbox delivery into deliverd_quarantine_folder.
 *   <- RESULT  id=N status=SYSEXITS dsn=X.Y.Z text=TEXT
 */
#ifndef ESTAFETA_DELIVERD_H
#define ESTAFETA_DELIVERD_H

#include <limits.h>
#include <stddef.h>
#include <sys/types.h>

#include "userdb.h"

struct ipc_msg;

/* Outcome of one delivery: sysexits code, enhanced status code, text. */
struct delivery_result {
	int status;		/* EX_OK, EX_TEMPFAIL, EX_NOUSER, ... */
	char dsn[16];		/* "2.0.0", "4.3.0", "5.1.1" */
	char text[512];
};

void result_set(struct delivery_result *result, int status, const char *dsn,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Whether STATUS is a temporary failure (EX_TEMPFAIL and EX_OSERR, as
 * Postfix's sys_exits table has it); every other non-zero code is permanent. */
int result_is_temporary(int status);

/* Turn a command's exit status into a result (sysexits meaning). */
void result_from_exit_code(struct delivery_result *result, int code, const char *what);

/* Frame conversions between DELIVER/RESULT messages and structs. */
struct ipc_msg *result_to_msg(const struct delivery_result *result, long id);
void result_from_msg(struct delivery_result *result, const struct ipc_msg *msg);

/* The message being delivered: an unlinked file with LF line ends. */
struct message {
	int fd;
	off_t size;
	const char *sender;	/* "" for the null reverse-path */
};

/* Everything a worker needs for one delivery (one DELIVER frame). */
struct delivery_request {
	long id;
	const char *kind;		/* "mailbox", "command" or "file" */
	const char *session_id;
	const char *sender;
	const char *recipient;		/* address this destination was reached as */
	const char *orig_recipient;	/* the LMTP RCPT address */
	const char *user;		/* userdb name (mailbox) */
	const char *detail;		/* address extension, "" if none */
	const char *text;		/* command line or file path */
	int forward;			/* mailbox: honour ~/.forward */
	int default_privs;		/* command/file: run as default_privs */
	int quarantine;			/* mailbox: into deliverd_quarantine_folder */
	long long start_usec;		/* end of DATA, for the delay= log field */
};

/* Fill REQUEST from MSG (pointers into MSG). -1 if a field is missing. */
int request_from_msg(struct delivery_request *request, const struct ipc_msg *msg);

/* Log one delivery the way Postfix does: "ID: to=<TO>, orig_to=<..>,
 * relay=local, delay=.., dsn=.., status=sent|deferred|bounced (text)". */
void log_delivery(const struct delivery_request *request, const struct delivery_result *result,
    const char *to);

/* Merge ONE into COMBINED: a temporary failure beats a permanent one,
 * which beats success. */
void result_merge(struct delivery_result *combined, const struct delivery_result *one);

/* myhostname, or the system host name when it is empty. */
const char *local_hostname(void);

/* resolve.c: what one RCPT address expands to. */
enum target_kind {
	TARGET_MAILBOX,		/* a user's mailbox (and maybe ~/.forward) */
	TARGET_COMMAND,		/* |command from the aliases file */
	TARGET_FILE,		/* /file from the aliases file */
	TARGET_REMOTE,		/* an address outside local delivery: resubmitted */
	TARGET_FAILED,		/* an alias member that cannot be delivered */
};

struct target {
	enum target_kind kind;
	char *address;		/* address this destination was reached as */
	char *user;		/* mailbox: userdb name */
	char *detail;		/* address extension, "" if none */
	char *text;		/* command line, file path or remote address */
	int forward;		/* mailbox of a system user: honour ~/.forward */
	uid_t uid;		/* mailbox: the owner as the session saw it */
	gid_t gid;
	struct delivery_result failure;	/* TARGET_FAILED */
};

struct target_list {
	struct target *items;
	size_t count;
	size_t capacity;
};

struct mailaddr;
struct resolver;

/* A resolver for one LMTP session. REFUSE_UID0: the daemon runs as
 * root, so a recipient with uid 0 is rejected. */
struct resolver *resolver_new(int refuse_uid0);
void resolver_free(struct resolver *resolver);

/* Reopen the alias map if newaliases rebuilt it. */
void resolver_refresh(struct resolver *resolver);

/*
 * Expand RCPT through the aliases and userdb into OUT (zeroed by the
 * caller). Returns 1 when at least one destination can be tried (alias
 * members that failed are TARGET_FAILED entries), or 0 with FAILURE
 * filled: unknown user (5.1.1), userdb unavailable (4.3.0), ...
 */
int resolve_recipient(struct resolver *resolver, const struct mailaddr *rcpt,
    struct target_list *out, struct delivery_result *failure);
void target_list_free(struct target_list *list);

/* master.c: run the root master on the bound listening socket. */
void master_run(int listen_fd);

/* session.c: serve one LMTP connection; CHANNEL leads to the master. */
void session_run(int client_fd, int channel, uid_t peer_uid);

/* worker.c: perform one delivery and send the RESULT on RESULT_FD. */
void worker_run(const struct ipc_msg *request, int msg_fd, int result_fd);

/* worker.c: switch to UID/GID for good, with NAME's supplementary groups
 * (none when NAME is NULL) plus EXTRA_GID unless it is (gid_t)-1. Does
 * nothing when not root. 0, or -1 with errno set. */
int worker_become(uid_t uid, gid_t gid, const char *name, gid_t extra_gid);

/* The Maildir++ folder for REQUEST: deliverd_quarantine_folder for a
 * quarantined message when that is set, else NULL (the inbox). */
const char *mailbox_folder(const struct delivery_request *request);

/* mailbox_worker.c: serve DELIVER requests from the master on CHANNEL
 * as UID/GID (already switched to) until the master closes it. Users are
 * looked up on USERDB, connected before the switch and freed here. */
struct userdb_client;
void mailbox_worker_run(int channel, uid_t uid, gid_t gid, struct userdb_client *userdb);

/*
 * Copy the message into FD after PREFIX (extra header lines, may be
 * NULL). MBOXRD quotes body lines matching ^>*From  with one more '>'.
 * Reads with pread, so several workers can share one descriptor.
 * Returns 0 or -1 with errno set.
 */
int message_write(const struct message *msg, int fd, const char *prefix, int mboxrd);

/* "Return-Path: <sender>\nDelivered-To: recipient\n", a new string. */
char *message_delivery_prefix(const char *sender, const char *recipient);

/* The "From sender date" separator line of mbox, with its LF. */
char *message_mbox_separator(const char *sender);

/*
 * Dovecot mail locations: "maildir:PATH", "mbox:PATH[:INBOX=PATH]", with
 * '~' the home directory and %u, %n, %d the user, its local part and
 * domain. Stores the type ("maildir"/"mbox") and the path of the inbox
 * (the Maildir, or the mbox file). Returns 0, or -1 for an unsupported
 * location.
 */
int mail_location_inbox(const char *location, const struct userdb_entry *user,
    const char *spool_directory, char *type, size_t typesize, char *path, size_t pathsize);

/* maildir.c: deliver into the Maildir at ROOT (FOLDER NULL for INBOX,
 * or a Maildir++ folder name like "Junk", created and subscribed when
 * missing). */
void maildir_deliver(const struct message *msg, const char *root, const char *folder,
    const char *recipient, struct delivery_result *result);

/* maildir_folder.c: mark the new directory DIR as the Maildir++ folder
 * FOLDER of the Maildir at ROOT and subscribe it. Failures are logged:
 * the delivery goes on without them. */
void maildir_folder_setup(const char *root, const char *folder, const char *dir);

/* One file of a batch of Maildir deliveries. */
struct maildir_file {
	char dir[PATH_MAX];		/* the Maildir or folder */
	char folder[256];		/* the folder name, "" for the inbox */
	char tmp_path[PATH_MAX];
	char new_path[PATH_MAX];
	int created;			/* the folder was created for it */
	int fd;				/* open until maildir_commit, else -1 */
	int renamed;			/* in new/, waiting for the last barrier */
	off_t size;			/* bytes written */
	dev_t dev;			/* its file system */
};

/* Write the message into the tmp/ of ROOT or its FOLDER, not yet synced.
 * A missing FOLDER is created in the layout imapd reads (tmp, new, cur
 * and a maildirfolder file) and added to the subscriptions file when
 * the user has one. 0, or -1 with RESULT filled. */
int maildir_write(const struct message *msg, const char *root, const char *folder,
    const char *recipient, struct maildir_file *file, struct delivery_result *result);

/* Finish COUNT files that maildir_write wrote (entries with fd -1 are
 * skipped, their RESULTS untouched): a barrier for the files, the
 * renames into new/, a barrier for the directories. USE_SYNCFS: one
 * syncfs per barrier for a batch of 32 or more small files, else fsync
 * of each file and each new/. Fills RESULTS. */
void maildir_commit(struct maildir_file *files, struct delivery_result *results, size_t count,
    int use_syncfs);

/* The steps of maildir_commit, for a caller that overlaps batches.
 * maildir_syncfs_suits: whether COUNT files share a syncfs barrier (32
 * or more, none large). maildir_set_results: the success results of the
 * files written. Then the first barrier (fsync of each file, or
 * syncfs), the renames into new/, and the second barrier, which also
 * clears the files' renamed flags. */
int maildir_syncfs_suits(const struct maildir_file *files, size_t count);
void maildir_set_results(const struct maildir_file *files, struct delivery_result *results,
    size_t count);
void maildir_sync_files(struct maildir_file *files, struct delivery_result *results,
    size_t count, int use_syncfs);
void maildir_rename(struct maildir_file *files, struct delivery_result *results, size_t count);
void maildir_sync_dirs(struct maildir_file *files, struct delivery_result *results,
    size_t count, int use_syncfs);

/* Run one syncfs on each file system that contains one of the open
 * FILES or one of the RENAMED files (either list may be empty). That is
 * the first barrier of FILES and the second of RENAMED at once. Returns
 * 0, or -1 when a syncfs failed, and then neither barrier counts. */
int maildir_barrier(struct maildir_file *files, size_t count, const struct maildir_file *renamed,
    size_t nrenamed);

/* mbox.c: append to the mbox file PATH under an fcntl lock and, with
 * MBOX_DOTLOCK, a PATH.lock file. MBOX_CHECK_OWNER rejects a file that
 * the current user does not own. */
#define MBOX_DOTLOCK		0x1
#define MBOX_CHECK_OWNER	0x2
void mbox_deliver(const struct message *msg, const char *path, const char *recipient,
    int flags, struct delivery_result *result);

/* command.c: pipe the message into /bin/sh -c COMMAND as the current user. */
struct command_env {
	const char *sender;
	const char *recipient;
	const char *local;
	const char *domain;
	const char *extension;
	const char *home;
	const char *user;
};
void command_deliver(const struct message *msg, const char *command,
    const struct command_env *env, struct delivery_result *result);

/* forward.c: resubmit the message to queued for RCPTS (envelope sender
 * kept), with "Delivered-To: DELIVERED_TO" added on top. SUBMITTER is
 * the user of a ~/.forward, or NULL for an alias. */
void forward_submit(const struct message *msg, char *const *rcpts, size_t count,
    const char *delivered_to, const char *submitter, const char *session_id,
    struct delivery_result *result);

/* forward.c: as root with local_filter on, connect to queued_socket
 * before the process becomes the user, so that a forward of this
 * delivery reaches queued as root's: filterd then keeps the
 * Authentication-Results fields that it added on arrival. */
void forward_connect_early(void);

/* forward.c: whether a delivery to the user of HOME needs that
 * connection, so a mailbox worker hands it to a one-shot worker: with
 * local_filter on, when HOME has a .forward file. */
int forward_needs_root(const char *home);

/* forward.c: deliver through the user's ~/.forward, if there is one.
 * Returns 1 when the file took over the delivery (RESULT filled), 0 when
 * there is no .forward and the mailbox gets the message. Runs as the user. */
int forward_deliver(const struct message *msg, const struct delivery_request *request,
    const struct userdb_entry *user, struct delivery_result *result);

/* worker.c: deliver to a /file target: a path ending in '/' is a
 * Maildir, anything else an mbox file (dotlocked when its directory is
 * writable). Runs as the user the target belongs to. */
void file_deliver(const struct message *msg, const char *path, const char *recipient,
    struct delivery_result *result);

/* worker.c: deliver to the user's own mailbox (as the user), into
 * deliverd_quarantine_folder when REQUEST has the quarantine flag and
 * the mailbox is a Maildir. */
void mailbox_deliver(const struct message *msg, const struct delivery_request *request,
    const struct userdb_entry *user, struct delivery_result *result);

#endif
