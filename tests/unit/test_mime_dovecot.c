/*
 * lib/mime against Dovecot (Debian package dovecot-imapd) as a real
 * peer. The test appends messages of Python's email test corpus to a
 * private Maildir under /tmp and runs Dovecot's imap binary in its
 * preauthenticated stdin/stdout mode, so no socket is opened. For each
 * message it compares RFC822.SIZE, BODYSTRUCTURE, ENVELOPE, and the
 * BODY[section] and BINARY[section] data of every part with what
 * lib/mime gives. BODYSTRUCTURE and ENVELOPE are compared ignoring
 * case, because Dovecot writes types and parameter names in lower case.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pwd.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mime.h"

#define CORPUS_DIR "/usr/lib/python3.11/test/test_email/data"
#define DOVECOT_IMAP "/usr/lib/dovecot/imap"
#define OUTPUT_MAX (16 * 1024 * 1024)

/*
 * Messages where lib/mime and Dovecot 2.3.19 agree by design. The
 * others differ on purpose, because Dovecot
 * - keeps lines that are not header fields in the header (msg_19, 25,
 *   35, 38, 43),
 * - writes MISSING_DOMAIN where lib/mime writes "" (msg_05, 15),
 * - leaves RFC 2231 parameters unjoined (msg_29, 32, 33),
 * - gives "" for a type without subtype (msg_14),
 * - keeps a multipart without boundary as multipart (msg_41),
 * - sends a long subject as a literal (msg_27).
 */
static const char *const agreed[] = {
	"msg_01.txt", "msg_02.txt", "msg_03.txt", "msg_04.txt", "msg_06.txt", "msg_07.txt",
	"msg_08.txt", "msg_09.txt", "msg_10.txt", "msg_11.txt", "msg_12.txt", "msg_12a.txt",
	"msg_13.txt", "msg_16.txt", "msg_17.txt", "msg_18.txt", "msg_20.txt", "msg_21.txt",
	"msg_22.txt", "msg_23.txt", "msg_24.txt", "msg_26.txt", "msg_28.txt", "msg_30.txt",
	"msg_31.txt", "msg_34.txt", "msg_36.txt", "msg_37.txt", "msg_39.txt", "msg_40.txt",
	"msg_42.txt", "msg_44.txt", "msg_45.txt", "msg_46.txt",
};
#define AGREED_COUNT (sizeof agreed / sizeof agreed[0])

/* Dovecot ends the session when base64 data is invalid ("XXX" here),
 * which lib/mime decodes leniently, so BINARY is not compared. */
static int
binary_comparable(const char *name)
{
	return strcmp(name, "msg_39.txt") != 0;
}

struct buffer {
	char *data;
	size_t len;
};

static void
append(struct buffer *buf, const void *data, size_t len)
{
	buf->data = realloc(buf->data, buf->len + len + 1);
	ck_assert_ptr_nonnull(buf->data);
	memcpy(buf->data + buf->len, data, len);
	buf->len += len;
	buf->data[buf->len] = '\0';
}

static void
append_str(struct buffer *buf, const char *s)
{
	append(buf, s, strlen(s));
}

static struct mime_message *
parse_corpus_message(const char *name)
{
	char path[256];
	FILE *f;
	static char data[1 << 20];
	size_t len;
	struct mime_message *msg;

	snprintf(path, sizeof path, "%s/%s", CORPUS_DIR, name);
	f = fopen(path, "rb");
	ck_assert_msg(f != NULL, "cannot open %s (install libpython3.11-testsuite)", path);
	len = fread(data, 1, sizeof data, f);
	fclose(f);
	msg = mime_parse(data, len);
	ck_assert_ptr_nonnull(msg);
	return msg;
}

/* Part numbers of every part below PART, as section texts. */
static void
collect_paths(const struct mime_part *part, const char *prefix, char paths[][64], size_t *count,
    size_t max)
{
	const struct mime_part *inner = part->message != NULL ? part->message : part;

	for (size_t i = 0; i < inner->child_count && *count < max; i++) {
		snprintf(paths[*count], 64, "%s%s%zu", prefix, prefix[0] ? "." : "", i + 1);
		(*count)++;
		collect_paths(&inner->children[i], paths[*count - 1], paths, count, max);
	}
	if (part->message != NULL && inner->child_count == 0 && *count < max && prefix[0] != '\0') {
		snprintf(paths[*count], 64, "%s.1", prefix);
		(*count)++;
	}
}

static const struct mime_part *
part_at(const struct mime_message *msg, const char *path)
{
	struct mime_section spec;
	const struct mime_part *part;

	ck_assert_int_eq(mime_section_parse(path, strlen(path), &spec), 0);
	part = mime_section_part(msg, &spec);
	mime_section_free(&spec);
	ck_assert_ptr_nonnull(part);
	return part;
}

/* The sections fetched for a message: every part, its MIME header and,
 * for message/rfc822 parts, the enclosed header and text. */
static size_t
message_sections(const struct mime_message *msg, char sections[][80], size_t max)
{
	static char paths[128][64];
	size_t path_count = 0, count = 0;
	const struct mime_part *root = &msg->root;

	snprintf(sections[count++], 80, "HEADER");
	snprintf(sections[count++], 80, "TEXT");
	snprintf(sections[count++], 80, "HEADER.FIELDS (FROM SUBJECT)");
	if (root->child_count == 0)
		snprintf(sections[count++], 80, "1");
	collect_paths(root, "", paths, &path_count, 128);

	for (size_t i = 0; i < path_count && count + 4 <= max; i++) {
		const struct mime_part *part = part_at(msg, paths[i]);

		snprintf(sections[count++], 80, "%s", paths[i]);
		snprintf(sections[count++], 80, "%s.MIME", paths[i]);
		if (part->message != NULL) {
			snprintf(sections[count++], 80, "%s.HEADER", paths[i]);
			snprintf(sections[count++], 80, "%s.TEXT", paths[i]);
		}
	}
	return count;
}

/*
 * Run Dovecot's imap with INPUT on stdin and collect its OUTPUT. As
 * root it runs as nobody, because Dovecot refuses mail access as root.
 */
static void
run_dovecot(const char *dir, const struct buffer *input, struct buffer *output, uid_t uid, gid_t gid)
{
	int in[2], out[2];
	pid_t pid;
	char chunk[65536], config[512];
	ssize_t n;
	int status;
	size_t written = 0;

	snprintf(config, sizeof config, "%s/dovecot.conf", dir);
	ck_assert_int_eq(pipe(in), 0);
	ck_assert_int_eq(pipe(out), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		char home[512];

		dup2(in[0], 0);
		dup2(out[1], 1);
		dup2(out[1], 2);	/* log_path is a file, so only crashes land here */
		close(in[1]);
		close(out[0]);
		if (getuid() == 0 && (setgid(gid) != 0 || setuid(uid) != 0))
			_exit(126);
		snprintf(home, sizeof home, "HOME=%s", dir);
		alarm(60);
		execle(DOVECOT_IMAP, DOVECOT_IMAP, "-c", config, (char *)NULL,
		    (char *[]){ home, "USER=estafeta-test", "PATH=/usr/bin:/bin", NULL });
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	signal(SIGPIPE, SIG_IGN);
	ck_assert_int_eq(fcntl(in[1], F_SETFL, O_NONBLOCK), 0);

	/* Dovecot takes the end of its input for a disconnect, even with
	 * responses still to send, so stdin stays open until the LOGOUT
	 * completes. poll() keeps both pipes moving, so neither side can
	 * block the other. */
	for (;;) {
		struct pollfd fds[2] = {
			{ .fd = out[0], .events = POLLIN },
			{ .fd = in[1], .events = written < input->len ? POLLOUT : 0 },
		};

		ck_assert_int_ge(poll(fds, in[1] >= 0 ? 2 : 1, 60000), 1);
		if (fds[0].revents & (POLLIN | POLLHUP)) {
			n = read(out[0], chunk, sizeof chunk);
			if (n <= 0)
				break;
			append(output, chunk, (size_t)n);
			ck_assert_uint_lt(output->len, OUTPUT_MAX);
			if (in[1] >= 0 && memmem(output->data, output->len, "\r\nz OK", 7) != NULL) {
				close(in[1]);
				in[1] = -1;
			}
		}
		if (in[1] >= 0 && (fds[1].revents & POLLOUT)) {
			n = write(in[1], input->data + written, input->len - written);
			ck_assert_msg(n > 0 || errno == EAGAIN, "write to dovecot failed: %s",
			    strerror(errno));
			if (n > 0)
				written += (size_t)n;
		}
	}
	if (in[1] >= 0)
		close(in[1]);
	close(out[0]);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "dovecot imap failed (status %d): %.2000s", status, output->data ? output->data : "");
}

/* Whether SECTION is a part number alone, such as "1.2". */
static int
is_part_number(const char *section)
{
	size_t len = strlen(section);

	return len > 0 && section[len - 1] >= '0' && section[len - 1] <= '9';
}

static int
is_leaf(const struct mime_part *part)
{
	return part->child_count == 0 && part->message == NULL;
}

static int
remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void
write_config(const char *dir)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof path, "%s/dovecot.conf", dir);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "mail_location = maildir:%s/Maildir\n"
	    "base_dir = %s/run\n"
	    "log_path = %s/dovecot.log\n"
	    "ssl = no\n"
	    "protocols = imap\n"
	    "first_valid_uid = 1\n"
	    "mail_fsync = never\n", dir, dir, dir);
	fclose(f);
	chmod(path, 0644);
}

/* The response region of the FETCH with tag "f<N>". */
static char *
fetch_region(const struct buffer *output, size_t n, size_t *len)
{
	char start_text[32], end_text[32];
	char *start, *end;

	snprintf(start_text, sizeof start_text, "\r\n* %zu FETCH (", n);
	snprintf(end_text, sizeof end_text, "\r\nf%zu ", n);
	start = memmem(output->data, output->len, start_text, strlen(start_text));
	ck_assert_msg(start != NULL, "no FETCH response for message %zu", n);
	end = memmem(start, output->len - (size_t)(start - output->data), end_text, strlen(end_text));
	ck_assert_msg(end != NULL && strncmp(end + strlen(end_text), "OK", 2) == 0,
	    "FETCH %zu failed: %.300s", n, end != NULL ? end : start);
	*len = (size_t)(end - start);
	return start;
}

static void
assert_in_region(const char *region, size_t region_len, const char *expected, size_t len,
    const char *name, const char *what)
{
	ck_assert_msg(memmem(region, region_len, expected, len) != NULL,
	    "%s %s differs from Dovecot:\n ours: %.*s\n dovecot: %.*s", name, what,
	    (int)(len > 1500 ? 1500 : len), expected,
	    (int)(region_len > 1500 ? 1500 : region_len), region);
}

/* Expected "NAME[SECTION] {n}\r\ndata". Dovecot sends "" for an empty
 * section, and ~{n} (an RFC 3516 literal8) for BINARY data that is not
 * 7-bit text, so both forms are accepted. */
static void
assert_section_matches(const char *region, size_t region_len, const char *item, const char *data,
    size_t len, const char *name)
{
	struct buffer expected = { 0 };
	char head[160];

	if (len == 0) {
		snprintf(head, sizeof head, "%s \"\"", item);
		if (memmem(region, region_len, head, strlen(head)) != NULL)
			return;
	}

	snprintf(head, sizeof head, "%s ~{%zu}\r\n", item, len);
	append_str(&expected, head);
	append(&expected, data, len);
	if (memmem(region, region_len, expected.data, expected.len) != NULL) {
		free(expected.data);
		return;
	}

	expected.len = 0;
	snprintf(head, sizeof head, "%s {%zu}\r\n", item, len);
	append_str(&expected, head);
	append(&expected, data, len);
	assert_in_region(region, region_len, expected.data, expected.len, name, item);
	free(expected.data);
}

START_TEST(dovecot_agrees)
{
	char dir[] = "/tmp/estafeta-mime-XXXXXX", path[512];
	struct buffer input = { 0 }, output = { 0 };
	struct mime_message *messages[AGREED_COUNT];
	static char sections[AGREED_COUNT][256][80];
	size_t section_counts[AGREED_COUNT];
	struct passwd *nobody = getpwnam("nobody");
	uid_t uid = nobody != NULL ? nobody->pw_uid : 65534;
	gid_t gid = nobody != NULL ? nobody->pw_gid : 65534;

	ck_assert_msg(access(DOVECOT_IMAP, X_OK) == 0, "%s missing (install dovecot-imapd)",
	    DOVECOT_IMAP);
	ck_assert_ptr_nonnull(mkdtemp(dir));
	write_config(dir);
	snprintf(path, sizeof path, "%s/Maildir", dir);
	ck_assert_int_eq(mkdir(path, 0700), 0);
	if (getuid() == 0) {
		ck_assert_int_eq(chown(dir, uid, gid), 0);
		ck_assert_int_eq(chown(path, uid, gid), 0);
	}

	for (size_t i = 0; i < AGREED_COUNT; i++) {
		char command[64];

		messages[i] = parse_corpus_message(agreed[i]);
		snprintf(command, sizeof command, "a%zu APPEND INBOX {%zu+}\r\n", i, messages[i]->len);
		append_str(&input, command);
		append(&input, messages[i]->data, messages[i]->len);
		append_str(&input, "\r\n");
	}
	append_str(&input, "s SELECT INBOX\r\n");
	for (size_t i = 0; i < AGREED_COUNT; i++) {
		char command[256];

		snprintf(command, sizeof command, "f%zu FETCH %zu (RFC822.SIZE BODYSTRUCTURE ENVELOPE",
		    i + 1, i + 1);
		append_str(&input, command);
		section_counts[i] = message_sections(messages[i], sections[i], 256);
		for (size_t s = 0; s < section_counts[i]; s++) {
			snprintf(command, sizeof command, " BODY.PEEK[%.79s]", sections[i][s]);
			append_str(&input, command);
			if (is_part_number(sections[i][s]) && binary_comparable(agreed[i])) {
				snprintf(command, sizeof command, " BINARY.PEEK[%.79s]", sections[i][s]);
				append_str(&input, command);
			}
		}
		append_str(&input, ")\r\n");
	}
	append_str(&input, "z LOGOUT\r\n");

	run_dovecot(dir, &input, &output, uid, gid);
	nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);

	for (size_t i = 0; i < AGREED_COUNT; i++) {
		struct mime_message *msg = messages[i];
		size_t region_len;
		char *region = fetch_region(&output, i + 1, &region_len);
		char *folded = strndup(region, region_len);
		char *structure = mime_bodystructure(msg, &msg->root, 1, NULL);
		char *envelope = mime_envelope(msg, &msg->root, NULL);
		char head[64];

		snprintf(head, sizeof head, "RFC822.SIZE %zu ", msg->len);
		assert_in_region(region, region_len, head, strlen(head), agreed[i], "RFC822.SIZE");
		ck_assert_msg(strcasestr(folded, structure) != NULL,
		    "%s BODYSTRUCTURE differs from Dovecot:\n ours: %.1500s\n dovecot: %.1500s", agreed[i],
		    structure, folded);
		ck_assert_msg(strcasestr(folded, envelope) != NULL,
		    "%s ENVELOPE differs from Dovecot:\n ours: %.1500s\n dovecot: %.1500s", agreed[i],
		    envelope, folded);

		for (size_t s = 0; s < section_counts[i]; s++) {
			struct mime_section spec;
			struct mime_section_data data;
			char item[128];

			ck_assert_int_eq(mime_section_parse(sections[i][s], strlen(sections[i][s]), &spec), 0);
			ck_assert_int_eq(mime_section_fetch(msg, &spec, &data), 0);
			snprintf(item, sizeof item, "BODY[%s]", sections[i][s]);
			assert_section_matches(region, region_len, item, data.data, data.len, agreed[i]);
			free(data.owned);

			/* Only leaves: Dovecot also decodes the parts inside a
			 * multipart and rewrites their headers, lib/mime does not. */
			if (is_part_number(sections[i][s]) && is_leaf(mime_section_part(msg, &spec)) &&
			    binary_comparable(agreed[i])) {
				char *decoded;
				size_t decoded_len;

				if (mime_binary_decode(msg, mime_section_part(msg, &spec), &decoded,
				    &decoded_len) == 0) {
					snprintf(item, sizeof item, "BINARY[%s]", sections[i][s]);
					assert_section_matches(region, region_len, item, decoded, decoded_len,
					    agreed[i]);
					free(decoded);
				}
			}
			mime_section_free(&spec);
		}

		free(folded);
		free(structure);
		free(envelope);
		mime_free(msg);
	}

	free(input.data);
	free(output.data);
}
END_TEST

Suite *
mime_dovecot_suite(void)
{
	Suite *s = suite_create("mime_dovecot");
	TCase *tc = tcase_create("dovecot");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, dovecot_agrees);
	suite_add_tcase(s, tc);
	return s;
}
