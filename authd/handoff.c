/*
 * Login handoff, Dovecot's scheme for an unprivileged login process to
 * prove to a privileged master process that a user authenticated. After
 * "OK\tID\tuser=NAME" on an auth-client connection, authd stores the
 * client's pid (SO_PEERCRED), the request ID, the COOKIE it sent that
 * connection and the user. A master process then sends
 * "REQUEST\tMID\tPID\tID\tCOOKIE" on userdb_socket, and the login is
 * handed over once if all three match within auth_handoff_lifetime seconds.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "authd.h"
#include "config.h"
#include "util.h"

#define HANDOFF_MAX		4096	/* logins kept; the oldest goes first */

struct handoff {
	struct handoff *next;
	time_t expires;
	pid_t client_pid;
	unsigned long auth_id;
	char cookie[HANDOFF_COOKIE_LEN + 1];
	char *user;
};

/* Oldest first, so expiry and the HANDOFF_MAX limit remove from the head. */
static struct handoff *head, **tail = &head;
static size_t count;

static time_t
monotonic_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

static void
handoff_free(struct handoff *handoff)
{
	free(handoff->user);
	explicit_bzero(handoff, sizeof *handoff);
	free(handoff);
}

static void
remove_head(void)
{
	struct handoff *old = head;

	head = old->next;
	if (head == NULL)
		tail = &head;
	count--;
	handoff_free(old);
}

static void
expire(time_t now)
{
	while (head != NULL && head->expires <= now)
		remove_head();
}

void
handoff_remember(pid_t client_pid, unsigned long auth_id, const char *cookie,
    const char *user)
{
	struct handoff *handoff;
	time_t now = monotonic_seconds();

	expire(now);
	if (count >= HANDOFF_MAX)
		remove_head();

	handoff = xcalloc(1, sizeof *handoff);
	handoff->expires = now + (time_t)config_time("auth_handoff_lifetime");
	handoff->client_pid = client_pid;
	handoff->auth_id = auth_id;
	strlcpy_x(handoff->cookie, cookie, sizeof handoff->cookie);
	handoff->user = xstrdup(user);
	*tail = handoff;
	tail = &handoff->next;
	count++;
}

char *
handoff_claim(pid_t client_pid, unsigned long auth_id, const char *cookie)
{
	struct handoff **link, *handoff;
	char *user;

	expire(monotonic_seconds());
	if (strlen(cookie) != HANDOFF_COOKIE_LEN)
		return NULL;

	for (link = &head; *link != NULL; link = &(*link)->next) {
		handoff = *link;
		/* A wrong cookie leaves the login in place for its real master. */
		if (handoff->client_pid != client_pid || handoff->auth_id != auth_id ||
		    CRYPTO_memcmp(handoff->cookie, cookie, HANDOFF_COOKIE_LEN) != 0)
			continue;

		*link = handoff->next;
		if (*link == NULL)
			tail = link;
		count--;
		user = handoff->user;
		handoff->user = NULL;
		handoff_free(handoff);
		return user;
	}
	return NULL;
}
