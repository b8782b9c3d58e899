/* Framing details shared by the IPC source files; not for other users. */
#ifndef ESTAFETA_IPC_FRAME_H
#define ESTAFETA_IPC_FRAME_H

#include <stddef.h>
#include <sys/types.h>

#define IPC_HEADER_SIZE 8

/*
 * Read up to LEN bytes; any descriptors that arrive are appended to
 * FDS. Returns bytes read, 0 on EOF, -1 on error.
 */
ssize_t ipc_recvmsg(int sock, char *buf, size_t len, int *fds, size_t *nfds, size_t maxfds);

#endif
