/* Socket I/O with a deadline for the spamd and clamd clients. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "netaddr.h"
#include "scanner_io.h"
#include "util.h"

static long long
monotonic_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

long long
scanner_deadline(long long timeout)
{
	return monotonic_usec() + timeout * 1000000;
}

/*
 * Wait until FD has one of EVENTS or DEADLINE passes. Returns the revents,
 * or 0 on timeout, or -1 when poll itself failed.
 */
static int
wait_for(int fd, short events, long long deadline)
{
	struct pollfd pfd = { .fd = fd, .events = events };

	for (;;) {
		long long left = deadline - monotonic_usec();
		int ready;

		if (left <= 0)
			return 0;
		ready = poll(&pfd, 1, (int)((left + 999) / 1000));
		if (ready > 0)
			return pfd.revents;
		if (ready == 0)
			return 0;
		if (errno != EINTR)
			return -1;
	}
}

static int
fill_unix_address(const char *path, struct sockaddr_un *sun)
{
	memset(sun, 0, sizeof *sun);
	sun->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof sun->sun_path)
		return -1;
	strlcpy_x(sun->sun_path, path, sizeof sun->sun_path);
	return 0;
}

/* Parse ADDRESS for a client: the host must be given, since the listener
 * forms ":port" and "port" mean every address. */
static int
parse_tcp_address(const char *address, struct sockaddr_storage *ss, socklen_t *sslen)
{
	if (address[0] == ':' || strchr(address, ':') == NULL)
		return -1;
	return netaddr_parse_listen(address, ss, sslen);
}

/* Fill SS from PATH or ADDRESS as scanner_connect describes. */
static int
fill_target(const char *name, const char *path, const char *address,
    struct sockaddr_storage *ss, socklen_t *sslen, char *err, size_t errsize)
{
	if (path[0] != '\0') {
		if (fill_unix_address(path, (struct sockaddr_un *)ss) < 0) {
			snprintf(err, errsize, "%s_socket path too long: %s", name, path);
			return -1;
		}
		*sslen = sizeof(struct sockaddr_un);
		return 0;
	}
	if (address[0] == '\0') {
		snprintf(err, errsize, "%s_socket and %s_address are both empty", name, name);
		return -1;
	}
	if (parse_tcp_address(address, ss, sslen) < 0) {
		snprintf(err, errsize, "invalid %s_address %s: expected IPv4:port or [IPv6]:port",
		    name, address);
		return -1;
	}
	return 0;
}

int
scanner_check_target(const char *name, const char *path, const char *address,
    char *err, size_t errsize)
{
	struct sockaddr_storage ss;
	socklen_t sslen;

	return fill_target(name, path, address, &ss, &sslen, err, errsize);
}

int
scanner_connect(const char *name, const char *path, const char *address,
    long long deadline, char *err, size_t errsize)
{
	struct sockaddr_storage ss;
	socklen_t sslen;
	const char *target = path[0] != '\0' ? path : address;
	int fd, revents, soerr = 0;
	socklen_t soerrlen = sizeof soerr;

	if (fill_target(name, path, address, &ss, &sslen, err, errsize) < 0)
		return -1;

	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errsize, "%s socket failed: %s", name, strerror(errno));
		return -1;
	}

	if (connect(fd, (struct sockaddr *)&ss, sslen) == 0)
		return fd;
	if (errno != EINPROGRESS && errno != EAGAIN) {
		snprintf(err, errsize, "connect to %s at %s failed: %s", name, target, strerror(errno));
		close(fd);
		return -1;
	}

	/* A Unix socket whose backlog is full reports EAGAIN and does not
	 * complete later, so only a TCP connect is worth waiting for. */
	revents = errno == EINPROGRESS ? wait_for(fd, POLLOUT, deadline) : -1;
	if (revents == 0) {
		snprintf(err, errsize, "connect to %s at %s timed out", name, target);
		close(fd);
		return -1;
	}
	if (revents < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &soerrlen) < 0 || soerr != 0) {
		snprintf(err, errsize, "connect to %s at %s failed: %s", name, target,
		    strerror(soerr != 0 ? soerr : errno));
		close(fd);
		return -1;
	}
	return fd;
}

int
scanner_send(int fd, const void *buf, size_t len, long long deadline,
    char *err, size_t errsize)
{
	const char *p = buf;

	while (len > 0) {
		int revents = wait_for(fd, POLLOUT | POLLIN, deadline);
		ssize_t sent;

		if (revents == 0) {
			snprintf(err, errsize, "timed out");
			return -1;
		}
		if (revents < 0) {
			snprintf(err, errsize, "poll failed: %s", strerror(errno));
			return -1;
		}
		if (revents & (POLLIN | POLLHUP))
			return SCANNER_PEER_REPLIED;

		sent = send(fd, p, len, MSG_NOSIGNAL);
		if (sent < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (sent < 0 && (errno == EPIPE || errno == ECONNRESET))
			return SCANNER_PEER_REPLIED;
		if (sent < 0) {
			snprintf(err, errsize, "%s", strerror(errno));
			return -1;
		}
		p += sent;
		len -= (size_t)sent;
	}
	return 0;
}

int
scanner_send_fd(int fd, int passed, long long deadline, char *err, size_t errsize)
{
	char byte = 0;
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	union {
		struct cmsghdr header;
		char space[CMSG_SPACE(sizeof(int))];
	} control;
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = control.space,
		.msg_controllen = sizeof control.space,
	};
	struct cmsghdr *cmsg;

	memset(&control, 0, sizeof control);
	cmsg = CMSG_FIRSTHDR(&msg);
	cmsg->cmsg_level = SOL_SOCKET;
	cmsg->cmsg_type = SCM_RIGHTS;
	cmsg->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cmsg), &passed, sizeof(int));

	for (;;) {
		int revents = wait_for(fd, POLLOUT, deadline);

		if (revents <= 0) {
			snprintf(err, errsize, revents == 0 ? "sending the descriptor timed out" :
			    "poll failed");
			return -1;
		}
		if (sendmsg(fd, &msg, MSG_NOSIGNAL) == 1)
			return 0;
		if (errno != EINTR && errno != EAGAIN) {
			snprintf(err, errsize, "sending the descriptor failed: %s", strerror(errno));
			return -1;
		}
	}
}

ssize_t
scanner_recv(int fd, void *buf, size_t len, long long deadline, char *err, size_t errsize)
{
	for (;;) {
		int revents = wait_for(fd, POLLIN, deadline);
		ssize_t got;

		if (revents == 0) {
			snprintf(err, errsize, "timed out waiting for the reply");
			return -1;
		}
		if (revents < 0) {
			snprintf(err, errsize, "poll failed: %s", strerror(errno));
			return -1;
		}

		got = recv(fd, buf, len, 0);
		if (got >= 0)
			return got;
		if (errno != EINTR && errno != EAGAIN) {
			snprintf(err, errsize, "receiving the reply failed: %s", strerror(errno));
			return -1;
		}
	}
}
