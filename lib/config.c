/* Configuration file parsing and typed lookups. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "util.h"

static const struct config_param *const config_tables[] = {
	config_params_common,
	config_params_smtpd,
	config_params_queued,
	config_params_deliverd,
	config_params_authd,
	config_params_imapd,
	config_params_filterd,
	NULL,
};

struct config_value {
	const struct config_param *param;
	char *text;		/* NULL: default */
	char **list;		/* split form, built on first config_list() */
};

static struct config_value *config_values;
static size_t config_nvalues;
static char config_loaded_path[PATH_MAX];

/* The values sorted by parameter name, for bsearch, because daemons
 * look parameters up for every message. */
static struct config_value **config_by_name;

static struct config_value *config_value_find(const char *name);

const struct config_param *
config_param_find(const char *name)
{
	struct config_value *v = config_value_find(name);

	return v != NULL ? v->param : NULL;
}

static int
config_value_compare(const void *a, const void *b)
{
	const struct config_value *const *left = a, *const *right = b;

	return strcmp((*left)->param->name, (*right)->param->name);
}

static void
config_values_init(void)
{
	size_t n = 0;

	if (config_values != NULL)
		return;
	for (size_t t = 0; config_tables[t] != NULL; t++)
		for (const struct config_param *p = config_tables[t]; p->name != NULL; p++)
			n++;
	config_values = xcalloc(n, sizeof *config_values);
	for (size_t t = 0; config_tables[t] != NULL; t++)
		for (const struct config_param *p = config_tables[t]; p->name != NULL; p++)
			config_values[config_nvalues++].param = p;

	config_by_name = xcalloc(n, sizeof *config_by_name);
	for (size_t i = 0; i < n; i++)
		config_by_name[i] = &config_values[i];
	qsort(config_by_name, n, sizeof *config_by_name, config_value_compare);
}

static int
config_name_compare(const void *key, const void *element)
{
	const struct config_value *const *v = element;

	return strcmp(key, (*v)->param->name);
}

static struct config_value *
config_value_find(const char *name)
{
	struct config_value **found;

	config_values_init();
	found = bsearch(name, config_by_name, config_nvalues, sizeof *config_by_name,
	    config_name_compare);
	return found != NULL ? *found : NULL;
}

static int
config_parse_suffixed(const char *text, long long *out, const char *suffixes,
    const long long *factors)
{
	char *end;
	long long value;

	errno = 0;
	value = strtoll(text, &end, 10);
	if (end == text || errno != 0 || value < 0)
		return -1;
	if (*end != '\0') {
		const char *s = strchr(suffixes, tolower((unsigned char)*end));

		if (s == NULL || end[1] != '\0')
			return -1;
		if (value > LLONG_MAX / factors[s - suffixes])
			return -1;
		value *= factors[s - suffixes];
	}
	*out = value;
	return 0;
}

int
config_parse_size(const char *text, long long *out)
{
	static const long long factors[] = { 1, 1024, 1024 * 1024, 1024LL * 1024 * 1024 };

	return config_parse_suffixed(text, out, "bkmg", factors);
}

int
config_parse_time(const char *text, long long *out)
{
	static const long long factors[] = { 1, 60, 3600, 86400, 604800 };

	return config_parse_suffixed(text, out, "smhdw", factors);
}

int
config_parse_bool(const char *text, int *out)
{
	static const char *const yes[] = { "yes", "true", "on", "1", NULL };
	static const char *const no[] = { "no", "false", "off", "0", NULL };

	for (size_t i = 0; yes[i] != NULL; i++)
		if (ascii_casecmp(text, yes[i]) == 0) {
			*out = 1;
			return 0;
		}
	for (size_t i = 0; no[i] != NULL; i++)
		if (ascii_casecmp(text, no[i]) == 0) {
			*out = 0;
			return 0;
		}
	return -1;
}

/* Whether WORD is one of the space-separated WORDS. */
static int
config_word_in(const char *words, const char *word)
{
	size_t len = strlen(word);

	for (const char *p = words; *p != '\0';) {
		size_t n = strcspn(p, " ");

		if (n == len && len > 0 && strncmp(p, word, n) == 0)
			return 1;
		p += n;
		p += strspn(p, " ");
	}
	return 0;
}

/* Check TEXT against the type and limits of PARAM. 0, or -1 with ERR. */
static int
config_validate(const struct config_param *param, const char *text, char *err,
    size_t errsize)
{
	long long number = 0;
	int flag;

	if (param->choices != NULL && !config_word_in(param->choices, text)) {
		snprintf(err, errsize, "invalid value \"%s\" for %s: expected one of: %s",
		    text, param->name, param->choices);
		return -1;
	}
	if (param->check != NULL) {
		char reason[512];

		if (param->check(text, reason, sizeof reason) < 0) {
			snprintf(err, errsize, "invalid value \"%s\" for %s: %s", text, param->name,
			    reason);
			return -1;
		}
	}

	switch (param->type) {
	case CONFIG_STRING:
	case CONFIG_LIST:
		return 0;
	case CONFIG_BOOL:
		if (config_parse_bool(text, &flag) < 0) {
			snprintf(err, errsize, "invalid value \"%s\" for %s: expected yes or no",
			    text, param->name);
			return -1;
		}
		return 0;
	case CONFIG_INT:
		if (config_parse_suffixed(text, &number, "", NULL) < 0) {
			snprintf(err, errsize, "invalid value \"%s\" for %s: expected a number",
			    text, param->name);
			return -1;
		}
		break;
	case CONFIG_SIZE:
		if (config_parse_size(text, &number) < 0) {
			snprintf(err, errsize,
			    "invalid value \"%s\" for %s: expected a size in bytes (suffix k, m or g allowed)",
			    text, param->name);
			return -1;
		}
		break;
	case CONFIG_TIME:
		if (config_parse_time(text, &number) < 0) {
			snprintf(err, errsize,
			    "invalid value \"%s\" for %s: expected a time in seconds (suffix s, m, h, d or w allowed)",
			    text, param->name);
			return -1;
		}
		break;
	}
	if (number < param->min || number > param->max) {
		snprintf(err, errsize, "value %s for %s is out of range: allowed %lld to %lld",
		    text, param->name, param->min, param->max);
		return -1;
	}
	return 0;
}

static void
config_value_store(struct config_value *v, const char *text)
{
	free(v->text);
	v->text = xstrdup(text);
	if (v->list != NULL) {
		for (char **p = v->list; *p != NULL; p++)
			free(*p);
		free(v->list);
		v->list = NULL;
	}
}

int
config_set(const char *name, const char *value, char *err, size_t errsize)
{
	struct config_value *v = config_value_find(name);

	if (v == NULL) {
		snprintf(err, errsize, "unknown parameter \"%s\"", name);
		return -1;
	}
	if (config_validate(v->param, value, err, errsize) < 0)
		return -1;
	config_value_store(v, value);
	return 0;
}

static char *
trim(char *s)
{
	char *end;

	while (isspace((unsigned char)*s))
		s++;
	end = s + strlen(s);
	while (end > s && isspace((unsigned char)end[-1]))
		*--end = '\0';
	return s;
}

/*
 * Parse one logical line (continuation lines already joined). Blank
 * lines and lines starting with '#' are skipped.
 */
static int
config_parse_line(char *line, const char *path, int lineno, char *err, size_t errsize)
{
	char reason[512];
	char *name, *value, *eq;

	name = trim(line);
	if (*name == '\0' || *name == '#')
		return 0;
	eq = strchr(name, '=');
	if (eq == NULL) {
		snprintf(err, errsize, "%s:%d: missing '=' (expected \"name = value\")",
		    path, lineno);
		return -1;
	}
	*eq = '\0';
	name = trim(name);
	value = trim(eq + 1);
	if (config_set(name, value, reason, sizeof reason) < 0) {
		snprintf(err, errsize, "%s:%d: %s", path, lineno, reason);
		return -1;
	}
	return 0;
}

int
config_load(const char *path, char *err, size_t errsize)
{
	char *line = NULL, *logical = NULL;
	size_t cap = 0;
	int lineno = 0, logical_lineno = 0, rc = 0;
	struct stat st;
	FILE *fp;

	config_values_init();
	if (path == NULL)
		path = getenv("ESTAFETA_CONFIG");
	if (path == NULL)
		path = CONFIG_DEFAULT_PATH;
	strlcpy_x(config_loaded_path, path, sizeof config_loaded_path);

	fp = fopen(path, "r");
	if (fp == NULL) {
		snprintf(err, errsize, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fileno(fp), &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errsize, "%s: not a regular file", path);
		fclose(fp);
		return -1;
	}

	/* A line starting with whitespace continues the previous one (main.cf rule). */
	while (getline(&line, &cap, fp) >= 0) {
		lineno++;
		line[strcspn(line, "\r\n")] = '\0';
		if (logical != NULL && (line[0] == ' ' || line[0] == '\t') &&
		    trim(line)[0] != '\0' && trim(line)[0] != '#') {
			char *joined = xasprintf("%s %s", logical, trim(line));

			free(logical);
			logical = joined;
			continue;
		}
		if (logical != NULL) {
			rc = config_parse_line(logical, path, logical_lineno, err, errsize);
			free(logical);
			logical = NULL;
			if (rc < 0)
				break;
		}
		logical = xstrdup(line);
		logical_lineno = lineno;
	}
	if (rc == 0 && logical != NULL)
		rc = config_parse_line(logical, path, logical_lineno, err, errsize);
	if (rc == 0 && ferror(fp)) {
		snprintf(err, errsize, "%s: read error: %s", path, strerror(errno));
		rc = -1;
	}
	if (rc == 0) {
		char reason[512];

		rc = config_check_combinations(reason, sizeof reason);
		if (rc < 0)
			snprintf(err, errsize, "%s: %s", path, reason);
	}
	free(logical);
	free(line);
	fclose(fp);
	return rc;
}

void
config_load_or_die(const char *path)
{
	char err[1024];

	if (config_load(path, err, sizeof err) < 0)
		fatalx("configuration error: %s", err);
}

const char *
config_path(void)
{
	return config_loaded_path;
}

static struct config_value *
config_value_get(const char *name, enum config_type type)
{
	struct config_value *v = config_value_find(name);

	if (v == NULL)
		fatalx("internal error: unknown configuration parameter %s", name);
	if (v->param->type != type)
		fatalx("internal error: parameter %s read with the wrong type", name);
	return v;
}

static const char *
config_text(const struct config_value *v)
{
	return v->text != NULL ? v->text : v->param->default_value;
}

const char *
config_string(const char *name)
{
	return config_text(config_value_get(name, CONFIG_STRING));
}

long long
config_int(const char *name)
{
	return strtoll(config_text(config_value_get(name, CONFIG_INT)), NULL, 10);
}

long long
config_size(const char *name)
{
	long long value = 0;

	config_parse_size(config_text(config_value_get(name, CONFIG_SIZE)), &value);
	return value;
}

long long
config_time(const char *name)
{
	long long value = 0;

	config_parse_time(config_text(config_value_get(name, CONFIG_TIME)), &value);
	return value;
}

int
config_bool(const char *name)
{
	int value = 0;

	config_parse_bool(config_text(config_value_get(name, CONFIG_BOOL)), &value);
	return value;
}

char *const *
config_list(const char *name)
{
	struct config_value *v = config_value_get(name, CONFIG_LIST);
	size_t n = 0, cap = 4;
	char *copy, *save = NULL;

	if (v->list != NULL)
		return v->list;
	v->list = xcalloc(cap, sizeof *v->list);
	copy = xstrdup(config_text(v));
	for (char *item = strtok_r(copy, ", \t", &save); item != NULL;
	    item = strtok_r(NULL, ", \t", &save)) {
		if (n + 2 > cap) {
			cap *= 2;
			v->list = xrealloc(v->list, cap * sizeof *v->list);
		}
		v->list[n++] = xstrdup(item);
	}
	v->list[n] = NULL;
	free(copy);
	return v->list;
}

mode_t
config_mode(const char *name)
{
	return (mode_t)strtol(config_string(name), NULL, 8);
}

const char *
config_myhostname(void)
{
	static char hostname[256];
	const char *configured = config_string("myhostname");

	if (*configured != '\0')
		return configured;
	if (hostname[0] == '\0' && gethostname(hostname, sizeof hostname - 1) < 0)
		strlcpy_x(hostname, "localhost", sizeof hostname);
	return hostname;
}

void
config_print(int only_changed)
{
	config_values_init();
	for (size_t i = 0; i < config_nvalues; i++) {
		const struct config_value *v = &config_values[i];

		if (only_changed && v->text == NULL)
			continue;
		printf("%s = %s\n", v->param->name, config_text(v));
	}
}
