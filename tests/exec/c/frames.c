/* A process is given only the frames its mappings touch, and keeps none of
 * them open: it maps two sub-ranges of BAR1 (2 MiB frames: one range inside
 * frame 1, one across the boundary of frames 2 and 3), moves the first with
 * mremap (which maps it again), then checks that no descriptor it holds is
 * a memfd and that its maps show exactly BAR1's frames 1, 2 and 3. */
#include "util.h"

#include <dirent.h>

#define MIB (1ul << 20)
#define BAR1_FRAME "/memfd:vfio0:0000:00:03.0/1."

static void no_memfd_held(const char *when)
{
	DIR *d = opendir("/proc/self/fd");
	CHECK(d, "opendir /proc/self/fd");
	struct dirent *e;
	while ((e = readdir(d))) {
		char path[300], target[512];
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
		ssize_t n = readlink(path, target, sizeof(target) - 1);
		if (n < 0)
			continue;
		target[n] = 0;
		CHECK(strncmp(target, "/memfd:", 7) != 0, "%s: fd %s is %s", when, e->d_name, target);
	}
	closedir(d);
}

/* Bit i set: frame i of BAR1 appears in /proc/self/maps. */
static unsigned long frames_mapped(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	CHECK(f, "fopen /proc/self/maps");
	char line[1024];
	unsigned long seen = 0;
	while (fgets(line, sizeof(line), f)) {
		char *p = strstr(line, BAR1_FRAME);
		if (p)
			seen |= 1ul << strtoul(p + strlen(BAR1_FRAME), NULL, 10);
	}
	fclose(f);
	return seen;
}

int main(void)
{
	struct vdev v = open_device();
	volatile uint64_t *a = map_region(v.device, 1, 2 * MIB + 0x1000, 0x2000, PROT_READ | PROT_WRITE);
	volatile uint64_t *b = map_region(v.device, 1, 6 * MIB - 0x1000, 0x2000, PROT_READ | PROT_WRITE);
	a[0] = 0xa1;
	b[0] = 0xb2;
	b[0x1000 / 8] = 0xb3;
	no_memfd_held("after mmap");
	printf("ok no frame fd after mmap\n");
	CHECK(frames_mapped() == 0xe, "frames mapped %#lx, not frames 1-3", frames_mapped());
	printf("ok maps show frames 1 2 3 only\n");

	/* Move the first mapping: mapped again from frames asked for anew. */
	void *to = mmap(NULL, 0x2000, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(to != MAP_FAILED, "reserve");
	volatile uint64_t *moved = mremap((void *)a, 0x2000, 0x2000, MREMAP_MAYMOVE | MREMAP_FIXED, to);
	CHECK(moved == to, "mremap");
	CHECK(moved[0] == 0xa1, "moved mapping reads %#lx", (unsigned long)moved[0]);
	no_memfd_held("after mremap");
	CHECK(frames_mapped() == 0xe, "frames mapped after mremap %#lx", frames_mapped());
	printf("ok mremap maps again and holds no frame fd\n");

	/* The server side wrote what the mapping wrote. */
	uint64_t got;
	CHECK(pread(v.device, &got, 8, region(v.device, 1).offset + 6 * MIB) == 8, "pread");
	CHECK(got == 0xb3, "BAR1 at 6 MiB holds %#lx", (unsigned long)got);
	printf("ok data\n");
	return 0;
}
