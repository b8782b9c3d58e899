#ifndef ESTAFETA_FILTERD_READER_H
#define ESTAFETA_FILTERD_READER_H

#include <stddef.h>
#include <stdint.h>

/* The frame header of lib/ipc.h: body length and flags. */
#define READER_HEADER_SIZE 8

struct ipc_msg;

/*
 * A request being read without blocking: the frame header, then the
 * body, and the descriptor sent with the frame's first byte.
 */
struct reader {
	char header[READER_HEADER_SIZE];
	size_t got;		/* bytes of the header, then of the body */
	uint32_t len, flags;
	char *body;		/* NULL until the header is complete */
	int fds[4];
	size_t nfds;
};

void reader_init(struct reader *reader);
/* Discard a partial request and close its descriptors. */
void reader_reset(struct reader *reader);
/* Bytes of a request read so far; 0 between requests. */
int reader_started(const struct reader *reader);

/*
 * Read what SOCK has, never past the end of one frame. Returns 1 with
 * *MSG set when the request is complete (the reader is then empty
 * again), 0 when more must come, -1 on EOF (errno 0), an error or a
 * malformed frame (errno set).
 */
int reader_read(struct reader *reader, int sock, struct ipc_msg **msg);

#endif
