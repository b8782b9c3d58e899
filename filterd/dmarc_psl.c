/*
 * The public suffix list (https://publicsuffix.org/list/) for DMARC's
 * organizational domains, read once at start into a sorted array. Rules
 * are plain ("co.uk"), wildcards ("*.ck") and exceptions ("!www.ck");
 * an exception wins over every other rule, then the rule with the most
 * labels, and a name no rule matches has its last label as suffix.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "dmarc.h"
#include "dns.h"
#include "log.h"
#include "util.h"

static char **rules;
static size_t nrules;

static int
rule_compare(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int
rule_exists(const char *rule)
{
	return bsearch(&rule, rules, nrules, sizeof *rules, rule_compare) != NULL;
}

int
dmarc_init(char *err, size_t errsize)
{
	const char *path = config_string("dmarc_public_suffix_list");
	size_t capacity = 0;
	char line[512];
	FILE *file;

	if (dns_init(err, errsize) < 0)
		return -1;

	dmarc_stop();
	file = fopen(path, "re");
	if (file == NULL) {
		snprintf(err, errsize, "cannot open dmarc_public_suffix_list %s: %s (install the publicsuffix package)",
		    path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof line, file) != NULL) {
		/* A rule is the first word of a line; "//" starts a comment. */
		line[strcspn(line, " \t\r\n")] = '\0';
		if (line[0] == '\0' || strncmp(line, "//", 2) == 0)
			continue;
		/* NOTE: internationalized rules stay in UTF-8 and mail domains
		 * arrive as A-labels (xn--), so a multi-label IDN suffix is not
		 * matched and the implicit rule "*" applies instead. */
		ascii_lower(line);
		if (nrules == capacity) {
			capacity = capacity == 0 ? 8192 : 2 * capacity;
			rules = xrealloc(rules, capacity * sizeof *rules);
		}
		rules[nrules++] = xstrdup(line);
	}
	fclose(file);

	qsort(rules, nrules, sizeof *rules, rule_compare);
	log_info("public suffix list %s: %zu rules", path, nrules);
	return 0;
}

void
dmarc_stop(void)
{
	for (size_t i = 0; i < nrules; i++)
		free(rules[i]);
	free(rules);
	rules = NULL;
	nrules = 0;
}

/* The start of the public suffix in NAME (lower case, no final dot). */
static const char *
public_suffix(const char *name)
{
	char rule[512];
	const char *longest = NULL;

	/* Exceptions first: the suffix is the rule without its first label. */
	for (const char *s = name; s != NULL; s = strchr(s, '.') != NULL ? strchr(s, '.') + 1 : NULL) {
		snprintf(rule, sizeof rule, "!%s", s);
		if (rule_exists(rule))
			return strchr(s, '.') != NULL ? strchr(s, '.') + 1 : s;
	}

	/* Then the longest plain or wildcard rule, trying the longest
	 * candidate suffix first. */
	for (const char *s = name; s != NULL && longest == NULL;
	    s = strchr(s, '.') != NULL ? strchr(s, '.') + 1 : NULL) {
		const char *parent = strchr(s, '.');

		if (rule_exists(s))
			longest = s;
		if (longest == NULL && parent != NULL) {
			snprintf(rule, sizeof rule, "*.%s", parent + 1);
			if (rule_exists(rule))
				longest = s;
		}
	}
	if (longest != NULL)
		return longest;

	/* The implicit rule "*": the last label. */
	return strrchr(name, '.') != NULL ? strrchr(name, '.') + 1 : name;
}

void
dmarc_organizational_domain(const char *domain, char *out, size_t size)
{
	char name[256];
	const char *suffix, *label;
	size_t len;

	strlcpy_x(name, domain, sizeof name);
	ascii_lower(name);
	len = strlen(name);
	if (len > 0 && name[len - 1] == '.')
		name[len - 1] = '\0';

	suffix = public_suffix(name);
	if (suffix == name) {
		strlcpy_x(out, name, size);
		return;
	}
	/* One label more than the suffix: back up over the dot before it. */
	label = suffix - 1;
	while (label > name && label[-1] != '.')
		label--;
	strlcpy_x(out, label, size);
}
