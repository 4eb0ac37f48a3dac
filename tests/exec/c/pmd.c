/* A program under exec gets PMD mappings of BAR memory: its first touch of
 * a 4 MiB window of BAR1 (2 MiB frames) maps each 2 MiB with one PMD, as
 * the kernel says in /proc/self/smaps (ShmemPmdMapped), with the data the
 * device holds; COMMAND.MEMORY clear then zaps the PMDs (a load raises
 * SIGBUS), and setting it again maps them anew with the data kept. */
#include "util.h"

#include <setjmp.h>
#include <signal.h>

#define MIB (1ul << 20)
#define LEN (4 * MIB)

/* Sum of ShmemPmdMapped (kB) over the VMAs inside [a, a + len). */
static long pmd_kb(const void *a, size_t len)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	CHECK(f, "fopen /proc/self/smaps");
	char line[1024];
	long sum = 0;
	int in = 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned long s, e;
		if (sscanf(line, "%lx-%lx ", &s, &e) == 2 && strchr(line, '-') < strchr(line, ' ')) {
			in = s >= (unsigned long)a && e <= (unsigned long)a + len;
			continue;
		}
		if (in && !strncmp(line, "ShmemPmdMapped:", 15))
			sum += atol(line + 15);
	}
	fclose(f);
	return sum;
}

static sigjmp_buf jump;
static void on_sigbus(int sig)
{
	(void)sig;
	siglongjmp(jump, 1);
}

static void set_memory(int dev, int on)
{
	struct vfio_region_info cfg = region(dev, VFIO_PCI_CONFIG_REGION_INDEX);
	uint16_t cmd;
	CHECK(pread(dev, &cmd, 2, cfg.offset + 4) == 2, "read COMMAND");
	cmd = on ? (cmd | 2) : (cmd & ~2);
	CHECK(pwrite(dev, &cmd, 2, cfg.offset + 4) == 2, "write COMMAND");
}

int main(void)
{
	struct vdev v = open_device();
	volatile uint64_t *m = map_region(v.device, 1, 0, LEN, PROT_READ | PROT_WRITE);
	CHECK(((uintptr_t)m & (2 * MIB - 1)) == 0, "mapping at %p is not 2 MiB aligned", (void *)m);
	for (size_t i = 0; i < LEN / 8; i += 512)
		m[i] = 0x9e00000000ul + i;
	CHECK(pmd_kb((void *)m, LEN) == LEN / 1024, "ShmemPmdMapped %ld kB after the first touch", pmd_kb((void *)m, LEN));
	printf("ok first touch maps PMDs\n");

	uint64_t got;
	CHECK(pread(v.device, &got, 8, region(v.device, 1).offset + 3 * MIB) == 8, "pread");
	CHECK(got == 0x9e00000000ul + 3 * MIB / 8, "BAR1 at 3 MiB holds %#lx", (unsigned long)got);
	printf("ok data\n");

	set_memory(v.device, 0);
	CHECK(pmd_kb((void *)m, LEN) == 0, "ShmemPmdMapped %ld kB after the revoke", pmd_kb((void *)m, LEN));
	signal(SIGBUS, on_sigbus);
	volatile int faulted = 0;
	if (!sigsetjmp(jump, 1))
		(void)m[2 * MIB / 8];
	else
		faulted = 1;
	CHECK(faulted, "a load after COMMAND.MEMORY clear did not raise SIGBUS");
	signal(SIGBUS, SIG_DFL);
	printf("ok revoke zaps the PMDs\n");

	set_memory(v.device, 1);
	for (size_t i = 0; i < LEN / 8; i += 512)
		CHECK(m[i] == 0x9e00000000ul + i, "word %zu reads %#lx", i, (unsigned long)m[i]);
	CHECK(pmd_kb((void *)m, LEN) == LEN / 1024, "ShmemPmdMapped %ld kB after the un-revoke", pmd_kb((void *)m, LEN));
	printf("ok un-revoke maps them again\n");
	return 0;
}
