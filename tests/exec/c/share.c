/* Buffers vended to other processes: a primary opens edu-plus (RAM BAR1,
 * group 0) and edu (register BAR0, group 1) through the legacy API,
 * exports sub-ranges as DMA-buffers, and passes the fds over UNIX
 * socketpairs (SCM_RIGHTS) to client processes it forked before opening
 * anything, so a client holds only what it received. Each client serves
 * commands (receive, map, load, store, close, exit) one at a time: a client
 * waiting for its next command has answered the previous one, which is
 * how the primary knows it is ready, with no sleeps anywhere. One check
 * per subcommand; prints "ok <check>" lines. */
#include "util.h"

#include <sys/wait.h>

#define EDU_BDF "0000:00:04.0"
#define EDU_GROUP "/dev/vfio/1"
#define EDU_ID 0x010000ed
#define EDU_LIVENESS 0x04
#define CLIENTS 2

/* The RAM buffer: 64 KiB of BAR1 at 1 MiB; the register buffer: edu's
 * first BAR0 page. */
#define RAM_OFF 0x100000
#define RAM_LEN 0x10000
#define REG_LEN 0x1000

/* ---------------------------------------------------------------- */
/* Commands between the primary and a client. */

enum op { RECV, MAP, MAP_ERRNO, LOAD64, STORE64, LOAD32, STORE32, CLOSE, UNMAP, EXIT };

struct cmd {
	int op, slot;
	uint64_t off, val, len;
};

struct reply {
	int faulted, code;
	uint64_t val;
	void *addr;
};

/* The client: serves commands until EXIT or the primary goes. */
static void client(int sock)
{
	install(SIGBUS, recover_bus, 0);
	int fds[4] = { -1, -1, -1, -1 };
	char *maps[4] = { 0 };
	size_t lens[4] = { 0 };
	for (;;) {
		struct cmd c;
		int fd = recv_cmd(sock, &c, sizeof(c));
		CHECK(c.slot >= 0 && c.slot < 4, "command slot %d", c.slot);
		struct reply r = { 0 };
		switch (c.op) {
		case RECV:
			CHECK(fd >= 0, "RECV without an fd");
			fds[c.slot] = fd;
			break;
		case MAP:
			/* The fd attached, or the one received before. */
			if (fd >= 0)
				fds[c.slot] = fd;
			fd = fds[c.slot];
			CHECK(fd >= 0, "MAP without an fd");
			maps[c.slot] = mmap(NULL, c.len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
			CHECK(maps[c.slot] != MAP_FAILED, "client mmap of a received buffer fd");
			lens[c.slot] = c.len;
			break;
		case MAP_ERRNO: {
			/* A mapping of the held fd that must fail: its errno. */
			void *m = mmap(NULL, c.len, PROT_READ | PROT_WRITE, MAP_SHARED, fds[c.slot], c.off);
			CHECK(m == MAP_FAILED, "client mmap of %#lx at %#lx succeeded", (unsigned long)c.len,
			      (unsigned long)c.off);
			r.val = errno;
			break;
		}
		case LOAD64:
		case STORE64:
		case LOAD32:
		case STORE32: {
			char *p = maps[c.slot] + c.off;
			int before = seen_count;
			if (sigsetjmp(jump, 1) == 0) {
				if (c.op == LOAD64)
					r.val = *(volatile uint64_t *)p;
				else if (c.op == STORE64)
					*(volatile uint64_t *)p = c.val;
				else if (c.op == LOAD32)
					r.val = *(volatile uint32_t *)p;
				else
					*(volatile uint32_t *)p = (uint32_t)c.val;
			} else {
				CHECK(seen_count == before + 1 && seen_signo == SIGBUS, "signal %d", seen_signo);
				r.faulted = 1;
				r.code = seen_code;
				r.addr = seen_addr;
				/* Where the fault was, in the client's own terms. */
				r.val = (uint64_t)((char *)seen_addr - maps[c.slot]);
			}
			break;
		}
		case CLOSE:
			CHECK(close(fds[c.slot]) == 0, "client close of a received fd");
			fds[c.slot] = -1;
			break;
		case UNMAP:
			CHECK(munmap(maps[c.slot], lens[c.slot]) == 0, "client munmap");
			maps[c.slot] = NULL;
			break;
		case EXIT:
			_exit(0);
		}
		send_msg(sock, &r, sizeof(r), -1);
	}
}

static struct peer clients[CLIENTS];

static void serve(int index, int sock)
{
	(void)index;
	client(sock);
}

/* Forks the clients before anything of the device's is open: what a
 * client holds, it received. */
static void fork_clients(void)
{
	fork_peers(clients, CLIENTS, serve);
}

/* Sends one command (with `fd` attached when >= 0) and returns the reply. */
static struct reply call(int i, int op, int slot, uint64_t off, uint64_t val, uint64_t len, int fd)
{
	struct cmd c = { op, slot, off, val, len };
	send_msg(clients[i].sock, &c, sizeof(c), fd);
	struct reply r;
	int none;
	CHECK(recv_msg(clients[i].sock, &r, sizeof(r), &none, 0) == sizeof(r), "client %d died (op %d)", i, op);
	return r;
}

static uint64_t load(int i, int op, int slot, uint64_t off)
{
	struct reply r = call(i, op, slot, off, 0, 0, -1);
	CHECK(!r.faulted, "client %d: access at %#lx faulted", i, (unsigned long)off);
	return r.val;
}

static void store(int i, int op, int slot, uint64_t off, uint64_t val)
{
	struct reply r = call(i, op, slot, off, val, 0, -1);
	CHECK(!r.faulted, "client %d: store at %#lx faulted", i, (unsigned long)off);
}

/* The client's access at `off` raised SIGBUS BUS_ADRERR at that address. */
static void expect_fault(int i, int op, int slot, uint64_t off)
{
	struct reply r = call(i, op, slot, off, 0, 0, -1);
	CHECK(r.faulted, "client %d: access at %#lx did not fault", i, (unsigned long)off);
	CHECK(r.code == BUS_ADRERR, "client %d: si_code %d", i, r.code);
	CHECK(r.val == off, "client %d: fault at offset %#lx, not %#lx", i, (unsigned long)r.val, (unsigned long)off);
}

static void reap_clients(void)
{
	for (int i = 0; i < CLIENTS; i++) {
		struct cmd c = { EXIT, 0, 0, 0, 0 };
		send_msg(clients[i].sock, &c, sizeof(c), -1);
		reap_peer(&clients[i]);
	}
}

/* ---------------------------------------------------------------- */
/* The primary's devices and buffers. */

static struct vdev plus;
static int edu_group, edu;

static void open_devices(void)
{
	plus = open_device();
	memory_enable(plus.device, 1);
	edu_group = open(EDU_GROUP, O_RDWR | O_CLOEXEC);
	CHECK(edu_group >= 0, "open " EDU_GROUP);
	CHECK(ioctl(edu_group, VFIO_GROUP_SET_CONTAINER, &plus.container) == 0, "second group into the container");
	edu = ioctl(edu_group, VFIO_GROUP_GET_DEVICE_FD, EDU_BDF);
	CHECK(edu >= 0, "VFIO_GROUP_GET_DEVICE_FD " EDU_BDF);
	memory_enable(edu, 1);
}

static void close_devices(void)
{
	CHECK(close(edu) == 0 && close(edu_group) == 0, "close edu");
	close_device(&plus);
}

static volatile uint64_t *map_buf(int fd, size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(p != MAP_FAILED, "primary mmap of its buffer");
	return p;
}

/* The RAM buffer exported, mapped by the primary with a pattern, and
 * mapped by every client (slot 0). */
static int share_ram(volatile uint64_t **mine)
{
	int fd = export_buffer(plus.device, 1, RAM_OFF, RAM_LEN);
	*mine = map_buf(fd, RAM_LEN);
	for (unsigned k = 0; k < RAM_LEN / 0x1000; k++)
		(*mine)[k * 0x1000 / 8] = 0xab00 + k;
	for (int i = 0; i < CLIENTS; i++)
		call(i, MAP, 0, 0, 0, RAM_LEN, fd);
	return fd;
}

/* Clients forked, devices open, the RAM buffer shared (slot 0) and edu's
 * register page exported and mapped by every client (slot 1). */
static int share_both(volatile uint64_t **mine, int *reg)
{
	fork_clients();
	open_devices();
	int fd = share_ram(mine);
	*reg = export_buffer(edu, 0, 0, REG_LEN);
	for (int i = 0; i < CLIENTS; i++)
		call(i, MAP, 1, 0, 0, REG_LEN, *reg);
	return fd;
}

/* ---------------------------------------------------------------- */
/* The checks. */

/* Every client sees the primary's data on every page, and each write of a
 * client is seen by the primary and by the other client. */
static void coherence(void)
{
	fork_clients();
	open_devices();
	volatile uint64_t *p;
	int fd = share_ram(&p);
	for (int i = 0; i < CLIENTS; i++)
		for (unsigned k = 0; k < RAM_LEN / 0x1000; k++)
			CHECK(load(i, LOAD64, 0, k * 0x1000) == 0xab00 + k, "client %d page %u", i, k);
	for (int i = 0; i < CLIENTS; i++) {
		uint64_t off = 0x3008 + i * 0x1000;
		store(i, STORE64, 0, off, 0xc11e0000 + i);
		CHECK(p[off / 8] == 0xc11e0000 + i, "primary sees client %d's write: %#lx", i, (unsigned long)p[off / 8]);
		CHECK(load(1 - i, LOAD64, 0, off) == 0xc11e0000 + i, "client %d sees client %d's write", 1 - i, i);
	}
	/* Span checks give the client the primary's errnos. */
	static const uint64_t bad[][2] = { { RAM_LEN + 0x1000, 0 }, { 0x2000, RAM_LEN - 0x1000 }, { 0x1000, RAM_LEN } };
	for (unsigned b = 0; b < sizeof(bad) / sizeof(bad[0]); b++) {
		void *m = mmap(NULL, bad[b][0], PROT_READ | PROT_WRITE, MAP_SHARED, fd, bad[b][1]);
		CHECK(m == MAP_FAILED, "primary mmap of %#lx at %#lx", (unsigned long)bad[b][0], (unsigned long)bad[b][1]);
		int mine = errno;
		for (int i = 0; i < CLIENTS; i++) {
			struct reply r = call(i, MAP_ERRNO, 0, bad[b][1], 0, bad[b][0], -1);
			CHECK(r.val == (uint64_t)mine, "client %d errno %lu, primary's %d", i, (unsigned long)r.val, mine);
		}
	}
	/* The same bytes through the device's region, as pread shows them. */
	uint64_t got;
	CHECK(pread(plus.device, &got, 8, region(plus.device, 1).offset + RAM_OFF + 0x3008) == 8 && got == 0xc11e0000,
	      "region read %#lx", (unsigned long)got);
	p[0x20 / 8] = 0x9a11;
	for (int i = 0; i < CLIENTS; i++)
		CHECK(load(i, LOAD64, 0, 0x20) == 0x9a11, "client %d sees the primary's later write", i);
	reap_clients();
	CHECK(munmap((void *)p, RAM_LEN) == 0 && close(fd) == 0, "primary's buffer");
	printf("ok coherence\n");
	close_devices();
}

/* A client's accesses to a register buffer of edu trap and act on the one
 * device: the primary's own mapping and pread see the same registers. */
static void registers(void)
{
	fork_clients();
	open_devices();
	int fd = export_buffer(edu, 0, 0, REG_LEN);
	volatile uint32_t *r = (volatile uint32_t *)map_buf(fd, REG_LEN);
	for (int i = 0; i < CLIENTS; i++) {
		call(i, MAP, 1, 0, 0, REG_LEN, fd);
		CHECK(load(i, LOAD32, 1, 0) == EDU_ID, "client %d reads the ID register", i);
		uint32_t v = 0x5a5a0000 + i;
		store(i, STORE32, 1, EDU_LIVENESS, v);
		CHECK(load(i, LOAD32, 1, EDU_LIVENESS) == (uint32_t)~v, "client %d liveness", i);
		CHECK(r[EDU_LIVENESS / 4] == (uint32_t)~v, "primary sees client %d's liveness write", i);
		uint32_t got;
		CHECK(pread(edu, &got, 4, region(edu, 0).offset + EDU_LIVENESS) == 4 && got == (uint32_t)~v, "pread");
	}
	r[EDU_LIVENESS / 4] = 0x77;
	for (int i = 0; i < CLIENTS; i++)
		CHECK(load(i, LOAD32, 1, EDU_LIVENESS) == (uint32_t)~0x77u, "client %d sees the primary's write", i);
	reap_clients();
	CHECK(munmap((void *)r, REG_LEN) == 0 && close(fd) == 0, "primary's buffer");
	printf("ok registers\n");
	close_devices();
}

/* A permanent revoke returns only once every client has let go of its
 * pages: each client is waiting for its next command when the ioctl
 * returns, and the very next access faults on every page; the primary's
 * device-fd mapping of the same bytes, a buffer of its own, keeps working. */
static void perm_revoke(void)
{
	volatile uint64_t *p;
	int reg, fd = share_both(&p, &reg);
	for (int i = 0; i < CLIENTS; i++) {
		/* Every page present in the client, so the revoke has pages to take. */
		for (unsigned k = 0; k < RAM_LEN / 0x1000; k++)
			CHECK(load(i, LOAD64, 0, k * 0x1000) == 0xab00 + k, "client %d page %u before the revoke", i, k);
		CHECK(load(i, LOAD32, 1, 0) == EDU_ID, "client %d registers before the revoke", i);
	}
	revoke_buffer(plus.device, fd);
	revoke_buffer(edu, reg);
	for (int i = 0; i < CLIENTS; i++) {
		for (unsigned k = 0; k < RAM_LEN / 0x1000; k++)
			expect_fault(i, LOAD64, 0, k * 0x1000 + 8);
		expect_fault(i, STORE64, 0, 0);
		expect_fault(i, LOAD32, 1, 0);
		expect_fault(i, STORE32, 1, EDU_LIVENESS);
	}
	uint64_t got;
	CHECK(try_load(p, &got) == -1 && seen_code == BUS_ADRERR, "the primary's own buffer mapping is revoked too");
	volatile uint64_t *dev = map_region(plus.device, 1, RAM_OFF, 0x1000, PROT_READ);
	CHECK(dev[0] == 0xab00, "the device-fd mapping still reads the BAR: %#lx", (unsigned long)dev[0]);
	/* A second revoke of the same buffer: EBADFD. */
	struct {
		struct vfio_device_feature f;
		int32_t fd;
	} again = { { .argsz = sizeof(again), .flags = VFIO_DEVICE_FEATURE_SET | FEATURE_DMA_BUF_REVOKE }, fd };
	CHECK(ioctl(plus.device, VFIO_DEVICE_FEATURE, &again) == -1 && errno == EBADFD, "second revoke");
	reap_clients();
	CHECK(munmap((void *)dev, 0x1000) == 0 && munmap((void *)p, RAM_LEN) == 0, "munmap");
	CHECK(close(fd) == 0 && close(reg) == 0, "close");
	printf("ok perm-revoke\n");
	close_devices();
}

/* COMMAND.MEMORY clear revokes every client's mapping before the config
 * write returns; set gives access back, with the data as it was. */
static void memory_off_on(void)
{
	volatile uint64_t *p;
	int reg, fd = share_both(&p, &reg);
	for (int i = 0; i < CLIENTS; i++) {
		store(i, STORE64, 0, 0x2010 + 8 * i, 0xd00d0 + i);
		store(i, STORE32, 1, EDU_LIVENESS, 0x1234);
	}
	for (int round = 0; round < 2; round++) {
		memory_enable(plus.device, 0);
		memory_enable(edu, 0);
		for (int i = 0; i < CLIENTS; i++) {
			expect_fault(i, LOAD64, 0, 0x2010);
			expect_fault(i, STORE64, 0, RAM_LEN - 8);
			expect_fault(i, LOAD32, 1, EDU_LIVENESS);
		}
		uint64_t got;
		CHECK(try_load(p, &got) == -1 && seen_code == BUS_ADRERR, "the primary's mapping is revoked too");
		memory_enable(plus.device, 1);
		memory_enable(edu, 1);
		for (int i = 0; i < CLIENTS; i++) {
			for (int j = 0; j < CLIENTS; j++)
				CHECK(load(i, LOAD64, 0, 0x2010 + 8 * j) == 0xd00d0 + j, "client %d: data after set", i);
			for (unsigned k = 0; k < RAM_LEN / 0x1000; k++)
				CHECK(load(i, LOAD64, 0, k * 0x1000) == 0xab00 + k, "client %d page %u after set", i, k);
			CHECK(load(i, LOAD32, 1, EDU_LIVENESS) == (uint32_t)~0x1234u, "client %d registers after set", i);
		}
		CHECK(p[0x2010 / 8] == 0xd00d0, "the primary's data after set");
	}
	reap_clients();
	CHECK(munmap((void *)p, RAM_LEN) == 0 && close(fd) == 0 && close(reg) == 0, "primary's buffers");
	printf("ok memory\n");
	close_devices();
}

/* A client's close of its received fd and its exit count toward nothing
 * the primary holds: its mapping outlives its fd, and after it is gone the
 * primary's buffer maps, reads, and revokes as before; the other client
 * keeps its mapping. */
static void close_exit(void)
{
	fork_clients();
	open_devices();
	volatile uint64_t *p;
	int fd = share_ram(&p);
	call(0, CLOSE, 0, 0, 0, 0, -1);
	store(0, STORE64, 0, 0x18, 0xc105ed);
	CHECK(p[0x18 / 8] == 0xc105ed, "a client's mapping outlives its closed fd");
	call(0, UNMAP, 0, 0, 0, 0, -1);
	struct cmd c = { EXIT, 0, 0, 0, 0 };
	send_msg(clients[0].sock, &c, sizeof(c), -1);
	int status;
	CHECK(waitpid(clients[0].pid, &status, 0) == clients[0].pid && WIFEXITED(status) && !WEXITSTATUS(status),
	      "client 0 exit %#x", status);
	/* Client 1 closes its fd and exits holding its mapping. */
	call(1, CLOSE, 0, 0, 0, 0, -1);
	CHECK(load(1, LOAD64, 0, 0x18) == 0xc105ed, "client 1 still maps");
	send_msg(clients[1].sock, &c, sizeof(c), -1);
	CHECK(waitpid(clients[1].pid, &status, 0) == clients[1].pid && WIFEXITED(status) && !WEXITSTATUS(status),
	      "client 1 exit %#x", status);
	/* The primary's mapping, its fd, a new mapping of it and a revoke. */
	p[0x28 / 8] = 0x1e5;
	CHECK(p[0x18 / 8] == 0xc105ed && p[0x28 / 8] == 0x1e5, "the primary's mapping after the clients left");
	volatile uint64_t *q = map_buf(fd, RAM_LEN);
	CHECK(q[0x18 / 8] == 0xc105ed, "a new mapping of the primary's fd");
	memory_enable(plus.device, 0);
	uint64_t got;
	CHECK(try_load(q, &got) == -1 && seen_code == BUS_ADRERR, "revoked after the clients left");
	memory_enable(plus.device, 1);
	CHECK(try_load(q + 3, &got) == 0 && got == 0xc105ed, "back after set");
	revoke_buffer(plus.device, fd);
	CHECK(try_load(p, &got) == -1 && seen_code == BUS_ADRERR, "permanent revoke after the clients left");
	CHECK(munmap((void *)p, RAM_LEN) == 0 && munmap((void *)q, RAM_LEN) == 0 && close(fd) == 0, "close");
	for (int i = 0; i < CLIENTS; i++)
		close(clients[i].sock);
	printf("ok close-exit\n");
	close_devices();
}

/* The buffer lives while any process holds its fd: the primary closes its
 * fd before the client maps the one it received. Closing the device fd
 * (the last close: nothing else holds the device) revokes the buffer in
 * the client before close returns. */
static void last_close(void)
{
	fork_clients();
	open_devices();
	int fd = export_buffer(plus.device, 1, RAM_OFF, RAM_LEN);
	volatile uint64_t *p = map_buf(fd, RAM_LEN);
	p[5] = 0x1a57;
	CHECK(munmap((void *)p, RAM_LEN) == 0, "munmap");
	call(0, RECV, 0, 0, 0, 0, fd);
	CHECK(close(fd) == 0, "the primary's close of its buffer fd");
	call(0, MAP, 0, 0, 0, RAM_LEN, -1);
	CHECK(load(0, LOAD64, 0, 0x28) == 0x1a57, "the client maps a buffer whose exporter closed its fd");
	store(0, STORE64, 0, 0x30, 0xbeef);
	CHECK(close(plus.device) == 0, "close of the device fd");
	expect_fault(0, LOAD64, 0, 0x28);
	expect_fault(0, STORE64, 0, 0x30);
	reap_clients();
	CHECK(close(plus.group) == 0 && close(edu) == 0 && close(edu_group) == 0 && close(plus.container) == 0, "close");
	printf("ok last-close\n");
}

/* A device fd inherited by fork is the same open device in the child:
 * GET_INFO and config reads answer there as in the parent. */
static void inherit(void)
{
	open_devices();
	struct vfio_region_info cfg = region(edu, VFIO_PCI_CONFIG_REGION_INDEX);
	uint32_t ids;
	CHECK(pread(edu, &ids, 4, cfg.offset) == 4, "parent's config read");
	uint64_t bar1 = region(plus.device, 1).offset, marker = 0x1a7e;
	CHECK(pwrite(plus.device, &marker, 8, bar1 + RAM_OFF + 8) == 8, "parent's BAR1 write");
	int pipefd[2];
	CHECK(pipe(pipefd) == 0, "pipe");
	pid_t pid = fork();
	CHECK(pid >= 0, "fork");
	if (pid == 0) {
		close(pipefd[0]);
		struct vfio_device_info info = { .argsz = sizeof(info) };
		CHECK(ioctl(edu, VFIO_DEVICE_GET_INFO, &info) == 0, "child GET_INFO");
		CHECK((info.flags & VFIO_DEVICE_FLAGS_PCI) && info.num_regions >= 8, "child GET_INFO %#x", info.flags);
		struct vfio_region_info c = region(edu, VFIO_PCI_CONFIG_REGION_INDEX);
		uint32_t got;
		CHECK(pread(edu, &got, 4, c.offset) == 4, "child config read");
		uint16_t cmd;
		CHECK(pread(plus.device, &cmd, 2, cfg.offset + PCI_COMMAND) == 2, "child COMMAND read");
		/* A mapping the child makes of the inherited fd shows the parent's write. */
		volatile uint64_t *m = map_region(plus.device, 1, RAM_OFF, 0x1000, PROT_READ | PROT_WRITE);
		CHECK(m[1] == 0x1a7e, "child's own mapping of the inherited fd: %#lx", (unsigned long)m[1]);
		m[2] = 0xc41d;
		CHECK(munmap((void *)m, 0x1000) == 0, "child munmap");
		CHECK(write(pipefd[1], &got, 4) == 4 && write(pipefd[1], &cmd, 2) == 2, "report");
		_exit(0);
	}
	close(pipefd[1]);
	uint32_t child_ids = 0;
	uint16_t child_cmd = 0;
	CHECK(read(pipefd[0], &child_ids, 4) == 4 && read(pipefd[0], &child_cmd, 2) == 2, "child's report");
	int status;
	CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && !WEXITSTATUS(status), "child %#x", status);
	CHECK(child_ids == ids && ids == 0x11e81234, "IDs %#x in the child, %#x in the parent", child_ids, ids);
	CHECK(child_cmd & PCI_COMMAND_MEMORY, "the child sees the parent's COMMAND %#x", child_cmd);
	CHECK(pread(plus.device, &marker, 8, bar1 + RAM_OFF + 16) == 8 && marker == 0xc41d, "the child's write %#lx",
	      (unsigned long)marker);
	/* The child's exit closed nothing of the parent's. */
	struct vfio_device_info info = { .argsz = sizeof(info) };
	CHECK(ioctl(edu, VFIO_DEVICE_GET_INFO, &info) == 0, "parent's device after the child exited");
	CHECK(open(EDU_GROUP, O_RDWR) == -1 && errno == EBUSY, "the group stays owned");
	close(pipefd[0]);
	printf("ok inherit\n");
	close_devices();
}

/* An inherited device fd counts toward the device's last close: the
 * parent closes its own device fd and a buffer of the device keeps working
 * while the child holds the inherited one; the child's exit (argv: "close"
 * closes first, "exit" just exits) is the last close, which revokes the
 * buffer before waitpid returns. */
static void inherit_close(int close_first)
{
	open_devices();
	int fd = export_buffer(plus.device, 1, RAM_OFF, RAM_LEN);
	volatile uint64_t *p = map_buf(fd, RAM_LEN);
	p[0] = 0x1a57;
	int go[2], done[2];
	CHECK(pipe(go) == 0 && pipe(done) == 0, "pipe");
	pid_t pid = fork();
	CHECK(pid >= 0, "fork");
	if (pid == 0) {
		char b;
		CHECK(read(go[0], &b, 1) == 1, "child waits for the parent's close");
		struct vfio_device_info info = { .argsz = sizeof(info) };
		CHECK(ioctl(plus.device, VFIO_DEVICE_GET_INFO, &info) == 0, "child GET_INFO after the parent's close");
		if (close_first)
			CHECK(close(plus.device) == 0, "child close");
		_exit(0);
	}
	CHECK(close(plus.device) == 0, "parent's close of its device fd");
	uint64_t got;
	CHECK(try_load(p, &got) == 0 && got == 0x1a57, "the buffer while the child holds the device");
	CHECK(write(go[1], "g", 1) == 1, "go");
	int status;
	CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && !WEXITSTATUS(status), "child %#x", status);
	CHECK(try_load(p, &got) == -1 && seen_code == BUS_ADRERR, "the buffer after the last close");
	CHECK(munmap((void *)p, RAM_LEN) == 0 && close(fd) == 0, "close");
	CHECK(close(plus.group) == 0 && close(edu) == 0 && close(edu_group) == 0 && close(plus.container) == 0, "close");
	printf("ok %s\n", close_first ? "inherit-close" : "inherit-exit");
}

static void inherit_close_then_exit(void)
{
	inherit_close(1);
}

static void inherit_exit(void)
{
	inherit_close(0);
}

/* A child that maps the device fd it inherited and exits without
 * unmapping: once the parent has reaped it, the child's mapping no longer
 * holds the device (the kernel drops an exiting process's VMAs before it
 * can be reaped), so the parent's closes are the last and the group opens
 * again at once. Repeated, since the server learns of the exit from a
 * hang-up that races the reap. */
static void child_mapping_exit(void)
{
	for (int round = 0; round < 20; round++) {
		open_devices();
		pid_t pid = fork();
		CHECK(pid >= 0, "fork");
		if (pid == 0) {
			volatile uint64_t *m = map_region(plus.device, 1, RAM_OFF, RAM_LEN, PROT_READ | PROT_WRITE);
			m[0] = (uint64_t)round;
			_exit(0);
		}
		int status;
		CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && !WEXITSTATUS(status), "child %#x", status);
		close_devices();
	}
	printf("ok child-mapping-exit\n");
}

static const struct check checks[] = {
	{ "coherence", coherence }, { "registers", registers },	  { "perm-revoke", perm_revoke },
	{ "memory", memory_off_on }, { "close-exit", close_exit }, { "last-close", last_close },
	{ "inherit", inherit }, { "inherit-close", inherit_close_then_exit }, { "inherit-exit", inherit_exit },
	{ "child-mapping-exit", child_mapping_exit },
};

int main(int argc, char **argv)
{
	install(SIGBUS, recover_bus, 0);
	return run_checks(argc, argv, checks, sizeof(checks) / sizeof(checks[0]));
}
