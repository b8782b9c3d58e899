/*
 * Configuration: one file of "name = value" lines (Postfix main.cf
 * style), checked against a typed table of parameters with defaults and
 * limits. Every program reads the same file and the same table, so
 * `estafeta config check` validates exactly what the daemons will use.
 */
#ifndef ESTAFETA_CONFIG_H
#define ESTAFETA_CONFIG_H

#include <stddef.h>
#include <sys/types.h>

#define CONFIG_DEFAULT_PATH "/etc/estafeta/estafeta.conf"

enum config_type {
	CONFIG_STRING,
	CONFIG_INT,	/* plain integer */
	CONFIG_SIZE,	/* bytes, with optional k, m, g suffix (powers of 1024) */
	CONFIG_TIME,	/* seconds, with optional s, m, h, d suffix */
	CONFIG_BOOL,	/* yes/no, true/false, on/off, 1/0 */
	CONFIG_LIST,	/* items separated by commas and/or whitespace */
};

struct config_param {
	const char *name;
	enum config_type type;
	const char *default_value;
	long long min;		/* numeric types only */
	long long max;
	const char *help;	/* one line: what it sets, in what unit */
	const char *choices;	/* CONFIG_STRING: the allowed words, space-separated; NULL: any */
	/* Extra check of a value's meaning; 0, or -1 with a reason in ERR. */
	int (*check)(const char *value, char *err, size_t errsize);
};

/* Checks for config_param.check (lib/config_checks.c). A list is checked
 * item by item. */
int config_check_networks(const char *value, char *err, size_t errsize);
int config_check_listen(const char *value, char *err, size_t errsize);
int config_check_octal_mode(const char *value, char *err, size_t errsize);
int config_check_hostname(const char *value, char *err, size_t errsize);

/* Check values that are valid alone but not together. config_load calls
 * it after the last line. Returns 0, or -1 with a reason in ERR. */
int config_check_combinations(char *err, size_t errsize);

/*
 * The parameter tables, one per program family, each ending with a NULL
 * name (lib/params_*.c). config.c searches them all.
 */
extern const struct config_param config_params_common[];
extern const struct config_param config_params_smtpd[];
extern const struct config_param config_params_queued[];
extern const struct config_param config_params_deliverd[];
extern const struct config_param config_params_authd[];
extern const struct config_param config_params_imapd[];
extern const struct config_param config_params_filterd[];

/* The parameter named NAME, or NULL. */
const struct config_param *config_param_find(const char *name);

/*
 * Load PATH (NULL: $ESTAFETA_CONFIG or CONFIG_DEFAULT_PATH). On error,
 * returns -1 and writes "FILE:LINE: what is wrong" into ERR.
 * Unknown names, bad values and out-of-range numbers are errors.
 */
int config_load(const char *path, char *err, size_t errsize);

/* Load or exit with the error on stderr and in the log. */
void config_load_or_die(const char *path);

/* The path that was loaded. */
const char *config_path(void);

/* Lookups: the name must be in config_params (an unknown name aborts,
 * since it is a programming error). */
const char *config_string(const char *name);
long long config_int(const char *name);
long long config_size(const char *name);
long long config_time(const char *name);
int config_bool(const char *name);

/* A NULL-terminated list of items; owned by the config, do not free. */
char *const *config_list(const char *name);

/* The permissions in an octal parameter (one checked with
 * config_check_octal_mode when it was loaded). */
mode_t config_mode(const char *name);

/* myhostname, or the system host name when it is empty. */
const char *config_myhostname(void);

/* Print every parameter as "name = value" (effective values). */
void config_print(int only_changed);

/* Set a value programmatically (tests, command-line -o). 0 or -1. */
int config_set(const char *name, const char *value, char *err, size_t errsize);

/* Parse helpers, exposed for tests. 0 on success, -1 on invalid. */
int config_parse_size(const char *text, long long *out);
int config_parse_time(const char *text, long long *out);
int config_parse_bool(const char *text, int *out);

#endif
