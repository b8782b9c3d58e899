/*
 * Test helper: keep write access to a file without any open file of it.
 * The file is descriptor 3. The helper maps its first page shared and
 * writable, registers that memory as an io_uring fixed buffer, which
 * pins the pages, then unmaps it and closes descriptor 3. It prints
 * READY; after a line on standard input it reads argv[1] from a pipe
 * into the pinned pages with IORING_OP_READ_FIXED and prints WROTE N
 * (or FAILED). The kernel pins pages of a shared mapping only on shmem
 * file systems such as tmpfs.
 */
#define _GNU_SOURCE
#include <linux/io_uring.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#define PAGE 4096

struct ring {
	int fd;
	struct io_uring_params params;
	char *sq, *cq;
	struct io_uring_sqe *sqes;
};

static int
ring_map(struct ring *r)
{
	size_t sq_size = r->params.sq_off.array + r->params.sq_entries * sizeof(unsigned);
	size_t cq_size = r->params.cq_off.cqes +
	    r->params.cq_entries * sizeof(struct io_uring_cqe);

	if (r->params.features & IORING_FEAT_SINGLE_MMAP && cq_size > sq_size)
		sq_size = cq_size;
	r->sq = mmap(NULL, sq_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd,
	    IORING_OFF_SQ_RING);
	if (r->sq == MAP_FAILED)
		return -1;
	r->cq = r->sq;
	if (!(r->params.features & IORING_FEAT_SINGLE_MMAP)) {
		r->cq = mmap(NULL, cq_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
		    r->fd, IORING_OFF_CQ_RING);
		if (r->cq == MAP_FAILED)
			return -1;
	}
	r->sqes = mmap(NULL, r->params.sq_entries * sizeof(struct io_uring_sqe),
	    PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQES);
	return r->sqes == MAP_FAILED ? -1 : 0;
}

/* Read LEN bytes from PIPE_FD into the registered buffer at ADDR. */
static int
read_fixed(struct ring *r, int pipe_fd, char *addr, size_t len)
{
	unsigned *tail = (unsigned *)(r->sq + r->params.sq_off.tail);
	unsigned *mask = (unsigned *)(r->sq + r->params.sq_off.ring_mask);
	unsigned *array = (unsigned *)(r->sq + r->params.sq_off.array);
	unsigned *cq_head = (unsigned *)(r->cq + r->params.cq_off.head);
	struct io_uring_cqe *cqes = (struct io_uring_cqe *)(r->cq + r->params.cq_off.cqes);
	unsigned index = *tail & *mask;
	struct io_uring_sqe *sqe = &r->sqes[index];

	memset(sqe, 0, sizeof *sqe);
	sqe->opcode = IORING_OP_READ_FIXED;
	sqe->fd = pipe_fd;
	sqe->addr = (unsigned long)addr;
	sqe->len = (unsigned)len;
	sqe->off = (unsigned long long)-1;
	sqe->buf_index = 0;
	array[index] = index;
	__atomic_store_n(tail, *tail + 1, __ATOMIC_RELEASE);
	if (syscall(__NR_io_uring_enter, r->fd, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0) < 0)
		return -1;
	return cqes[*cq_head & *(unsigned *)(r->cq + r->params.cq_off.ring_mask)].res;
}

int
main(int argc, char **argv)
{
	struct ring r = { 0 };
	struct iovec buffer;
	char line[16], *page;
	int pipe_fds[2], written;

	if (argc != 2 || strlen(argv[1]) > PAGE)
		return 2;
	r.fd = (int)syscall(__NR_io_uring_setup, 4, &r.params);
	page = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, 3, 0);
	if (r.fd < 0 || page == MAP_FAILED) {
		printf("UNSUPPORTED\n");
		return 0;
	}
	buffer.iov_base = page;
	buffer.iov_len = PAGE;
	if (syscall(__NR_io_uring_register, r.fd, IORING_REGISTER_BUFFERS, &buffer, 1) < 0) {
		printf("UNSUPPORTED\n");
		return 0;
	}
	munmap(page, PAGE);
	close(3);
	printf("READY\n");
	fflush(stdout);

	if (fgets(line, sizeof line, stdin) == NULL || pipe(pipe_fds) < 0 || ring_map(&r) < 0)
		return 3;
	if (write(pipe_fds[1], argv[1], strlen(argv[1])) < 0)
		return 3;
	close(pipe_fds[1]);
	written = read_fixed(&r, pipe_fds[0], page, strlen(argv[1]));
	if (written < 0)
		printf("FAILED %d\n", written);
	else
		printf("WROTE %d\n", written);
	return 0;
}
