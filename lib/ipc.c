/* IPC over Unix stream sockets, blocking side: connect, listen, send
 * and receive frames, with descriptor passing. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "ipc.h"
#include "ipc_frame.h"
#include "util.h"

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

ssize_t
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

/* Connect a stream socket of TYPE_FLAGS (SOCK_NONBLOCK or 0) to
 * SOCKET_PATH. */
static int
connect_unix(const char *socket_path, int type_flags)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int sock;

	if (strlcpy_x(sun.sun_path, socket_path, sizeof sun.sun_path) >= sizeof sun.sun_path) {
		errno = ENAMETOOLONG;
		return -1;
	}
	sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | type_flags, 0);
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
ipc_connect(const char *socket_path)
{
	return connect_unix(socket_path, 0);
}

int
ipc_connect_nowait(const char *socket_path)
{
	return connect_unix(socket_path, SOCK_NONBLOCK);
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
