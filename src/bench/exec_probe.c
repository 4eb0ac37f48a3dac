/*
 * Section 8 of `vfio-dmabuf bench`: what a VFIO call costs a program that
 * runs under `vfio-dmabuf exec`, against the kernel's own path in the same
 * process and run. Built with the exec tests' util.h (the bench writes both
 * files side by side), against the demo's device: edu-plus, RAM in BAR1.
 *
 * Usage: exec_probe calls RUNS CALLS
 *        exec_probe clients RUNS REPS STOPPED
 *
 * The first form times, in RUNS runs of CALLS calls each:
 *   - VFIO_DEVICE_GET_INFO on the device fd (interposed: a server round
 *     trip), against FIONREAD on a pipe issued with syscall(2), which no
 *     preload library can see (the plain kernel ioctl);
 *   - mmap + munmap of the first page of BAR1 on the device fd (interposed).
 * The second form forks client processes that map and touch buffers the
 * probe exports and passes them (SCM_RIGHTS), and times, REPS samples per
 * run: the socket round trip to a client; the permanent revoke of a 2 MiB
 * buffer and COMMAND.MEMORY clear with 1, 4 and 16 clients mapping it;
 * first touch of 2 MiB and 64 MiB in a client and in the probe; and, with
 * STOPPED set, the permanent revoke with one client stopped (SIGSTOP).
 * Each prints one JSON object: the per-call nanoseconds of every run.
 */
#include "util.h"

#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#define RAM_BAR 1

static void die(const char *what)
{
	fprintf(stderr, "exec_probe: %s: %s\n", what, strerror(errno));
	exit(1);
}

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void print_runs(const char *name, const double *ns, int runs, int last)
{
	printf("\"%s\": [", name);
	for (int i = 0; i < runs; i++)
		printf("%s%.1f", i ? ", " : "", ns[i]);
	printf("]%s", last ? "" : ", ");
}

/* ---------------------------------------------------------------- */
/* Client processes (the second form). */

#define MAX_CLIENTS 16
#define REVOKE_LEN (2u << 20)
#define PAGE 4096u
enum op { C_MAP, C_UNMAP, C_TOUCH, C_PING, C_EXIT };

struct cmd {
	int op;
	uint64_t len;
};

struct reply {
	double ns;
};

/* A store to every page, the first touch of a fresh mapping. */
static void touch(char *p, uint64_t len)
{
	for (uint64_t off = 0; off < len; off += PAGE)
		((volatile char *)p)[off] = (char)off;
}

static char *map_fd(int fd, uint64_t len)
{
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		die("mmap of a buffer");
	return p;
}

/* A client: serves commands one at a time until C_EXIT or end of file. */
static void client(int index, int sock)
{
	(void)index;
	char *map = NULL;
	uint64_t map_len = 0;
	for (;;) {
		struct cmd c;
		int fd;
		ssize_t n = recv_msg(sock, &c, sizeof(c), &fd, 0);
		if (n == 0)
			_exit(0);
		if (n != sizeof(c))
			_exit(3);
		struct reply r = { 0 };
		switch (c.op) {
		case C_MAP:
			/* Mapped and touched: the revoke has pages to take. */
			map = map_fd(fd, c.len);
			map_len = c.len;
			close(fd);
			touch(map, c.len);
			break;
		case C_UNMAP:
			if (munmap(map, map_len))
				die("munmap");
			map = NULL;
			break;
		case C_TOUCH: {
			char *p = map_fd(fd, c.len);
			double t = now_ns();
			touch(p, c.len);
			r.ns = now_ns() - t;
			if (munmap(p, c.len))
				die("munmap");
			close(fd);
			break;
		}
		case C_PING:
			break;
		case C_EXIT:
			_exit(0);
		}
		send_msg(sock, &r, sizeof(r), -1);
	}
}

static struct peer clients[MAX_CLIENTS];

static struct reply call(int i, int op, uint64_t len, int fd)
{
	struct cmd c = { op, len };
	send_msg(clients[i].sock, &c, sizeof(c), fd);
	struct reply r;
	int none;
	if (recv_msg(clients[i].sock, &r, sizeof(r), &none, 0) != sizeof(r)) {
		fprintf(stderr, "exec_probe: client %d died (op %d)\n", i, op);
		exit(1);
	}
	return r;
}

static int dev_fd;
static uint64_t config_off;

static double timed_revoke(int buf)
{
	double t = now_ns();
	revoke_buffer(dev_fd, buf);
	return now_ns() - t;
}

static double set_command(uint16_t cmd)
{
	double t = now_ns();
	if (pwrite(dev_fd, &cmd, 2, (off_t)(config_off + PCI_COMMAND)) != 2)
		die("write COMMAND");
	return now_ns() - t;
}

/* One revoke of a fresh 2 MiB buffer that clients 0..n-1 map and have
 * touched: permanent (memory == 0) or COMMAND.MEMORY clear, set again
 * afterwards. With `stop`, client 0 is stopped (SIGSTOP) across it. */
static double revoke_once(int n, int memory, int stop, uint16_t cmd)
{
	int fd = export_buffer(dev_fd, RAM_BAR, 0, REVOKE_LEN);
	for (int i = 0; i < n; i++)
		call(i, C_MAP, REVOKE_LEN, fd);
	int status;
	if (stop && (kill(clients[0].pid, SIGSTOP) || waitpid(clients[0].pid, &status, WUNTRACED) != clients[0].pid))
		die("stopping a client");
	double ns = memory ? set_command(cmd & ~PCI_COMMAND_MEMORY) : timed_revoke(fd);
	if (stop && kill(clients[0].pid, SIGCONT))
		die("SIGCONT");
	if (memory)
		set_command(cmd);
	for (int i = 0; i < n; i++)
		call(i, C_UNMAP, 0, -1);
	close(fd);
	return ns;
}

/* First touch of a fresh mapping of a fresh buffer of `len` bytes, in the
 * probe (client < 0) or in a client; ns per page. */
static double touch_once(int client_no, uint64_t len)
{
	int fd = export_buffer(dev_fd, RAM_BAR, 0, len);
	double ns;
	if (client_no < 0) {
		char *p = map_fd(fd, len);
		double t = now_ns();
		touch(p, len);
		ns = now_ns() - t;
		if (munmap(p, len))
			die("munmap");
	} else {
		ns = call(client_no, C_TOUCH, len, fd).ns;
	}
	close(fd);
	return ns / (double)(len / PAGE);
}

static int clients_main(int runs, int reps, int stopped)
{
	if (runs < 1 || runs > 100 || reps < 1 || reps > 100)
		return 2;
	/* Forked before anything of the device's is open: what a client
	 * holds, it received. */
	fork_peers(clients, MAX_CLIENTS, client);
	dev_fd = open_device().device;
	config_off = region(dev_fd, VFIO_PCI_CONFIG_REGION_INDEX).offset;
	uint16_t cmd;
	if (pread(dev_fd, &cmd, 2, (off_t)(config_off + PCI_COMMAND)) != 2)
		die("read COMMAND");
	cmd |= PCI_COMMAND_MEMORY;
	set_command(cmd);

	static const int counts[] = { 1, 4, 16 };
	static const uint64_t sizes[] = { 2u << 20, 64u << 20 };
	int total = runs * reps;
	double *rtt = calloc((size_t)total, sizeof(double)), *perm[3], *mem[3], *tc[2], *tp[2];
	double *stop = calloc((size_t)total, sizeof(double));
	for (int k = 0; k < 3; k++) {
		perm[k] = calloc((size_t)total, sizeof(double));
		mem[k] = calloc((size_t)total, sizeof(double));
	}
	for (int k = 0; k < 2; k++) {
		tc[k] = calloc((size_t)total, sizeof(double));
		tp[k] = calloc((size_t)total, sizeof(double));
	}
	for (int s = 0; s < total; s++) {
		const int pings = 100;
		double t = now_ns();
		for (int i = 0; i < pings; i++)
			call(0, C_PING, 0, -1);
		rtt[s] = (now_ns() - t) / pings;
		for (int k = 0; k < 3; k++) {
			perm[k][s] = revoke_once(counts[k], 0, 0, cmd);
			mem[k][s] = revoke_once(counts[k], 1, 0, cmd);
		}
		for (int k = 0; k < 2; k++) {
			tp[k][s] = touch_once(-1, sizes[k]);
			tc[k][s] = touch_once(0, sizes[k]);
		}
		if (stopped)
			stop[s] = revoke_once(1, 0, 1, cmd);
	}
	for (int i = 0; i < MAX_CLIENTS; i++) {
		struct cmd c = { C_EXIT, 0 };
		send_msg(clients[i].sock, &c, sizeof(c), -1);
		int status;
		if (waitpid(clients[i].pid, &status, 0) != clients[i].pid || !WIFEXITED(status) || WEXITSTATUS(status)) {
			fprintf(stderr, "exec_probe: client %d ended with status %#x\n", i, status);
			return 1;
		}
	}
	printf("{");
	print_runs("rtt_ns", rtt, total, 0);
	char name[32];
	for (int k = 0; k < 3; k++) {
		snprintf(name, sizeof(name), "perm_revoke_%d_ns", counts[k]);
		print_runs(name, perm[k], total, 0);
		snprintf(name, sizeof(name), "memory_clear_%d_ns", counts[k]);
		print_runs(name, mem[k], total, 0);
	}
	for (int k = 0; k < 2; k++) {
		snprintf(name, sizeof(name), "touch_primary_%u_ns", (unsigned)(sizes[k] >> 20));
		print_runs(name, tp[k], total, 0);
		snprintf(name, sizeof(name), "touch_client_%u_ns", (unsigned)(sizes[k] >> 20));
		print_runs(name, tc[k], total, k == 1 && !stopped);
	}
	if (stopped)
		print_runs("stopped_revoke_ns", stop, total, 1);
	printf("}\n");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 5 && !strcmp(argv[1], "clients"))
		return clients_main(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]));
	if (argc != 4 || strcmp(argv[1], "calls")) {
		fprintf(stderr, "usage: %s calls RUNS CALLS | clients RUNS REPS STOPPED\n", argv[0]);
		return 2;
	}
	int runs = atoi(argv[2]), calls = atoi(argv[3]);
	if (runs < 1 || runs > 1000 || calls < 1)
		return 2;

	int device = open_device().device;
	uint64_t bar = region(device, RAM_BAR).offset;
	int pipefd[2];
	if (pipe(pipefd))
		die("pipe");

	double *ioctl_ns = calloc((size_t)runs, sizeof(double));
	double *plain_ns = calloc((size_t)runs, sizeof(double));
	double *mmap_ns = calloc((size_t)runs, sizeof(double));
	if (!ioctl_ns || !plain_ns || !mmap_ns)
		die("calloc");
	for (int r = 0; r < runs; r++) {
		struct vfio_device_info info = { .argsz = sizeof(info) };
		double t = now_ns();
		for (int i = 0; i < calls; i++)
			if (ioctl(device, VFIO_DEVICE_GET_INFO, &info))
				die("VFIO_DEVICE_GET_INFO");
		ioctl_ns[r] = (now_ns() - t) / calls;

		int queued;
		t = now_ns();
		for (int i = 0; i < calls; i++)
			if (syscall(SYS_ioctl, pipefd[0], FIONREAD, &queued))
				die("FIONREAD");
		plain_ns[r] = (now_ns() - t) / calls;

		t = now_ns();
		for (int i = 0; i < calls; i++) {
			void *va = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, device, (off_t)bar);
			if (va == MAP_FAILED)
				die("mmap of the device fd");
			if (munmap(va, 4096))
				die("munmap");
		}
		mmap_ns[r] = (now_ns() - t) / calls;
	}
	printf("{");
	print_runs("ioctl_ns", ioctl_ns, runs, 0);
	print_runs("plain_ioctl_ns", plain_ns, runs, 0);
	print_runs("mmap_munmap_ns", mmap_ns, runs, 1);
	printf("}\n");
	return 0;
}
