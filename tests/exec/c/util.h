/* Helpers shared by the focused preload test programs: open the demo's
 * device through the legacy group/container API, map regions, toggle
 * COMMAND.MEMORY through config space, and touch memory with recovery. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/vfio.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define CHECK(cond, ...)                                                         \
	do {                                                                     \
		if (!(cond)) {                                                   \
			int e_ = errno;                                          \
			fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);     \
			fprintf(stderr, __VA_ARGS__);                            \
			fprintf(stderr, " (errno %d: %s)\n", e_, strerror(e_));  \
			exit(1);                                                 \
		}                                                                \
	} while (0)

#define DEMO_BDF "0000:00:03.0"
#define DEMO_GROUP 0
#define PCI_COMMAND 0x4
#define PCI_COMMAND_MEMORY 0x2

/* VFIO_DEVICE_FEATURE_DMA_BUF and _DMA_BUF_REVOKE as the series defines
 * them (the distribution's headers predate them). */
#define FEATURE_DMA_BUF 11
#define FEATURE_DMA_BUF_REVOKE 13
struct dma_buf_export {
	uint32_t argsz, flags;
	uint32_t region_index, open_flags, dma_flags, nr_ranges;
	struct {
		uint64_t offset, length;
	} ranges[1];
};

struct vdev {
	int container, group, device;
};

static inline struct vdev open_device(void)
{
	struct vdev v;
	v.container = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
	CHECK(v.container >= 0, "open /dev/vfio/vfio");
	CHECK(ioctl(v.container, VFIO_GET_API_VERSION) == VFIO_API_VERSION, "VFIO_GET_API_VERSION");
	CHECK(ioctl(v.container, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) == 1, "VFIO_CHECK_EXTENSION");
	v.group = open("/dev/vfio/0", O_RDWR | O_CLOEXEC);
	CHECK(v.group >= 0, "open /dev/vfio/0");
	struct vfio_group_status st = { .argsz = sizeof(st) };
	CHECK(ioctl(v.group, VFIO_GROUP_GET_STATUS, &st) == 0, "VFIO_GROUP_GET_STATUS");
	CHECK(st.flags & VFIO_GROUP_FLAGS_VIABLE, "group viable");
	CHECK(ioctl(v.group, VFIO_GROUP_SET_CONTAINER, &v.container) == 0, "VFIO_GROUP_SET_CONTAINER");
	CHECK(ioctl(v.container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) == 0, "VFIO_SET_IOMMU");
	v.device = ioctl(v.group, VFIO_GROUP_GET_DEVICE_FD, DEMO_BDF);
	CHECK(v.device >= 0, "VFIO_GROUP_GET_DEVICE_FD");
	return v;
}

static inline void close_device(struct vdev *v)
{
	CHECK(close(v->device) == 0, "close device");
	CHECK(close(v->group) == 0, "close group");
	CHECK(close(v->container) == 0, "close container");
}

static inline struct vfio_region_info region(int dev, unsigned index)
{
	struct vfio_region_info r = { .argsz = sizeof(r), .index = index };
	CHECK(ioctl(dev, VFIO_DEVICE_GET_REGION_INFO, &r) == 0, "VFIO_DEVICE_GET_REGION_INFO %u", index);
	return r;
}

static inline void *map_region(int dev, unsigned index, off_t off, size_t len, int prot)
{
	struct vfio_region_info r = region(dev, index);
	void *p = mmap(NULL, len, prot, MAP_SHARED, dev, r.offset + off);
	CHECK(p != MAP_FAILED, "mmap region %u", index);
	return p;
}

static inline void memory_enable(int dev, int on)
{
	struct vfio_region_info c = region(dev, VFIO_PCI_CONFIG_REGION_INDEX);
	uint16_t cmd;
	CHECK(pread(dev, &cmd, 2, c.offset + PCI_COMMAND) == 2, "read COMMAND");
	cmd = on ? (cmd | PCI_COMMAND_MEMORY) : (cmd & ~PCI_COMMAND_MEMORY);
	CHECK(pwrite(dev, &cmd, 2, c.offset + PCI_COMMAND) == 2, "write COMMAND");
}

/* What the last recovered signal said. */
static sigjmp_buf jump;
static volatile sig_atomic_t seen_signo, seen_code, seen_count;
static void *volatile seen_addr;

static inline void record(int signo, siginfo_t *si)
{
	seen_signo = signo;
	seen_code = si ? si->si_code : -1;
	seen_addr = si ? si->si_addr : NULL;
	seen_count++;
}

/* A load that a handler may leave with siglongjmp: 0 when it completed. */
static inline int try_load(volatile uint64_t *p, uint64_t *out)
{
	if (sigsetjmp(jump, 1))
		return -1;
	*out = *p;
	return 0;
}

static inline void install(int signo, void (*h)(int, siginfo_t *, void *), int flags)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = h;
	sa.sa_flags = SA_SIGINFO | flags;
	sigemptyset(&sa.sa_mask);
	CHECK(sigaction(signo, &sa, NULL) == 0, "sigaction");
}

/* Exports [offset, offset + length) of BAR `index` as a buffer fd. */
static inline int export_buffer(int dev, unsigned index, uint64_t offset, uint64_t length)
{
	struct dma_buf_export e = {
		.argsz = sizeof(e),
		.flags = VFIO_DEVICE_FEATURE_GET | FEATURE_DMA_BUF,
		.region_index = index,
		.open_flags = O_RDWR | O_CLOEXEC,
		.nr_ranges = 1,
		.ranges = { { offset, length } },
	};
	int fd = ioctl(dev, VFIO_DEVICE_FEATURE, &e);
	CHECK(fd >= 0, "DMA_BUF export of region %u", index);
	return fd;
}

/* Revokes buffer `buf` of device `dev` for good. */
static inline void revoke_buffer(int dev, int buf)
{
	struct {
		struct vfio_device_feature f;
		int32_t fd;
	} r = { { .argsz = sizeof(r), .flags = VFIO_DEVICE_FEATURE_SET | FEATURE_DMA_BUF_REVOKE }, buf };
	CHECK(ioctl(dev, VFIO_DEVICE_FEATURE, &r) == 0, "DMA_BUF_REVOKE");
}
