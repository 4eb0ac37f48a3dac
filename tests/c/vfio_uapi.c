/*
 * vfio_uapi: a driver's tour of the VFIO UAPI, against QEMU's edu (for
 * registers, interrupts and DMA) and edu-plus (for a RAM BAR), with the
 * errno the kernel gives for each misuse.
 *
 *   vfio_uapi -e <edu BDF> -r <edu-plus BDF> [-s SECTION]...
 *
 * Sections: sysfs legacy device irq dmabuf hotreset cdev dma (default: all,
 * in that order). One line per check; the first failure ends the program
 * with exit status 1 and a message naming file and line.
 */
#include "uapi.h"

#include <unistd.h>

uint64_t unknown_ioctl_arg[8];

static const struct {
	const char *name;
	void (*run)(const struct uapi_args *a);
} sections[] = {
	{ "sysfs", section_sysfs },   { "legacy", section_legacy },	{ "device", section_device },
	{ "irq", section_irq },	      { "dmabuf", section_dmabuf },	{ "hotreset", section_hotreset },
	{ "cdev", section_cdev },     { "dma", section_dma },
};
#define NR_SECTIONS (sizeof(sections) / sizeof(sections[0]))

static _Noreturn void usage(void)
{
	fprintf(stderr, "usage: vfio_uapi -e EDU_BDF -r EDU_PLUS_BDF [-s SECTION]...\nsections:");
	for (size_t i = 0; i < NR_SECTIONS; i++)
		fprintf(stderr, " %s", sections[i].name);
	fprintf(stderr, "\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct uapi_args a = { 0 };
	bool chosen[NR_SECTIONS] = { false };
	bool any = false;
	int opt;

	tests_init("vfio_uapi");
	while ((opt = getopt(argc, argv, "e:r:s:")) != -1) {
		switch (opt) {
		case 'e': a.edu = parse_bdf(optarg); break;
		case 'r': a.ram = parse_bdf(optarg); break;
		case 's': {
			size_t i = 0;
			while (i < NR_SECTIONS && strcmp(sections[i].name, optarg) != 0)
				i++;
			if (i == NR_SECTIONS)
				usage();
			chosen[i] = any = true;
			break;
		}
		default: usage();
		}
	}
	if (!a.edu || !a.ram || optind != argc)
		usage();
	for (size_t i = 0; i < NR_SECTIONS; i++) {
		if (any && !chosen[i])
			continue;
		printf("# section %s\n", sections[i].name);
		sections[i].run(&a);
	}
	return tests_done();
}
