/*
 * signals: a program's own SIGBUS and SIGSEGV handlers, as the program
 * installs them, around register mappings (whose accesses must keep being
 * emulated without the program noticing) and revoked mappings (whose
 * accesses must reach the program's handler as a real SIGBUS BUS_ADRERR).
 *
 *   signals -d <edu-plus BDF>
 *
 * Covered: a handler installed before any mapping exists and ones installed
 * after (sa_handler and SA_SIGINFO, through sigaction and signal), what
 * sigaction and signal report back, sa_mask, SA_NODEFER with a nested
 * fault, sigaltstack with SA_ONSTACK, siglongjmp out of every handler, a
 * SIGSEGV handler, and the default action: a forked child that restores
 * SIG_DFL, and an executed child that never installed a handler, both die
 * of SIGBUS.
 */
#include "common.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* What the handlers saw. Written in handlers, read after siglongjmp. */
static sigjmp_buf jb;
static volatile sig_atomic_t armed, calls, depth, max_depth;
static volatile sig_atomic_t seen_signo[3], seen_code[3], bus_blocked, usr1_blocked, on_altstack;
static void *volatile seen_addr[3];
static volatile uintptr_t handler_stack;
static volatile uint32_t *volatile nested_target;

static void unexpected(int sig)
{
	static const char msg[] = "signals: a handler ran for an access that should not have faulted\n";
	if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0) {
		/* Exiting with the status below is all that is left. */
	}
	_exit(100 + sig);
}

static void record(int sig, const siginfo_t *si)
{
	int at = depth < 3 ? depth : 2;
	seen_signo[at] = sig;
	seen_code[at] = si ? si->si_code : -1;
	seen_addr[at] = si ? si->si_addr : NULL;
	sigset_t cur;
	pthread_sigmask(SIG_BLOCK, NULL, &cur);
	if (depth == 0) {
		bus_blocked = sigismember(&cur, SIGBUS);
		usr1_blocked = sigismember(&cur, SIGUSR1);
	}
	int local;
	handler_stack = (uintptr_t)&local;
}

static void h_plain(int sig)
{
	calls++;
	if (!armed)
		unexpected(sig);
	armed = 0;
	record(sig, NULL);
	siglongjmp(jb, 1);
}

static void h_info(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	calls++;
	if (!armed)
		unexpected(sig);
	armed = 0;
	record(sig, si);
	stack_t st;
	on_altstack = sigaltstack(NULL, &st) == 0 && (st.ss_flags & SS_ONSTACK);
	siglongjmp(jb, 1);
}

/* With SA_NODEFER: the first entry touches another revoked page, which
 * enters the handler again before the first entry returns. */
static void h_nested(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	calls++;
	if (!armed)
		unexpected(sig);
	record(sig, si);
	depth++;
	if (depth > max_depth)
		max_depth = depth;
	if (depth == 1 && nested_target) {
		uint32_t v = *nested_target;
		(void)v;
		unexpected(0); /* the load above must have faulted */
	}
	armed = 0;
	siglongjmp(jb, 1);
}

/* One access with a handler armed; 1 if it trapped into the handler. */
static int touch(volatile uint32_t *p, bool write, uint32_t v, uint32_t *out)
{
	if (sigsetjmp(jb, 1))
		return 1;
	armed = 1;
	if (write)
		*p = v;
	else
		*out = *p;
	armed = 0;
	return 0;
}

static void clear_seen(void)
{
	calls = depth = max_depth = bus_blocked = usr1_blocked = on_altstack = 0;
	memset((void *)seen_signo, 0, sizeof(seen_signo));
	memset((void *)seen_code, 0, sizeof(seen_code));
	for (int i = 0; i < 3; i++)
		seen_addr[i] = NULL;
}

static void install(int sig, void (*plain)(int), void (*info)(int, siginfo_t *, void *), int flags, int masked)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	if (info)
		sa.sa_sigaction = info;
	else
		sa.sa_handler = plain;
	sa.sa_flags = flags | (info ? SA_SIGINFO : 0);
	sigemptyset(&sa.sa_mask);
	if (masked)
		sigaddset(&sa.sa_mask, masked);
	MUST(sigaction(sig, &sa, NULL), "sigaction");
}

static bool installed_is(int sig, void *handler)
{
	struct sigaction cur;
	MUST(sigaction(sig, NULL, &cur), "sigaction query");
	return (cur.sa_flags & SA_SIGINFO) ? (void *)cur.sa_sigaction == handler : (void *)cur.sa_handler == handler;
}

static bool mask_has(int sig)
{
	sigset_t cur;
	pthread_sigmask(SIG_BLOCK, NULL, &cur);
	return sigismember(&cur, sig);
}

/* Register accesses that must be emulated, not reach the handler. */
static void registers_emulate(volatile uint32_t *regs, const char *while_what)
{
	calls = 0;
	for (uint32_t v = 1; v <= 8; v++) {
		regs[EDU_LIVENESS / 4] = v * 0x01010101U;
		if (regs[EDU_LIVENESS / 4] != ~(v * 0x01010101U))
			FAIL("the liveness register did not invert 0x%x %s", v * 0x01010101U, while_what);
	}
	CHECK(regs[EDU_ID / 4] == EDU_ID_MAGIC && calls == 0,
	      "16 register accesses are emulated %s, without reaching the program's handler", while_what);
}

static void expect_trap(volatile uint32_t *p, bool write, int code, const char *what)
{
	uint32_t v = 0;
	clear_seen();
	CHECK(touch(p, write, 0x12345678, &v) == 1 && calls == 1, "%s reaches the program's handler", what);
	if (code >= 0)
		CHECK(seen_signo[0] == SIGBUS && seen_code[0] == code && seen_addr[0] == (void *)p,
		      "... as SIGBUS with si_code %d at the accessed address %p", code, (void *)p);
	CHECK(!mask_has(SIGBUS), "... and siglongjmp out of it left SIGBUS unblocked");
}

/* ---- children that must die of SIGBUS ------------------------------------------- */

static int child_touch_revoked(int dev)
{
	volatile uint32_t *ram = map_region(dev, 1, 0, PAGE);
	ram[0] = 1;
	set_memory(dev, false);
	printf("# child %d: loading from a revoked page, with no handler of its own\n", (int)getpid());
	fflush(stdout);
	uint32_t v = ram[0];
	printf("child survived the load (read 0x%x)\n", v);
	return 3;
}

static void expect_sigbus_death(pid_t pid, const char *what)
{
	int status;
	MUST(waitpid(pid, &status, 0), "waitpid");
	CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS, "%s died of SIGBUS (status 0x%x)", what, status);
}

static void children(int dev, volatile uint32_t *ram, const char *self)
{
	pid_t pid = fork();
	if (pid < 0)
		FAIL("fork: %s", errno_name(errno));
	if (pid == 0) {
		signal(SIGBUS, SIG_DFL);
		_exit(child_touch_revoked(dev));
	}
	expect_sigbus_death(pid, "a forked child that restored SIG_DFL");
	set_memory(dev, true);

	int inherited = (int)MUST(fcntl(dev, F_DUPFD, 10), "F_DUPFD of the device fd without close-on-exec");
	char fdarg[16];
	snprintf(fdarg, sizeof(fdarg), "%d", inherited);
	char *argv[] = { (char *)self, "-c", fdarg, NULL };
	int err = posix_spawn(&pid, self, NULL, NULL, argv, environ);
	if (err)
		FAIL("posix_spawn %s: %s", self, errno_name(err));
	close(inherited);
	expect_sigbus_death(pid, "an executed child with no handler at all");
	set_memory(dev, true);
	CHECK_EQ(ram[0], 1, "after the children the parent's mapping reads what the child wrote");
}

/* ---- the program ------------------------------------------------------------------- */

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "-c") == 0)
		return child_touch_revoked(atoi(argv[2]));
	if (argc != 3 || strcmp(argv[1], "-d") != 0) {
		fprintf(stderr, "usage: signals -d BDF\n");
		return 2;
	}
	tests_init_without_catcher("signals");
	const char *bdf = parse_bdf(argv[2]);

	/* 1. A plain handler installed before anything is mapped. */
	install(SIGBUS, h_plain, NULL, 0, 0);
	struct legacy lg;
	int dev = legacy_open(bdf, &lg);
	volatile uint32_t *regs = map_region(dev, 0, 0, PAGE);
	volatile uint32_t *ram = map_region(dev, 1, 0, 16 * PAGE);
	CHECK(installed_is(SIGBUS, (void *)h_plain), "sigaction reports the program's handler after mappings exist");
	registers_emulate(regs, "with a plain handler installed first");
	ram[2] = 0xabad1dea;
	set_memory(dev, false);
	expect_trap(&ram[2], false, -1, "a load from revoked RAM (plain handler)");
	expect_trap(&regs[EDU_LIVENESS / 4], true, -1, "a store to a revoked register (plain handler)");
	set_memory(dev, true);
	CHECK_EQ(ram[2], 0xabad1dea, "memory on again: the data is there");

	/* 2. SA_SIGINFO, installed after a register mapping exists, with a mask. */
	install(SIGBUS, NULL, h_info, 0, SIGUSR1);
	CHECK(installed_is(SIGBUS, (void *)h_info), "sigaction reports the SA_SIGINFO handler installed after");
	registers_emulate(regs, "with an SA_SIGINFO handler installed after the mapping");
	set_memory(dev, false);
	expect_trap(&ram[3], false, BUS_ADRERR, "a load from revoked RAM (SA_SIGINFO)");
	CHECK(bus_blocked && usr1_blocked, "inside the handler SIGBUS and sa_mask's SIGUSR1 were blocked");
	CHECK(!mask_has(SIGUSR1), "after siglongjmp SIGUSR1 is unblocked again");
	expect_trap(&regs[EDU_LIVENESS / 4], true, BUS_ADRERR, "a store to a revoked register (SA_SIGINFO)");
	set_memory(dev, true);

	/* 3. signal(2) replaces it, and reports the handler it replaced. */
	void (*old)(int) = signal(SIGBUS, h_plain);
	CHECK((void *)old == (void *)h_info, "signal() returns the program's previous handler");
	int buf = dmabuf_export1(dev, 1, 0, 16 * PAGE);
	volatile uint32_t *bm = MUST_MAP(mmap(NULL, 16 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, buf, 0), "mmap");
	bm[0] = 7;
	MUST(dmabuf_revoke(dev, buf), "DMA_BUF_REVOKE");
	expect_trap(&bm[0], false, -1, "a load from a permanently revoked buffer (handler from signal())");
	registers_emulate(regs, "with a handler from signal()");

	/* 4. SA_NODEFER: a fault inside the handler enters it again. */
	install(SIGBUS, NULL, h_nested, SA_NODEFER, 0);
	set_memory(dev, false);
	nested_target = &ram[PAGE / 4 * 5];
	clear_seen();
	uint32_t v = 0;
	int trapped = touch(&ram[PAGE / 4 * 4], false, 0, &v);
	CHECK(trapped == 1 && max_depth == 2 && calls == 2,
	      "with SA_NODEFER a revoked access inside the handler enters it again (depth %d)", (int)max_depth);
	CHECK(!bus_blocked, "... SIGBUS was not blocked in the outer handler");
	CHECK(seen_addr[0] == (void *)&ram[PAGE / 4 * 4] && seen_addr[1] == (void *)nested_target &&
		      seen_code[0] == BUS_ADRERR && seen_code[1] == BUS_ADRERR,
	      "... each entry saw BUS_ADRERR at its own address");
	CHECK(!mask_has(SIGBUS), "... and one siglongjmp out of both left SIGBUS unblocked");
	nested_target = NULL;

	/* 5. An alternate signal stack. */
	static uint8_t alt[64 * 1024] __attribute__((aligned(16)));
	stack_t ss = { .ss_sp = alt, .ss_size = sizeof(alt) };
	MUST(sigaltstack(&ss, NULL), "sigaltstack");
	install(SIGBUS, NULL, h_info, SA_ONSTACK, 0);
	expect_trap(&ram[6], false, BUS_ADRERR, "a revoked access with SA_ONSTACK");
	CHECK(handler_stack >= (uintptr_t)alt && handler_stack < (uintptr_t)alt + sizeof(alt) && on_altstack,
	      "... the handler ran on the alternate stack");
	stack_t now;
	MUST(sigaltstack(NULL, &now), "sigaltstack query");
	CHECK(!(now.ss_flags & SS_ONSTACK), "... and after siglongjmp the thread is off it");
	install(SIGBUS, NULL, h_info, 0, 0);
	expect_trap(&ram[7], false, BUS_ADRERR, "the same without SA_ONSTACK");
	CHECK(!(handler_stack >= (uintptr_t)alt && handler_stack < (uintptr_t)alt + sizeof(alt)) && !on_altstack,
	      "... the handler ran on the thread's own stack");
	set_memory(dev, true);

	/* 6. SIGSEGV: the program's handler sees its own faults. */
	install(SIGSEGV, NULL, h_info, 0, 0);
	volatile uint32_t *none = MUST_MAP(mmap(NULL, PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), "PROT_NONE");
	expect_trap(none, false, -1, "a load from a PROT_NONE page");
	CHECK(seen_signo[0] == SIGSEGV && seen_code[0] == SEGV_ACCERR && seen_addr[0] == (void *)none,
	      "... as SIGSEGV SEGV_ACCERR at its address");
	volatile uint32_t *gone = map_region(dev, 1, 0, PAGE);
	unmap((void *)gone, PAGE);
	expect_trap(gone, false, -1, "a load from an unmapped BAR page");
	CHECK(seen_signo[0] == SIGSEGV && seen_code[0] == SEGV_MAPERR, "... as SIGSEGV SEGV_MAPERR");
	registers_emulate(regs, "with a SIGSEGV handler installed too");

	/* 7. The default action, in children. */
	children(dev, ram, argv[0]);

	unmap((void *)none, PAGE);
	unmap((void *)bm, 16 * PAGE);
	unmap((void *)ram, 16 * PAGE);
	unmap((void *)regs, PAGE);
	close(buf);
	close(dev);
	legacy_close(&lg);
	return tests_done();
}
