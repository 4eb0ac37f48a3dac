/* Open, ioctl, mmap and close of the demo's device through the legacy
 * API, one check per subcommand; prints "ok <check>" lines. */
#include "util.h"

#include <sys/wait.h>

#define EDU_ID 0x010000ed

static void ram_bar(void)
{
	struct vdev v = open_device();
	memory_enable(v.device, 1);
	struct vfio_device_info info = { .argsz = sizeof(info) };
	CHECK(ioctl(v.device, VFIO_DEVICE_GET_INFO, &info) == 0, "VFIO_DEVICE_GET_INFO");
	CHECK(info.flags & VFIO_DEVICE_FLAGS_PCI, "PCI device");
	CHECK(info.num_regions >= 8, "regions %u", info.num_regions);
	struct vfio_region_info bar1 = region(v.device, 1);
	CHECK(bar1.flags & VFIO_REGION_INFO_FLAG_MMAP, "BAR1 mmappable");
	volatile uint64_t *p = map_region(v.device, 1, 0x4000, 0x2000, PROT_READ | PROT_WRITE);
	p[0] = 0xca77face;
	p[0x1000 / 8] = 0x5eed;
	uint64_t got;
	CHECK(try_load(p, &got) == 0 && got == 0xca77face, "read back %#lx", (unsigned long)got);
	/* The same bytes through the region, as the kernel's pread shows them. */
	CHECK(pread(v.device, &got, 8, bar1.offset + 0x4000) == 8 && got == 0xca77face, "pread of BAR1");
	/* A second mapping sees the first one's write. */
	volatile uint64_t *q = map_region(v.device, 1, 0x5000, 0x1000, PROT_READ);
	CHECK(q[0] == 0x5eed, "alias %#lx", (unsigned long)q[0]);
	CHECK(munmap((void *)q, 0x1000) == 0, "munmap");
	CHECK(munmap((void *)p, 0x2000) == 0, "munmap");
	printf("ok ram-bar\n");
	close_device(&v);
}

static void on_bus(int signo, siginfo_t *si, void *uc)
{
	(void)uc;
	record(signo, si);
	siglongjmp(jump, 1);
}

static void memory_off(void)
{
	struct vdev v = open_device();
	memory_enable(v.device, 1);
	install(SIGBUS, on_bus, 0);
	volatile uint64_t *p = map_region(v.device, 1, 0, 0x1000, PROT_READ | PROT_WRITE);
	uint64_t got;
	p[1] = 0x1234;
	memory_enable(v.device, 0);
	CHECK(try_load(&p[1], &got) == -1, "load after COMMAND.MEMORY clear did not fault");
	CHECK(seen_signo == SIGBUS && seen_code == BUS_ADRERR, "signal %d code %d", seen_signo, seen_code);
	CHECK(seen_addr == (void *)&p[1], "si_addr %p", seen_addr);
	memory_enable(v.device, 1);
	CHECK(try_load(&p[1], &got) == 0 && got == 0x1234, "data back after set: %#lx", (unsigned long)got);
	/* A device-fd mapping holds the device (and so the group) open. */
	CHECK(munmap((void *)p, 0x1000) == 0, "munmap");
	printf("ok revoke\n");
	close_device(&v);
}

static void registers(void)
{
	struct vdev v = open_device();
	memory_enable(v.device, 1);
	volatile uint32_t *r = map_region(v.device, 0, 0, 0x1000, PROT_READ | PROT_WRITE);
	CHECK(r[0] == EDU_ID, "ID register %#x", r[0]);
	r[1] = 0x12345678;
	CHECK(r[1] == (uint32_t)~0x12345678u, "liveness %#x", r[1]);
	CHECK(munmap((void *)r, 0x1000) == 0, "munmap");
	printf("ok registers\n");
	close_device(&v);
}

static void reopen(void)
{
	struct vdev v = open_device();
	/* Owned: a second open of the group is EBUSY. */
	CHECK(open("/dev/vfio/0", O_RDWR) == -1 && errno == EBUSY, "second open of an owned group");
	close_device(&v);
	/* The last close took effect before close returned. */
	int g = open("/dev/vfio/0", O_RDWR);
	CHECK(g >= 0, "reopen after close");
	CHECK(close(g) == 0, "close");
	/* The kernel's answers for what no device node is. */
	CHECK(open("/dev/vfio/7", O_RDWR) == -1 && errno == ENOENT, "missing group");
	CHECK(ioctl(g, VFIO_GROUP_GET_STATUS, NULL) == -1 && errno == EBADF, "closed fd");
	printf("ok reopen\n");
}

/* mmap, munmap, mremap and mprotect where our mappings meet others. */
static void maps(void)
{
	struct vdev v = open_device();
	memory_enable(v.device, 1);
	struct vfio_region_info bar1 = region(v.device, 1);
	/* Three pages of BAR1, the middle one unmapped: the rest keep working
	 * (the tail's vm_pgoff advanced as a split leaves it). */
	char *p = map_region(v.device, 1, 0, 0x3000, PROT_READ | PROT_WRITE);
	p[0] = 'a';
	p[0x2000] = 'c';
	CHECK(munmap(p + 0x1000, 0x1000) == 0, "munmap of the middle page");
	CHECK(p[0] == 'a' && p[0x2000] == 'c', "the outer pages after the split");
	/* A range holding ours and foreign memory: both go. */
	char *anon = mmap(p + 0x1000, 0x1000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	CHECK(anon == p + 0x1000, "anonymous page into the hole");
	CHECK(munmap(p, 0x3000) == 0, "munmap across ours and foreign");
	CHECK(msync(p, 0x1000, MS_ASYNC) == -1 && errno == ENOMEM, "the range is gone");
	/* MAP_FIXED of ours over foreign memory, and a foreign MAP_FIXED over ours. */
	char *q = mmap(NULL, 0x2000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(q != MAP_FAILED, "anonymous");
	CHECK(mmap(q, 0x2000, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, v.device, bar1.offset) == q, "fixed");
	CHECK(q[0] == 'a', "BAR1 at the fixed address");
	CHECK(mmap(q, 0x1000, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED_NOREPLACE, v.device, bar1.offset) ==
		      MAP_FAILED && errno == EEXIST, "MAP_FIXED_NOREPLACE over a mapping");
	CHECK(mmap(q, 0x1000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == q, "anon over ours");
	CHECK(q[0] == 0, "anonymous memory replaced the BAR page");
	CHECK(munmap(q, 0x2000) == 0, "munmap");
	/* mremap: shrink and move work, growth is EFAULT, DONTUNMAP EINVAL. */
	char *r = map_region(v.device, 1, 0, 0x2000, PROT_READ | PROT_WRITE);
	CHECK(mremap(r, 0x2000, 0x4000, MREMAP_MAYMOVE) == MAP_FAILED && errno == EFAULT, "growth");
	CHECK(mremap(r, 0x1000, 0x1000, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, NULL) == MAP_FAILED && errno == EINVAL,
	      "MREMAP_DONTUNMAP");
	CHECK(mremap(r, 0x2000, 0x1000, 0) == r, "shrink");
	char *to = mmap(NULL, 0x1000, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *moved = mremap(r, 0x1000, 0x1000, MREMAP_MAYMOVE | MREMAP_FIXED, to);
	CHECK(moved == to && moved[0] == 'a', "move");
	/* mprotect: a read-only mapping cannot become writable. */
	char *ro = map_region(v.device, 1, 0, 0x1000, PROT_READ);
	CHECK(mprotect(ro, 0x1000, PROT_READ | PROT_WRITE) == -1 && errno == EACCES, "mprotect adding write");
	CHECK(mprotect(ro, 0x1000, PROT_READ) == 0, "mprotect keeping read-only");
	CHECK(munmap(ro, 0x1000) == 0 && munmap(moved, 0x1000) == 0, "munmap");
	printf("ok maps\n");
	close_device(&v);
}

/* A fork child opens and calls on its own (new token, new connections);
 * one that execs keeps the library (LD_PRELOAD); the parent carries on. */
static void forked(void)
{
	struct vdev v = open_device();
	pid_t pid = fork();
	CHECK(pid >= 0, "fork");
	if (pid == 0) {
		int c = open("/dev/vfio/vfio", O_RDWR);
		if (c < 0 || ioctl(c, VFIO_GET_API_VERSION) != VFIO_API_VERSION || close(c) != 0)
			_exit(1);
		execl("/bin/sh", "sh", "-c", "test -c /dev/vfio/vfio", (char *)NULL);
		_exit(2);
	}
	int status;
	CHECK(waitpid(pid, &status, 0) == pid, "waitpid");
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
	struct vfio_device_info info = { .argsz = sizeof(info) };
	CHECK(ioctl(v.device, VFIO_DEVICE_GET_INFO, &info) == 0, "the parent's device after fork");
	printf("ok fork\n");
	close_device(&v);
}

static void on_bus(int signo, siginfo_t *si, void *uc);

/* A buffer exported from BAR1: its fd maps (the buffer-fd mmap path),
 * shows the BAR's bytes, is revoked with the device's memory, and the
 * mapping outlives the fd. */
static void dmabuf(void)
{
	struct vdev v = open_device();
	memory_enable(v.device, 1);
	install(SIGBUS, on_bus, 0);
	int fd = export_buffer(v.device, 1, 0x10000, 0x200000);
	CHECK(fcntl(fd, F_GETFD) == FD_CLOEXEC, "O_CLOEXEC of open_flags");
	volatile uint64_t *p = mmap(NULL, 0x200000, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(p != MAP_FAILED, "mmap of the buffer fd");
	p[0] = 42;
	uint64_t got;
	CHECK(pread(v.device, &got, 8, region(v.device, 1).offset + 0x10000) == 8 && got == 42, "through the region");
	memory_enable(v.device, 0);
	CHECK(try_load(p, &got) == -1 && seen_code == BUS_ADRERR, "revoked buffer mapping");
	memory_enable(v.device, 1);
	CHECK(try_load(p, &got) == 0 && got == 42, "back after re-enable");
	CHECK(close(fd) == 0 && p[0] == 42, "the mapping outlives the buffer fd");
	CHECK(munmap((void *)p, 0x200000) == 0, "munmap");
	printf("ok dmabuf\n");
	close_device(&v);
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "ram-bar"))
			ram_bar();
		else if (!strcmp(argv[i], "revoke"))
			memory_off();
		else if (!strcmp(argv[i], "registers"))
			registers();
		else if (!strcmp(argv[i], "reopen"))
			reopen();
		else if (!strcmp(argv[i], "maps"))
			maps();
		else if (!strcmp(argv[i], "fork"))
			forked();
		else if (!strcmp(argv[i], "dmabuf"))
			dmabuf();
		else
			CHECK(0, "unknown check %s", argv[i]);
	}
	return 0;
}
