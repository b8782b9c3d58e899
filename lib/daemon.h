/* Start-up shared by every daemon: options, configuration, logging. */
#ifndef ESTAFETA_DAEMON_H
#define ESTAFETA_DAEMON_H

/*
 * Parse "PROGRAM [-f] [-c CONFIG] [-o name=value]...", load the
 * configuration and apply the -o overrides, start logging as PROGRAM
 * (to stderr too with -f) and ignore SIGPIPE. Exits with EX_USAGE on
 * bad options and with the file:line error on a bad configuration.
 * Returns 1 with -f, else 0.
 */
int daemon_start(const char *program, int argc, char **argv);

#endif
