/* The events that revoke a BAR, seen from client processes. A primary
 * opens edu-plus (RAM BAR1 in 64 KiB frames, devices file
 * `frame-size = "64K"`), forks two clients before it opens anything,
 * exports a frame-aligned buffer of BAR1 and passes it to both over
 * SCM_RIGHTS; client 1 also receives the device fd and maps the same BAR
 * range through it. Every word of the range holds a known value: the
 * primary's pattern, and in each page one word per client that the client
 * writes (a new value each round). Checks (one per argument, "ok <check>"
 * each):
 *
 *   d3hot        PMCSR to D3hot through the config region: every client's
 *                load and store on every page of each mapping is SIGBUS
 *                BUS_ADRERR at that address; back in D0 every client reads
 *                every word as it was, and writes again.
 *   reset, flr, hot-reset
 *                VFIO_DEVICE_RESET, a function-level reset (PCIe DEVCTL
 *                Initiate FLR), VFIO_DEVICE_PCI_HOT_RESET: each returns,
 *                and every client's mappings show every word as it was.
 *   <event>-stopped
 *                the same with client 1 stopped (SIGSTOP) through the
 *                whole event: the call returns (the server cuts client 1
 *                off after the bound; the time is printed, only the return
 *                is asserted), client 0 works at once, and once continued
 *                client 1 reads every word again at once: the
 *                notifications it missed apply the server's latest word
 *                (its status-page slot), not a stale revoke.
 *   killed       client 0 is killed (SIGKILL) holding its mapping and
 *                reaped; COMMAND.MEMORY clear and set and a permanent
 *                revoke return and reach client 1 as usual (the driver
 *                checks that nobody was cut off).
 *
 * What the model does to BAR1's contents: nothing, in every event here.
 * edu-plus's PMCSR has No_Soft_Reset set, so D3hot -> D0 keeps config
 * space (COMMAND.MEMORY stays set) and resets nothing; VFIO_DEVICE_RESET,
 * FLR and hot reset reset the function (register BARs and config space,
 * COMMAND and BAR addresses restored as the kernel restores them), but
 * RAM BAR memory is not held by the PCI function and is never cleared.
 * So after each event every word must read exactly what it held before. */
#include "util.h"

#define CLIENTS 2
/* Two 64 KiB frames at 1 MiB of BAR1. */
#define RAM_OFF 0x100000
#define RAM_LEN 0x20000
#define PAGES (RAM_LEN / 0x1000)
#define WORDS (RAM_LEN / 8)
#define PCI_CAP_ID_PM 0x01
#define PCI_CAP_ID_EXP 0x10
#define PCI_EXP_DEVCTL 8
#define PCI_EXP_DEVCTL_BCR_FLR 0x8000

/* What word w of the range holds once client c has written its rounds[c]
 * rounds: client c's word of each page (word 8 + c), or the primary's
 * pattern (also before a client's first round). */
static uint64_t expected(unsigned w, const int *rounds)
{
	unsigned in_page = w % 512;
	if (in_page >= 8 && in_page < 8 + CLIENTS && rounds[in_page - 8] > 0)
		return 0xc0000000ull | (uint64_t)(in_page - 8) << 16 | (uint64_t)rounds[in_page - 8];
	return 0xda7a000000000000ull | w;
}

/* 0 when every word of m is as expected, else -1 with `why` (-2 when a
 * word faulted, SIGBUS BUS_ADRERR at it). */
static int verify(volatile uint64_t *m, const int *rounds, char *why, size_t n)
{
	for (unsigned w = 0; w < WORDS; w++) {
		uint64_t v;
		if (try_load(m + w, &v)) {
			snprintf(why, n, "word %#x faulted (code %d)", w * 8, (int)seen_code);
			return seen_code == BUS_ADRERR && seen_addr == (void *)(m + w) ? -2 : -1;
		}
		if (v != expected(w, rounds)) {
			snprintf(why, n, "word %#x reads %#lx, not %#lx", w * 8, (unsigned long)v,
				 (unsigned long)expected(w, rounds));
			return -1;
		}
	}
	return 0;
}

/* ---------------------------------------------------------------- */
/* A client. Mapping 0 is the buffer, mapping 1 (client 1) the device's. */

enum op { MAP_BUF, MAP_DEV, WRITE, VERIFY, FAULTS, EXIT };

struct cmd {
	int op;
	int m;		     /* VERIFY, FAULTS: the mapping, or -1 for every one */
	int rounds[CLIENTS]; /* WRITE, VERIFY: each client's rounds written */
};

struct reply {
	int ok, maps;
	char why[200];
};

static int me, nmaps;
static volatile uint64_t *maps[2];

/* Every page of mapping m: a load and a store, each must be SIGBUS
 * BUS_ADRERR at its address. 0 or -1 with `why`. */
static int faults(int m, char *why, size_t n)
{
	for (unsigned k = 0; k < PAGES; k++)
		for (int store = 0; store < 2; store++) {
			volatile uint64_t *p = maps[m] + k * 512 + 1 + store;
			int before = seen_count;
			if (sigsetjmp(jump, 1) == 0) {
				if (store)
					*p = 0xbad;
				else
					(void)*p;
				snprintf(why, n, "mapping %d page %u: the %s succeeded", m, k, store ? "store" : "load");
				return -1;
			}
			if (seen_count != before + 1 || seen_signo != SIGBUS || seen_code != BUS_ADRERR ||
			    seen_addr != (void *)p) {
				snprintf(why, n, "mapping %d page %u: signal %d code %d at %p, not %p", m, k,
					 (int)seen_signo, (int)seen_code, seen_addr, (void *)p);
				return -1;
			}
		}
	return 0;
}

static void client(int index, int sock)
{
	me = index;
	install(SIGBUS, recover_bus, 0);
	for (;;) {
		struct cmd c;
		int fd = recv_cmd(sock, &c, sizeof(c));
		struct reply r = { .ok = 1 };
		switch (c.op) {
		case MAP_BUF:
			/* The fd stays open: the client holds both. */
			maps[nmaps] = mmap(NULL, RAM_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
			CHECK(maps[nmaps] != MAP_FAILED, "client %d: mmap of the received buffer", me);
			nmaps++;
			break;
		case MAP_DEV:
			maps[nmaps++] = map_region(fd, 1, RAM_OFF, RAM_LEN, PROT_READ | PROT_WRITE);
			break;
		case WRITE:
			for (unsigned k = 0; k < PAGES; k++)
				maps[0][k * 512 + 8 + me] = expected(k * 512 + 8 + me, c.rounds);
			break;
		case VERIFY:
			for (int m = 0; m < nmaps && r.ok; m++)
				if (c.m < 0 || c.m == m)
					r.ok = verify(maps[m], c.rounds, r.why, sizeof(r.why)) == 0;
			break;
		case FAULTS:
			for (int m = 0; m < nmaps && r.ok; m++)
				if (c.m < 0 || c.m == m)
					r.ok = faults(m, r.why, sizeof(r.why)) == 0;
			break;
		case EXIT:
			_exit(0);
		}
		r.maps = nmaps;
		send_msg(sock, &r, sizeof(r), -1);
	}
}

/* ---------------------------------------------------------------- */
/* The primary. */

static struct peer clients[CLIENTS];
static struct vdev plus;
static volatile uint64_t *dev; /* the primary's device-fd mapping */
static int buf, rounds[CLIENTS];

static struct reply call(int i, int op, int m, int fd)
{
	struct cmd c = { .op = op, .m = m };
	memcpy(c.rounds, rounds, sizeof(rounds));
	send_msg(clients[i].sock, &c, sizeof(c), fd);
	struct reply r;
	int none;
	CHECK(recv_msg(clients[i].sock, &r, sizeof(r), &none, 0) == sizeof(r), "client %d died (op %d)", i, op);
	return r;
}

/* Client i does `op` on mapping m (-1: every one) and must succeed. */
static void must(int i, int op, int m, const char *when)
{
	struct reply r = call(i, op, m, -1);
	CHECK(r.ok, "client %d %s: %s", i, when, r.why);
}

/* The primary and every live client (from `from` on) read every word as expected. */
static void verify_all(int from, const char *when)
{
	char why[200];
	CHECK(verify(dev, rounds, why, sizeof(why)) == 0, "primary %s: %s", when, why);
	for (int i = from; i < CLIENTS; i++)
		must(i, VERIFY, -1, when);
}

/* A new round of writes of every live client, seen by everyone. */
static void next_round(int from, const char *when)
{
	for (int i = from; i < CLIENTS; i++) {
		rounds[i]++;
		must(i, WRITE, -1, when);
	}
	verify_all(from, when);
}

/* Clients forked, device open, the pattern written, the buffer mapped by
 * both clients and the device's BAR1 range by client 1, one round written. */
static void setup(void)
{
	fork_peers(clients, CLIENTS, client);
	plus = open_device();
	memory_enable(plus.device, 1);
	dev = map_region(plus.device, 1, RAM_OFF, RAM_LEN, PROT_READ | PROT_WRITE);
	memset(rounds, 0, sizeof(rounds));
	for (unsigned w = 0; w < WORDS; w++)
		dev[w] = expected(w, rounds);
	buf = export_buffer(plus.device, 1, RAM_OFF, RAM_LEN);
	for (int i = 0; i < CLIENTS; i++)
		CHECK(call(i, MAP_BUF, -1, buf).ok, "client %d maps the buffer", i);
	struct reply r = call(1, MAP_DEV, -1, plus.device);
	CHECK(r.ok && r.maps == 2, "client 1 maps the device");
	verify_all(0, "before any write");
	next_round(0, "first round");
}

static void teardown(int from)
{
	for (int i = from; i < CLIENTS; i++) {
		struct cmd c = { .op = EXIT };
		send_msg(clients[i].sock, &c, sizeof(c), -1);
		reap_peer(&clients[i]);
	}
	CHECK(munmap((void *)dev, RAM_LEN) == 0 && close(buf) == 0, "primary cleanup");
	close_device(&plus);
}

/* ---------------------------------------------------------------- */
/* The events. */

static unsigned pmcsr_at(void)
{
	unsigned pm = find_cap(plus.device, PCI_CAP_ID_PM);
	CHECK(pm, "edu-plus has a power-management capability");
	return pm + 4;
}

static void enter_d3hot(void)
{
	unsigned at = pmcsr_at();
	config_write16(plus.device, at, (config_read16(plus.device, at) & ~3u) | 3);
	CHECK((config_read16(plus.device, at) & 3) == 3, "PMCSR reads D3hot");
}

static void leave_d3hot(void)
{
	unsigned at = pmcsr_at();
	uint16_t pmcsr = config_read16(plus.device, at);
	CHECK(pmcsr & 0x8, "No_Soft_Reset is set: leaving D3hot resets nothing");
	config_write16(plus.device, at, pmcsr & ~3u);
	CHECK((config_read16(plus.device, at) & 3) == 0, "PMCSR reads D0");
}

static void device_reset(void)
{
	struct vfio_device_info info = { .argsz = sizeof(info) };
	CHECK(ioctl(plus.device, VFIO_DEVICE_GET_INFO, &info) == 0 && (info.flags & VFIO_DEVICE_FLAGS_RESET),
	      "the device offers VFIO_DEVICE_RESET");
	CHECK(ioctl(plus.device, VFIO_DEVICE_RESET) == 0, "VFIO_DEVICE_RESET");
}

static void flr(void)
{
	unsigned exp = find_cap(plus.device, PCI_CAP_ID_EXP);
	CHECK(exp, "edu-plus has a PCI Express capability");
	uint16_t ctl = config_read16(plus.device, exp + PCI_EXP_DEVCTL);
	config_write16(plus.device, exp + PCI_EXP_DEVCTL, ctl | PCI_EXP_DEVCTL_BCR_FLR);
}

/* GET_PCI_HOT_RESET_INFO must name edu-plus alone, in group 0; the hot
 * reset gets that group's fd. */
static void hot_reset(void)
{
	union {
		struct vfio_pci_hot_reset_info info;
		char b[sizeof(struct vfio_pci_hot_reset_info) + 8 * sizeof(struct vfio_pci_dependent_device)];
	} i = { .info = { .argsz = sizeof(i) } };
	CHECK(ioctl(plus.device, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, &i) == 0, "GET_PCI_HOT_RESET_INFO");
	CHECK(i.info.count == 1 && i.info.devices[0].group_id == DEMO_GROUP && i.info.devices[0].devfn == 3 << 3,
	      "the hot reset affects edu-plus alone (%u devices)", i.info.count);
	union {
		struct vfio_pci_hot_reset r;
		char b[sizeof(struct vfio_pci_hot_reset) + sizeof(int32_t)];
	} h = { .r = { .argsz = sizeof(h), .count = 1 } };
	h.r.group_fds[0] = plus.group;
	CHECK(ioctl(plus.device, VFIO_DEVICE_PCI_HOT_RESET, &h) == 0, "VFIO_DEVICE_PCI_HOT_RESET");
}

struct event {
	const char *name;
	void (*enter)(void);
	void (*leave)(void); /* NULL: the call revokes and restores */
};

static const struct event events[] = {
	{ "d3hot", enter_d3hot, leave_d3hot },
	{ "reset", device_reset, NULL },
	{ "flr", flr, NULL },
	{ "hot-reset", hot_reset, NULL },
};

/* After the event COMMAND.MEMORY is set again (kept, or restored). */
static void memory_still_enabled(const struct event *e)
{
	CHECK(config_read16(plus.device, PCI_COMMAND) & PCI_COMMAND_MEMORY, "COMMAND.MEMORY after %s", e->name);
}

static void run_event(const struct event *e)
{
	setup();
	e->enter();
	if (e->leave) {
		for (int i = 0; i < CLIENTS; i++)
			must(i, FAULTS, -1, "in D3hot");
		uint64_t v;
		CHECK(try_load(dev, &v) == -1 && seen_code == BUS_ADRERR, "the primary's mapping in D3hot");
		e->leave();
	}
	memory_still_enabled(e);
	verify_all(0, "after the event");
	next_round(0, "writing after the event");
	teardown(0);
	printf("ok %s\n", e->name);
}

/* Client 1 is stopped through the whole event. */
static void run_event_stopped(const struct event *e)
{
	setup();
	stop_peer(&clients[1]);
	double t0 = now_us();
	e->enter();
	double t1 = now_us();
	if (e->leave) {
		must(0, FAULTS, -1, "in D3hot, client 1 stopped");
		e->leave();
	}
	double t2 = now_us();
	printf("%s with client 1 stopped: returned after %.0f us%s", e->name, t1 - t0, e->leave ? "" : "\n");
	if (e->leave)
		printf(", back to D0 after %.0f us\n", t2 - t1);
	memory_still_enabled(e);
	/* Client 0 and the primary work while client 1 is still stopped. */
	char why[200];
	CHECK(verify(dev, rounds, why, sizeof(why)) == 0, "primary while client 1 is stopped: %s", why);
	must(0, VERIFY, -1, "while client 1 is stopped");
	cont_peer(&clients[1]);
	verify_all(0, "after SIGCONT");
	next_round(0, "writing after SIGCONT");
	teardown(0);
	printf("ok %s-stopped\n", e->name);
}

/* Client 0 dies holding its buffer fd and mapping; what follows must not
 * wait for it, and client 1 follows every revoke as usual. */
static void killed(void)
{
	setup();
	int status;
	CHECK(kill(clients[0].pid, SIGKILL) == 0, "SIGKILL");
	CHECK(waitpid(clients[0].pid, &status, 0) == clients[0].pid && WIFSIGNALED(status) &&
		      WTERMSIG(status) == SIGKILL,
	      "client 0 killed %#x", status);
	close(clients[0].sock);
	double t0 = now_us();
	memory_enable(plus.device, 0);
	double t1 = now_us();
	must(1, FAULTS, -1, "with COMMAND.MEMORY clear");
	memory_enable(plus.device, 1);
	verify_all(1, "after COMMAND.MEMORY set");
	next_round(1, "writing after COMMAND.MEMORY set");
	volatile uint64_t *mine = mmap(NULL, RAM_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, buf, 0);
	CHECK(mine != MAP_FAILED, "the primary maps the buffer");
	double t2 = now_us();
	revoke_buffer(plus.device, buf);
	double t3 = now_us();
	printf("with client 0 killed: COMMAND.MEMORY clear took %.0f us, permanent revoke %.0f us\n", t1 - t0, t3 - t2);
	must(1, FAULTS, 0, "after the permanent revoke");
	uint64_t v;
	CHECK(try_load(mine, &v) == -1 && seen_code == BUS_ADRERR, "the primary's buffer mapping is revoked");
	/* The device-fd mappings are buffers of their own: untouched. */
	char why[200];
	CHECK(verify(dev, rounds, why, sizeof(why)) == 0, "primary after the revoke: %s", why);
	must(1, VERIFY, 1, "through the device fd after the buffer's revoke");
	CHECK(munmap((void *)mine, RAM_LEN) == 0, "munmap");
	teardown(1);
	printf("ok killed\n");
}

/* Each argument names a check: an event, an event with "-stopped", or
 * "killed"; they run in order. */
int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	install(SIGBUS, recover_bus, 0);
	for (int a = 1; a < argc; a++) {
		if (!strcmp(argv[a], "killed")) {
			killed();
			continue;
		}
		size_t k = 0;
		char stopped[64] = "";
		for (; k < sizeof(events) / sizeof(events[0]); k++) {
			snprintf(stopped, sizeof(stopped), "%s-stopped", events[k].name);
			if (!strcmp(argv[a], events[k].name) || !strcmp(argv[a], stopped))
				break;
		}
		CHECK(k < sizeof(events) / sizeof(events[0]), "unknown check %s", argv[a]);
		if (!strcmp(argv[a], stopped))
			run_event_stopped(&events[k]);
		else
			run_event(&events[k]);
	}
	return 0;
}
