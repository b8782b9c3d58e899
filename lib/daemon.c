/* Start-up shared by every daemon: options, configuration, logging. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "config.h"
#include "daemon.h"
#include "log.h"
#include "util.h"

static void
daemon_usage(const char *program)
{
	fprintf(stderr, "usage: %s [-f] [-c CONFIG] [-o name=value]...\n", program);
	exit(EX_USAGE);
}

static void
daemon_apply_override(const char *text)
{
	char err[1024];
	char *name = xstrdup(text);
	char *eq = strchr(name, '=');

	if (eq == NULL)
		fatalx("invalid -o %s: expected name=value", text);
	*eq = '\0';
	if (config_set(name, eq + 1, err, sizeof err) < 0)
		fatalx("invalid -o %s: %s", text, err);
	free(name);
}

int
daemon_start(const char *program, int argc, char **argv)
{
	const char *path = NULL;
	char **overrides = xcalloc((size_t)argc + 1, sizeof *overrides);
	size_t noverrides = 0;
	int foreground = 0, ch;

	while ((ch = getopt(argc, argv, "fc:o:")) != -1) {
		switch (ch) {
		case 'f':
			foreground = 1;
			break;
		case 'c':
			path = optarg;
			break;
		case 'o':
			overrides[noverrides++] = optarg;
			break;
		default:
			daemon_usage(program);
		}
	}
	if (optind != argc)
		daemon_usage(program);

	/* Configuration errors go to stderr before syslog is known. */
	log_init(program, 1, 0);
	config_load_or_die(path);
	for (size_t i = 0; i < noverrides; i++)
		daemon_apply_override(overrides[i]);
	free(overrides);

	log_init(program, foreground, config_bool("syslog"));
	log_set_debug(config_bool("debug"));
	signal(SIGPIPE, SIG_IGN);
	return foreground;
}
