/* Unit tests for CIDR lists and listen addresses in lib/netaddr.c. */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <string.h>

#include "netaddr.h"

static struct sockaddr_storage
make_addr(const char *text)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof ss);
	if (strchr(text, ':') != NULL) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

		sin6->sin6_family = AF_INET6;
		ck_assert_int_eq(inet_pton(AF_INET6, text, &sin6->sin6_addr), 1);
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

		sin->sin_family = AF_INET;
		ck_assert_int_eq(inet_pton(AF_INET, text, &sin->sin_addr), 1);
	}
	return ss;
}

static int
matches(const struct netaddr_list *list, const char *text)
{
	struct sockaddr_storage ss = make_addr(text);

	return netaddr_list_match(list, (struct sockaddr *)&ss);
}

START_TEST(list_matching)
{
	char *items[] = { "127.0.0.0/8", "[::1]/128", "192.0.2.7", "2001:db8::/32",
		"198.51.100.200/29", NULL };
	char err[256];
	struct netaddr_list *list = netaddr_list_parse(items, err, sizeof err);

	ck_assert_ptr_nonnull(list);
	ck_assert_int_eq(matches(list, "127.0.0.1"), 1);
	ck_assert_int_eq(matches(list, "127.255.255.255"), 1);
	ck_assert_int_eq(matches(list, "128.0.0.1"), 0);
	ck_assert_int_eq(matches(list, "::1"), 1);
	ck_assert_int_eq(matches(list, "::2"), 0);
	ck_assert_int_eq(matches(list, "192.0.2.7"), 1);
	ck_assert_int_eq(matches(list, "192.0.2.8"), 0);
	ck_assert_int_eq(matches(list, "2001:db8:ffff::1"), 1);
	ck_assert_int_eq(matches(list, "2001:db9::1"), 0);
	/* Host bits in an item are cleared: .200/29 is .200-.207. */
	ck_assert_int_eq(matches(list, "198.51.100.207"), 1);
	ck_assert_int_eq(matches(list, "198.51.100.208"), 0);
	/* IPv4-mapped IPv6 clients match IPv4 blocks. */
	ck_assert_int_eq(matches(list, "::ffff:127.0.0.1"), 1);
	ck_assert_int_eq(matches(list, "::ffff:10.0.0.1"), 0);
	netaddr_list_free(list);
}
END_TEST

START_TEST(list_zero_prefix)
{
	char *items[] = { "0.0.0.0/0", NULL };
	char err[256];
	struct netaddr_list *list = netaddr_list_parse(items, err, sizeof err);

	ck_assert_ptr_nonnull(list);
	ck_assert_int_eq(matches(list, "203.0.113.9"), 1);
	ck_assert_int_eq(matches(list, "2001:db8::1"), 0);
	netaddr_list_free(list);
}
END_TEST

START_TEST(list_empty)
{
	char *items[] = { NULL };
	char err[256];
	struct netaddr_list *list = netaddr_list_parse(items, err, sizeof err);

	ck_assert_ptr_nonnull(list);
	ck_assert_int_eq(matches(list, "127.0.0.1"), 0);
	netaddr_list_free(list);
}
END_TEST

START_TEST(list_errors)
{
	static const char *const bad[] = {
		"localhost", "127.0.0.0/33", "::/129", "127.0.0.1/", "127.0.0.1/x", "[::1",
		"[127.0.0.1]x", "1.2.3", "127.0.0.0/-1",
	};

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char *items[] = { (char *)bad[i], NULL };
		char err[256] = "";

		ck_assert_msg(netaddr_list_parse(items, err, sizeof err) == NULL, "accepted %s", bad[i]);
		ck_assert_msg(strstr(err, bad[i]) != NULL, "error \"%s\" does not name %s", err, bad[i]);
	}
}
END_TEST

START_TEST(format_addresses)
{
	struct sockaddr_storage v4 = make_addr("192.0.2.1");
	struct sockaddr_storage v6 = make_addr("2001:db8::1");
	struct sockaddr_storage mapped = make_addr("::ffff:192.0.2.1");
	char out[64];

	ck_assert_str_eq(netaddr_format((struct sockaddr *)&v4, out, sizeof out), "192.0.2.1");
	ck_assert_str_eq(netaddr_format((struct sockaddr *)&v6, out, sizeof out), "2001:db8::1");
	ck_assert_str_eq(netaddr_format((struct sockaddr *)&mapped, out, sizeof out), "192.0.2.1");
}
END_TEST

START_TEST(listen_addresses)
{
	struct sockaddr_storage ss;
	socklen_t len;
	const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ss;

	ck_assert_int_eq(netaddr_parse_listen("127.0.0.1:2525", &ss, &len), 0);
	ck_assert_int_eq(ss.ss_family, AF_INET);
	ck_assert_int_eq(ntohs(sin->sin_port), 2525);
	ck_assert_uint_eq(ntohl(sin->sin_addr.s_addr), 0x7f000001);
	ck_assert_uint_eq(len, sizeof(struct sockaddr_in));

	ck_assert_int_eq(netaddr_parse_listen("[::1]:25", &ss, &len), 0);
	ck_assert_int_eq(ss.ss_family, AF_INET6);
	ck_assert_int_eq(ntohs(sin6->sin6_port), 25);
	ck_assert_int_eq(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr), 1);

	ck_assert_int_eq(netaddr_parse_listen(":587", &ss, &len), 0);
	ck_assert_int_eq(ss.ss_family, AF_INET);
	ck_assert_uint_eq(sin->sin_addr.s_addr, htonl(INADDR_ANY));
	ck_assert_int_eq(ntohs(sin->sin_port), 587);

	ck_assert_int_eq(netaddr_parse_listen("465", &ss, &len), 0);
	ck_assert_int_eq(ntohs(sin->sin_port), 465);
}
END_TEST

START_TEST(listen_errors)
{
	static const char *const bad[] = {
		"", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536", "::1:25",
		"[::1]25", "[127.0.0.1]:25", "localhost:25", "127.0.0.1:25x", "[::1]:",
	};

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct sockaddr_storage ss;
		socklen_t len;

		ck_assert_msg(netaddr_parse_listen(bad[i], &ss, &len) == -1, "accepted %s", bad[i]);
	}
}
END_TEST

START_TEST(sockaddr_from_bytes)
{
	static const unsigned char v4[4] = { 192, 0, 2, 1 };
	static const unsigned char v6[16] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 1 };
	struct sockaddr_storage ss;
	const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ss;
	char text[64];

	ck_assert_uint_eq(netaddr_sockaddr(&ss, AF_INET, v4, 25), sizeof(struct sockaddr_in));
	ck_assert_int_eq(sin->sin_family, AF_INET);
	ck_assert_uint_eq(ntohs(sin->sin_port), 25);
	ck_assert_str_eq(netaddr_format((struct sockaddr *)&ss, text, sizeof text), "192.0.2.1");

	ck_assert_uint_eq(netaddr_sockaddr(&ss, AF_INET6, v6, 587), sizeof(struct sockaddr_in6));
	ck_assert_int_eq(sin6->sin6_family, AF_INET6);
	ck_assert_uint_eq(ntohs(sin6->sin6_port), 587);
	ck_assert_uint_eq(sin6->sin6_scope_id, 0);
	ck_assert_str_eq(netaddr_format((struct sockaddr *)&ss, text, sizeof text), "2001:db8::1");
}
END_TEST

Suite *
netaddr_suite(void)
{
	Suite *s = suite_create("netaddr");
	TCase *tc = tcase_create("netaddr");

	tcase_add_test(tc, list_matching);
	tcase_add_test(tc, list_zero_prefix);
	tcase_add_test(tc, list_empty);
	tcase_add_test(tc, list_errors);
	tcase_add_test(tc, format_addresses);
	tcase_add_test(tc, listen_addresses);
	tcase_add_test(tc, listen_errors);
	tcase_add_test(tc, sockaddr_from_bytes);
	suite_add_tcase(s, tc);
	return s;
}
