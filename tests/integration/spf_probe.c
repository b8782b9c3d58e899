/*
 * spf_probe CONFIG CLIENT_IP HELO SENDER [SPF_RESULT SPF_DOMAIN]
 *
 * Runs filterd's SPF check once, outside filterd, for test_filterd_spf.py:
 * the MAIL stage with four arguments, the MESSAGE stage with six (the
 * result and domain that the MAIL stage returned). Prints the outcome as
 * "key=value" lines: action, reply, spf_result, spf_domain, then one
 * "field=" line per header field (LF as "\n") and one "authres=" line each.
 * With SPF_PROBE_OUTBOUND=1 in the environment the message is outbound.
 * With SPF_PROBE_THREADS=N it also runs the check in N threads at once and
 * prints "threads_agree=1" when each thread got the same result.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "dns.h"
#include "log.h"
#include "spf.h"

static const char *const action_names[] = {
	"accept", "quarantine", "discard", "tempfail", "reject",
};

#define MAX_THREADS 32

struct thread_run {
	pthread_t thread;
	const struct filter_message *msg;
	struct filter_result result;
	int rc;
};

static void *
run_check(void *arg)
{
	struct thread_run *run = arg;
	char err[512];

	run->rc = spf_check(run->msg, &run->result, err, sizeof err);
	return NULL;
}

/* Run the check in COUNT threads at once; 1 when all match EXPECTED. */
static int
threads_agree(const struct filter_message *msg, const struct filter_result *expected, int count)
{
	static struct thread_run runs[MAX_THREADS];
	int agree = 1;

	for (int i = 0; i < count; i++) {
		memset(&runs[i].result, 0, sizeof runs[i].result);
		runs[i].msg = msg;
		if (pthread_create(&runs[i].thread, NULL, run_check, &runs[i]) != 0)
			return 0;
	}
	for (int i = 0; i < count; i++) {
		pthread_join(runs[i].thread, NULL);
		if (runs[i].rc != 0 || runs[i].result.action != expected->action ||
		    strcmp(runs[i].result.spf_result, expected->spf_result) != 0)
			agree = 0;
		filter_result_free(&runs[i].result);
	}
	return agree;
}

static void
print_escaped(const char *key, const char *text)
{
	printf("%s=", key);
	for (; *text != '\0'; text++) {
		if (*text == '\n')
			fputs("\\n", stdout);
		else
			putchar(*text);
	}
	putchar('\n');
}

int
main(int argc, char **argv)
{
	struct filter_message msg;
	struct filter_result result;
	char *no_recipients[] = { NULL };
	char err[512] = "";
	const char *threads;
	int rc;

	if (argc != 5 && argc != 7) {
		fprintf(stderr, "usage: spf_probe CONFIG CLIENT_IP HELO SENDER [SPF_RESULT SPF_DOMAIN]\n");
		return 2;
	}
	log_init("spf-probe", 1, 0);
	if (config_load(argv[1], err, sizeof err) < 0) {
		fprintf(stderr, "spf_probe: %s\n", err);
		return 2;
	}
	if (spf_init(err, sizeof err) < 0) {
		fprintf(stderr, "spf_probe: %s\n", err);
		return 2;
	}

	memset(&msg, 0, sizeof msg);
	memset(&result, 0, sizeof result);
	msg.queue_id = argc == 7 ? "4ABCDEF" : "";
	msg.client_address = argv[2];
	msg.client_name = "unknown";
	msg.helo = argv[3];
	msg.sender = argv[4];
	msg.recipients = no_recipients;
	msg.auth_user = "";
	msg.fd = -1;
	msg.outbound = getenv("SPF_PROBE_OUTBOUND") != NULL &&
	    strcmp(getenv("SPF_PROBE_OUTBOUND"), "1") == 0;
	msg.spf_result = argc == 7 ? argv[5] : "";
	msg.spf_domain = argc == 7 ? argv[6] : "";

	rc = spf_check(&msg, &result, err, sizeof err);
	printf("rc=%d\n", rc);
	if (rc < 0)
		printf("error=%s\n", err);
	printf("action=%s\n", action_names[result.action]);
	printf("reply=%s\n", result.reply);
	printf("spf_result=%s\n", result.spf_result);
	printf("spf_domain=%s\n", result.spf_domain);
	printf("log=%s\n", result.log);
	for (size_t i = 0; i < result.nfields; i++)
		print_escaped("field", result.fields[i]);
	for (size_t i = 0; i < result.nauthres; i++)
		print_escaped("authres", result.authres[i]);

	threads = getenv("SPF_PROBE_THREADS");
	if (threads != NULL) {
		int count = atoi(threads);

		if (count < 1 || count > MAX_THREADS)
			count = 1;
		printf("threads_agree=%d\n", threads_agree(&msg, &result, count));
	}

	filter_result_free(&result);
	dns_stop();
	return 0;
}
