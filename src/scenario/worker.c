/* A client process of a scenario: runs under the preload library
 * (LD_PRELOAD) and executes one step at a time from its control socket
 * (fd 0, a SOCK_SEQPACKET socket whose other end the scenario runner
 * holds), answering each with one reply. Every call is the C library's, so
 * the preload library sees exactly what a real client's calls would show
 * it: mmap, munmap and close of the fds it receives over SCM_RIGHTS, and
 * loads and stores through its mappings (a SIGBUS is caught and reported
 * with its si_code and si_addr). It ends at end of file on its control
 * socket, or on an `exit` command. */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

/* Must match src/scenario/client.rs. */
enum op { OP_RECV = 1, OP_MMAP, OP_MUNMAP, OP_LOAD, OP_STORE, OP_CLOSE, OP_EXIT };
enum status { ST_OK = 0, ST_ERRNO, ST_SIGNAL };

struct cmd {
	uint32_t op, slot, width, flags;
	uint64_t addr, len, off, val;
};

struct reply {
	int32_t status, err, signo, code;
	uint64_t val, addr;
};

#define SLOTS 64
#define MAP_FLAG_WRITE 1u
#define MAP_FLAG_SHARED 2u

static int fds[SLOTS];
static sigjmp_buf jump;
static volatile sig_atomic_t seen_signo, seen_code;
static void *volatile seen_addr;

static void on_fault(int signo, siginfo_t *si, void *uc)
{
	(void)uc;
	seen_signo = signo;
	seen_code = si->si_code;
	seen_addr = si->si_addr;
	siglongjmp(jump, 1);
}

static void die(const char *what)
{
	fprintf(stderr, "scenario client %d: %s: %s\n", (int)getpid(), what, strerror(errno));
	_exit(2);
}

/* One command, with the fd attached to it (or -1). 0 at end of file. */
static ssize_t recv_cmd(struct cmd *c, int *fd)
{
	struct iovec iov = { .iov_base = c, .iov_len = sizeof(*c) };
	union {
		char b[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b, .msg_controllen = sizeof(u.b) };
	ssize_t n;
	do
		n = recvmsg(0, &m, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	*fd = -1;
	struct cmsghdr *h = CMSG_FIRSTHDR(&m);
	if (n > 0 && h && h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_RIGHTS)
		memcpy(fd, CMSG_DATA(h), sizeof(int));
	return n;
}

/* A load or store of `width` bits at `p`, with a fault reported. */
static void touch(const struct cmd *c, struct reply *r)
{
	char *p = (char *)(uintptr_t)c->addr;
	if (sigsetjmp(jump, 1) == 0) {
		uint64_t v = c->val;
		if (c->op == OP_LOAD) {
			switch (c->width) {
			case 8: v = *(volatile uint8_t *)p; break;
			case 16: v = *(volatile uint16_t *)p; break;
			case 32: v = *(volatile uint32_t *)p; break;
			default: v = *(volatile uint64_t *)p; break;
			}
			r->val = v;
		} else {
			switch (c->width) {
			case 8: *(volatile uint8_t *)p = (uint8_t)v; break;
			case 16: *(volatile uint16_t *)p = (uint16_t)v; break;
			case 32: *(volatile uint32_t *)p = (uint32_t)v; break;
			default: *(volatile uint64_t *)p = v; break;
			}
		}
	} else {
		r->status = ST_SIGNAL;
		r->signo = seen_signo;
		r->code = seen_code;
		r->addr = (uint64_t)(uintptr_t)seen_addr;
	}
}

int main(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_fault;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGBUS, &sa, NULL) || sigaction(SIGSEGV, &sa, NULL))
		die("sigaction");
	for (int i = 0; i < SLOTS; i++)
		fds[i] = -1;
	for (;;) {
		struct cmd c;
		int fd;
		ssize_t n = recv_cmd(&c, &fd);
		if (n == 0)
			_exit(0);
		if (n != (ssize_t)sizeof(c))
			die("short command");
		struct reply r = { 0 };
		if (c.slot >= SLOTS) {
			r.status = ST_ERRNO;
			r.err = EBADF;
		} else {
			switch (c.op) {
			case OP_RECV:
				if (fd < 0)
					die("no fd with the receive");
				fds[c.slot] = fd;
				r.val = (uint64_t)fd;
				break;
			case OP_MMAP: {
				int prot = PROT_READ | ((c.flags & MAP_FLAG_WRITE) ? PROT_WRITE : 0);
				int share = (c.flags & MAP_FLAG_SHARED) ? MAP_SHARED : MAP_PRIVATE;
				void *m = mmap((void *)(uintptr_t)c.addr, c.len, prot, share, fds[c.slot], (off_t)c.off);
				if (m == MAP_FAILED) {
					r.status = ST_ERRNO;
					r.err = errno;
				} else {
					r.val = (uint64_t)(uintptr_t)m;
				}
				break;
			}
			case OP_MUNMAP:
				if (munmap((void *)(uintptr_t)c.addr, c.len)) {
					r.status = ST_ERRNO;
					r.err = errno;
				}
				break;
			case OP_LOAD:
			case OP_STORE:
				touch(&c, &r);
				break;
			case OP_CLOSE:
				if (close(fds[c.slot])) {
					r.status = ST_ERRNO;
					r.err = errno;
				}
				fds[c.slot] = -1;
				break;
			case OP_EXIT:
				_exit((int)c.val);
			default:
				r.status = ST_ERRNO;
				r.err = EINVAL;
			}
		}
		ssize_t s;
		do
			s = send(0, &r, sizeof(r), MSG_NOSIGNAL);
		while (s < 0 && errno == EINTR);
		if (s != (ssize_t)sizeof(r))
			die("reply");
	}
}
