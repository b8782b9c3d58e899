/*
 * Forwarding: resubmission of the message to queued (alias targets on
 * other hosts, ~/.forward addresses) and the ~/.forward file itself.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include "aliases.h"
#include "config.h"
#include "deliverd.h"
#include "ipc.h"
#include "log.h"
#include "privsep.h"
#include "submit.h"
#include "util.h"

#define FORWARD_FILE_MAX (64 * 1024)	/* larger .forward files are rejected */
#define FORWARD_MAX_RCPTS 1000

/* A connection to queued_socket that this process made as root, for the
 * forward of its one delivery, or -1 (forward_connect_early). */
static int early_queue_sock = -1;

/* Copy the message into the queue file of S. 0 or -1 with errno. */
static int
submit_copy_message(struct submit *s, const struct message *msg)
{
	char buf[64 * 1024];
	off_t offset = 0;

	while (offset < msg->size) {
		ssize_t n = pread(msg->fd, buf, sizeof buf, offset);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EIO;
			return -1;
		}
		if (submit_write(s, buf, (size_t)n) < 0)
			return -1;
		offset += n;
	}
	return 0;
}

void
forward_connect_early(void)
{
	if (!privsep_is_root() || !config_bool("local_filter") || early_queue_sock >= 0)
		return;
	early_queue_sock = ipc_connect(config_string("queued_socket"));
}

int
forward_needs_root(const char *home)
{
	char path[PATH_MAX];

	if (!config_bool("local_filter"))
		return 0;
	if ((size_t)snprintf(path, sizeof path, "%s/.forward", home) >= sizeof path)
		return 0;
	return access(path, F_OK) == 0;
}

void
forward_submit(const struct message *msg, char *const *rcpts, size_t count,
    const char *delivered_to, const char *submitter, const char *session_id,
    struct delivery_result *result)
{
	char err[512], queue_id[QUEUE_ID_MAX + 1];
	int trusted = submitter != NULL && early_queue_sock >= 0;
	struct submit *s;
	struct ipc_msg *envelope;
	char *header;
	int rc;

	/* Over a connection made as root, queued takes forward=1 and the
	 * submitter; from the user's own connection it would ignore both. */
	if (trusted) {
		s = submit_begin_socket(early_queue_sock, err, sizeof err);
		early_queue_sock = -1;
	} else {
		s = submit_begin(config_string("queued_socket"), err, sizeof err);
	}

	if (s == NULL) {
		result_set(result, EX_TEMPFAIL, "4.3.0", "cannot forward: %s", err);
		return;
	}
	strlcpy_x(queue_id, submit_queue_id(s), sizeof queue_id);

	/* Delivered-To marks this hop, so a forwarding loop comes back to
	 * deliverd with a Delivered-To for the same address and stops. */
	header = xasprintf("Delivered-To: %s\n", delivered_to);
	if (submit_write(s, header, strlen(header)) < 0 || submit_copy_message(s, msg) < 0) {
		result_set(result, EX_TEMPFAIL, "4.3.0", "cannot forward: writing to queue file %s failed: %s",
		    queue_id, strerror(errno));
		free(header);
		submit_abort(s);
		return;
	}
	free(header);

	envelope = ipc_msg_new("COMMIT");
	ipc_msg_add(envelope, "sender", msg->sender);
	for (size_t i = 0; i < count; i++)
		ipc_msg_add(envelope, "rcpt", rcpts[i]);
	ipc_msg_add(envelope, "protocol", "LOCAL");
	if (trusted) {
		ipc_msg_add(envelope, "submitter", submitter);
		ipc_msg_add(envelope, "forward", "1");
	}
	rc = submit_commit(s, envelope, err, sizeof err);
	ipc_msg_free(envelope);
	/* A permanent failure is filterd's rejection of the content. A retry
	 * would scan the same message again until it expires. */
	if (rc == -2) {
		result_set(result, EX_UNAVAILABLE, "5.7.1", "cannot forward: %s", err);
		return;
	}
	if (rc < 0) {
		result_set(result, EX_TEMPFAIL, "4.3.0", "cannot forward: %s", err);
		return;
	}

	log_info("%s: forwarded as %s to %zu recipient%s (delivered-to %s)", session_id, queue_id,
	    count, count == 1 ? "" : "s", delivered_to);
	result_set(result, EX_OK, "2.0.0", "forwarded as %s", queue_id);
}

/* Read the file PATH of at most FORWARD_FILE_MAX bytes into a new
 * string. NULL with errno set on failure. */
static char *
read_small_file(const char *path, struct stat *st)
{
	char *text;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);

	if (fd < 0)
		return NULL;
	if (fstat(fd, st) < 0 || !S_ISREG(st->st_mode) || st->st_size > FORWARD_FILE_MAX) {
		close(fd);
		errno = EFBIG;
		return NULL;
	}
	text = xmalloc((size_t)st->st_size + 1);
	n = read(fd, text, (size_t)st->st_size);
	if (n < 0) {
		int saved_errno = errno;

		close(fd);
		free(text);
		errno = saved_errno;
		return NULL;
	}
	close(fd);
	text[n] = '\0';
	return text;
}

/* Read ~/.forward; NULL when there is none or when it is unsafe (logged). */
static char *
forward_read(const char *home, const char *session_id)
{
	char path[PATH_MAX];
	struct stat st;
	char *text;

	if ((size_t)snprintf(path, sizeof path, "%s/.forward", home) >= sizeof path)
		return NULL;
	text = read_small_file(path, &st);
	if (text == NULL) {
		if (errno != ENOENT && errno != ENOTDIR)
			log_warn("%s: cannot read %s: %s; delivering to the mailbox", session_id, path,
			    errno == EFBIG ? "not a regular file of at most 64 KB" : strerror(errno));
		return NULL;
	}

	/* Anyone else who could write the file could run commands as the user. */
	if ((st.st_uid != geteuid() && st.st_uid != 0) || (st.st_mode & (S_IWGRP | S_IWOTH))) {
		log_warn("%s: ignoring %s: it must be owned by the user (or root) and writable only by its owner",
		    session_id, path);
		free(text);
		return NULL;
	}
	return text;
}

struct forward_state {
	const struct message *msg;
	const struct delivery_request *request;
	const struct userdb_entry *user;
	struct delivery_result combined;
	char *rcpts[FORWARD_MAX_RCPTS];
	size_t nrcpts;
	int to_mailbox;
};

/* Whether TARGET (an address or user name from .forward) names the user
 * whose .forward it is; such a target means the user's own mailbox. */
static int
forward_is_self(const struct forward_state *state, const char *target)
{
	char self[640];

	if (ascii_casecmp(target, state->user->user) == 0 ||
	    ascii_casecmp(target, state->request->recipient) == 0)
		return 1;
	snprintf(self, sizeof self, "%s@%s", state->user->user, local_hostname());
	return ascii_casecmp(target, self) == 0;
}

static void
forward_fail(struct forward_state *state, int status, const char *dsn, const char *text)
{
	struct delivery_result failed;

	result_set(&failed, status, dsn, "%s", text);
	log_delivery(state->request, &failed, state->request->recipient);
	result_merge(&state->combined, &failed);
}

static void
forward_add_rcpt(struct forward_state *state, const char *address)
{
	if (state->nrcpts >= FORWARD_MAX_RCPTS) {
		forward_fail(state, EX_UNAVAILABLE, "5.3.0", ".forward lists too many addresses");
		return;
	}
	if (strchr(address, '@') != NULL)
		state->rcpts[state->nrcpts++] = xstrdup(address);
	else
		state->rcpts[state->nrcpts++] = xasprintf("%s@%s", address,
		    local_hostname());
}

static void
forward_command(struct forward_state *state, const char *command, struct delivery_result *one)
{
	const struct delivery_request *request = state->request;
	char local[320], domain[256];
	const char *at = strrchr(request->recipient, '@');
	struct command_env env = {
		.sender = state->msg->sender,
		.recipient = request->recipient,
		.local = local,
		.domain = domain,
		.extension = request->detail,
		.home = state->user->home,
		.user = state->user->user,
	};

	strlcpy_x(local, request->recipient, sizeof local);
	if (at != NULL && (size_t)(at - request->recipient) < sizeof local)
		local[at - request->recipient] = '\0';
	strlcpy_x(domain, at != NULL ? at + 1 : "", sizeof domain);
	command_deliver(state->msg, command, &env, one);
}

static void forward_targets(struct forward_state *state, const struct alias_target_list *list,
    int nested);

/* An :include: file named in .forward, read as the user. One level only. */
static void
forward_include(struct forward_state *state, const char *path, int nested)
{
	struct alias_target_list list = { 0 };
	char err[256], text_err[512];
	struct stat st;
	char *text;

	if (nested) {
		snprintf(text_err, sizeof text_err, ":include: %s inside an :include: file", path);
		forward_fail(state, EX_CONFIG, "5.3.5", text_err);
		return;
	}
	text = read_small_file(path, &st);
	if (text == NULL) {
		snprintf(text_err, sizeof text_err, "cannot read :include: file %s: %s", path,
		    strerror(errno));
		forward_fail(state, EX_TEMPFAIL, "4.3.0", text_err);
		return;
	}
	if (aliases_split_include(text, &list, err, sizeof err) < 0) {
		snprintf(text_err, sizeof text_err, "invalid :include: file %s: %s", path, err);
		forward_fail(state, EX_TEMPFAIL, "4.3.5", text_err);
	} else {
		forward_targets(state, &list, 1);
	}
	alias_target_list_free(&list);
	free(text);
}

static void
forward_targets(struct forward_state *state, const struct alias_target_list *list, int nested)
{
	for (size_t i = 0; i < list->count; i++) {
		const struct alias_target *target = &list->targets[i];
		struct delivery_result one;

		switch (target->type) {
		case ALIAS_TARGET_ADDRESS:
		case ALIAS_TARGET_LOCAL:
			if (forward_is_self(state, target->text))
				state->to_mailbox = 1;
			else
				forward_add_rcpt(state, target->text);
			continue;
		case ALIAS_TARGET_INCLUDE:
			forward_include(state, target->text, nested);
			continue;
		case ALIAS_TARGET_COMMAND:
			forward_command(state, target->text, &one);
			break;
		case ALIAS_TARGET_FILE:
			file_deliver(state->msg, target->text, state->request->recipient, &one);
			break;
		}
		log_delivery(state->request, &one, state->request->recipient);
		result_merge(&state->combined, &one);
	}
}

int
forward_deliver(const struct message *msg, const struct delivery_request *request,
    const struct userdb_entry *user, struct delivery_result *result)
{
	struct forward_state state = { .msg = msg, .request = request, .user = user };
	struct alias_target_list list = { 0 };
	struct delivery_result one;
	char err[256];
	char *text = forward_read(user->home, request->session_id);

	if (text == NULL)
		return 0;
	if (aliases_split_include(text, &list, err, sizeof err) < 0) {
		result_set(result, EX_TEMPFAIL, "4.3.5", "invalid %s/.forward: %s", user->home, err);
		free(text);
		return 1;
	}
	free(text);
	if (list.count == 0) {
		alias_target_list_free(&list);
		return 0;
	}

	result_set(&state.combined, EX_OK, "2.0.0", "delivered through .forward");
	forward_targets(&state, &list, 0);
	alias_target_list_free(&list);

	if (state.to_mailbox) {
		mailbox_deliver(msg, request, user, &one);
		log_delivery(request, &one, request->recipient);
		result_merge(&state.combined, &one);
	}
	if (state.nrcpts > 0) {
		forward_submit(msg, state.rcpts, state.nrcpts, request->recipient, user->user,
		    request->session_id, &one);
		log_delivery(request, &one, request->recipient);
		result_merge(&state.combined, &one);
	}
	for (size_t i = 0; i < state.nrcpts; i++)
		free(state.rcpts[i]);

	*result = state.combined;
	return 1;
}
