/* One request from smtpd: decoding it, running the chain, the reply. */
#ifndef ESTAFETA_FILTERD_REQUEST_H
#define ESTAFETA_FILTERD_REQUEST_H

struct ipc_msg;

/* Run the chain for REQUEST (MAIL or MESSAGE) and return the RESULT or
 * ERROR message to send back. REQUEST keeps its descriptor. */
struct ipc_msg *request_handle(struct ipc_msg *request);

#endif
