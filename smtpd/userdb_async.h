/* Asynchronous userdb lookups for smtpd (see userdb_async.c). */
#ifndef ESTAFETA_SMTPD_USERDB_ASYNC_H
#define ESTAFETA_SMTPD_USERDB_ASYNC_H

#include <stddef.h>

struct event_base;
struct userdb_async;
struct userdb_request;

/* RESULT: 1 found, 0 not found, -1 temporary failure with ERROR set. */
typedef void (*userdb_async_cb)(void *arg, int result, const char *error);

struct userdb_async *userdb_async_new(struct event_base *base, const char *socket_path,
    long long timeout);
void userdb_async_free(struct userdb_async *client);

/*
 * Start a lookup of USER for service "smtp". Returns the request, whose
 * callback runs once from the event loop (within TIMEOUT seconds). If
 * the result is known at once, returns NULL with *RESULT set: 1 or 0
 * for a cached result, 0 for a name that cannot exist, -1 when authd
 * cannot be reached (ERR set).
 */
struct userdb_request *userdb_async_lookup(struct userdb_async *client, const char *user,
    userdb_async_cb cb, void *arg, int *result, char *err, size_t errsize);

/* Forget REQUEST: its callback will not run. */
void userdb_async_cancel(struct userdb_request *request);

#endif
