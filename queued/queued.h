/* State shared by the parts of queued: settings read at start-up, the
 * spool and the event loop. */
#ifndef ESTAFETA_QUEUED_H
#define ESTAFETA_QUEUED_H

#include <sys/types.h>

#include "spool.h"

struct event_base;

struct queued_settings {
	const char *myhostname;
	const char *lmtp_socket;
	int lmtp_concurrency;
	long long lmtp_timeout;		/* seconds */
	long long minimal_backoff_time;	/* seconds */
	long long maximal_backoff_time;	/* seconds */
	long long queue_run_delay;	/* seconds */
	long long maximal_queue_lifetime;	/* seconds */
	long long bounce_queue_lifetime;	/* seconds */
	long long delay_warning_time;	/* seconds, 0 for no warnings */
	uid_t queue_uid;		/* queue_user, or (uid_t)-1 if it does not exist */
	uid_t smtpd_uid;		/* uid smtpd runs as: smtpd_user's when queued
					 * starts as root (or (uid_t)-1 if it does not
					 * exist), else queued's own */
};

extern struct queued_settings queued_settings;
extern struct spool queued_spool;
extern struct event_base *queued_base;

#endif
