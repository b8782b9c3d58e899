/* Unit tests for lib/ipc.c: encoding, decoding, descriptor passing. */
#include <check.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "ipc.h"

START_TEST(encode_decode_round_trip)
{
	struct ipc_msg *msg = ipc_msg_new("COMMIT");
	struct ipc_msg *copy;
	char *buf;
	size_t len;

	ck_assert_int_eq(ipc_msg_add(msg, "sender", "a@example.test"), 0);
	ck_assert_int_eq(ipc_msg_add(msg, "rcpt", "b@example.test"), 0);
	ck_assert_int_eq(ipc_msg_add(msg, "rcpt", "c@example.test"), 0);
	ck_assert_int_eq(ipc_msg_addf(msg, "size", "%d", 1234), 0);
	ck_assert_int_eq(ipc_msg_add(msg, "empty", ""), 0);

	ck_assert_int_eq(ipc_msg_encode(msg, &buf, &len), 0);
	copy = ipc_msg_decode(buf + 8, len - 8);
	ck_assert_ptr_nonnull(copy);
	ck_assert_str_eq(copy->type, "COMMIT");
	ck_assert_str_eq(ipc_msg_get(copy, "sender"), "a@example.test");
	ck_assert_uint_eq(ipc_msg_count(copy, "rcpt"), 2);
	ck_assert_str_eq(ipc_msg_get_nth(copy, "rcpt", 1), "c@example.test");
	ck_assert_int_eq(ipc_msg_get_int(copy, "size", -1), 1234);
	ck_assert_str_eq(ipc_msg_get(copy, "empty"), "");
	ck_assert_ptr_null(ipc_msg_get(copy, "missing"));

	free(buf);
	ipc_msg_free(msg);
	ipc_msg_free(copy);
}
END_TEST

START_TEST(add_rejects_line_breaks)
{
	struct ipc_msg *msg = ipc_msg_new("X");

	ck_assert_int_eq(ipc_msg_add(msg, "rcpt", "a@b\r\nrcpt=evil@c"), -1);
	ck_assert_int_eq(ipc_msg_add(msg, "k=v", "x"), -1);
	ck_assert_uint_eq(msg->nfields, 0);
	ipc_msg_free(msg);
}
END_TEST

START_TEST(decode_rejects_malformed)
{
	ck_assert_ptr_null(ipc_msg_decode("", 0));
	ck_assert_ptr_null(ipc_msg_decode("TYPE", 4));			/* no final LF */
	ck_assert_ptr_null(ipc_msg_decode("TYPE\nnoequals\n", 14));
	ck_assert_ptr_null(ipc_msg_decode("a=b\n", 4));			/* no type */
	ck_assert_ptr_null(ipc_msg_decode("T\n=v\n", 5));		/* empty key */
	ck_assert_ptr_null(ipc_msg_decode("T\nk=\0v\n", 6));		/* NUL */
	ck_assert_ptr_null(ipc_msg_decode("T\nk=a\rb\n", 8));		/* CR in a value */
}
END_TEST

START_TEST(blocking_send_with_descriptor)
{
	int pair[2], pipefd[2];
	struct ipc_msg *msg, *got;
	char byte = 0;

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
	ck_assert_int_eq(pipe(pipefd), 0);

	msg = ipc_msg_new("NEW-OK");
	ipc_msg_add(msg, "id", "ABC123");
	ck_assert_int_eq(ipc_send(pair[0], msg, pipefd[1]), 0);
	ck_assert_int_eq(ipc_send(pair[0], msg, -1), 0);
	close(pipefd[1]);

	got = ipc_recv(pair[1]);
	ck_assert_ptr_nonnull(got);
	ck_assert_str_eq(ipc_msg_get(got, "id"), "ABC123");
	ck_assert_int_ge(got->fd, 0);
	ck_assert_int_eq(write(got->fd, "x", 1), 1);
	ck_assert_int_eq(read(pipefd[0], &byte, 1), 1);
	ck_assert_int_eq(byte, 'x');
	ipc_msg_free(got);

	got = ipc_recv(pair[1]);
	ck_assert_ptr_nonnull(got);
	ck_assert_int_eq(got->fd, -1);
	ipc_msg_free(got);

	close(pair[0]);
	got = ipc_recv(pair[1]);
	ck_assert_ptr_null(got);

	ipc_msg_free(msg);
	close(pair[1]);
	close(pipefd[0]);
}
END_TEST

struct event_test {
	struct event_base *base;
	int count;
	int last_fd;
	int closed;
};

static void
event_test_cb(struct ipc_conn *conn, struct ipc_msg *msg, void *arg)
{
	struct event_test *t = arg;

	if (msg == NULL) {
		t->closed = 1;
		ipc_conn_free(conn);
		event_base_loopbreak(t->base);
		return;
	}
	t->count++;
	if (msg->fd >= 0)
		t->last_fd = ipc_msg_take_fd(msg);
	ipc_msg_free(msg);
}

START_TEST(event_conn_receives_frames)
{
	struct event_test t = { .last_fd = -1 };
	int pair[2], pipefd[2];
	struct ipc_msg *msg;

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
	ck_assert_int_eq(pipe(pipefd), 0);
	t.base = event_base_new();
	ipc_conn_new(t.base, pair[1], event_test_cb, &t);

	msg = ipc_msg_new("PING");
	for (int i = 0; i < 100; i++)
		ck_assert_int_eq(ipc_send(pair[0], msg, i == 50 ? pipefd[0] : -1), 0);
	close(pair[0]);
	event_base_dispatch(t.base);

	ck_assert_int_eq(t.count, 100);
	ck_assert_int_ge(t.last_fd, 0);
	ck_assert_int_eq(t.closed, 1);

	close(t.last_fd);
	close(pipefd[0]);
	close(pipefd[1]);
	ipc_msg_free(msg);
	event_base_free(t.base);
}
END_TEST

START_TEST(event_conn_rejects_oversized_frame)
{
	struct event_test t = { .last_fd = -1 };
	int pair[2];
	unsigned char header[8] = { 0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0 };

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
	t.base = event_base_new();
	ipc_conn_new(t.base, pair[1], event_test_cb, &t);
	ck_assert_int_eq(write(pair[0], header, sizeof header), 8);
	event_base_dispatch(t.base);

	ck_assert_int_eq(t.count, 0);
	ck_assert_int_eq(t.closed, 1);
	close(pair[0]);
	event_base_free(t.base);
}
END_TEST

/* Send MSG's frame without the descriptor flag but with FD attached. */
static void
send_unflagged_with_fd(int sock, const struct ipc_msg *msg, int fd)
{
	union {
		struct cmsghdr hdr;
		char space[CMSG_SPACE(sizeof(int))];
	} control;
	struct msghdr mh = { 0 };
	struct iovec iov;
	struct cmsghdr *cm;
	char *buf;
	size_t len;

	ck_assert_int_eq(ipc_msg_encode(msg, &buf, &len), 0);
	iov.iov_base = buf;
	iov.iov_len = len;
	memset(&control, 0, sizeof control);
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = control.space;
	mh.msg_controllen = sizeof control.space;
	cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	ck_assert_int_eq(sendmsg(sock, &mh, 0), (ssize_t)len);
	free(buf);
}

START_TEST(event_conn_rejects_stray_descriptor)
{
	struct event_test t = { .last_fd = -1 };
	int pair[2], pipefd[2];
	struct ipc_msg *msg = ipc_msg_new("PING");

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
	ck_assert_int_eq(pipe(pipefd), 0);
	t.base = event_base_new();
	ipc_conn_new(t.base, pair[1], event_test_cb, &t);

	send_unflagged_with_fd(pair[0], msg, pipefd[0]);
	ck_assert_int_eq(ipc_send(pair[0], msg, -1), 0);
	ck_assert_int_eq(ipc_send(pair[0], msg, pipefd[1]), 0);
	event_base_dispatch(t.base);

	/* The stray descriptor is noticed at the latest when the frame
	 * after the one it came with is dispatched, and the peer dropped
	 * before any descriptor is handed out. */
	ck_assert_int_le(t.count, 2);
	ck_assert_int_eq(t.last_fd, -1);
	ck_assert_int_eq(t.closed, 1);

	close(pair[0]);
	close(pipefd[0]);
	close(pipefd[1]);
	ipc_msg_free(msg);
	event_base_free(t.base);
}
END_TEST

START_TEST(event_conn_counts_pending_output)
{
	struct event_test t = { .last_fd = -1 };
	struct ipc_conn *conn;
	int pair[2];
	struct ipc_msg *msg = ipc_msg_new("LIST");
	char *buf;
	size_t len;

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
	t.base = event_base_new();
	conn = ipc_conn_new(t.base, pair[1], event_test_cb, &t);
	ipc_msg_add(msg, "id", "ABC");
	ck_assert_int_eq(ipc_msg_encode(msg, &buf, &len), 0);

	ck_assert_uint_eq(ipc_conn_pending(conn), 0);
	ck_assert_int_eq(ipc_conn_send(conn, msg, -1), 0);
	ck_assert_int_eq(ipc_conn_send(conn, msg, -1), 0);
	ck_assert_uint_eq(ipc_conn_pending(conn), 2 * len);
	event_base_loop(t.base, EVLOOP_NONBLOCK);
	ck_assert_uint_eq(ipc_conn_pending(conn), 0);

	free(buf);
	ipc_msg_free(msg);
	ipc_conn_free(conn);
	close(pair[0]);
	event_base_free(t.base);
}
END_TEST

Suite *
ipc_suite(void)
{
	Suite *s = suite_create("ipc");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, encode_decode_round_trip);
	tcase_add_test(tc, add_rejects_line_breaks);
	tcase_add_test(tc, decode_rejects_malformed);
	tcase_add_test(tc, blocking_send_with_descriptor);
	tcase_add_test(tc, event_conn_receives_frames);
	tcase_add_test(tc, event_conn_rejects_oversized_frame);
	tcase_add_test(tc, event_conn_rejects_stray_descriptor);
	tcase_add_test(tc, event_conn_counts_pending_output);
	suite_add_tcase(s, tc);
	return s;
}
