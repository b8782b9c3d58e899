/* IPC frames over Unix stream sockets, with descriptor passing. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>

#include "ipc.h"
#include "log.h"
#include "util.h"

#define IPC_HEADER_SIZE 8

struct ipc_msg *
ipc_msg_new(const char *type)
{
	struct ipc_msg *msg = xcalloc(1, sizeof *msg);

	msg->type = xstrdup(type);
	msg->fd = -1;
	return msg;
}

void
ipc_msg_free(struct ipc_msg *msg)
{
	if (msg == NULL)
		return;
	for (size_t i = 0; i < msg->nfields; i++) {
		free(msg->fields[i].key);
		free(msg->fields[i].value);
	}
	free(msg->fields);
	free(msg->type);
	if (msg->fd >= 0)
		close(msg->fd);
	free(msg);
}

static int
ipc_text_valid(const char *text)
{
	return strpbrk(text, "\r\n") == NULL;
}

int
ipc_msg_add(struct ipc_msg *msg, const char *key, const char *value)
{
	if (!ipc_text_valid(key) || strchr(key, '=') != NULL || !ipc_text_valid(value)) {
		errno = EINVAL;
		return -1;
	}
	if (msg->nfields == msg->capacity) {
		msg->capacity = msg->capacity ? msg->capacity * 2 : 8;
		msg->fields = xrealloc(msg->fields, msg->capacity * sizeof *msg->fields);
	}
	msg->fields[msg->nfields].key = xstrdup(key);
	msg->fields[msg->nfields].value = xstrdup(value);
	msg->nfields++;
	return 0;
}

int
ipc_msg_addf(struct ipc_msg *msg, const char *key, const char *fmt, ...)
{
	va_list ap;
	char *value;
	int rc;

	va_start(ap, fmt);
	if (vasprintf(&value, fmt, ap) < 0)
		fatal("vasprintf");
	va_end(ap);
	rc = ipc_msg_add(msg, key, value);
	free(value);
	return rc;
}

const char *
ipc_msg_get(const struct ipc_msg *msg, const char *key)
{
	return ipc_msg_get_nth(msg, key, 0);
}

long long
ipc_msg_get_int(const struct ipc_msg *msg, const char *key, long long default_value)
{
	const char *text = ipc_msg_get(msg, key);
	char *end;
	long long value;

	if (text == NULL || *text == '\0')
		return default_value;
	errno = 0;
	value = strtoll(text, &end, 10);
	if (*end != '\0' || errno != 0)
		return default_value;
	return value;
}

size_t
ipc_msg_count(const struct ipc_msg *msg, const char *key)
{
	size_t n = 0;

	for (size_t i = 0; i < msg->nfields; i++)
		if (strcmp(msg->fields[i].key, key) == 0)
			n++;
	return n;
}

const char *
ipc_msg_get_nth(const struct ipc_msg *msg, const char *key, size_t n)
{
	for (size_t i = 0; i < msg->nfields; i++)
		if (strcmp(msg->fields[i].key, key) == 0 && n-- == 0)
			return msg->fields[i].value;
	return NULL;
}

int
ipc_msg_take_fd(struct ipc_msg *msg)
{
	int fd = msg->fd;

	msg->fd = -1;
	return fd;
}

int
ipc_msg_encode(const struct ipc_msg *msg, char **out, size_t *outlen)
{
	size_t len = strlen(msg->type) + 1;
	uint32_t word;
	char *buf, *p;

	for (size_t i = 0; i < msg->nfields; i++)
		len += strlen(msg->fields[i].key) + 1 + strlen(msg->fields[i].value) + 1;
	if (len > IPC_MAX_FRAME) {
		errno = EMSGSIZE;
		return -1;
	}

	/* One more byte for the NUL that the last sprintf writes. */
	buf = xmalloc(IPC_HEADER_SIZE + len + 1);
	word = htonl((uint32_t)len);
	memcpy(buf, &word, 4);
	word = htonl(msg->fd >= 0 ? IPC_FLAG_FD : 0);
	memcpy(buf + 4, &word, 4);

	p = buf + IPC_HEADER_SIZE;
	p += sprintf(p, "%s\n", msg->type);
	for (size_t i = 0; i < msg->nfields; i++)
		p += sprintf(p, "%s=%s\n", msg->fields[i].key, msg->fields[i].value);

	*out = buf;
	*outlen = IPC_HEADER_SIZE + len;
	return 0;
}

struct ipc_msg *
ipc_msg_decode(const char *body, size_t len)
{
	struct ipc_msg *msg = NULL;
	const char *p = body, *end = body + len;

	if (len == 0 || body[len - 1] != '\n' || memchr(body, '\0', len) != NULL)
		return NULL;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		char *line = xstrndup(p, (size_t)(nl - p));

		p = nl + 1;
		if (msg == NULL) {
			if (*line == '\0' || strchr(line, '=') != NULL) {
				free(line);
				return NULL;
			}
			msg = ipc_msg_new(line);
			free(line);
			continue;
		}
		char *eq = strchr(line, '=');
		if (eq == NULL || eq == line) {
			free(line);
			ipc_msg_free(msg);
			return NULL;
		}
		*eq = '\0';
		if (ipc_msg_add(msg, line, eq + 1) < 0) {
			free(line);
			ipc_msg_free(msg);
			return NULL;
		}
		free(line);
	}
	return msg;
}

/* Send BUF with FD (or -1) attached to its first byte; blocking. */
static int
ipc_sendmsg_all(int sock, const char *buf, size_t len, int fd)
{
	while (len > 0) {
		union {
			struct cmsghdr hdr;
			char space[CMSG_SPACE(sizeof(int))];
		} control;
		struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
		ssize_t n;

		if (fd >= 0) {
			memset(&control, 0, sizeof control);
			mh.msg_control = control.space;
			mh.msg_controllen = sizeof control.space;
			struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(cm), &fd, sizeof(int));
		}
		n = sendmsg(sock, &mh, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		fd = -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

int
ipc_send(int sock, const struct ipc_msg *msg, int fd)
{
	struct ipc_msg copy = *msg;
	char *buf;
	size_t len;
	int rc;

	copy.fd = fd;
	if (ipc_msg_encode(&copy, &buf, &len) < 0)
		return -1;
	rc = ipc_sendmsg_all(sock, buf, len, fd);
	free(buf);
	return rc;
}

/*
 * Read up to LEN bytes; any descriptors that arrive are appended to
 * FDS. Returns bytes read, 0 on EOF, -1 on error.
 */
static ssize_t
ipc_recvmsg(int sock, char *buf, size_t len, int *fds, size_t *nfds, size_t maxfds)
{
	union {
		struct cmsghdr hdr;
		char space[CMSG_SPACE(sizeof(int) * 4)];
	} control;
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct msghdr mh = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = control.space, .msg_controllen = sizeof control.space,
	};
	ssize_t n;

	n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	if (n <= 0)
		return n;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm != NULL; cm = CMSG_NXTHDR(&mh, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < count; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			if (*nfds < maxfds)
				fds[(*nfds)++] = fd;
			else
				close(fd);
		}
	}
	return n;
}

struct ipc_msg *
ipc_recv(int sock)
{
	char header[IPC_HEADER_SIZE];
	int fds[4];
	size_t nfds = 0, got = 0;
	uint32_t len, flags;
	char *body;
	struct ipc_msg *msg;

	/* Read exactly the header, then exactly the body, so no byte of the
	 * next frame (or its descriptor) is consumed here. */
	while (got < IPC_HEADER_SIZE) {
		ssize_t n = ipc_recvmsg(sock, header + got, IPC_HEADER_SIZE - got, fds, &nfds, 4);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = got ? EPROTO : 0;
			goto fail_fds;
		}
		got += (size_t)n;
	}
	memcpy(&len, header, 4);
	memcpy(&flags, header + 4, 4);
	len = ntohl(len);
	flags = ntohl(flags);
	if (len == 0 || len > IPC_MAX_FRAME) {
		errno = EPROTO;
		goto fail_fds;
	}

	body = xmalloc(len);
	for (got = 0; got < len;) {
		ssize_t n = ipc_recvmsg(sock, body + got, len - got, fds, &nfds, 4);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EPROTO;
			free(body);
			goto fail_fds;
		}
		got += (size_t)n;
	}
	msg = ipc_msg_decode(body, len);
	free(body);
	if (msg == NULL || ((flags & IPC_FLAG_FD) != 0) != (nfds == 1)) {
		ipc_msg_free(msg);
		errno = EPROTO;
		goto fail_fds;
	}
	msg->fd = nfds ? fds[0] : -1;
	return msg;

fail_fds:
	for (size_t i = 0; i < nfds; i++)
		close(fds[i]);
	return NULL;
}

int
ipc_connect(const char *socket_path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int sock;

	if (strlcpy_x(sun.sun_path, socket_path, sizeof sun.sun_path) >= sizeof sun.sun_path) {
		errno = ENAMETOOLONG;
		return -1;
	}
	sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (sock < 0)
		return -1;
	if (connect(sock, (struct sockaddr *)&sun, sizeof sun) < 0) {
		int saved = errno;

		close(sock);
		errno = saved;
		return -1;
	}
	return sock;
}

int
ipc_listen(const char *socket_path, mode_t mode)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int sock;

	if (strlcpy_x(sun.sun_path, socket_path, sizeof sun.sun_path) >= sizeof sun.sun_path) {
		errno = ENAMETOOLONG;
		return -1;
	}
	/* A socket file that still accepts connections belongs to a running
	 * daemon: taking it over would cut that daemon off from its clients. */
	sock = ipc_connect(socket_path);
	if (sock >= 0) {
		close(sock);
		errno = EADDRINUSE;
		return -1;
	}

	sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (sock < 0)
		return -1;
	unlink(socket_path);
	if (bind(sock, (struct sockaddr *)&sun, sizeof sun) < 0 ||
	    chmod(socket_path, mode) < 0 || listen(sock, 128) < 0) {
		int saved = errno;

		close(sock);
		errno = saved;
		return -1;
	}
	return sock;
}

int
ipc_peer_cred(int sock, uid_t *uid, gid_t *gid, pid_t *pid)
{
	struct ucred cred;
	socklen_t len = sizeof cred;

	if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return -1;
	if (uid != NULL)
		*uid = cred.uid;
	if (gid != NULL)
		*gid = cred.gid;
	if (pid != NULL)
		*pid = cred.pid;
	return 0;
}

/* Event-driven connections. */

struct ipc_outframe {
	struct ipc_outframe *next;
	char *buf;
	size_t len;
	size_t sent;
	int fd;			/* still to be sent with the first byte, or -1 */
};

struct ipc_conn {
	int sock;
	struct event *read_ev;
	struct event *write_ev;
	struct event *close_ev;
	ipc_msg_cb cb;
	void *arg;

	char *inbuf;
	size_t inlen;
	size_t incap;
	int infds[8];
	size_t ninfds;
	/* Stream offsets: of inbuf[0], and of the end of the read that
	 * brought each descriptor. A descriptor travels with the first byte
	 * of its frame, so its frame starts before that end. */
	unsigned long long consumed;
	unsigned long long infd_limit[8];

	struct ipc_outframe *out_head;
	struct ipc_outframe *out_tail;
	int failed;
};

static void ipc_conn_close_cb(evutil_socket_t fd, short what, void *arg);

static void
ipc_conn_fail(struct ipc_conn *conn)
{
	if (conn->failed)
		return;
	conn->failed = 1;
	event_del(conn->read_ev);
	event_del(conn->write_ev);
	event_del(conn->close_ev);
	conn->cb(conn, NULL, conn->arg);
}

/* Deliver every complete frame in the input buffer. Returns -1 if the
 * connection failed (and the owner may have freed it). */
static int
ipc_conn_dispatch(struct ipc_conn *conn)
{
	while (conn->inlen >= IPC_HEADER_SIZE) {
		uint32_t len, flags;
		struct ipc_msg *msg;

		if (conn->ninfds > 0 && conn->infd_limit[0] <= conn->consumed) {
			log_warn("ipc: descriptor without a frame that carries it; dropping connection");
			ipc_conn_fail(conn);
			return -1;
		}

		memcpy(&len, conn->inbuf, 4);
		memcpy(&flags, conn->inbuf + 4, 4);
		len = ntohl(len);
		flags = ntohl(flags);
		if (len == 0 || len > IPC_MAX_FRAME) {
			log_warn("ipc: invalid frame length %u from peer; dropping connection", len);
			ipc_conn_fail(conn);
			return -1;
		}
		if (conn->inlen < IPC_HEADER_SIZE + len)
			return 0;

		msg = ipc_msg_decode(conn->inbuf + IPC_HEADER_SIZE, len);
		if (msg == NULL || ((flags & IPC_FLAG_FD) && conn->ninfds == 0)) {
			log_warn("ipc: malformed frame from peer; dropping connection");
			ipc_msg_free(msg);
			ipc_conn_fail(conn);
			return -1;
		}
		if (flags & IPC_FLAG_FD) {
			msg->fd = conn->infds[0];
			conn->ninfds--;
			memmove(conn->infds, conn->infds + 1, conn->ninfds * sizeof(int));
			memmove(conn->infd_limit, conn->infd_limit + 1,
			    conn->ninfds * sizeof conn->infd_limit[0]);
		}
		conn->consumed += IPC_HEADER_SIZE + len;
		conn->inlen -= IPC_HEADER_SIZE + len;
		memmove(conn->inbuf, conn->inbuf + IPC_HEADER_SIZE + len, conn->inlen);

		/* Owners never free CONN inside a message callback (they call
		 * ipc_conn_shutdown), so CONN is still valid afterwards. */
		conn->cb(conn, msg, conn->arg);
		if (conn->failed)
			return -1;
	}
	return 0;
}

static void
ipc_conn_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ipc_conn *conn = arg;
	size_t nfds_before;
	ssize_t n;

	if (conn->incap - conn->inlen < 65536) {
		conn->incap = conn->incap ? conn->incap * 2 : 131072;
		if (conn->incap > IPC_MAX_FRAME * 2 + 65536)
			conn->incap = IPC_MAX_FRAME * 2 + 65536;
		conn->inbuf = xrealloc(conn->inbuf, conn->incap);
	}
	nfds_before = conn->ninfds;
	n = ipc_recvmsg(fd, conn->inbuf + conn->inlen, conn->incap - conn->inlen,
	    conn->infds, &conn->ninfds, sizeof conn->infds / sizeof conn->infds[0]);
	for (size_t i = nfds_before; i < conn->ninfds; i++)
		conn->infd_limit[i] = conn->consumed + conn->inlen + (size_t)(n > 0 ? n : 0);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		ipc_conn_fail(conn);
		return;
	}
	conn->inlen += (size_t)n;
	ipc_conn_dispatch(conn);
}

static void
ipc_conn_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ipc_conn *conn = arg;

	while (conn->out_head != NULL) {
		struct ipc_outframe *f = conn->out_head;
		union {
			struct cmsghdr hdr;
			char space[CMSG_SPACE(sizeof(int))];
		} control;
		struct iovec iov = { .iov_base = f->buf + f->sent, .iov_len = f->len - f->sent };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
		ssize_t n;

		if (f->fd >= 0) {
			memset(&control, 0, sizeof control);
			mh.msg_control = control.space;
			mh.msg_controllen = sizeof control.space;
			struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(cm), &f->fd, sizeof(int));
		}
		n = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR) {
				event_add(conn->write_ev, NULL);
				return;
			}
			ipc_conn_fail(conn);
			return;
		}
		if (f->fd >= 0) {
			close(f->fd);
			f->fd = -1;
		}
		f->sent += (size_t)n;
		if (f->sent < f->len)
			continue;
		conn->out_head = f->next;
		if (conn->out_head == NULL)
			conn->out_tail = NULL;
		free(f->buf);
		free(f);
	}
}

struct ipc_conn *
ipc_conn_new(struct event_base *base, int sock, ipc_msg_cb cb, void *arg)
{
	struct ipc_conn *conn = xcalloc(1, sizeof *conn);

	set_nonblocking(sock);
	conn->sock = sock;
	conn->cb = cb;
	conn->arg = arg;
	conn->read_ev = event_new(base, sock, EV_READ | EV_PERSIST, ipc_conn_read_cb, conn);
	conn->write_ev = event_new(base, sock, EV_WRITE, ipc_conn_write_cb, conn);
	conn->close_ev = event_new(base, -1, 0, ipc_conn_close_cb, conn);
	event_add(conn->read_ev, NULL);
	return conn;
}

int
ipc_conn_send(struct ipc_conn *conn, const struct ipc_msg *msg, int fd)
{
	struct ipc_msg copy = *msg;
	struct ipc_outframe *f;

	if (conn->failed) {
		errno = EPIPE;
		return -1;
	}
	f = xcalloc(1, sizeof *f);
	f->fd = -1;
	if (fd >= 0) {
		f->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
		if (f->fd < 0) {
			free(f);
			return -1;
		}
	}
	copy.fd = f->fd;
	if (ipc_msg_encode(&copy, &f->buf, &f->len) < 0) {
		if (f->fd >= 0)
			close(f->fd);
		free(f);
		return -1;
	}
	if (conn->out_tail != NULL)
		conn->out_tail->next = f;
	else
		conn->out_head = f;
	conn->out_tail = f;
	/* Write from the event loop, never from inside the caller: a failed
	 * write runs the owner's NULL callback, which frees CONN. */
	event_active(conn->write_ev, EV_WRITE, 1);
	return 0;
}

static void
ipc_conn_close_cb(evutil_socket_t fd, short what, void *arg)
{
	ipc_conn_fail(arg);
}

void
ipc_conn_shutdown(struct ipc_conn *conn)
{
	event_del(conn->read_ev);
	event_active(conn->close_ev, EV_TIMEOUT, 1);
}

size_t
ipc_conn_pending(const struct ipc_conn *conn)
{
	size_t pending = 0;

	for (const struct ipc_outframe *f = conn->out_head; f != NULL; f = f->next)
		pending += f->len - f->sent;
	return pending;
}

int
ipc_conn_fd(const struct ipc_conn *conn)
{
	return conn->sock;
}

void
ipc_conn_free(struct ipc_conn *conn)
{
	if (conn == NULL)
		return;
	event_free(conn->read_ev);
	event_free(conn->write_ev);
	event_free(conn->close_ev);
	close(conn->sock);
	for (size_t i = 0; i < conn->ninfds; i++)
		close(conn->infds[i]);
	while (conn->out_head != NULL) {
		struct ipc_outframe *f = conn->out_head;

		conn->out_head = f->next;
		if (f->fd >= 0)
			close(f->fd);
		free(f->buf);
		free(f);
	}
	free(conn->inbuf);
	free(conn);
}
