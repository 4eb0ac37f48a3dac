/* Mappings a fork child inherits follow revocation: the parent maps a RAM
 * BAR page through the device fd, a register page, and an exported buffer
 * through its fd, then forks. The child reads them through its copies
 * (the register access is emulated against the one device); each time the
 * parent changes the buffer's status it tells the child (pipe), which
 * checks that clearing COMMAND.MEMORY gives SIGBUS BUS_ADRERR, that
 * setting it brings the data back, and that a permanent revoke of the
 * buffer reaches it. The revoke returns only once the child has applied
 * it, so the child's check never races it. */
#include "util.h"

#include <sys/wait.h>

static void on_bus(int signo, siginfo_t *si, void *uc)
{
	(void)uc;
	record(signo, si);
	siglongjmp(jump, 1);
}

static volatile uint64_t *bar, *buf;
static volatile uint32_t *regs;
static int to_child[2], to_parent[2];

static void say(int fd, char c)
{
	CHECK(write(fd, &c, 1) == 1, "pipe write");
}

static char hear(int fd)
{
	char c;
	CHECK(read(fd, &c, 1) == 1, "pipe read");
	return c;
}

/* Both mappings fault (SIGBUS BUS_ADRERR at the address) or read back. */
static void expect(volatile uint64_t *p, int revoked, uint64_t want, const char *what)
{
	uint64_t v = 0;
	int before = seen_count;
	if (revoked) {
		CHECK(try_load(p, &v) == -1, "%s: load completed (%#lx)", what, (unsigned long)v);
		CHECK(seen_count == before + 1 && seen_signo == SIGBUS && seen_code == BUS_ADRERR,
		      "%s: signal %d code %d", what, seen_signo, seen_code);
		CHECK(seen_addr == (void *)p, "%s: si_addr %p, not %p", what, seen_addr, (void *)p);
	} else {
		CHECK(try_load(p, &v) == 0, "%s: SIGBUS", what);
		CHECK(v == want, "%s: %#lx, not %#lx", what, (unsigned long)v, (unsigned long)want);
	}
}

static void child(void)
{
	expect(bar, 0, 0xfeed, "child: inherited device mapping");
	expect(buf, 0, 42, "child: inherited buffer mapping");
	CHECK(regs[0] == 0x010000ed, "child: ID register %#x through the inherited register mapping", regs[0]);
	buf[1] = 43;
	say(to_parent[1], 'r');
	CHECK(hear(to_child[0]) == 'o', "protocol");
	expect(bar, 1, 0, "child: device mapping, memory off");
	expect(buf, 1, 0, "child: buffer mapping, memory off");
	say(to_parent[1], 'r');
	CHECK(hear(to_child[0]) == 'n', "protocol");
	expect(bar, 0, 0xfeed, "child: device mapping, memory on");
	expect(buf, 0, 42, "child: buffer mapping, memory on");
	say(to_parent[1], 'r');
	CHECK(hear(to_child[0]) == 'p', "protocol");
	expect(buf, 1, 0, "child: buffer mapping, permanently revoked");
	expect(bar, 0, 0xfeed, "child: device mapping, after the buffer's revoke");
	printf("ok child\n");
	_exit(0);
}

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	struct vdev v = open_device();
	memory_enable(v.device, 1);
	install(SIGBUS, on_bus, 0);
	bar = map_region(v.device, 1, 0, 0x1000, PROT_READ | PROT_WRITE);
	bar[0] = 0xfeed;
	regs = map_region(v.device, 0, 0, 0x1000, PROT_READ | PROT_WRITE);
	int fd = export_buffer(v.device, 1, 0x10000, 0x2000);
	buf = mmap(NULL, 0x2000, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(buf != MAP_FAILED, "mmap of the buffer fd");
	buf[0] = 42;
	CHECK(pipe(to_child) == 0 && pipe(to_parent) == 0, "pipe");

	pid_t pid = fork();
	CHECK(pid >= 0, "fork");
	if (pid == 0) {
		close(to_child[1]);
		close(to_parent[0]);
		child();
	}
	/* A child that dies closes its end: the parent reads EOF and fails. */
	close(to_child[0]);
	close(to_parent[1]);

	CHECK(hear(to_parent[0]) == 'r', "child ready");
	expect(&buf[1], 0, 43, "parent: the child's write");
	memory_enable(v.device, 0);
	say(to_child[1], 'o');
	CHECK(hear(to_parent[0]) == 'r', "child saw memory off");
	memory_enable(v.device, 1);
	say(to_child[1], 'n');
	CHECK(hear(to_parent[0]) == 'r', "child saw memory on");
	revoke_buffer(v.device, fd);
	expect(buf, 1, 0, "parent: buffer mapping, permanently revoked");
	say(to_child[1], 'p');
	int status;
	CHECK(waitpid(pid, &status, 0) == pid, "waitpid");
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
	expect(bar, 0, 0xfeed, "parent: device mapping");
	printf("ok parent\n");
	return 0;
}
