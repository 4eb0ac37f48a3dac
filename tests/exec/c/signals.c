/* The program's own SIGBUS/SIGSEGV handlers next to the library's: one
 * case per subcommand, each printing "ok <case>". A revoked page of a
 * RAM BAR mapping (COMMAND.MEMORY cleared) gives the real SIGBUS. */
#include "util.h"

#include <pthread.h>

static struct vdev dev;
static volatile uint64_t *page;

/* Maps one page of BAR1 and writes a marker. */
static void map_page(void)
{
	dev = open_device();
	memory_enable(dev.device, 1);
	page = map_region(dev.device, 1, 0, 0x1000, PROT_READ | PROT_WRITE);
	page[0] = 0xfeed;
}

static void on_bus(int signo, siginfo_t *si, void *uc)
{
	(void)uc;
	record(signo, si);
	siglongjmp(jump, 1);
}

/* The revoked load reaches the program's handler as SIGBUS BUS_ADRERR at
 * the address, and the data is back after memory is enabled again. */
static void expect_sigbus_then_back(void)
{
	uint64_t v;
	int before = seen_count;
	memory_enable(dev.device, 0);
	CHECK(try_load(page, &v) == -1, "revoked load completed");
	CHECK(seen_count == before + 1, "handler ran %d times", seen_count - before);
	CHECK(seen_signo == SIGBUS && seen_code == BUS_ADRERR, "signal %d code %d", seen_signo, seen_code);
	CHECK(seen_addr == (void *)page, "si_addr %p, page %p", seen_addr, (void *)page);
	memory_enable(dev.device, 1);
	CHECK(try_load(page, &v) == 0 && v == 0xfeed, "data after re-enable %#lx", (unsigned long)v);
}

static void current_handler_is(void *h)
{
	struct sigaction old;
	CHECK(sigaction(SIGBUS, NULL, &old) == 0, "query");
	CHECK((void *)old.sa_sigaction == h, "old action %p, not the program's %p", (void *)old.sa_sigaction, h);
}

static void before(void)
{
	install(SIGBUS, on_bus, 0);
	map_page();
	current_handler_is((void *)on_bus);
	expect_sigbus_then_back();
	printf("ok before\n");
}

static void after(void)
{
	map_page();
	/* No handler of the program's yet: the old action it sees is the
	 * default, never the library's. */
	current_handler_is((void *)SIG_DFL);
	install(SIGBUS, on_bus, 0);
	current_handler_is((void *)on_bus);
	expect_sigbus_then_back();
	printf("ok after\n");
}

static void plain_handler(int signo)
{
	record(signo, NULL);
	siglongjmp(jump, 1);
}

static void plain(void)
{
	map_page();
	CHECK(signal(SIGBUS, plain_handler) != SIG_ERR, "signal");
	uint64_t v;
	memory_enable(dev.device, 0);
	CHECK(try_load(page, &v) == -1 && seen_signo == SIGBUS && seen_code == -1, "plain handler");
	memory_enable(dev.device, 1);
	CHECK(signal(SIGBUS, SIG_DFL) == plain_handler, "signal returns the previous handler");
	printf("ok plain\n");
}

static volatile int depth, deepest;

static void nested(int signo, siginfo_t *si, void *uc)
{
	(void)uc;
	record(signo, si);
	depth++;
	if (depth > deepest)
		deepest = depth;
	if (depth == 1) {
		/* SA_NODEFER: the same fault again, inside the handler. */
		(void)*page;
	}
	depth--;
	siglongjmp(jump, 1);
}

static void nodefer(void)
{
	map_page();
	install(SIGBUS, nested, SA_NODEFER);
	uint64_t v;
	memory_enable(dev.device, 0);
	CHECK(try_load(page, &v) == -1, "load completed");
	CHECK(deepest == 2 && seen_count == 2, "deepest %d, count %d", deepest, seen_count);
	memory_enable(dev.device, 1);
	printf("ok nodefer\n");
}

/* Without SA_NODEFER the same nested fault finds SIGBUS blocked, and the
 * kernel kills the process with it: exit by SIGBUS, never "ok". */
static void deferred(void)
{
	map_page();
	install(SIGBUS, nested, 0);
	uint64_t v;
	memory_enable(dev.device, 0);
	(void)try_load(page, &v);
	printf("ok deferred (unexpected)\n");
}

static char *alt;
static size_t alt_size;
static volatile int on_alt;

static void on_alt_stack(int signo, siginfo_t *si, void *uc)
{
	(void)uc;
	char here;
	record(signo, si);
	on_alt = &here >= alt && &here < alt + alt_size;
	siglongjmp(jump, 1);
}

static void altstack(void)
{
	map_page();
	alt_size = 1 << 16;
	alt = malloc(alt_size);
	stack_t ss = { .ss_sp = alt, .ss_size = alt_size, .ss_flags = 0 };
	CHECK(sigaltstack(&ss, NULL) == 0, "sigaltstack");
	install(SIGBUS, on_alt_stack, SA_ONSTACK);
	uint64_t v;
	memory_enable(dev.device, 0);
	CHECK(try_load(page, &v) == -1 && seen_signo == SIGBUS, "no SIGBUS");
	CHECK(on_alt, "the handler did not run on the alternate stack");
	memory_enable(dev.device, 1);
	printf("ok altstack\n");
}

static void resethand(void)
{
	map_page();
	install(SIGBUS, on_bus, SA_RESETHAND);
	expect_sigbus_then_back();
	current_handler_is((void *)SIG_DFL);
	printf("ok resethand\n");
}

/* No handler: the default action (the process dies of SIGBUS). */
static void dflt(void)
{
	map_page();
	memory_enable(dev.device, 0);
	(void)*page;
	printf("ok default (unexpected)\n");
}

static void on_segv(int signo, siginfo_t *si, void *uc)
{
	(void)uc;
	record(signo, si);
	siglongjmp(jump, 1);
}

static void segv(void)
{
	map_page();
	install(SIGSEGV, on_segv, 0);
	uint64_t v;
	CHECK(try_load((volatile uint64_t *)16, &v) == -1, "load of address 16 completed");
	CHECK(seen_signo == SIGSEGV && seen_code == SEGV_MAPERR && seen_addr == (void *)16, "SIGSEGV %d %d %p",
	      seen_signo, seen_code, seen_addr);
	printf("ok segv\n");
}

/* A program that blocks SIGBUS (QEMU does, in its main thread): register
 * accesses are still emulated, and the mask it reads back says blocked. */
static void block_sigbus(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGBUS);
	CHECK(pthread_sigmask(SIG_BLOCK, &set, NULL) == 0, "pthread_sigmask");
}

static void blocked_registers(void)
{
	block_sigbus();
	map_page();
	volatile uint32_t *r = map_region(dev.device, 0, 0, 0x1000, PROT_READ | PROT_WRITE);
	CHECK(r[0] == 0x010000ed, "ID register %#x with SIGBUS blocked", r[0]);
	sigset_t now;
	CHECK(sigprocmask(SIG_BLOCK, NULL, &now) == 0 && sigismember(&now, SIGBUS) == 1, "SIGBUS reported blocked");
	printf("ok blocked-registers\n");
}

/* A revoked access while the program blocks SIGBUS: the kernel's answer to
 * a blocked fault, the default action (even with a handler). */
static void blocked_revoked(void)
{
	install(SIGBUS, on_bus, 0);
	block_sigbus();
	map_page();
	memory_enable(dev.device, 0);
	(void)*page;
	printf("ok blocked-revoked (unexpected)\n");
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	CHECK(argc == 2, "usage: signals CASE");
	const char *c = argv[1];
	if (!strcmp(c, "before"))
		before();
	else if (!strcmp(c, "after"))
		after();
	else if (!strcmp(c, "plain"))
		plain();
	else if (!strcmp(c, "nodefer"))
		nodefer();
	else if (!strcmp(c, "deferred"))
		deferred();
	else if (!strcmp(c, "altstack"))
		altstack();
	else if (!strcmp(c, "resethand"))
		resethand();
	else if (!strcmp(c, "default"))
		dflt();
	else if (!strcmp(c, "segv"))
		segv();
	else if (!strcmp(c, "blocked-registers"))
		blocked_registers();
	else if (!strcmp(c, "blocked-revoked"))
		blocked_revoked();
	else
		CHECK(0, "unknown case %s", c);
	return 0;
}
