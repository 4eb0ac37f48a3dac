/*
 * mt_stress: faults, register accesses and revokes at the same time.
 *
 *   mt_stress -d <BDF of edu-plus or bochs-display> [-n ROUNDS]
 *
 * Threads that fault pages of a RAM BAR mapping (each owns its pages, writes
 * them through the device-fd mapping and reads them back through it and
 * through the newest exported buffer), threads that poke the register BAR
 * (edu's liveness register, or bochs-display's byte-order register), and
 * the main thread, which clears and sets COMMAND.MEMORY and permanently
 * revokes exported buffers.
 *
 * How an access is judged without timing: the main thread publishes a
 * phase number around each change, 4r (memory on, stable), 4r+1 (turning
 * off), 4r+2 (off, the revoke has returned), 4r+3 (turning on). A worker
 * reads the phase before and after each access; when both reads agree the
 * access happened wholly inside that phase, so in phase 4r+2 it must have
 * raised SIGBUS and in phase 4r it must have succeeded. Buffers carry a
 * state (live, revoking, revoked) read the same way. The main thread moves
 * on only when every worker has made such a clean access in the current
 * phase (a watchdog bounds the wait), and the run has a fixed number of
 * rounds.
 */
#include "common.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <unistd.h>

#define FAULTERS 3
#define POKERS 2
#define WORKERS (FAULTERS + POKERS)
#define PAGES_EACH 32
#define WINDOW ((size_t)FAULTERS * PAGES_EACH * PAGE)
#define MAX_BUFS 64

enum buf_state { BUF_LIVE = 1, BUF_REVOKING, BUF_REVOKED };

static struct {
	int dev;
	struct profile p;
	volatile uint8_t *ram;  /* device-fd mapping of the RAM BAR [0, WINDOW) */
	volatile uint8_t *regs; /* device-fd mapping of the register BAR's first page */
	atomic_ulong phase;
	atomic_int stop;
	/* Per worker: 1 + the last stable phase it made a clean access in
	 * (0: none yet). */
	atomic_ulong seen[WORKERS];
	/* Buffers of [0, WINDOW), published in order, never unmapped before the end. */
	volatile uint8_t *bufmap[MAX_BUFS];
	atomic_int buf_state[MAX_BUFS];
	atomic_int nbufs;
	/* Per faulter: the newest buffer it read while live, and while revoked (+1). */
	atomic_int buf_live_seen[FAULTERS];
	atomic_int buf_dead_seen[FAULTERS];
	/* The register pokers take turns: a write and its read-back are one unit. */
	pthread_mutex_t reg_lock;
	uint32_t reg_last; /* what the register holds now; protected by reg_lock */
	unsigned long accesses[WORKERS], faults[WORKERS];
} S;

static bool stable(unsigned long p1, unsigned long p2, unsigned want)
{
	return p1 == p2 && p1 % 4 == want;
}

static void *faulter(void *arg)
{
	const int i = (int)(intptr_t)arg;
	uint32_t expected[PAGES_EACH] = { 0 };
	struct fault f;
	for (unsigned long iter = 0; !atomic_load(&S.stop); iter++) {
		const unsigned k = iter % PAGES_EACH;
		const size_t off = ((size_t)i * PAGES_EACH + k) * PAGE;
		const bool write = (iter / PAGES_EACH) % 2 == 0;
		const uint32_t v = ((uint32_t)i << 28) ^ (uint32_t)iter;
		uint64_t got = v;

		unsigned long p1 = atomic_load(&S.phase);
		int sig = write ? try_store(S.ram + off, 4, v, &f) : try_load(S.ram + off, 4, &got, &f);
		unsigned long p2 = atomic_load(&S.phase);
		S.accesses[i]++;
		if (sig) {
			S.faults[i]++;
			if (sig != SIGBUS || f.code != BUS_ADRERR || f.addr != (uintptr_t)(S.ram + off))
				FAIL("faulter %d: %s at 0x%" PRIxPTR " (code %d) on its page 0x%zx", i, signal_name(sig), f.addr,
				     f.code, off);
			if (stable(p1, p2, 0))
				FAIL("faulter %d: SIGBUS in phase %lu, with memory on and no change in progress", i, p1);
		} else {
			if (stable(p1, p2, 2))
				FAIL("faulter %d: a %s succeeded in phase %lu, after memory was turned off", i,
				     write ? "store" : "load", p1);
			if (write)
				expected[k] = v;
			else if ((uint32_t)got != expected[k])
				FAIL("faulter %d: page 0x%zx holds 0x%x, want 0x%x (data lost across a revoke)", i, off,
				     (uint32_t)got, expected[k]);
		}
		if (p1 == p2 && p1 % 2 == 0)
			atomic_store(&S.seen[i], p1 + 1);

		/* The newest buffer: the same BAR bytes, so the same value. */
		int n = atomic_load(&S.nbufs);
		if (!n)
			continue;
		int j = n - 1;
		int st1 = atomic_load(&S.buf_state[j]);
		p1 = atomic_load(&S.phase);
		sig = try_load(S.bufmap[j] + off, 4, &got, &f);
		p2 = atomic_load(&S.phase);
		int st2 = atomic_load(&S.buf_state[j]);
		S.accesses[i]++;
		if (sig) {
			S.faults[i]++;
			if (st1 == BUF_LIVE && st2 == BUF_LIVE && stable(p1, p2, 0))
				FAIL("faulter %d: SIGBUS from live buffer %d with memory on", i, j);
			if (st1 == BUF_REVOKED)
				atomic_store(&S.buf_dead_seen[i], j + 1);
		} else {
			if (st1 == BUF_REVOKED)
				FAIL("faulter %d: a load through buffer %d succeeded after its permanent revoke", i, j);
			if (stable(p1, p2, 2))
				FAIL("faulter %d: a load through buffer %d succeeded with memory off", i, j);
			if ((uint32_t)got != expected[k])
				FAIL("faulter %d: buffer %d reads 0x%x at 0x%zx, the device-fd mapping holds 0x%x", i, j,
				     (uint32_t)got, off, expected[k]);
			if (st1 == BUF_LIVE && st2 == BUF_LIVE && stable(p1, p2, 0))
				atomic_store(&S.buf_live_seen[i], j + 1);
		}
	}
	return NULL;
}

/* One register write and read-back; returns the signal of a faulting access. */
static int poke(uint32_t seq, uint32_t *wrote, uint32_t *read_back, struct fault *f)
{
	uint64_t got = 0;
	int sig;
	if (S.p.kind == KIND_BOCHS) {
		*wrote = seq % 2 ? BOCHS_BIG : BOCHS_LITTLE;
		if ((sig = try_store(S.regs + BOCHS_BYTEORDER, 4, *wrote, f)))
			return sig;
		S.reg_last = *wrote;
		sig = try_load(S.regs + BOCHS_BYTEORDER, 4, &got, f);
	} else {
		*wrote = seq * 2654435761U;
		if ((sig = try_store(S.regs + EDU_LIVENESS, 4, *wrote, f)))
			return sig;
		S.reg_last = ~*wrote;
		sig = try_load(S.regs + EDU_LIVENESS, 4, &got, f);
	}
	*read_back = (uint32_t)got;
	return sig;
}

static void *poker(void *arg)
{
	const int w = (int)(intptr_t)arg;
	const unsigned reg = S.p.kind == KIND_BOCHS ? BOCHS_BYTEORDER : EDU_LIVENESS;
	struct fault f;
	for (uint32_t seq = (uint32_t)w; !atomic_load(&S.stop); seq += POKERS) {
		uint32_t wrote = 0, back = 0;
		uint64_t before = 0;
		pthread_mutex_lock(&S.reg_lock);
		unsigned long p1 = atomic_load(&S.phase);
		int sig = try_load(S.regs + reg, 4, &before, &f);
		if (!sig && (uint32_t)before != S.reg_last) {
			pthread_mutex_unlock(&S.reg_lock);
			FAIL("poker %d: the register reads 0x%x, it was left at 0x%x", w, (uint32_t)before, S.reg_last);
		}
		if (!sig)
			sig = poke(seq, &wrote, &back, &f);
		unsigned long p2 = atomic_load(&S.phase);
		pthread_mutex_unlock(&S.reg_lock);
		S.accesses[w]++;
		if (sig) {
			S.faults[w]++;
			if (sig != SIGBUS || f.code != BUS_ADRERR)
				FAIL("poker %d: %s with si_code %d", w, signal_name(sig), f.code);
			if (stable(p1, p2, 0))
				FAIL("poker %d: SIGBUS in phase %lu, with memory on", w, p1);
		} else {
			if (stable(p1, p2, 2))
				FAIL("poker %d: a register access succeeded in phase %lu, with memory off", w, p1);
			uint32_t want = S.p.kind == KIND_BOCHS ? wrote : ~wrote;
			if (back != want)
				FAIL("poker %d: wrote 0x%x, read back 0x%x, want 0x%x", w, wrote, back, want);
		}
		if (p1 == p2 && p1 % 2 == 0)
			atomic_store(&S.seen[w], p1 + 1);
	}
	return NULL;
}

/* Waits until every worker (or every faulter, for the buffer counters) has
 * reached `want`; the watchdog turns a stuck worker into a failure. */
static void wait_workers(const atomic_ulong *seen, int n, unsigned long want, const char *what)
{
	struct deadline dl;
	deadline_start(&dl, WATCHDOG_SECONDS);
	for (int w = 0; w < n; w++)
		while (atomic_load(&seen[w]) < want + 1) {
			if (deadline_passed(&dl))
				FAIL("worker %d made no clean access %s (phase %lu) within the %d s watchdog", w, what, want,
				     WATCHDOG_SECONDS);
			sched_yield();
		}
}

static void wait_faulters(const atomic_int *seen, int want, const char *what)
{
	struct deadline dl;
	deadline_start(&dl, WATCHDOG_SECONDS);
	for (int w = 0; w < FAULTERS; w++)
		while (atomic_load(&seen[w]) < want) {
			if (deadline_passed(&dl))
				FAIL("faulter %d did not %s buffer %d within the %d s watchdog", w, what, want - 1,
				     WATCHDOG_SECONDS);
			sched_yield();
		}
}

/* Export a buffer of the window, let every faulter read it live, revoke
 * it for good, and let every faulter see it dead. */
static void buffer_round(int j)
{
	int fd = dmabuf_export1(S.dev, (uint32_t)S.p.ram_bar, 0, WINDOW);
	S.bufmap[j] = MUST_MAP(mmap(NULL, WINDOW, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), "buffer mmap");
	atomic_store(&S.buf_state[j], BUF_LIVE);
	atomic_store(&S.nbufs, j + 1);
	wait_faulters(S.buf_live_seen, j + 1, "read live");
	atomic_store(&S.buf_state[j], BUF_REVOKING);
	MUST(dmabuf_revoke(S.dev, fd), "DMA_BUF_REVOKE of buffer %d", j);
	atomic_store(&S.buf_state[j], BUF_REVOKED);
	wait_faulters(S.buf_dead_seen, j + 1, "fault on revoked");
	close(fd);
}

int main(int argc, char **argv)
{
	const char *bdf = NULL;
	unsigned rounds = 24;
	int opt;
	tests_init("mt_stress");
	while ((opt = getopt(argc, argv, "d:n:")) != -1) {
		if (opt == 'd')
			bdf = parse_bdf(optarg);
		else if (opt == 'n')
			rounds = (unsigned)strtoul(optarg, NULL, 0);
		else
			break;
	}
	if (!bdf || optind != argc || rounds == 0 || rounds > MAX_BUFS) {
		fprintf(stderr, "usage: mt_stress -d BDF [-n ROUNDS (1..%d)]\n", MAX_BUFS);
		return 2;
	}

	struct legacy lg;
	S.dev = legacy_open(bdf, &lg);
	profile_detect(S.dev, &S.p);
	if (S.p.ram_bar < 0)
		FAIL("%s (%s) has no RAM BAR", bdf, S.p.name);
	printf("# %s at %s: %d faulters, %d register pokers, %u rounds\n", S.p.name, bdf, FAULTERS, POKERS, rounds);
	S.ram = map_region(S.dev, (uint32_t)S.p.ram_bar, 0, WINDOW);
	S.regs = map_region(S.dev, S.p.reg_bar, 0, PAGE);
	memset((void *)S.ram, 0, WINDOW); /* every page starts at the faulters' expected 0 */
	pthread_mutex_init(&S.reg_lock, NULL);
	if (S.p.kind == KIND_BOCHS) {
		STORE(4, S.regs + BOCHS_BYTEORDER, BOCHS_LITTLE, "byte order");
		S.reg_last = BOCHS_LITTLE;
	} else {
		STORE(4, S.regs + EDU_LIVENESS, 0, "liveness");
		S.reg_last = ~0U;
	}

	pthread_t t[WORKERS];
	for (int w = 0; w < WORKERS; w++)
		if (pthread_create(&t[w], NULL, w < FAULTERS ? faulter : poker, (void *)(intptr_t)w))
			FAIL("pthread_create failed");

	for (unsigned r = 0; r < rounds; r++) {
		unsigned long base = 4UL * r;
		wait_workers(S.seen, WORKERS, base, "with memory on");
		buffer_round((int)r);
		atomic_store(&S.phase, base + 1);
		set_memory(S.dev, false);
		atomic_store(&S.phase, base + 2);
		wait_workers(S.seen, WORKERS, base + 2, "with memory off");
		atomic_store(&S.phase, base + 3);
		set_memory(S.dev, true);
		atomic_store(&S.phase, base + 4);
	}
	wait_workers(S.seen, WORKERS, 4UL * rounds, "after the last round");
	atomic_store(&S.stop, 1);
	for (int w = 0; w < WORKERS; w++)
		pthread_join(t[w], NULL);

	for (int w = 0; w < WORKERS; w++)
		CHECK(S.accesses[w] > S.faults[w] && S.faults[w] >= rounds,
		      "%s %d: %lu accesses, %lu of them SIGBUS, every one where and when expected",
		      w < FAULTERS ? "faulter" : "poker", w, S.accesses[w], S.faults[w]);
	CHECK_EQ(atomic_load(&S.nbufs), rounds, "%u buffers were read live, revoked for good, then faulted", rounds);
	for (int i = 0; i < FAULTERS; i++)
		for (unsigned k = 0; k < PAGES_EACH; k++)
			(void)LOAD(4, S.ram + ((size_t)i * PAGES_EACH + k) * PAGE, "final read");
	pass("every page of the window reads after the last round");
	for (unsigned j = 0; j < rounds; j++) {
		EXPECT_SIGBUS_LOAD(4, S.bufmap[j], "revoked buffer %u stays revoked after memory came back", j);
		unmap((void *)S.bufmap[j], WINDOW);
	}
	unmap((void *)S.ram, WINDOW);
	unmap((void *)S.regs, PAGE);
	close(S.dev);
	legacy_close(&lg);
	return tests_done();
}
