/* IPC connections driven by libevent: frames in, frames out, with
 * descriptor passing and backlog accounting. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "ipc.h"
#include "ipc_frame.h"
#include "log.h"
#include "util.h"

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
	size_t out_pending;		/* bytes in the output frames not yet sent */
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
		conn->out_pending -= (size_t)n;
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
	conn->out_pending += f->len;
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
	return conn->out_pending;
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
