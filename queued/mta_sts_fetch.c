/*
 * MTA-STS policy fetches: one detached thread per fetch runs a blocking
 * curl transfer, then writes the finished job's pointer into a pipe that
 * the event loop reads. Pointer-sized writes to a pipe are atomic, so
 * threads finishing together do not interleave.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "config.h"
#include "log.h"
#include "mta_sts.h"
#include "mta_sts_fetch.h"
#include "queued.h"
#include "util.h"

struct fetch_job {
	char *domain;
	char **addresses;
	char *cafile;		/* copied: the thread must not read the config */
	long timeout;		/* seconds */
	mta_sts_fetch_cb *cb;
	void *arg;

	/* Filled in by the thread. */
	char *body;
	size_t length;
	int too_large;
	char error[CURL_ERROR_SIZE + 128];
};

static int done_pipe[2] = { -1, -1 };
static struct event *done_ev;

static void
job_free(struct fetch_job *job)
{
	for (size_t i = 0; job->addresses[i] != NULL; i++)
		free(job->addresses[i]);
	free(job->addresses);
	free(job->domain);
	free(job->cafile);
	free(job->body);
	free(job);
}

static size_t
body_write(char *data, size_t size, size_t count, void *userdata)
{
	struct fetch_job *job = userdata;
	size_t bytes = size * count;

	if (job->length + bytes > MTA_STS_POLICY_MAX) {
		job->too_large = 1;
		return 0;	/* curl ends the transfer with CURLE_WRITE_ERROR */
	}
	job->body = xrealloc(job->body, job->length + bytes + 1);
	memcpy(job->body + job->length, data, bytes);
	job->length += bytes;
	job->body[job->length] = '\0';
	return bytes;
}

/* "mta-sts.DOMAIN:443:ADDR,ADDR" with IPv6 literals in brackets. */
static char *
resolve_entry(const struct fetch_job *job)
{
	char *entry = xasprintf("mta-sts.%s:443:", job->domain);

	for (size_t i = 0; job->addresses[i] != NULL; i++) {
		const char *address = job->addresses[i];
		int ipv6 = strchr(address, ':') != NULL;
		char *longer = xasprintf("%s%s%s%s%s", entry, i > 0 ? "," : "", ipv6 ? "[" : "",
		    address, ipv6 ? "]" : "");

		free(entry);
		entry = longer;
	}
	return entry;
}

/* Return whether the Content-Type is text/plain, with or without parameters. */
static int
is_text_plain(const char *content_type)
{
	size_t length = strlen("text/plain");

	if (content_type == NULL || strncasecmp(content_type, "text/plain", length) != 0)
		return 0;
	return content_type[length] == '\0' || content_type[length] == ';' ||
	    content_type[length] == ' ';
}

static void
fetch_run(struct fetch_job *job)
{
	CURL *curl = curl_easy_init();
	struct curl_slist *resolve = NULL;
	char *url = xasprintf("https://mta-sts.%s/.well-known/mta-sts.txt", job->domain);
	char *entry = resolve_entry(job);
	char curl_error[CURL_ERROR_SIZE] = "";
	const char *content_type = NULL;
	long status = 0;
	CURLcode rc;

	if (curl == NULL) {
		snprintf(job->error, sizeof job->error, "curl_easy_init failed");
		goto done;
	}
	resolve = curl_slist_append(NULL, entry);
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_RESOLVE, resolve);
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(curl, CURLOPT_PROXY, "");
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT, job->timeout);
	curl_easy_setopt(curl, CURLOPT_MAXFILESIZE, (long)MTA_STS_POLICY_MAX);
	curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(curl, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	if (job->cafile != NULL)
		curl_easy_setopt(curl, CURLOPT_CAINFO, job->cafile);
	curl_easy_setopt(curl, CURLOPT_USERAGENT, "Estafeta MTA-STS");
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, curl_error);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, body_write);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, job);

	rc = curl_easy_perform(curl);
	if (job->too_large || rc == CURLE_FILESIZE_EXCEEDED) {
		snprintf(job->error, sizeof job->error, "policy larger than %d bytes", MTA_STS_POLICY_MAX);
		goto done;
	}
	if (rc != CURLE_OK) {
		snprintf(job->error, sizeof job->error, "%s", curl_error[0] != '\0' ? curl_error :
		    curl_easy_strerror(rc));
		goto done;
	}
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(curl, CURLINFO_CONTENT_TYPE, &content_type);
	if (status != 200)
		snprintf(job->error, sizeof job->error, "HTTP status %ld", status);
	else if (!is_text_plain(content_type))
		snprintf(job->error, sizeof job->error, "media type %.64s, expected text/plain",
		    content_type != NULL ? content_type : "missing");
	else if (job->body == NULL)
		job->body = xstrdup("");

done:
	if (job->error[0] != '\0') {
		free(job->body);
		job->body = NULL;
		job->length = 0;
	}
	curl_slist_free_all(resolve);
	curl_easy_cleanup(curl);
	free(entry);
	free(url);
}

static void *
fetch_thread(void *arg)
{
	struct fetch_job *job = arg;

	fetch_run(job);
	if (write_all(done_pipe[1], &job, sizeof job) < 0)
		log_error("MTA-STS: cannot report a finished fetch for %s: %s", job->domain,
		    strerror(errno));
	return NULL;
}

static void
done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fetch_job *job;
	ssize_t n;

	while ((n = read(fd, &job, sizeof job)) == (ssize_t)sizeof job) {
		job->cb(job->arg, job->body, job->length, job->error[0] != '\0' ? job->error : NULL);
		job_free(job);
	}
}

int
mta_sts_fetch_init(char *err, size_t errsize)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		snprintf(err, errsize, "curl_global_init failed");
		return -1;
	}
	if (pipe(done_pipe) < 0) {
		snprintf(err, errsize, "pipe: %s", strerror(errno));
		return -1;
	}
	set_nonblocking(done_pipe[0]);
	set_cloexec(done_pipe[0]);
	set_cloexec(done_pipe[1]);
	done_ev = event_new(queued_base, done_pipe[0], EV_READ | EV_PERSIST, done_cb, NULL);
	if (done_ev == NULL || event_add(done_ev, NULL) < 0) {
		snprintf(err, errsize, "cannot watch the MTA-STS completion pipe");
		return -1;
	}
	return 0;
}

void
mta_sts_fetch_shutdown(void)
{
	/* Threads still fetching keep the pipe's write end, so it stays open
	 * until they end, within smtp_tls_mta_sts_timeout. */
	if (done_ev != NULL)
		event_free(done_ev);
	done_ev = NULL;
}

int
mta_sts_fetch_start(const char *domain, const char *const *addresses, mta_sts_fetch_cb *cb,
    void *arg)
{
	struct fetch_job *job = xcalloc(1, sizeof *job);
	const char *cafile = config_string("smtp_tls_CAfile");
	pthread_attr_t attr;
	pthread_t thread;
	size_t count = 0;
	int rc;

	while (addresses[count] != NULL)
		count++;
	job->addresses = xcalloc(count + 1, sizeof *job->addresses);
	for (size_t i = 0; i < count; i++)
		job->addresses[i] = xstrdup(addresses[i]);
	job->domain = xstrdup(domain);
	job->cafile = cafile[0] != '\0' ? xstrdup(cafile) : NULL;
	job->timeout = (long)config_time("smtp_tls_mta_sts_timeout");
	job->cb = cb;
	job->arg = arg;

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&thread, &attr, fetch_thread, job);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		log_error("MTA-STS: cannot start a fetch thread for %s: %s", domain, strerror(rc));
		job_free(job);
		return -1;
	}
	return 0;
}
