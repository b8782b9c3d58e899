/*
 * Between the root master (master.c) and its pool of mailbox workers
 * (pool.c). Both run in the master process.
 */
#ifndef ESTAFETA_DELIVERD_MASTER_H
#define ESTAFETA_DELIVERD_MASTER_H

#include <sys/types.h>

struct event_base;
struct ipc_msg;
struct session_proc;
struct delivery_result;

/* master.c */
/* In a new child: drop the master's signal handlers and every
 * descriptor except KEEP_A and KEEP_B (-1 for none). */
void master_child_setup(int keep_a, int keep_b);
/* Fork a one-shot worker for MSG (which it takes), or queue it for a
 * free process slot. */
void master_dispatch_oneshot(struct session_proc *session, struct ipc_msg *msg);
/* Relay RESULT for the session's request ID; nothing if SESSION is NULL. */
void master_send_result(struct session_proc *session, const struct delivery_result *result,
    long id);
/* Process slots (deliverd_max_processes) shared by both kinds of worker. */
long long master_free_slots(void);
/* Whether requests wait for a process slot. */
int master_requests_waiting(void);
void master_take_slot(void);
void master_release_slot(void);

/* pool.c */
void pool_init(struct event_base *base);
void pool_stop(void);
/* Send a mailbox delivery to a mailbox worker. 1 if the pool took MSG,
 * 0 if the caller keeps it (not a mailbox delivery, or no worker). */
int pool_dispatch(struct session_proc *session, struct ipc_msg *msg);
/* Stop the longest idle worker to free a slot. 1 if one is stopping. */
int pool_stop_idle_worker(void);
/* SIGCHLD: 1 if PID was a mailbox worker. */
int pool_reap(pid_t pid, int status);
void pool_forget_session(struct session_proc *session);

#endif
