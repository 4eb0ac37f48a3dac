/* Helpers shared by the focused preload test programs (and the bench's
 * exec probe): open the demo's device through the legacy group/container
 * API, map regions, read and write config space (COMMAND.MEMORY, the
 * capability list), touch memory with recovery, export and revoke
 * buffers, pass messages with an fd over a UNIX socket, and stop and
 * continue client processes. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/vfio.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHECK(cond, ...)                                                         \
	do {                                                                     \
		if (!(cond)) {                                                   \
			int e_ = errno;                                          \
			fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);     \
			fprintf(stderr, __VA_ARGS__);                            \
			fprintf(stderr, " (errno %d: %s)\n", e_, strerror(e_));  \
			exit(1);                                                 \
		}                                                                \
	} while (0)

#define DEMO_BDF "0000:00:03.0"
#define DEMO_GROUP 0
#define PCI_COMMAND 0x4
#define PCI_COMMAND_MEMORY 0x2
#define PCI_CAPABILITY_LIST 0x34

/* VFIO_DEVICE_FEATURE_DMA_BUF and _DMA_BUF_REVOKE as the series defines
 * them (the distribution's headers predate them). */
#define FEATURE_DMA_BUF 11
#define FEATURE_DMA_BUF_REVOKE 13
struct dma_buf_export {
	uint32_t argsz, flags;
	uint32_t region_index, open_flags, dma_flags, nr_ranges;
	struct {
		uint64_t offset, length;
	} ranges[1];
};

struct vdev {
	int container, group, device;
};

static inline struct vdev open_device(void)
{
	struct vdev v;
	v.container = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
	CHECK(v.container >= 0, "open /dev/vfio/vfio");
	CHECK(ioctl(v.container, VFIO_GET_API_VERSION) == VFIO_API_VERSION, "VFIO_GET_API_VERSION");
	CHECK(ioctl(v.container, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) == 1, "VFIO_CHECK_EXTENSION");
	v.group = open("/dev/vfio/0", O_RDWR | O_CLOEXEC);
	CHECK(v.group >= 0, "open /dev/vfio/0");
	struct vfio_group_status st = { .argsz = sizeof(st) };
	CHECK(ioctl(v.group, VFIO_GROUP_GET_STATUS, &st) == 0, "VFIO_GROUP_GET_STATUS");
	CHECK(st.flags & VFIO_GROUP_FLAGS_VIABLE, "group viable");
	CHECK(ioctl(v.group, VFIO_GROUP_SET_CONTAINER, &v.container) == 0, "VFIO_GROUP_SET_CONTAINER");
	CHECK(ioctl(v.container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) == 0, "VFIO_SET_IOMMU");
	v.device = ioctl(v.group, VFIO_GROUP_GET_DEVICE_FD, DEMO_BDF);
	CHECK(v.device >= 0, "VFIO_GROUP_GET_DEVICE_FD");
	return v;
}

static inline void close_device(struct vdev *v)
{
	CHECK(close(v->device) == 0, "close device");
	CHECK(close(v->group) == 0, "close group");
	CHECK(close(v->container) == 0, "close container");
}

static inline struct vfio_region_info region(int dev, unsigned index)
{
	struct vfio_region_info r = { .argsz = sizeof(r), .index = index };
	CHECK(ioctl(dev, VFIO_DEVICE_GET_REGION_INFO, &r) == 0, "VFIO_DEVICE_GET_REGION_INFO %u", index);
	return r;
}

static inline void *map_region(int dev, unsigned index, off_t off, size_t len, int prot)
{
	struct vfio_region_info r = region(dev, index);
	void *p = mmap(NULL, len, prot, MAP_SHARED, dev, r.offset + off);
	CHECK(p != MAP_FAILED, "mmap region %u", index);
	return p;
}

static inline uint16_t config_read16(int dev, uint64_t reg)
{
	uint16_t v;
	CHECK(pread(dev, &v, 2, region(dev, VFIO_PCI_CONFIG_REGION_INDEX).offset + reg) == 2, "config read %#lx",
	      (unsigned long)reg);
	return v;
}

static inline void config_write16(int dev, uint64_t reg, uint16_t v)
{
	CHECK(pwrite(dev, &v, 2, region(dev, VFIO_PCI_CONFIG_REGION_INDEX).offset + reg) == 2, "config write %#lx",
	      (unsigned long)reg);
}

/* The config offset of the capability with ID `id`; 0 when there is none. */
static inline unsigned find_cap(int dev, uint8_t id)
{
	unsigned at = config_read16(dev, PCI_CAPABILITY_LIST) & 0xfc;
	for (int n = 0; at && n < 48; n++) {
		uint16_t head = config_read16(dev, at);
		if ((head & 0xff) == id)
			return at;
		at = (head >> 8) & 0xfc;
	}
	return 0;
}

static inline void memory_enable(int dev, int on)
{
	uint16_t cmd = config_read16(dev, PCI_COMMAND);
	cmd = on ? (cmd | PCI_COMMAND_MEMORY) : (cmd & ~PCI_COMMAND_MEMORY);
	config_write16(dev, PCI_COMMAND, cmd);
}

/* What the last recovered signal said. */
static sigjmp_buf jump;
static volatile sig_atomic_t seen_signo, seen_code, seen_count;
static void *volatile seen_addr;

static inline void record(int signo, siginfo_t *si)
{
	seen_signo = signo;
	seen_code = si ? si->si_code : -1;
	seen_addr = si ? si->si_addr : NULL;
	seen_count++;
}

/* A load that a handler may leave with siglongjmp: 0 when it completed. */
static inline int try_load(volatile uint64_t *p, uint64_t *out)
{
	if (sigsetjmp(jump, 1))
		return -1;
	*out = *p;
	return 0;
}

/* A SIGBUS handler that records the signal and leaves the access with
 * siglongjmp (the access must be inside sigsetjmp(jump, 1)). */
static inline void recover_bus(int signo, siginfo_t *si, void *uc)
{
	(void)uc;
	record(signo, si);
	siglongjmp(jump, 1);
}

static inline void install(int signo, void (*h)(int, siginfo_t *, void *), int flags)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = h;
	sa.sa_flags = SA_SIGINFO | flags;
	sigemptyset(&sa.sa_mask);
	CHECK(sigaction(signo, &sa, NULL) == 0, "sigaction");
}

/* Exports [offset, offset + length) of BAR `index` as a buffer fd. */
static inline int export_buffer(int dev, unsigned index, uint64_t offset, uint64_t length)
{
	struct dma_buf_export e = {
		.argsz = sizeof(e),
		.flags = VFIO_DEVICE_FEATURE_GET | FEATURE_DMA_BUF,
		.region_index = index,
		.open_flags = O_RDWR | O_CLOEXEC,
		.nr_ranges = 1,
		.ranges = { { offset, length } },
	};
	int fd = ioctl(dev, VFIO_DEVICE_FEATURE, &e);
	CHECK(fd >= 0, "DMA_BUF export of region %u", index);
	return fd;
}

/* Revokes buffer `buf` of device `dev` for good. */
static inline void revoke_buffer(int dev, int buf)
{
	struct {
		struct vfio_device_feature f;
		int32_t fd;
	} r = { { .argsz = sizeof(r), .flags = VFIO_DEVICE_FEATURE_SET | FEATURE_DMA_BUF_REVOKE }, buf };
	CHECK(ioctl(dev, VFIO_DEVICE_FEATURE, &r) == 0, "DMA_BUF_REVOKE");
}

/* Sends `len` bytes on `sock`, with `fd` attached (SCM_RIGHTS) when >= 0. */
static inline void send_msg(int sock, const void *buf, size_t len, int fd)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	union {
		char b[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (fd >= 0) {
		memset(&u, 0, sizeof(u));
		m.msg_control = u.b;
		m.msg_controllen = sizeof(u.b);
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	CHECK(sendmsg(sock, &m, 0) == (ssize_t)len, "sendmsg");
}

/* Receives one message (recvmsg `flags` besides MSG_CMSG_CLOEXEC); the
 * attached fd (or -1) in *fd. The length; 0 at end of file; -1 when
 * MSG_DONTWAIT finds nothing waiting. */
static inline ssize_t recv_msg(int sock, void *buf, size_t len, int *fd, int flags)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	union {
		char b[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b, .msg_controllen = sizeof(u.b) };
	*fd = -1;
	ssize_t n = recvmsg(sock, &m, MSG_CMSG_CLOEXEC | flags);
	if (n < 0 && errno == EAGAIN && (flags & MSG_DONTWAIT))
		return -1;
	CHECK(n >= 0, "recvmsg");
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
		memcpy(fd, CMSG_DATA(c), sizeof(int));
	return n;
}

/* A forked client process and the primary's end of its socket. */
struct peer {
	pid_t pid;
	int sock;
};

/* Forks n clients, each with its own SOCK_SEQPACKET socketpair, and runs
 * serve(index, its end) in each (serve must not return); a client keeps
 * no other client's socket. */
static inline void fork_peers(struct peer *peers, int n, void (*serve)(int index, int sock))
{
	for (int i = 0; i < n; i++) {
		int sv[2];
		CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
		pid_t pid = fork();
		CHECK(pid >= 0, "fork");
		if (pid == 0) {
			close(sv[0]);
			for (int j = 0; j < i; j++)
				close(peers[j].sock);
			serve(i, sv[1]);
			_exit(4);
		}
		close(sv[1]);
		peers[i] = (struct peer){ pid, sv[0] };
	}
}

/* A client's next command of exactly `len` bytes; the fd attached (or -1)
 * is returned. The client exits (status 3) when the primary is gone. */
static inline int recv_cmd(int sock, void *cmd, size_t len)
{
	int fd;
	ssize_t n = recv_msg(sock, cmd, len, &fd, 0);
	if (n == 0)
		_exit(3);
	CHECK(n == (ssize_t)len, "command of %zd bytes", n);
	return fd;
}

/* Waits for a client told to exit: it must exit with status 0. */
static inline void reap_peer(const struct peer *p)
{
	int status;
	CHECK(waitpid(p->pid, &status, 0) == p->pid, "waitpid");
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "client %d status %#x", p->pid, status);
	close(p->sock);
}

/* Stops a client with SIGSTOP and waits until it is stopped. */
static inline void stop_peer(const struct peer *p)
{
	int status;
	CHECK(kill(p->pid, SIGSTOP) == 0, "SIGSTOP");
	CHECK(waitpid(p->pid, &status, WUNTRACED) == p->pid && WIFSTOPPED(status), "client stopped %#x", status);
}

/* Continues a stopped client and waits until it runs again. */
static inline void cont_peer(const struct peer *p)
{
	int status;
	CHECK(kill(p->pid, SIGCONT) == 0, "SIGCONT");
	CHECK(waitpid(p->pid, &status, WCONTINUED) == p->pid && WIFCONTINUED(status), "client continued %#x", status);
}

/* CLOCK_MONOTONIC in microseconds, for times a check prints. */
static inline double now_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

/* A program of named checks: runs the one each argument names, in order. */
struct check {
	const char *name;
	void (*run)(void);
};

static inline int run_checks(int argc, char **argv, const struct check *checks, size_t n)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	for (int i = 1; i < argc; i++) {
		size_t k = 0;
		while (k < n && strcmp(argv[i], checks[k].name))
			k++;
		CHECK(k < n, "unknown check %s", argv[i]);
		checks[k].run();
	}
	return 0;
}
