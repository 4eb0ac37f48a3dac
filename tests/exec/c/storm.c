/* A storm with client processes: a primary opens edu-plus, forks CLIENTS
 * client processes before it opens anything, exports SLOTS buffers of RAM
 * BAR1 and passes them over SCM_RIGHTS; the clients map them and read and
 * write their own word of every page in a loop, catching SIGBUS, while two
 * threads of the primary revoke and un-revoke:
 *
 * - the toggler clears and sets COMMAND.MEMORY, and runs VFIO_DEVICE_RESET
 *   and a function-level reset (PCIe DEVCTL) while memory is enabled;
 * - the revoker permanently revokes the buffer of a slot (DMA_BUF_REVOKE),
 *   exports a new one over the same BAR range and sends it to every client,
 *   which unmaps the old one and maps the new one.
 *
 * Every access is judged against a page shared by all processes (created
 * before the fork) that the primary updates around each revoke:
 *
 * - `dev_seq` (the toggler's only): 4k enabled; 4k+1 a revoke (memory
 *   clear, reset or FLR) is starting; 4k+2 memory clear has returned, so
 *   every mapping is revoked; 4k+3 memory set is starting; 4k+4 it has
 *   returned (a reset or FLR goes from 4k+1 straight to 4k+4: it revokes
 *   and un-revokes inside the call).
 * - `revoking[s]` / `revoked[s]`: the generation of slot s whose permanent
 *   revoke has started / returned (generations count from 1).
 *
 * A client loads `revoked[s]` and `dev_seq` before an access to its
 * mapping of generation g of slot s, and `dev_seq` and `revoking[s]` after
 * it (all sequentially consistent, with fences around the access). Then:
 *
 * - a success is a violation when revoked[s] >= g before the access (a
 *   permanent revoke had returned: terminal), or when dev_seq read the same
 *   4k+2 value on both sides (the access lay wholly inside a memory-clear
 *   window: that revoke returned only after every process had zapped its
 *   pages and refuses to fault them back until memory set begins);
 * - a SIGBUS (BUS_ADRERR, at the accessed address) is a violation when it
 *   falls wholly inside an enabled period: dev_seq read the same 4k value
 *   on both sides and no permanent revoke of generation g had started by
 *   the second load (every un-revoke returns only after every process has
 *   been told, so nothing may fault then); an mmap of a received buffer
 *   refused with ENODEV is judged the same way, and one that succeeds
 *   after the buffer's permanent revoke returned is a violation;
 * - a successful read must return the client's last successful write to
 *   that word (a store that raised SIGBUS never executed; revokes, reset
 *   and FLR keep RAM), and after every un-revoke (dev_seq reaching a new 4k
 *   value) each client reads back every word it owns.
 *
 * The toggler stays in each memory-clear window until some client has had
 * a judged SIGBUS there, and in each enabled period until some client has
 * had a judged success, so both outcomes are really exercised; the revoker
 * waits for a judged SIGBUS (or refused mmap) after each permanent revoke. At the end the
 * primary closes its buffers and the device: that last close must revoke
 * every client mapping (every word of every mapping faults, read and
 * write). Counts, not time, bound the run; waits for events have a
 * generous watchdog. Prints "ok storm" and the tallies.
 *
 * Usage: storm CLIENTS SEED CYCLES ACCESSES */
#include "util.h"

#include <pthread.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>

#define MAX_CLIENTS 16
#define SLOTS 4
#define SLOT_LEN 0x10000
#define SLOT_BASE 0x200000
#define PAGES (SLOT_LEN / 0x1000)
#define WATCHDOG_S 120

#define ATOMIC_LOAD(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define ATOMIC_STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)
#define ATOMIC_INC(p) __atomic_add_fetch((p), 1, __ATOMIC_SEQ_CST)

struct shared {
	uint64_t dev_seq;
	uint64_t revoking[SLOTS], revoked[SLOTS];
	/* Judged outcomes: memory-clear SIGBUS, permanent-revoke SIGBUS, and
	 * enabled successes; all accesses; sweeps after un-revokes. */
	uint64_t bus_window, bus_perm, ok_enabled, accesses, sweeps, stop;
};

static struct shared *sh;

/* xorshift64*: deterministic choices from the seed. */
static uint64_t next_rand(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dull;
}

/* Waits until *counter exceeds `old`; a stall past the watchdog fails. */
static void wait_above(uint64_t *counter, uint64_t old, const char *what)
{
	struct timespec start, now;
	clock_gettime(CLOCK_MONOTONIC, &start);
	while (ATOMIC_LOAD(counter) <= old) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		CHECK(now.tv_sec - start.tv_sec < WATCHDOG_S,
		      "watchdog: no %s for %d s (dev_seq %lu, accesses %lu, judged: %lu clear SIGBUS, %lu revoked "
		      "SIGBUS, %lu successes)",
		      what, WATCHDOG_S, (unsigned long)sh->dev_seq, (unsigned long)sh->accesses,
		      (unsigned long)sh->bus_window, (unsigned long)sh->bus_perm, (unsigned long)sh->ok_enabled);
		/* A poll, not a deadline: a short nap leaves the cores to the storm. */
		nanosleep(&(struct timespec){ .tv_nsec = 50000 }, NULL);
	}
}

/* ---------------------------------------------------------------- */
/* Messages between the primary and a client. */

enum op { NEWBUF, STOP, FINAL };

struct msg {
	int op, slot;
	uint64_t gen, val;
};

/* ---------------------------------------------------------------- */
/* A client. */

static int me;
static struct slot {
	volatile uint64_t *map; /* NULL: not mapped */
	uint64_t gen;		/* of the mapping, or of the pending fd */
	int pending;		/* a received fd not mapped yet, or -1 */
	uint64_t last[PAGES];	/* last successful write to my word of each page */
} slots[SLOTS];

static volatile uint64_t *word(int s, int page)
{
	return slots[s].map + (page * 0x1000 + 64 * me) / 8;
}

/* One judged access to my word of page `page` of slot s: a store of `val`
 * or a load (write == 0). Returns 1 when it succeeded. */
static int access_word(int s, int page, int write, uint64_t val)
{
	struct slot *sl = &slots[s];
	volatile uint64_t *p = word(s, page);
	uint64_t got = 0;
	int before = seen_count;
	uint64_t rv0 = ATOMIC_LOAD(&sh->revoked[s]), d0 = ATOMIC_LOAD(&sh->dev_seq);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	int faulted = sigsetjmp(jump, 1);
	if (!faulted) {
		if (write)
			*p = val;
		else
			got = *p;
	}
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	uint64_t d1 = ATOMIC_LOAD(&sh->dev_seq), rk1 = ATOMIC_LOAD(&sh->revoking[s]);
	ATOMIC_INC(&sh->accesses);
	int stable = d0 == d1;
	if (faulted) {
		CHECK(seen_count == before + 1 && seen_signo == SIGBUS && seen_code == BUS_ADRERR,
		      "client %d: signal %d code %d", me, seen_signo, seen_code);
		CHECK(seen_addr == (void *)p, "client %d: SIGBUS at %p, not %p", me, seen_addr, (void *)p);
		CHECK(rk1 >= sl->gen || !stable || d0 % 4 != 0,
		      "client %d: SIGBUS on slot %d gen %lu page %d with no revoke in force (dev_seq %lu)", me, s,
		      (unsigned long)sl->gen, page, (unsigned long)d0);
		if (rv0 >= sl->gen)
			ATOMIC_INC(&sh->bus_perm);
		else if (stable && d0 % 4 == 2)
			ATOMIC_INC(&sh->bus_window);
		return 0;
	}
	CHECK(rv0 < sl->gen, "client %d: access to slot %d gen %lu succeeded after its permanent revoke", me, s,
	      (unsigned long)sl->gen);
	CHECK(!(stable && d0 % 4 == 2), "client %d: access to slot %d succeeded inside a memory-clear window (%lu)", me,
	      s, (unsigned long)d0);
	if (write)
		sl->last[page] = val;
	else
		CHECK(got == sl->last[page], "client %d: slot %d page %d reads %#lx, last written %#lx", me, s, page,
		      (unsigned long)got, (unsigned long)sl->last[page]);
	if (stable && d0 % 4 == 0 && rk1 < sl->gen)
		ATOMIC_INC(&sh->ok_enabled);
	return 1;
}

/* Maps the pending fd of slot s; a refusal must fall under a revoke. */
static void map_pending(int s)
{
	struct slot *sl = &slots[s];
	uint64_t rv0 = ATOMIC_LOAD(&sh->revoked[s]), d0 = ATOMIC_LOAD(&sh->dev_seq);
	void *m = mmap(NULL, SLOT_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, sl->pending, 0);
	int e = errno;
	uint64_t d1 = ATOMIC_LOAD(&sh->dev_seq), rk1 = ATOMIC_LOAD(&sh->revoking[s]);
	if (m == MAP_FAILED) {
		errno = e;
		CHECK(e == ENODEV && (rk1 >= sl->gen || d0 != d1 || d0 % 4 != 0),
		      "client %d: mmap of slot %d gen %lu refused with no revoke in force", me, s, (unsigned long)sl->gen);
		/* Refused after a revoke returned: that revoke is seen. */
		if (rv0 >= sl->gen)
			ATOMIC_INC(&sh->bus_perm);
		else if (d0 == d1 && d0 % 4 == 2)
			ATOMIC_INC(&sh->bus_window);
		return;
	}
	CHECK(rv0 < sl->gen, "client %d: mmap of slot %d gen %lu succeeded after its permanent revoke", me, s,
	      (unsigned long)sl->gen);
	sl->map = m;
	CHECK(close(sl->pending) == 0, "close");
	sl->pending = -1;
}

/* A new buffer for a slot: the old mapping goes, the new fd waits to be
 * mapped. */
static void take(const struct msg *m, int fd)
{
	struct slot *sl = &slots[m->slot];
	CHECK(fd >= 0 && m->slot >= 0 && m->slot < SLOTS && m->gen > sl->gen, "NEWBUF");
	if (sl->map)
		CHECK(munmap((void *)sl->map, SLOT_LEN) == 0, "munmap");
	if (sl->pending >= 0)
		close(sl->pending);
	sl->map = NULL;
	sl->pending = fd;
	sl->gen = m->gen;
	map_pending(m->slot);
}

static uint64_t seed, cycles, accesses;

static void client(int index, int sock)
{
	me = index;
	/* A primary that fails must not leave its clients spinning. */
	CHECK(prctl(PR_SET_PDEATHSIG, SIGKILL) == 0 && getppid() != 1, "PR_SET_PDEATHSIG");
	install(SIGBUS, recover_bus, 0);
	for (int s = 0; s < SLOTS; s++)
		slots[s].pending = -1;
	uint64_t rnd = seed * 0x9e3779b97f4a7c15ull + (uint64_t)index + 1, swept = 0, n = 0;
	for (;;) {
		/* Loaded before the drain: every buffer sent before the stop is
		 * queued by then, so none is left behind. */
		uint64_t stop = ATOMIC_LOAD(&sh->stop);
		struct msg m;
		int fd;
		ssize_t got;
		while ((got = recv_msg(sock, &m, sizeof(m), &fd, MSG_DONTWAIT)) > 0) {
			CHECK(m.op == NEWBUF, "client %d: op %d", me, m.op);
			take(&m, fd);
		}
		CHECK(got != 0, "client %d: the primary is gone", me);
		if (stop && n >= accesses)
			break;
		/* After every un-revoke, every word I own reads back. */
		uint64_t d = ATOMIC_LOAD(&sh->dev_seq);
		if (d % 4 == 0 && d > swept) {
			for (int s = 0; s < SLOTS; s++)
				for (int page = 0; slots[s].map && page < PAGES; page++)
					access_word(s, page, 0, 0);
			swept = d;
			ATOMIC_INC(&sh->sweeps);
		}
		uint64_t r = next_rand(&rnd);
		int s = (int)(r % SLOTS), page = (int)((r >> 8) % PAGES), write = (int)((r >> 16) & 1);
		if (!slots[s].map) {
			if (slots[s].pending >= 0)
				map_pending(s);
			continue;
		}
		access_word(s, page, write, ((uint64_t)me << 48) | ++n);
	}
	/* Nothing revokes any more: every slot maps, so the close below has
	 * every buffer to take back. */
	for (int s = 0; s < SLOTS; s++)
		if (!slots[s].map) {
			CHECK(slots[s].pending >= 0, "client %d: slot %d never received", me, s);
			map_pending(s);
			CHECK(slots[s].map, "client %d: slot %d does not map after the storm", me, s);
		}
	/* Report, then wait for the primary's close of the device. */
	struct msg m = { STOP, 0, 0, 0 };
	send_msg(sock, &m, sizeof(m), -1);
	int fd;
	CHECK(recv_msg(sock, &m, sizeof(m), &fd, 0) == sizeof(m) && m.op == FINAL, "client %d: FINAL", me);
	for (int s = 0; s < SLOTS; s++)
		for (int page = 0; page < PAGES; page++) {
			for (int write = 0; write < 2; write++) {
				volatile uint64_t *p = word(s, page);
				int before = seen_count;
				if (!sigsetjmp(jump, 1)) {
					if (write)
						*p = 1;
					else
						(void)*p;
					CHECK(0, "client %d: slot %d page %d accessible after the device's last close", me, s,
					      page);
				}
				CHECK(seen_count == before + 1 && seen_code == BUS_ADRERR && seen_addr == (void *)p,
				      "client %d: after close", me);
			}
		}
	send_msg(sock, &m, sizeof(m), -1);
	_exit(0);
}

/* ---------------------------------------------------------------- */
/* The primary. */

static int nclients;
static struct peer clients[MAX_CLIENTS];
static struct vdev plus;
static int bufs[SLOTS];
static uint64_t gens[SLOTS];
static uint64_t config_off;
static uint64_t tally_resets, tally_flrs, tally_clears, tally_perm;

static uint16_t read_config16(uint64_t reg)
{
	uint16_t v;
	CHECK(pread(plus.device, &v, 2, config_off + reg) == 2, "config read %#lx", (unsigned long)reg);
	return v;
}

static void write_config16(uint64_t reg, uint16_t v)
{
	CHECK(pwrite(plus.device, &v, 2, config_off + reg) == 2, "config write %#lx", (unsigned long)reg);
}

/* Exports slot s's next generation and sends it to every client. */
static void export_slot(int s)
{
	bufs[s] = export_buffer(plus.device, 1, SLOT_BASE + (uint64_t)s * SLOT_LEN, SLOT_LEN);
	gens[s]++;
	struct msg m = { NEWBUF, s, gens[s], 0 };
	for (int i = 0; i < nclients; i++)
		send_msg(clients[i].sock, &m, sizeof(m), bufs[s]);
}

/* COMMAND.MEMORY clear and set, VFIO_DEVICE_RESET and FLR, publishing
 * dev_seq around each; resets only while memory is enabled. */
static void *toggler(void *arg)
{
	(void)arg;
	uint64_t rnd = seed ^ 0x70991e5, d = 0;
	for (uint64_t i = 0; i < cycles; i++) {
		uint64_t what = next_rand(&rnd) % 4;
		uint16_t cmd = read_config16(PCI_COMMAND);
		CHECK(cmd & PCI_COMMAND_MEMORY, "memory enabled between cycles");
		ATOMIC_STORE(&sh->dev_seq, ++d);
		if (what < 2) {
			write_config16(PCI_COMMAND, cmd & ~PCI_COMMAND_MEMORY);
			ATOMIC_STORE(&sh->dev_seq, ++d);
			wait_above(&sh->bus_window, ATOMIC_LOAD(&sh->bus_window), "SIGBUS in a memory-clear window");
			ATOMIC_STORE(&sh->dev_seq, ++d);
			write_config16(PCI_COMMAND, cmd);
			tally_clears++;
		} else if (what == 2) {
			CHECK(ioctl(plus.device, VFIO_DEVICE_RESET) == 0, "VFIO_DEVICE_RESET");
			d += 2;
			tally_resets++;
		} else {
			/* PCIe Device Control at 0x58: Initiate Function-Level Reset. */
			write_config16(0x58, read_config16(0x58) | 0x8000);
			d += 2;
			tally_flrs++;
		}
		/* Reset and FLR keep COMMAND as it was: memory is enabled. */
		ATOMIC_STORE(&sh->dev_seq, ++d);
		wait_above(&sh->ok_enabled, ATOMIC_LOAD(&sh->ok_enabled), "success in an enabled period");
	}
	return NULL;
}

/* Permanent revokes of a slot's buffer, each followed by a new buffer over
 * the same range. */
static void *revoker(void *arg)
{
	(void)arg;
	uint64_t rnd = seed ^ 0x4e40ce;
	for (uint64_t i = 0; i < cycles; i++) {
		int s = (int)(next_rand(&rnd) % SLOTS);
		uint64_t seen = ATOMIC_LOAD(&sh->bus_perm);
		ATOMIC_STORE(&sh->revoking[s], gens[s]);
		revoke_buffer(plus.device, bufs[s]);
		ATOMIC_STORE(&sh->revoked[s], gens[s]);
		CHECK(close(bufs[s]) == 0, "close of a revoked buffer");
		wait_above(&sh->bus_perm, seen, "SIGBUS after a permanent revoke");
		export_slot(s);
		tally_perm++;
	}
	return NULL;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	CHECK(argc == 5, "usage: storm CLIENTS SEED CYCLES ACCESSES");
	nclients = atoi(argv[1]);
	seed = strtoull(argv[2], NULL, 0);
	cycles = strtoull(argv[3], NULL, 0);
	accesses = strtoull(argv[4], NULL, 0);
	CHECK(nclients >= 1 && nclients <= MAX_CLIENTS && cycles >= 1, "arguments");
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CHECK(sh != MAP_FAILED, "shared page");
	/* Clients first: what a client holds, it received. */
	fork_peers(clients, nclients, client);
	plus = open_device();
	config_off = region(plus.device, VFIO_PCI_CONFIG_REGION_INDEX).offset;
	memory_enable(plus.device, 1);
	struct vfio_device_info info = { .argsz = sizeof(info) };
	CHECK(ioctl(plus.device, VFIO_DEVICE_GET_INFO, &info) == 0 && (info.flags & VFIO_DEVICE_FLAGS_RESET),
	      "the device offers VFIO_DEVICE_RESET");
	/* Every word starts at 0, as each client's record of it does. */
	static const char zero[SLOTS * SLOT_LEN];
	CHECK(pwrite(plus.device, zero, sizeof(zero), region(plus.device, 1).offset + SLOT_BASE) == sizeof(zero),
	      "zero the slots");
	for (int s = 0; s < SLOTS; s++)
		export_slot(s);

	pthread_t t, r;
	CHECK(pthread_create(&t, NULL, toggler, NULL) == 0 && pthread_create(&r, NULL, revoker, NULL) == 0,
	      "threads");
	CHECK(pthread_join(t, NULL) == 0 && pthread_join(r, NULL) == 0, "join");
	ATOMIC_STORE(&sh->stop, 1);
	for (int i = 0; i < nclients; i++) {
		struct msg m;
		int fd;
		CHECK(recv_msg(clients[i].sock, &m, sizeof(m), &fd, 0) == sizeof(m) && m.op == STOP,
		      "client %d's report", i);
	}
	/* The last close of the device revokes every client's mapping. */
	for (int s = 0; s < SLOTS; s++)
		CHECK(close(bufs[s]) == 0, "close buffer");
	close_device(&plus);
	for (int i = 0; i < nclients; i++) {
		struct msg m = { FINAL, 0, 0, 0 };
		int fd, status;
		send_msg(clients[i].sock, &m, sizeof(m), -1);
		CHECK(recv_msg(clients[i].sock, &m, sizeof(m), &fd, 0) == sizeof(m) && m.op == FINAL,
		      "client %d after the close", i);
		CHECK(waitpid(clients[i].pid, &status, 0) == clients[i].pid && WIFEXITED(status) && !WEXITSTATUS(status),
		      "client %d status %#x", i, status);
	}
	printf("storm: %d clients, %lu accesses, %lu memory clears (%lu judged SIGBUS), %lu resets, %lu FLRs, "
	       "%lu permanent revokes (%lu judged SIGBUS), %lu judged successes, %lu sweeps\n",
	       nclients, (unsigned long)sh->accesses, (unsigned long)tally_clears, (unsigned long)sh->bus_window,
	       (unsigned long)tally_resets, (unsigned long)tally_flrs, (unsigned long)tally_perm,
	       (unsigned long)sh->bus_perm, (unsigned long)sh->ok_enabled, (unsigned long)sh->sweeps);
	printf("ok storm\n");
	return 0;
}
