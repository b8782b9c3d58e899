/*
 * sendmail: the Sendmail-compatible command, with the options that cron,
 * mail(1), mutt and PHP pass. Called as "mailq" it lists the queue
 * (-bp), called as "newaliases" it compiles the aliases (-bI).
 */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "addr.h"
#include "config.h"
#include "log.h"
#include "sendmail.h"
#include "util.h"

enum mode {
	MODE_DELIVER,		/* -bm: read a message from standard input */
	MODE_SMTP,		/* -bs */
	MODE_MAILQ,		/* -bp */
	MODE_NEWALIASES,	/* -bi, -bI, -I */
	MODE_FLUSH,		/* -q, -qI<id> */
};

struct options {
	enum mode mode;
	const char *config_path;
	const char *sender;
	const char *full_name;
	const char *body_type;
	const char *alias_source;	/* -oA */
	const char *flush_id;		/* -qI */
	int dot_ends;			/* cleared by -i and -oi */
	int extract_recipients;		/* -t */
	int verbose;
	char **recipients;
	int nrecipients;
};

static const char *program_name = "sendmail";

void
warnx_sendmail(const char *fmt, ...)
{
	char text[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s: %s\n", program_name, text);
	log_error("%s", text);
}

static void __attribute__((noreturn))
usage(const char *problem)
{
	if (problem != NULL)
		fprintf(stderr, "%s: %s\n", program_name, problem);
	fprintf(stderr,
	    "usage: sendmail [-t] [-i] [-f sender] [-F full_name] [-B 7BIT|8BITMIME] [-C config] [recipient...]\n"
	    "       sendmail -bs | -bp | -bi | -q | -qI<queue_id>\n"
	    "       mailq\n"
	    "       newaliases\n");
	exit(EX_USAGE);
}

static void
parse_b_option(struct options *opts, const char *arg)
{
	if (strcmp(arg, "m") == 0)
		opts->mode = MODE_DELIVER;
	else if (strcmp(arg, "s") == 0)
		opts->mode = MODE_SMTP;
	else if (strcmp(arg, "p") == 0)
		opts->mode = MODE_MAILQ;
	else if (strcmp(arg, "i") == 0 || strcmp(arg, "I") == 0)
		opts->mode = MODE_NEWALIASES;
	else if (strcmp(arg, "h") == 0 || strcmp(arg, "H") == 0)
		;	/* host status database: there is none, as in Postfix */
	else if (strcmp(arg, "d") == 0)
		usage("-bd is not supported: start the daemons with systemctl start estafeta.target");
	else if (strcmp(arg, "v") == 0)
		usage("-bv is not supported");
	else
		usage("unknown -b mode");
}

/* -o options: -oi as -i and -oA<path>; the others are ignored, as in Postfix. */
static void
parse_o_option(struct options *opts, const char *arg)
{
	if (strcmp(arg, "i") == 0)
		opts->dot_ends = 0;
	else if (arg[0] == 'A' && arg[1] != '\0')
		opts->alias_source = arg + 1;
}

static void
parse_q_option(struct options *opts, const char *arg)
{
	opts->mode = MODE_FLUSH;
	if (arg == NULL || *arg == '\0')
		return;
	if (arg[0] == 'I' && arg[1] != '\0') {
		opts->flush_id = arg + 1;
		return;
	}
	if (arg[0] == 'R' || arg[0] == 'S')
		usage("-qR and -qS are not supported: use sendmail -q");
	/* -q<interval>: the daemons schedule queue runs themselves. */
	opts->mode = MODE_DELIVER;
}

static void
parse_options(int argc, char **argv, struct options *opts)
{
	int opt;

	/* The same letters as Postfix's sendmail; '+' stops at the first recipient. */
	while ((opt = getopt(argc, argv, "+A:B:C:F:GIL:N:O:R:UV:X:b:ce:f:h:imno:p:q::r:tvx")) != -1) {
		switch (opt) {
		case 'B':
			if (ascii_casecmp(optarg, "7BIT") != 0 && ascii_casecmp(optarg, "8BITMIME") != 0)
				usage("-B takes 7BIT or 8BITMIME");
			opts->body_type = ascii_casecmp(optarg, "7BIT") == 0 ? "7BIT" : "8BITMIME";
			break;
		case 'C':
			opts->config_path = optarg;
			break;
		case 'F':
			opts->full_name = optarg;
			break;
		case 'I':
			opts->mode = MODE_NEWALIASES;
			break;
		case 'b':
			parse_b_option(opts, optarg);
			break;
		case 'f':
		case 'r':
			opts->sender = optarg;
			break;
		case 'i':
			opts->dot_ends = 0;
			break;
		case 'o':
			parse_o_option(opts, optarg);
			break;
		case 'q':
			parse_q_option(opts, optarg);
			break;
		case 't':
			opts->extract_recipients = 1;
			break;
		case 'v':
			opts->verbose = 1;
			break;
		case 'A': case 'G': case 'L': case 'N': case 'O': case 'R': case 'U':
		case 'V': case 'X': case 'c': case 'e': case 'h': case 'm': case 'n':
		case 'p': case 'x':
			break;	/* accepted and ignored, as Postfix does */
		default:
			usage(NULL);
		}
	}
	opts->recipients = argv + optind;
	opts->nrecipients = argc - optind;
}

static void
load_config(const char *path)
{
	char err[1024];

	if (config_load(path, err, sizeof err) < 0) {
		fprintf(stderr, "%s: configuration error: %s\n", program_name, err);
		exit(EX_CONFIG);
	}
}

static long long
size_limit(void)
{
	/* smtpd's limit applies to local mail too, when that parameter exists. */
	if (config_param_find("message_size_limit") != NULL)
		return config_size("message_size_limit");
	return 0;
}

static int
run_deliver(const struct options *opts, const struct local_user *user)
{
	struct address_list rcpts = { 0 };
	struct local_submission sub = { 0 };
	struct message msg;
	char sender[ADDR_MAX * 4 + 2], queue_id[QUEUE_ID_MAX];
	int rc;

	if (opts->sender != NULL) {
		if (address_normalize(opts->sender, sender, sizeof sender) < 0) {
			warnx_sendmail("invalid sender address \"%s\"", opts->sender);
			return EX_USAGE;
		}
	} else {
		snprintf(sender, sizeof sender, "%s@%s", user->name, my_hostname());
	}
	for (int i = 0; i < opts->nrecipients; i++) {
		if (address_list_add_text(&rcpts, opts->recipients[i]) < 0) {
			warnx_sendmail("invalid recipient address \"%s\"", opts->recipients[i]);
			address_list_free(&rcpts);
			return EX_USAGE;
		}
	}
	if (rcpts.count == 0 && !opts->extract_recipients) {
		warnx_sendmail("no recipients: give them on the command line or use -t");
		return EX_USAGE;
	}

	rc = message_read(stdin, opts->dot_ends, size_limit(), &msg);
	if (rc == MESSAGE_TOO_LARGE) {
		warnx_sendmail("message is larger than message_size_limit (%lld bytes)", size_limit());
		message_free(&msg);
		address_list_free(&rcpts);
		return EX_DATAERR;
	}
	if (rc < 0) {
		warnx_sendmail("error reading the message from standard input: %s", strerror(errno));
		message_free(&msg);
		address_list_free(&rcpts);
		return EX_IOERR;
	}

	sub.sender = sender;
	sub.rcpts = &rcpts;
	sub.extract_recipients = opts->extract_recipients;
	sub.full_name = opts->full_name != NULL ? opts->full_name :
	    getenv("NAME") != NULL ? getenv("NAME") : user->gecos_name;
	sub.body_type = opts->body_type;
	sub.protocol = "LOCAL";
	sub.user = user;
	rc = submit_local(&sub, &msg, queue_id);
	if (rc == EX_OK && opts->verbose)
		fprintf(stderr, "%s: queued as %s\n", program_name, queue_id);
	message_free(&msg);
	address_list_free(&rcpts);
	return rc;
}

int
main(int argc, char **argv)
{
	struct options opts = { .mode = MODE_DELIVER, .dot_ends = 1 };
	struct local_user user;
	char *name = basename(argv[0]);

	if (strcmp(name, "mailq") == 0) {
		program_name = "mailq";
		opts.mode = MODE_MAILQ;
	} else if (strcmp(name, "newaliases") == 0) {
		program_name = "newaliases";
		opts.mode = MODE_NEWALIASES;
	}
	parse_options(argc, argv, &opts);

	load_config(opts.config_path);
	log_init("sendmail", 0, config_bool("syslog"));
	log_set_debug(config_bool("debug"));
	signal(SIGPIPE, SIG_IGN);

	if (local_user_get(&user) < 0) {
		warnx_sendmail("no login name found for user id %u", (unsigned)getuid());
		return EX_OSERR;
	}

	switch (opts.mode) {
	case MODE_MAILQ:
		return run_mailq();
	case MODE_NEWALIASES:
		return run_newaliases(opts.alias_source);
	case MODE_FLUSH:
		return run_flush(opts.flush_id);
	case MODE_SMTP:
		return smtp_stdio_run(stdin, stdout, &user);
	case MODE_DELIVER:
		break;
	}
	return run_deliver(&opts, &user);
}
