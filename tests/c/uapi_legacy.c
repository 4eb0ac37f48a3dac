/*
 * vfio_uapi sections "sysfs" and "legacy": the paths a program finds its
 * device by, and the container/group API with its lifetimes and the Type1
 * IOMMU's DMA mapping checks.
 */
#include "uapi.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

/* ---- sysfs and /dev -------------------------------------------------------- */

static bool dir_has(const char *path, const char *name)
{
	DIR *d = opendir(path);
	if (!d)
		FAIL("opendir %s: %s", path, errno_name(errno));
	bool found = false;
	struct dirent *e;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, name) == 0)
			found = true;
	closedir(d);
	return found;
}

/* The one vfioN entry of /sys/bus/pci/devices/<BDF>/vfio-dev, as the
 * selftests' library and Cloud Hypervisor look it up. */
static void cdev_name_of(const char *bdf, char *name, size_t len)
{
	char path[128];
	int found = 0;
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/vfio-dev", bdf);
	DIR *d = opendir(path);
	if (!d)
		FAIL("opendir %s: %s", path, errno_name(errno));
	struct dirent *e;
	while ((e = readdir(d))) {
		if (strncmp(e->d_name, "vfio", 4) == 0) {
			snprintf(name, len, "%s", e->d_name);
			found++;
		} else if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			FAIL("%s holds an unexpected entry %s", path, e->d_name);
		}
	}
	closedir(d);
	CHECK(found == 1, "%s lists exactly one vfioN entry (%s)", path, found ? name : "none");
}

static void sysfs_of(const char *bdf, uint16_t device_id)
{
	char path[512], text[512], target[512], cdev[256];
	struct stat st;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s", bdf);
	MUST(stat(path, &st), "stat %s", path);
	CHECK(S_ISDIR(st.st_mode), "stat %s is a directory", path);

	int group = iommu_group_of(bdf);
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/iommu_group", bdf);
	ssize_t n = MUST(readlink(path, target, sizeof(target) - 1), "readlink %s", path);
	target[n] = '\0';
	snprintf(text, sizeof(text), "kernel/iommu_groups/%d", group);
	CHECK(n >= (ssize_t)strlen(text) && strcmp(target + n - strlen(text), text) == 0,
	      "readlink %s = %s names group %d", path, target, group);
	char *real = realpath(path, NULL);
	if (!real)
		FAIL("realpath %s: %s", path, errno_name(errno));
	snprintf(text, sizeof(text), "/sys/kernel/iommu_groups/%d", group);
	CHECK(strcmp(real, text) == 0, "realpath %s = %s", path, real);
	free(real);
	snprintf(path, sizeof(path), "/sys/kernel/iommu_groups/%d/devices", group);
	CHECK(dir_has(path, bdf), "%s lists %s", path, bdf);

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/vendor", bdf);
	read_text(path, text, sizeof(text));
	CHECK(strcmp(text, "0x1234\n") == 0, "%s reads 0x1234", path);
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/device", bdf);
	read_text(path, text, sizeof(text));
	snprintf(target, sizeof(target), "0x%04x\n", device_id);
	CHECK(strcmp(text, target) == 0, "%s reads 0x%04x", path, device_id);

	snprintf(path, sizeof(path), "/dev/vfio/%d", group);
	MUST(stat(path, &st), "stat %s", path);
	CHECK(S_ISCHR(st.st_mode), "%s is a character device", path);
	snprintf(text, sizeof(text), "%d", group);
	CHECK(dir_has("/dev/vfio", text), "/dev/vfio lists group %d", group);

	/* The cdev: its sysfs directory, its dev numbers, its node. */
	cdev_name_of(bdf, cdev, sizeof(cdev));
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/vfio-dev/%s", bdf, cdev);
	MUST(stat(path, &st), "stat %s", path);
	CHECK(S_ISDIR(st.st_mode), "%s is a directory (Cloud Hypervisor requires it)", path);
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/vfio-dev/%s/dev", bdf, cdev);
	read_text(path, text, sizeof(text));
	unsigned maj = 0, min = 0;
	int fields = sscanf(text, "%u:%u", &maj, &min);
	CHECK(fields == 2, "%s reads MAJOR:MINOR (%u:%u)", path, maj, min);
	snprintf(path, sizeof(path), "/dev/vfio/devices/%s", cdev);
	MUST(stat(path, &st), "stat %s", path);
	CHECK(S_ISCHR(st.st_mode) && major(st.st_rdev) == maj && minor(st.st_rdev) == min,
	      "%s is the character device %u:%u", path, maj, min);
	snprintf(path, sizeof(path), "/sys/class/vfio-dev/%s", cdev);
	MUST(stat(path, &st), "stat %s", path);
	CHECK(S_ISDIR(st.st_mode), "%s exists", path);
}

void section_sysfs(const struct uapi_args *a)
{
	struct stat st;

	sysfs_of(a->edu, 0x11e8);
	sysfs_of(a->ram, 0x11e8);
	CHECK(iommu_group_of(a->edu) != iommu_group_of(a->ram), "the two devices are in different groups");

	MUST(stat("/dev/vfio/vfio", &st), "stat /dev/vfio/vfio");
	CHECK(S_ISCHR(st.st_mode) && major(st.st_rdev) == 10 && minor(st.st_rdev) == 196,
	      "/dev/vfio/vfio is the misc character device 10:196");
	MUST(stat("/dev/iommu", &st), "stat /dev/iommu");
	CHECK(S_ISCHR(st.st_mode) && major(st.st_rdev) == 10, "/dev/iommu is a misc character device");
	CHECK(dir_has("/dev/vfio", "vfio") && dir_has("/dev/vfio", "devices"), "/dev/vfio lists vfio and devices");
	CHECK_ERR(open("/dev/vfio/99999", O_RDWR | O_CLOEXEC), ENOENT, "open of a group that does not exist");
}

/* ---- the container and its groups ------------------------------------------ */

struct iova_window {
	uint64_t start, end; /* inclusive, as VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE */
};

/* VFIO_IOMMU_GET_INFO as QEMU and the selftests call it: the fixed part,
 * then again with room for the capability chain, which is walked. Returns
 * the first usable IOVA window. */
static struct iova_window iommu_info(int c)
{
	struct vfio_iommu_type1_info small = { .argsz = 8 };
	CHECK_ERR(ioctl(c, VFIO_IOMMU_GET_INFO, &small), EINVAL, "VFIO_IOMMU_GET_INFO with argsz 8");

	struct vfio_iommu_type1_info info = { .argsz = sizeof(info) };
	MUST(ioctl(c, VFIO_IOMMU_GET_INFO, &info), "VFIO_IOMMU_GET_INFO");
	CHECK((info.flags & VFIO_IOMMU_INFO_PGSIZES) && (info.iova_pgsizes & PAGE),
	      "VFIO_IOMMU_GET_INFO reports page sizes including 4 KiB (0x%llx)", (unsigned long long)info.iova_pgsizes);
	CHECK((info.flags & VFIO_IOMMU_INFO_CAPS) && info.argsz > sizeof(info),
	      "VFIO_IOMMU_GET_INFO has capabilities and asks for %u bytes", info.argsz);

	uint32_t size = info.argsz;
	uint64_t *buf = calloc(1, size);
	struct vfio_iommu_type1_info *full = (struct vfio_iommu_type1_info *)buf;
	full->argsz = size;
	MUST(ioctl(c, VFIO_IOMMU_GET_INFO, full), "VFIO_IOMMU_GET_INFO with %u bytes", size);
	CHECK(full->cap_offset >= sizeof(*full) && full->cap_offset < size, "the capability chain starts at %u",
	      full->cap_offset);

	struct iova_window win = { 0, 0 };
	bool ranges = false, avail = false;
	for (uint32_t off = full->cap_offset, hops = 0; off; hops++) {
		if (off + sizeof(struct vfio_info_cap_header) > size || hops > 16)
			FAIL("capability chain broken at offset %u", off);
		struct vfio_info_cap_header *h = (struct vfio_info_cap_header *)((uint8_t *)buf + off);
		if (h->id == VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE) {
			struct vfio_iommu_type1_info_cap_iova_range *r = (void *)h;
			CHECK(r->nr_iovas >= 1, "IOVA_RANGE capability lists %u ranges", r->nr_iovas);
			for (uint32_t i = 0; i < r->nr_iovas; i++) {
				CHECK(r->iova_ranges[i].start <= r->iova_ranges[i].end &&
					      (i == 0 || r->iova_ranges[i].start > r->iova_ranges[i - 1].end),
				      "IOVA range %u [0x%llx, 0x%llx] is ordered", i,
				      (unsigned long long)r->iova_ranges[i].start, (unsigned long long)r->iova_ranges[i].end);
				if (!ranges && r->iova_ranges[i].start <= 0x100000 && r->iova_ranges[i].end >= 0xffffff) {
					win.start = r->iova_ranges[i].start;
					win.end = r->iova_ranges[i].end;
					ranges = true;
				}
			}
		} else if (h->id == VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL) {
			struct vfio_iommu_type1_info_dma_avail *d = (void *)h;
			CHECK(d->avail > 0, "DMA_AVAIL capability: %u mappings available", d->avail);
			avail = true;
		}
		off = h->next;
	}
	CHECK(ranges, "an IOVA range covers [0x100000, 0xffffff], where edu's 28-bit DMA reaches");
	CHECK(avail, "the DMA_AVAIL capability is there");
	free(buf);
	return win;
}

/* Fill in a read/write MAP_DMA request. */
static void dma_map(struct vfio_iommu_type1_dma_map *m, void *va, uint64_t iova, uint64_t size)
{
	memset(m, 0, sizeof(*m));
	m->argsz = sizeof(*m);
	m->flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;
	m->vaddr = (uint64_t)(uintptr_t)va;
	m->iova = iova;
	m->size = size;
}

/* Fill in an UNMAP_DMA request (flags 0). */
static void dma_unmap(struct vfio_iommu_type1_dma_unmap *u, uint64_t iova, uint64_t size)
{
	memset(u, 0, sizeof(*u));
	u->argsz = sizeof(*u);
	u->iova = iova;
	u->size = size;
}

/* The Type1 driver's VFIO_IOMMU_MAP_DMA and UNMAP_DMA checks. */
static void dma_map_checks(int c, int dev, const struct iova_window *win)
{
	const uint64_t iova = 0x100000;
	uint8_t *va = MUST_MAP(mmap(NULL, 8 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
			       "anonymous buffer");
	struct vfio_iommu_type1_dma_map m;
	struct vfio_iommu_type1_dma_unmap u;

	CHECK(iova >= win->start && iova + 8 * PAGE - 1 <= win->end, "IOVA 0x%" PRIx64 " lies in a usable range", iova);
	dma_map(&m, va, iova, 2 * PAGE);
	m.argsz = 16;
	CHECK_ERR(ioctl(c, VFIO_IOMMU_MAP_DMA, &m), EINVAL, "MAP_DMA with argsz 16");
	dma_map(&m, va, iova, 2 * PAGE);
	m.flags = 0;
	CHECK_ERR(ioctl(c, VFIO_IOMMU_MAP_DMA, &m), EINVAL, "MAP_DMA with neither READ nor WRITE");
	dma_map(&m, va, iova, 2 * PAGE);
	m.flags |= 1U << 7;
	CHECK_ERR(ioctl(c, VFIO_IOMMU_MAP_DMA, &m), EINVAL, "MAP_DMA with an unknown flag");
	dma_map(&m, va, iova, 0);
	CHECK_ERR(ioctl(c, VFIO_IOMMU_MAP_DMA, &m), EINVAL, "MAP_DMA of size 0");
	dma_map(&m, va, iova + 0x800, 2 * PAGE);
	CHECK_ERR(ioctl(c, VFIO_IOMMU_MAP_DMA, &m), EINVAL, "MAP_DMA at an IOVA that is not page aligned");
	dma_map(&m, va + 0x800, iova, 2 * PAGE);
	CHECK_ERR(ioctl(c, VFIO_IOMMU_MAP_DMA, &m), EINVAL, "MAP_DMA of a vaddr that is not page aligned");
	dma_map(&m, va, iova, PAGE + 0x800);
	CHECK_ERR(ioctl(c, VFIO_IOMMU_MAP_DMA, &m), EINVAL, "MAP_DMA of a size that is not page aligned");
	dma_map(&m, va, ~0ULL & ~(PAGE - 1), 2 * PAGE);
	CHECK_ERR(ioctl(c, VFIO_IOMMU_MAP_DMA, &m), EOVERFLOW, "MAP_DMA whose IOVA range wraps past 2^64");

	uint8_t *gone = MUST_MAP(mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), "page");
	unmap(gone, PAGE);
	dma_map(&m, gone, iova + 6 * PAGE, PAGE);
	CHECK_ERR(ioctl(c, VFIO_IOMMU_MAP_DMA, &m), EFAULT, "MAP_DMA of an address with nothing mapped (pinning fails)");

	dma_map(&m, va, iova, 2 * PAGE);
	CHECK_SUCCEEDS(ioctl(c, VFIO_IOMMU_MAP_DMA, &m), "MAP_DMA of 2 pages at IOVA 0x%" PRIx64, iova);
	CHECK_ERR(ioctl(c, VFIO_IOMMU_MAP_DMA, &m), EEXIST, "the same MAP_DMA again");
	dma_map(&m, va + 2 * PAGE, iova + PAGE, 2 * PAGE);
	CHECK_ERR(ioctl(c, VFIO_IOMMU_MAP_DMA, &m), EEXIST, "MAP_DMA overlapping the second page of a mapping");
	dma_map(&m, va + 4 * PAGE, iova + 4 * PAGE, PAGE);
	CHECK_SUCCEEDS(ioctl(c, VFIO_IOMMU_MAP_DMA, &m), "MAP_DMA of one more page at IOVA 0x%" PRIx64, iova + 4 * PAGE);

	dma_unmap(&u, iova, 2 * PAGE);
	u.argsz = 8;
	CHECK_ERR(ioctl(c, VFIO_IOMMU_UNMAP_DMA, &u), EINVAL, "UNMAP_DMA with argsz 8");
	dma_unmap(&u, iova + 0x800, PAGE);
	CHECK_ERR(ioctl(c, VFIO_IOMMU_UNMAP_DMA, &u), EINVAL, "UNMAP_DMA at an IOVA that is not page aligned");
	dma_unmap(&u, iova + PAGE, PAGE);
	CHECK_ERR(ioctl(c, VFIO_IOMMU_UNMAP_DMA, &u), EINVAL, "UNMAP_DMA cutting a mapping in two (Type1v2)");
	dma_unmap(&u, ~0ULL & ~(PAGE - 1), 2 * PAGE);
	CHECK_ERR(ioctl(c, VFIO_IOMMU_UNMAP_DMA, &u), EOVERFLOW, "UNMAP_DMA whose range wraps past 2^64");
	dma_unmap(&u, iova + 2 * PAGE, 2 * PAGE);
	CHECK_SUCCEEDS(ioctl(c, VFIO_IOMMU_UNMAP_DMA, &u), "UNMAP_DMA of a range with nothing mapped");
	CHECK_EQ(u.size, 0, "... unmapped 0 bytes");
	dma_unmap(&u, iova, 2 * PAGE);
	CHECK_SUCCEEDS(ioctl(c, VFIO_IOMMU_UNMAP_DMA, &u), "UNMAP_DMA of the 2-page mapping");
	CHECK_EQ(u.size, 2 * PAGE, "... unmapped 2 pages");
	dma_map(&m, va, iova, 2 * PAGE);
	CHECK_SUCCEEDS(ioctl(c, VFIO_IOMMU_MAP_DMA, &m), "the freed IOVA range maps again");

	/* A BAR mapping is VM_PFNMAP memory, which Type1 maps for peer-to-peer
	 * DMA (the upstream mmio selftest asserts it; QEMU maps BARs so). */
	uint8_t *bar = map_region(dev, 1, 0, 16 * PAGE);
	dma_map(&m, bar, 0x800000, 16 * PAGE);
	CHECK_SUCCEEDS(ioctl(c, VFIO_IOMMU_MAP_DMA, &m), "MAP_DMA of a device-fd BAR mapping (peer-to-peer)");
	dma_unmap(&u, 0x800000, 16 * PAGE);
	CHECK_SUCCEEDS(ioctl(c, VFIO_IOMMU_UNMAP_DMA, &u), "UNMAP_DMA of the BAR mapping");
	CHECK_EQ(u.size, 16 * PAGE, "... unmapped all of it");
	unmap(bar, 16 * PAGE);

	dma_unmap(&u, iova, PAGE);
	u.flags = VFIO_DMA_UNMAP_FLAG_ALL;
	CHECK_ERR(ioctl(c, VFIO_IOMMU_UNMAP_DMA, &u), EINVAL, "UNMAP_DMA with FLAG_ALL and a range");
	dma_unmap(&u, 0, 0);
	u.flags = VFIO_DMA_UNMAP_FLAG_ALL;
	CHECK_SUCCEEDS(ioctl(c, VFIO_IOMMU_UNMAP_DMA, &u), "UNMAP_DMA with FLAG_ALL");
	CHECK_EQ(u.size, 3 * PAGE, "... unmapped the 3 pages still mapped");
	unmap(va, 8 * PAGE);
}

static uint32_t group_status(int g)
{
	struct vfio_group_status s = { .argsz = sizeof(s) };
	MUST(ioctl(g, VFIO_GROUP_GET_STATUS, &s), "VFIO_GROUP_GET_STATUS");
	return s.flags;
}

void section_legacy(const struct uapi_args *a)
{
	int c = (int)MUST(open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC), "open /dev/vfio/vfio");
	CHECK_EQ(ioctl(c, VFIO_GET_API_VERSION), VFIO_API_VERSION, "VFIO_GET_API_VERSION");
	CHECK_EQ(ioctl(c, VFIO_CHECK_EXTENSION, VFIO_TYPE1_IOMMU), 1, "CHECK_EXTENSION(TYPE1)");
	CHECK_EQ(ioctl(c, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU), 1, "CHECK_EXTENSION(TYPE1v2)");
	CHECK_EQ(ioctl(c, VFIO_CHECK_EXTENSION, VFIO_UNMAP_ALL), 1, "CHECK_EXTENSION(UNMAP_ALL)");
	CHECK_EQ(ioctl(c, VFIO_CHECK_EXTENSION, VFIO_SPAPR_TCE_IOMMU), 0, "CHECK_EXTENSION(SPAPR_TCE) on x86");
	CHECK_EQ(ioctl(c, VFIO_CHECK_EXTENSION, 1000), 0, "CHECK_EXTENSION of an unknown extension");
	CHECK_ERR(ioctl(c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU), EINVAL, "SET_IOMMU before any group joined");
	struct vfio_iommu_type1_info info = { .argsz = sizeof(info) };
	CHECK_ERR(ioctl(c, VFIO_IOMMU_GET_INFO, &info), EINVAL, "IOMMU_GET_INFO before SET_IOMMU");
	CHECK_ERR(ioctl(c, UNKNOWN_IOCTL, unknown_ioctl_arg), EINVAL, "an unknown container ioctl before SET_IOMMU");

	int groupno;
	int g = group_open(a->ram, &groupno);
	char path[64];
	snprintf(path, sizeof(path), "/dev/vfio/%d", groupno);
	CHECK_EQ(group_status(g), VFIO_GROUP_FLAGS_VIABLE, "GET_STATUS of group %d: viable, no container", groupno);
	struct vfio_group_status s4 = { .argsz = 4 };
	CHECK_ERR(ioctl(g, VFIO_GROUP_GET_STATUS, &s4), EINVAL, "GET_STATUS with argsz 4");
	CHECK_ERR(open(path, O_RDWR | O_CLOEXEC), EBUSY, "a second open of %s", path);
	CHECK_ERR(ioctl(g, VFIO_GROUP_GET_DEVICE_FD, a->ram), EINVAL, "GET_DEVICE_FD before SET_CONTAINER");
	CHECK_ERR(ioctl(g, UNKNOWN_IOCTL, unknown_ioctl_arg), ENOTTY, "an unknown group ioctl");
	CHECK_ERR(ioctl(g, VFIO_GROUP_UNSET_CONTAINER), EINVAL, "UNSET_CONTAINER with no container");
	int bad = -1;
	CHECK_ERR(ioctl(g, VFIO_GROUP_SET_CONTAINER, &bad), EBADF, "SET_CONTAINER with fd -1");
	CHECK_ERR(ioctl(g, VFIO_GROUP_SET_CONTAINER, &g), EBADFD, "SET_CONTAINER with a group fd");
	CHECK_SUCCEEDS(ioctl(g, VFIO_GROUP_SET_CONTAINER, &c), "SET_CONTAINER");
	CHECK_EQ(group_status(g), VFIO_GROUP_FLAGS_VIABLE | VFIO_GROUP_FLAGS_CONTAINER_SET,
		 "GET_STATUS: viable, container set");
	CHECK_ERR(ioctl(g, VFIO_GROUP_SET_CONTAINER, &c), EINVAL, "SET_CONTAINER again");
	CHECK_ERR(ioctl(g, VFIO_GROUP_GET_DEVICE_FD, a->ram), EINVAL, "GET_DEVICE_FD before SET_IOMMU");
	CHECK_ERR(ioctl(c, VFIO_SET_IOMMU, VFIO_SPAPR_TCE_IOMMU), ENODEV, "SET_IOMMU(SPAPR_TCE): no such driver");
	CHECK_SUCCEEDS(ioctl(c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU), "SET_IOMMU(TYPE1v2)");
	CHECK_ERR(ioctl(c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU), EINVAL, "SET_IOMMU a second time");
	CHECK_EQ(ioctl(c, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU), 1, "CHECK_EXTENSION(TYPE1v2) of the set IOMMU");
	CHECK_ERR(ioctl(c, UNKNOWN_IOCTL, unknown_ioctl_arg), ENOTTY, "an unknown container ioctl once the IOMMU is set");
	struct iova_window win = iommu_info(c);

	/* A second group joins the same container, and leaves it again. */
	int groupno2;
	int g2 = group_open(a->edu, &groupno2);
	CHECK_SUCCEEDS(ioctl(g2, VFIO_GROUP_SET_CONTAINER, &c), "group %d joins the same container", groupno2);
	CHECK_SUCCEEDS(ioctl(g2, VFIO_GROUP_UNSET_CONTAINER), "UNSET_CONTAINER of group %d", groupno2);
	CHECK_EQ(group_status(g2), VFIO_GROUP_FLAGS_VIABLE, "group %d has no container again", groupno2);
	close(g2);

	CHECK_ERR(ioctl(g, VFIO_GROUP_GET_DEVICE_FD, "0000:00:1f.7"), ENODEV, "GET_DEVICE_FD of a device not in the group");
	int d = (int)CHECK_SUCCEEDS(ioctl(g, VFIO_GROUP_GET_DEVICE_FD, a->ram), "GET_DEVICE_FD(%s)", a->ram);
	CHECK(fcntl(d, F_GETFD) & FD_CLOEXEC, "the device fd is close-on-exec");
	int d2 = (int)CHECK_SUCCEEDS(ioctl(g, VFIO_GROUP_GET_DEVICE_FD, a->ram), "a second GET_DEVICE_FD of the same device");
	struct vfio_device_info di = { .argsz = sizeof(di) };
	CHECK_SUCCEEDS(ioctl(d2, VFIO_DEVICE_GET_INFO, &di), "GET_INFO through the second device fd");
	CHECK_ERR(ioctl(g, VFIO_GROUP_UNSET_CONTAINER), EBUSY, "UNSET_CONTAINER while a device is open");
	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind), .iommufd = c };
	CHECK_ERR(ioctl(d, VFIO_DEVICE_BIND_IOMMUFD, &bind), EINVAL, "BIND_IOMMUFD on a device fd from a group");
	struct vfio_device_attach_iommufd_pt attach = { .argsz = sizeof(attach), .pt_id = 1 };
	CHECK_ERR(ioctl(d, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach), ENOTTY, "ATTACH_IOMMUFD_PT on a device fd from a group");

	dma_map_checks(c, d, &win);

	/* Lifetimes: the device fds hold the group file, which holds the
	 * container; closing the group and container fds changes nothing for
	 * the device until its last fd is gone. */
	uint8_t *buf = MUST_MAP(mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), "page");
	struct vfio_iommu_type1_dma_map m;
	dma_map(&m, buf, 0x200000, PAGE);
	MUST(ioctl(c, VFIO_IOMMU_MAP_DMA, &m), "MAP_DMA before the group fd closes");
	close(g);
	di.argsz = sizeof(di);
	CHECK_SUCCEEDS(ioctl(d, VFIO_DEVICE_GET_INFO, &di), "GET_INFO after the group fd closed");
	CHECK_EQ(cfg_read(d, CFG_VENDOR_ID, 2), 0x1234, "config space reads after the group fd closed");
	region_write(d, 1, 0x40, 4, 0x600dcafe);
	CHECK_EQ(region_read(d, 1, 0x40, 4), 0x600dcafe, "BAR1 reads and writes after the group fd closed");
	uint32_t *bar = map_region(d, 1, 0, PAGE);
	CHECK_EQ(LOAD(4, &bar[0x10], "BAR1 + 0x40"), 0x600dcafe, "BAR1 maps after the group fd closed");
	unmap(bar, PAGE);
	CHECK_ERR(ioctl(c, VFIO_IOMMU_MAP_DMA, &m), EEXIST, "the container still has the group's IOMMU and its mapping");
	CHECK_ERR(open(path, O_RDWR | O_CLOEXEC), EBUSY, "reopening the group while its devices are open");
	close(c);
	CHECK_SUCCEEDS(ioctl(d, VFIO_DEVICE_GET_INFO, &di), "GET_INFO after the container fd closed too");
	close(d2);
	CHECK_ERR(open(path, O_RDWR | O_CLOEXEC), EBUSY, "reopening the group while one device fd is still open");
	close(d);
	g = (int)CHECK_SUCCEEDS(open(path, O_RDWR | O_CLOEXEC), "the group opens again once its last device fd closed");
	CHECK_EQ(group_status(g), VFIO_GROUP_FLAGS_VIABLE, "... with no container: the release detached it");
	close(g);
	unmap(buf, PAGE);
}
