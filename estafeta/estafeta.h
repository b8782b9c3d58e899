/* estafeta: the admin command. Each subcommand returns a sysexits code. */
#ifndef ESTAFETA_ESTAFETA_H
#define ESTAFETA_ESTAFETA_H

/* queue_cmd.c: estafeta queue list|show|flush|delete */
int queue_command(int argc, char **argv);

/* config_cmd.c: estafeta config check|show */
int config_command(const char *config_path, int argc, char **argv);

/* dkim_keygen.c: estafeta dkim keygen */
int dkim_command(int argc, char **argv);

/* estafeta.c */
void load_config_or_exit(const char *config_path);
void print_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
