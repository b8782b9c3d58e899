/*
 * Outbound delivery: remote recipients go over SMTP to the hosts that
 * routing finds, one job per message and recipient domain, with limits
 * on parallel connections per destination and in total.
 */
#ifndef ESTAFETA_QUEUED_OUTBOUND_H
#define ESTAFETA_QUEUED_OUTBOUND_H

struct qmsg;

/* Read relayhost_password_file. Call it before privileges are dropped,
 * since the file is usually readable by root only. */
void outbound_load_secrets(void);

/* Start outbound delivery if outbound_delivery and dns_resolvers allow
 * it; otherwise log why it is off. */
void outbound_init(void);

/* Return the reason why remote recipients wait while outbound delivery is
 * off, or NULL when it is on. */
const char *outbound_disabled_reason(void);

/* Deliver the recipients of MSG marked in msg->outbound_rcpt. Each job
 * adds one to msg->parts and calls scheduler_attempt_done when over. */
void outbound_start(struct qmsg *msg);

/* Read transport_maps and relayhost_password_file again (on SIGHUP).
 * A file that fails to load is logged, and its earlier contents stay
 * in use. */
void outbound_reload(void);

void outbound_stop(void);

#endif
