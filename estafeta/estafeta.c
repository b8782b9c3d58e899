/*
 * estafeta: the admin command (like postqueue, postsuper and postconf in
 * one). Usage: estafeta [-c config] queue|config|help ...
 */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "config.h"
#include "estafeta.h"
#include "log.h"

static const char help_text[] =
    "usage: estafeta [-c config] command [arguments]\n"
    "\n"
    "commands:\n"
    "  queue list           list the queued messages (the same listing as mailq)\n"
    "  queue show ID        print the envelope and the message of queue id ID\n"
    "  queue flush [ID]     attempt delivery of every deferred message now, or of ID\n"
    "  queue delete ID|ALL  remove message ID (or every message) from the queue\n"
    "  config check         check the configuration file; errors are FILE:LINE: reason\n"
    "  config show [-n]     print every parameter with its value (-n: only those set in the file)\n"
    "  dkim keygen DOMAIN SELECTOR [--type rsa|ed25519] [--bits N] [--force]\n"
    "                       write a DKIM signing key into dkim_key_directory and print\n"
    "                       its TXT record and dkim_signing_table line\n"
    "  help                 print this text\n"
    "\n"
    "options:\n"
    "  -c config            configuration file (default $ESTAFETA_CONFIG, else "
    CONFIG_DEFAULT_PATH ")\n";

void
print_error(const char *fmt, ...)
{
	va_list ap;

	fputs("estafeta: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void
load_config_or_exit(const char *config_path)
{
	char err[1024];

	if (config_load(config_path, err, sizeof err) < 0) {
		print_error("%s", err);
		exit(EX_CONFIG);
	}
	log_init("estafeta", 0, config_bool("syslog"));
}

static int __attribute__((noreturn))
usage(void)
{
	fputs(help_text, stderr);
	exit(EX_USAGE);
}

int
main(int argc, char **argv)
{
	const char *config_path = NULL;
	int opt;

	if (argc > 1 && strcmp(argv[1], "--help") == 0) {
		fputs(help_text, stdout);
		return EX_OK;
	}
	while ((opt = getopt(argc, argv, "+c:h")) != -1) {
		switch (opt) {
		case 'c':
			config_path = optarg;
			break;
		case 'h':
			fputs(help_text, stdout);
			return EX_OK;
		default:
			usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (argc == 0)
		usage();

	if (strcmp(argv[0], "help") == 0) {
		fputs(help_text, stdout);
		return EX_OK;
	}
	if (strcmp(argv[0], "config") == 0)
		return config_command(config_path, argc - 1, argv + 1);
	if (strcmp(argv[0], "dkim") == 0) {
		load_config_or_exit(config_path);
		return dkim_command(argc - 1, argv + 1);
	}
	if (strcmp(argv[0], "queue") == 0) {
		load_config_or_exit(config_path);
		return queue_command(argc - 1, argv + 1);
	}
	print_error("unknown command \"%s\"; try estafeta help", argv[0]);
	return EX_USAGE;
}
