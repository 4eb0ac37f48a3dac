/* Clients that do not cooperate. A primary opens edu-plus (RAM BAR1 in
 * 64 KiB frames, devices file `frame-size = "64K"`), exports a
 * frame-aligned buffer, and passes it over SCM_RIGHTS to clients it forked
 * before opening anything. Checks (one per argument, "ok <check>" each):
 *
 *   stopped      a client that maps the buffer is SIGSTOPped; the primary's
 *                permanent revoke returns (the time is printed, only its
 *                return is asserted), the primary's device-fd mapping of the
 *                same pages keeps its data, and after SIGCONT the client's
 *                touch of every page is SIGBUS BUS_ADRERR.
 *   stopped-memory  the same with COMMAND.MEMORY cleared instead; setting
 *                it again gives the client its pages and the data back.
 *   hostile      a client tries to map past its buffer, truncate, grow,
 *                punch, seal, madvise its mapping away and reopen what it
 *                holds (after dropping every capability, as an unprivileged
 *                client has none); each is refused with the kernel's errno,
 *                and the primary's data and another client's view stay. */
#include "util.h"

#include <dirent.h>
#include <linux/capability.h>
#include <sys/syscall.h>

/* Two 64 KiB frames at 1 MiB of BAR1. */
#define RAM_OFF 0x100000
#define RAM_LEN 0x20000
#define PAGES (RAM_LEN / 0x1000)

enum op { MAP, TOUCH_ALL, HOSTILE, EXIT };

struct cmd {
	int op;
	int expect_errno; /* HOSTILE: the primary's errno for mapping past the buffer */
};

struct reply {
	int ok, faulted, bad_code;
	uint64_t sum;
	char why[200];
};

static int buf_fd = -1;
static volatile uint64_t *map;

/* Loads the first word of every page: the count that faulted (each must be
 * SIGBUS BUS_ADRERR at that very page) and the sum of those that did not. */
static void touch_all(struct reply *r)
{
	for (unsigned k = 0; k < PAGES; k++) {
		volatile uint64_t *p = map + k * 0x1000 / 8;
		uint64_t v;
		if (try_load(p, &v) == 0) {
			r->sum += v;
			continue;
		}
		r->faulted++;
		if (seen_signo != SIGBUS || seen_code != BUS_ADRERR || seen_addr != (void *)p)
			r->bad_code++;
	}
}

#define REFUSED(r, call, want)                                                                    \
	do {                                                                                      \
		errno = 0;                                                                        \
		long rc_ = (long)(call);                                                          \
		if (rc_ != -1 || errno != (want)) {                                               \
			snprintf((r)->why, sizeof((r)->why), "%s: %ld, errno %d, want %d", #call, \
				 rc_, errno, (want));                                             \
			return;                                                                   \
		}                                                                                 \
	} while (0)

/* Gives up every capability: an unprivileged client holds none (no
 * CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE for /proc/self/map_files). */
static int drop_capabilities(void)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct d[2];
	memset(d, 0, sizeof(d));
	return syscall(SYS_capset, &h, d);
}

/* Opens read-write every entry of `dir` that our library or the server
 * could have put there (memfds, sockets, anonymous inodes; for map_files,
 * every entry): the count opened, and in `what` the first. Files the
 * client was started with (its standard streams, /dev/null) are its own. */
static int open_all(const char *dir, char *what, size_t n)
{
	DIR *d = opendir(dir);
	if (!d)
		return -1;
	int opened = 0, self = dirfd(d);
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.' || (!strcmp(dir, "/proc/self/fd") && atoi(e->d_name) == self))
			continue;
		char path[512], link[256] = "";
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		ssize_t l = readlink(path, link, sizeof(link) - 1);
		link[l > 0 ? l : 0] = 0;
		int ours = !strncmp(link, "/memfd:", 7) || !strncmp(link, "socket:", 7) || !strncmp(link, "anon_inode:", 11);
		if (!strcmp(dir, "/proc/self/fd") && !ours)
			continue;
		int fd = open(path, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			continue;
		close(fd);
		opened++;
		if (!what[0])
			snprintf(what, n, "%.100s -> %.100s", path, link);
	}
	closedir(d);
	return opened;
}

static void hostile(struct reply *r, int past_errno)
{
	if (drop_capabilities()) {
		snprintf(r->why, sizeof(r->why), "capset: %s", strerror(errno));
		return;
	}
	/* Past the buffer: the errno the primary got for the same mapping. */
	REFUSED(r, mmap(NULL, RAM_LEN + 0x1000, PROT_READ | PROT_WRITE, MAP_SHARED, buf_fd, 0) == MAP_FAILED ? -1 : 0,
		past_errno);
	REFUSED(r, mmap(NULL, 0x1000, PROT_READ, MAP_SHARED, buf_fd, RAM_LEN) == MAP_FAILED ? -1 : 0, past_errno);
	/* A dma-buf file is no regular file: truncate and grow are EINVAL,
	 * fallocate ENODEV, seals EINVAL, and its inode cannot be opened. */
	REFUSED(r, ftruncate(buf_fd, 0), EINVAL);
	REFUSED(r, ftruncate(buf_fd, 1 << 30), EINVAL);
	REFUSED(r, fallocate(buf_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 0x1000), ENODEV);
	REFUSED(r, fallocate(buf_fd, 0, 0, 1 << 30), ENODEV);
	REFUSED(r, fcntl(buf_fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE), EINVAL);
	REFUSED(r, fcntl(buf_fd, F_GET_SEALS), EINVAL);
	char self_fd[64];
	snprintf(self_fd, sizeof(self_fd), "/proc/self/fd/%d", buf_fd);
	REFUSED(r, open(self_fd, O_RDWR), ENXIO);
	REFUSED(r, open(self_fd, O_RDONLY), ENXIO);
	/* A VM_PFNMAP mapping cannot be discarded, punched or paged out. */
	REFUSED(r, madvise((void *)map, RAM_LEN, MADV_REMOVE), ENODEV);
	REFUSED(r, madvise((void *)map, RAM_LEN, MADV_DONTNEED), EINVAL);
	REFUSED(r, madvise((void *)map, RAM_LEN, MADV_FREE), EINVAL);
	REFUSED(r, madvise((void *)map, RAM_LEN, MADV_PAGEOUT), EINVAL);
	REFUSED(r, madvise((void *)map + 0x1000, 0x1000, MADV_COLD), EINVAL);
	/* Nothing else it holds opens: no frame or status memfd is left open,
	 * our sockets and anonymous inodes refuse, map_files needs a capability. */
	char what[300] = "";
	int n = open_all("/proc/self/fd", what, sizeof(what));
	if (n != 0) {
		snprintf(r->why, sizeof(r->why), "%d fds reopened, e.g. %.150s", n, what);
		return;
	}
	n = open_all("/proc/self/map_files", what, sizeof(what));
	if (n > 0) {
		snprintf(r->why, sizeof(r->why), "%d map_files opened, e.g. %.150s", n, what);
		return;
	}
	/* Its own mapping is intact after all that. */
	touch_all(r);
	r->ok = r->faulted == 0;
	if (!r->ok)
		snprintf(r->why, sizeof(r->why), "%d pages of its own mapping faulted", r->faulted);
}

static void client(int index, int sock)
{
	(void)index;
	install(SIGBUS, recover_bus, 0);
	for (;;) {
		struct cmd c;
		int fd = recv_cmd(sock, &c, sizeof(c));
		struct reply r = { 0 };
		switch (c.op) {
		case MAP:
			buf_fd = fd;
			map = mmap(NULL, RAM_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, buf_fd, 0);
			CHECK(map != MAP_FAILED, "client mmap of the received buffer");
			touch_all(&r);
			r.ok = r.faulted == 0;
			break;
		case TOUCH_ALL:
			touch_all(&r);
			r.ok = 1;
			break;
		case HOSTILE:
			hostile(&r, c.expect_errno);
			break;
		case EXIT:
			_exit(0);
		}
		send_msg(sock, &r, sizeof(r), -1);
	}
}

static struct reply call(struct peer *c, int op, int arg, int fd)
{
	struct cmd m = { op, arg };
	send_msg(c->sock, &m, sizeof(m), fd);
	struct reply r;
	int none;
	CHECK(recv_msg(c->sock, &r, sizeof(r), &none, 0) == sizeof(r), "client %d died (op %d)", c->pid, op);
	return r;
}

static void reap(struct peer *c)
{
	struct cmd m = { EXIT, 0 };
	send_msg(c->sock, &m, sizeof(m), -1);
	reap_peer(c);
}

/* The sum of the pattern the primary writes: page k holds 0xab00 + k. */
static uint64_t pattern_sum(void)
{
	uint64_t s = 0;
	for (unsigned k = 0; k < PAGES; k++)
		s += 0xab00 + k;
	return s;
}

/* Device open, the pattern written through the primary's device-fd
 * mapping of the range, the buffer exported. */
static int setup(struct vdev *v, volatile uint64_t **dev)
{
	*v = open_device();
	memory_enable(v->device, 1);
	*dev = map_region(v->device, 1, RAM_OFF, RAM_LEN, PROT_READ | PROT_WRITE);
	for (unsigned k = 0; k < PAGES; k++)
		(*dev)[k * 0x1000 / 8] = 0xab00 + k;
	return export_buffer(v->device, 1, RAM_OFF, RAM_LEN);
}

/* Every page of the primary's own mapping holds the pattern. */
static void check_primary(volatile uint64_t *dev, const char *when)
{
	for (unsigned k = 0; k < PAGES; k++) {
		uint64_t v;
		CHECK(try_load(dev + k * 0x1000 / 8, &v) == 0 && v == 0xab00 + k, "primary page %u %s: %#lx", k, when,
		      (unsigned long)v);
	}
}

static void stopped(int memory)
{
	struct peer c;
	fork_peers(&c, 1, client);
	struct vdev v;
	volatile uint64_t *dev;
	int buf = setup(&v, &dev);
	struct reply r = call(&c, MAP, 0, buf);
	CHECK(r.ok && r.sum == pattern_sum(), "client's first view: %d faulted, sum %#lx", r.faulted,
	      (unsigned long)r.sum);
	stop_peer(&c);
	double t0 = now_us();
	if (memory)
		memory_enable(v.device, 0);
	else
		revoke_buffer(v.device, buf);
	double took = now_us() - t0;
	printf("%s with a stopped client returned after %.0f us\n", memory ? "COMMAND.MEMORY clear" : "permanent revoke",
	       took);
	if (!memory)
		check_primary(dev, "after the revoke");
	cont_peer(&c);
	r = call(&c, TOUCH_ALL, 0, -1);
	CHECK(r.faulted == PAGES && r.bad_code == 0, "after SIGCONT: %d of %d pages faulted, %d not BUS_ADRERR here",
	      r.faulted, PAGES, r.bad_code);
	if (memory) {
		/* A temporary revoke: access and data come back everywhere. */
		memory_enable(v.device, 1);
		check_primary(dev, "after COMMAND.MEMORY set");
		r = call(&c, TOUCH_ALL, 0, -1);
		CHECK(r.faulted == 0 && r.sum == pattern_sum(), "client after set: %d faulted, sum %#lx", r.faulted,
		      (unsigned long)r.sum);
	}
	reap(&c);
	CHECK(munmap((void *)dev, RAM_LEN) == 0 && close(buf) == 0, "primary cleanup");
	close_device(&v);
	printf("ok %s\n", memory ? "stopped-memory" : "stopped");
}

static void stopped_revoke(void)
{
	stopped(0);
}

static void stopped_memory(void)
{
	stopped(1);
}

static void hostile_client(void)
{
	struct peer both[2];
	fork_peers(both, 2, client);
	struct peer *bad = &both[0], *other = &both[1];
	struct vdev v;
	volatile uint64_t *dev;
	int buf = setup(&v, &dev);
	void *m = mmap(NULL, RAM_LEN + 0x1000, PROT_READ | PROT_WRITE, MAP_SHARED, buf, 0);
	CHECK(m == MAP_FAILED, "the primary maps past its buffer");
	int past = errno;
	struct reply r = call(bad, MAP, 0, buf);
	CHECK(r.ok, "hostile client's first view");
	r = call(other, MAP, 0, buf);
	CHECK(r.ok, "other client's first view");
	r = call(bad, HOSTILE, past, -1);
	CHECK(r.ok, "hostile client: %s", r.why);
	check_primary(dev, "after the hostile client");
	r = call(other, TOUCH_ALL, 0, -1);
	CHECK(r.faulted == 0 && r.sum == pattern_sum(), "other client after the hostile one: %d faulted, sum %#lx",
	      r.faulted, (unsigned long)r.sum);
	reap(bad);
	reap(other);
	CHECK(munmap((void *)dev, RAM_LEN) == 0 && close(buf) == 0, "primary cleanup");
	close_device(&v);
	printf("ok hostile\n");
}

static const struct check checks[] = {
	{ "stopped", stopped_revoke },
	{ "stopped-memory", stopped_memory },
	{ "hostile", hostile_client },
};

int main(int argc, char **argv)
{
	install(SIGBUS, recover_bus, 0);
	return run_checks(argc, argv, checks, sizeof(checks) / sizeof(checks[0]));
}
