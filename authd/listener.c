/* Listening sockets on libevent, shared by the userdb and auth sockets. */
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "authd.h"
#include "log.h"
#include "util.h"

struct listener {
	struct listener *next;
	struct evconnlistener *evlistener;
	struct event *resume_timer;
	const char *what;
};

static struct listener *listeners;

static void
resume_accepting(evutil_socket_t fd, short what, void *arg)
{
	struct listener *listener = arg;

	evconnlistener_enable(listener->evlistener);
}

/*
 * EMFILE and the like: the listening socket stays readable, so pause
 * accepting for a second instead of spinning, then try again.
 */
static void
accept_error(struct evconnlistener *evlistener, void *arg)
{
	struct listener *listener = arg;
	struct timeval pause = { 1, 0 };

	log_error("%s: accept failed: %s; pausing new connections for 1 second", listener->what,
	    strerror(EVUTIL_SOCKET_ERROR()));
	evconnlistener_disable(evlistener);
	evtimer_add(listener->resume_timer, &pause);
}

void
listener_start(struct event_base *base, int listen_fd, listener_accept_fn accept,
    const char *what)
{
	struct listener *listener = xcalloc(1, sizeof *listener);

	listener->what = what;
	/* listener_accept_fn is evconnlistener_cb: evutil_socket_t is int on Unix. */
	listener->evlistener = evconnlistener_new(base, accept, listener,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, listen_fd);
	if (listener->evlistener == NULL)
		fatalx("%s: cannot listen on its socket", what);
	listener->resume_timer = evtimer_new(base, resume_accepting, listener);
	evconnlistener_set_error_cb(listener->evlistener, accept_error);
	listener->next = listeners;
	listeners = listener;
}

void
listener_free_all(void)
{
	while (listeners != NULL) {
		struct listener *listener = listeners;

		listeners = listener->next;
		evconnlistener_free(listener->evlistener);
		event_free(listener->resume_timer);
		free(listener);
	}
}
