/* estafeta config check | show [-n] */
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

#include "config.h"
#include "estafeta.h"

static int
config_check(const char *path)
{
	char err[1024];

	if (config_load(path, err, sizeof err) < 0) {
		print_error("%s", err);
		return 1;
	}
	printf("%s: configuration OK\n", config_path());
	return EX_OK;
}

int
config_command(const char *config_path, int argc, char **argv)
{
	if (argc == 1 && strcmp(argv[0], "check") == 0)
		return config_check(config_path);

	if (argc >= 1 && strcmp(argv[0], "show") == 0) {
		int only_changed = argc == 2 && strcmp(argv[1], "-n") == 0;

		if (argc > 2 || (argc == 2 && !only_changed)) {
			print_error("usage: estafeta config show [-n]");
			return EX_USAGE;
		}
		load_config_or_exit(config_path);
		config_print(only_changed);
		return fflush(stdout) == 0 ? EX_OK : EX_IOERR;
	}

	print_error("usage: estafeta config check | estafeta config show [-n]");
	return EX_USAGE;
}
