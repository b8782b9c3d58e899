/*
 * Reading a request from smtpd in the main thread's poll loop. Each
 * call reads what the socket has without waiting, so a peer that sends
 * part of a frame takes no worker. A request goes to a worker only once
 * it is complete.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ipc.h"
#include "reader.h"
#include "util.h"

void
reader_init(struct reader *reader)
{
	memset(reader, 0, sizeof *reader);
}

void
reader_reset(struct reader *reader)
{
	for (size_t i = 0; i < reader->nfds; i++)
		close(reader->fds[i]);
	free(reader->body);
	reader_init(reader);
}

int
reader_started(const struct reader *reader)
{
	return reader->got > 0 || reader->body != NULL || reader->nfds > 0;
}

/* One recvmsg of at most LEN bytes into BUF, keeping passed descriptors. */
static ssize_t
reader_recv(struct reader *reader, int sock, char *buf, size_t len)
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
	ssize_t n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);

	if (n <= 0)
		return n;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm != NULL; cm = CMSG_NXTHDR(&mh, cm)) {
		size_t count;

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < count; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			if (reader->nfds < sizeof reader->fds / sizeof reader->fds[0])
				reader->fds[reader->nfds++] = fd;
			else
				close(fd);
		}
	}
	return n;
}

/* Take the frame length and flags from a complete header. */
static int
reader_parse_header(struct reader *reader)
{
	memcpy(&reader->len, reader->header, 4);
	memcpy(&reader->flags, reader->header + 4, 4);
	reader->len = ntohl(reader->len);
	reader->flags = ntohl(reader->flags);
	if (reader->len == 0 || reader->len > IPC_MAX_FRAME) {
		errno = EPROTO;
		return -1;
	}
	reader->body = xmalloc(reader->len);
	reader->got = 0;
	return 0;
}

/* Decode the complete body into *MSG and empty the reader. */
static int
reader_finish(struct reader *reader, struct ipc_msg **msg)
{
	int has_fd = (reader->flags & IPC_FLAG_FD) != 0;

	*msg = ipc_msg_decode(reader->body, reader->len);
	if (*msg == NULL || has_fd != (reader->nfds == 1)) {
		ipc_msg_free(*msg);
		*msg = NULL;
		errno = EPROTO;
		return -1;
	}
	if (has_fd) {
		(*msg)->fd = reader->fds[0];
		reader->nfds = 0;
	}
	reader_reset(reader);
	return 1;
}

int
reader_read(struct reader *reader, int sock, struct ipc_msg **msg)
{
	for (;;) {
		int in_body = reader->body != NULL;
		size_t want = in_body ? reader->len : READER_HEADER_SIZE;
		char *buf = in_body ? reader->body : reader->header;
		ssize_t n = reader_recv(reader, sock, buf + reader->got, want - reader->got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n < 0)
			return -1;
		if (n == 0) {
			errno = reader_started(reader) ? EPROTO : 0;
			return -1;
		}

		reader->got += (size_t)n;
		if (reader->got < want)
			continue;
		if (in_body)
			return reader_finish(reader, msg);
		if (reader_parse_header(reader) < 0)
			return -1;
	}
}
