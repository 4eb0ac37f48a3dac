/*
 * vfio_uapi sections "cdev" and "hotreset": the device cdev with iommufd
 * (what the upstream selftests' library and Cloud Hypervisor use), and
 * VFIO_DEVICE_GET_PCI_HOT_RESET_INFO / VFIO_DEVICE_PCI_HOT_RESET over
 * groups and over an iommufd context.
 */
#include "uapi.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

void cdev_path(const char *bdf, char *path, size_t len)
{
	char dir[128];
	snprintf(dir, sizeof(dir), "/sys/bus/pci/devices/%s/vfio-dev", bdf);
	DIR *d = opendir(dir);
	if (!d)
		FAIL("opendir %s: %s", dir, errno_name(errno));
	struct dirent *e;
	path[0] = '\0';
	while ((e = readdir(d)))
		if (strncmp(e->d_name, "vfio", 4) == 0)
			snprintf(path, len, "/dev/vfio/devices/%.64s", e->d_name);
	closedir(d);
	if (!path[0])
		FAIL("%s has no vfioN entry", dir);
}

static uint32_t ioas_alloc(int ifd)
{
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	MUST(ioctl(ifd, IOMMU_IOAS_ALLOC, &alloc), "IOMMU_IOAS_ALLOC");
	return alloc.out_ioas_id;
}

int cdev_open_attached(const char *bdf, int *iommufd, uint32_t *ioas, uint32_t *devid)
{
	char path[128];
	*iommufd = (int)MUST(open("/dev/iommu", O_RDWR | O_CLOEXEC), "open /dev/iommu");
	*ioas = ioas_alloc(*iommufd);
	cdev_path(bdf, path, sizeof(path));
	int d = (int)MUST(open(path, O_RDWR | O_CLOEXEC), "open %s", path);
	/* Cloud Hypervisor's sizes: bind without the token field, attach
	 * without the PASID field. */
	struct vfio_device_bind_iommufd bind = { .argsz = 16, .iommufd = *iommufd };
	MUST(ioctl(d, VFIO_DEVICE_BIND_IOMMUFD, &bind), "BIND_IOMMUFD with argsz 16");
	*devid = bind.out_devid;
	struct vfio_device_attach_iommufd_pt attach = { .argsz = 12, .pt_id = *ioas };
	MUST(ioctl(d, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach), "ATTACH_IOMMUFD_PT with argsz 12");
	return d;
}

/* ---- cdev + iommufd ---------------------------------------------------------- */

static void ioas_ranges(int ifd, uint32_t ioas)
{
	struct iommu_ioas_iova_ranges q = { .size = 16, .ioas_id = ioas };
	CHECK_ERR(ioctl(ifd, IOMMU_IOAS_IOVA_RANGES, &q), EINVAL, "IOAS_IOVA_RANGES with size 16");
	q = (struct iommu_ioas_iova_ranges){ .size = sizeof(q), .ioas_id = ioas, .__reserved = 1 };
	CHECK_ERR(ioctl(ifd, IOMMU_IOAS_IOVA_RANGES, &q), EOPNOTSUPP, "IOAS_IOVA_RANGES with __reserved set");
	q = (struct iommu_ioas_iova_ranges){ .size = sizeof(q), .ioas_id = 9999 };
	CHECK_ERR(ioctl(ifd, IOMMU_IOAS_IOVA_RANGES, &q), ENOENT, "IOAS_IOVA_RANGES of an unknown IOAS");
	q = (struct iommu_ioas_iova_ranges){ .size = sizeof(q), .ioas_id = ioas };
	CHECK_ERR(ioctl(ifd, IOMMU_IOAS_IOVA_RANGES, &q), EMSGSIZE, "IOAS_IOVA_RANGES with no room for ranges");
	CHECK(q.num_iovas >= 1 && q.out_iova_alignment >= 1 && q.out_iova_alignment <= PAGE &&
		      !(q.out_iova_alignment & (q.out_iova_alignment - 1)),
	      "... still reports %u ranges and an alignment of %llu", q.num_iovas,
	      (unsigned long long)q.out_iova_alignment);
	struct iommu_iova_range r[16];
	uint32_t n = q.num_iovas < 16 ? q.num_iovas : 16;
	q.num_iovas = n;
	q.allowed_iovas = (uint64_t)(uintptr_t)r;
	CHECK_SUCCEEDS(ioctl(ifd, IOMMU_IOAS_IOVA_RANGES, &q), "IOAS_IOVA_RANGES with room for %u ranges", n);
	bool ordered = true, covers = false;
	for (uint32_t i = 0; i < n; i++) {
		ordered &= r[i].start <= r[i].last && (i == 0 || r[i].start > r[i - 1].last);
		covers |= r[i].start <= 0x100000 && r[i].last >= 0x8fffff;
	}
	CHECK(ordered, "the IOVA ranges are ordered and disjoint");
	CHECK(covers, "an IOVA range covers [0x100000, 0x8fffff]");
}

static struct iommu_ioas_map ioas_map_req(uint32_t ioas, void *va, uint64_t iova, uint64_t len)
{
	struct iommu_ioas_map m = {
		.size = sizeof(m),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
		.ioas_id = ioas,
		.user_va = (uint64_t)(uintptr_t)va,
		.length = len,
		.iova = iova,
	};
	return m;
}

static void ioas_map_unmap(int ifd, uint32_t ioas, int d)
{
	uint8_t *va = MUST_MAP(mmap(NULL, 8 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), "buffer");
	const uint64_t iova = 0x400000;
	struct iommu_ioas_map m;

	m = ioas_map_req(ioas, va, iova, 2 * PAGE);
	m.flags = IOMMU_IOAS_MAP_FIXED_IOVA;
	CHECK_ERR(ioctl(ifd, IOMMU_IOAS_MAP, &m), EINVAL, "IOAS_MAP neither readable nor writeable");
	m = ioas_map_req(ioas, va, iova, 2 * PAGE);
	m.flags |= 1U << 5;
	CHECK_ERR(ioctl(ifd, IOMMU_IOAS_MAP, &m), EOPNOTSUPP, "IOAS_MAP with an unknown flag");
	m = ioas_map_req(ioas, va, iova, 2 * PAGE);
	m.__reserved = 1;
	CHECK_ERR(ioctl(ifd, IOMMU_IOAS_MAP, &m), EOPNOTSUPP, "IOAS_MAP with __reserved set");
	m = ioas_map_req(9999, va, iova, 2 * PAGE);
	CHECK_ERR(ioctl(ifd, IOMMU_IOAS_MAP, &m), ENOENT, "IOAS_MAP into an unknown IOAS");
	m = ioas_map_req(ioas, va, iova, 0);
	CHECK_ERR(ioctl(ifd, IOMMU_IOAS_MAP, &m), EINVAL, "IOAS_MAP of length 0");
	m = ioas_map_req(ioas, va, iova + 0x800, 2 * PAGE);
	CHECK_ERR(ioctl(ifd, IOMMU_IOAS_MAP, &m), EINVAL, "IOAS_MAP at an IOVA that is not aligned");
	m = ioas_map_req(ioas, va, ~0ULL & ~(PAGE - 1), 2 * PAGE);
	CHECK_ERR(ioctl(ifd, IOMMU_IOAS_MAP, &m), EOVERFLOW, "IOAS_MAP whose IOVA range wraps past 2^64");
	m = ioas_map_req(ioas, va, iova, 2 * PAGE);
	m.size = 8;
	CHECK_ERR(ioctl(ifd, IOMMU_IOAS_MAP, &m), EINVAL, "IOAS_MAP with size 8");

	m = ioas_map_req(ioas, va, iova, 2 * PAGE);
	CHECK_SUCCEEDS(ioctl(ifd, IOMMU_IOAS_MAP, &m), "IOAS_MAP of 2 pages at IOVA 0x%" PRIx64, iova);
	CHECK_ERR(ioctl(ifd, IOMMU_IOAS_MAP, &m), EEXIST, "the same IOAS_MAP again");
	m = ioas_map_req(ioas, va + 2 * PAGE, iova + PAGE, 2 * PAGE);
	CHECK_ERR(ioctl(ifd, IOMMU_IOAS_MAP, &m), EEXIST, "IOAS_MAP overlapping a mapping");
	m = ioas_map_req(ioas, va + 4 * PAGE, 0, 2 * PAGE);
	m.flags &= ~(uint32_t)IOMMU_IOAS_MAP_FIXED_IOVA;
	CHECK_SUCCEEDS(ioctl(ifd, IOMMU_IOAS_MAP, &m), "IOAS_MAP without FIXED_IOVA");
	CHECK(m.iova != 0 && !(m.iova & (PAGE - 1)) && (m.iova + 2 * PAGE <= iova || m.iova >= iova + 2 * PAGE),
	      "... the kernel chose a free, aligned, non-zero IOVA 0x%llx", (unsigned long long)m.iova);
	uint64_t chosen = m.iova;

	/* A BAR mapping cannot be pinned: the IOAS refuses it. */
	void *bar = map_region(d, 1, 0, 16 * PAGE);
	m = ioas_map_req(ioas, bar, 0x800000, 16 * PAGE);
	long r = ioctl(ifd, IOMMU_IOAS_MAP, &m);
	int e = errno;
	CHECK(r == -1, "IOAS_MAP of a device-fd BAR mapping fails (%s), as the upstream mmio selftest requires",
	      r == -1 ? errno_name(e) : "it succeeded");
	unmap(bar, 16 * PAGE);

	struct iommu_ioas_unmap u = { .size = 16, .ioas_id = ioas, .iova = iova, .length = 2 * PAGE };
	CHECK_ERR(ioctl(ifd, IOMMU_IOAS_UNMAP, &u), EINVAL, "IOAS_UNMAP with size 16");
	u = (struct iommu_ioas_unmap){ .size = sizeof(u), .ioas_id = ioas, .iova = 0x6000000, .length = PAGE };
	CHECK_ERR(ioctl(ifd, IOMMU_IOAS_UNMAP, &u), ENOENT, "IOAS_UNMAP where nothing is mapped");
	u = (struct iommu_ioas_unmap){ .size = sizeof(u), .ioas_id = ioas, .iova = iova, .length = PAGE };
	CHECK_ERR(ioctl(ifd, IOMMU_IOAS_UNMAP, &u), ENOENT, "IOAS_UNMAP cutting a mapping in two");
	u = (struct iommu_ioas_unmap){ .size = sizeof(u), .ioas_id = ioas, .iova = iova, .length = 2 * PAGE };
	CHECK_SUCCEEDS(ioctl(ifd, IOMMU_IOAS_UNMAP, &u), "IOAS_UNMAP of the 2-page mapping");
	CHECK_EQ(u.length, 2 * PAGE, "... reports 2 pages unmapped");
	u = (struct iommu_ioas_unmap){ .size = sizeof(u), .ioas_id = ioas, .iova = 0, .length = UINT64_MAX };
	CHECK_SUCCEEDS(ioctl(ifd, IOMMU_IOAS_UNMAP, &u), "IOAS_UNMAP of everything");
	CHECK_EQ(u.length, 2 * PAGE, "... reports the 2 pages mapped at 0x%llx unmapped", (unsigned long long)chosen);
	u = (struct iommu_ioas_unmap){ .size = sizeof(u), .ioas_id = ioas, .iova = 0, .length = UINT64_MAX };
	CHECK_SUCCEEDS(ioctl(ifd, IOMMU_IOAS_UNMAP, &u), "IOAS_UNMAP of everything when nothing is mapped");
	CHECK_EQ(u.length, 0, "... reports 0 bytes");
	unmap(va, 8 * PAGE);
}

void section_cdev(const struct uapi_args *a)
{
	char path[128];
	int ifd = (int)MUST(open("/dev/iommu", O_RDWR | O_CLOEXEC), "open /dev/iommu");
	CHECK_ERR(ioctl(ifd, _IO(IOMMUFD_TYPE, 0xff), unknown_ioctl_arg), ENOTTY, "an unknown iommufd ioctl");
	CHECK_EQ(ioctl(ifd, VFIO_GET_API_VERSION), VFIO_API_VERSION, "VFIO_GET_API_VERSION on /dev/iommu (the compat layer)");
	CHECK_EQ(ioctl(ifd, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU), 1, "CHECK_EXTENSION(TYPE1v2) on /dev/iommu");

	struct iommu_ioas_alloc alloc = { .size = 8 };
	CHECK_ERR(ioctl(ifd, IOMMU_IOAS_ALLOC, &alloc), EINVAL, "IOAS_ALLOC with size 8");
	alloc = (struct iommu_ioas_alloc){ .size = sizeof(alloc), .flags = 1 };
	CHECK_ERR(ioctl(ifd, IOMMU_IOAS_ALLOC, &alloc), EOPNOTSUPP, "IOAS_ALLOC with flags 1");
	uint32_t big[4] = { 16, 0, 0, 1 };
	CHECK_ERR(ioctl(ifd, IOMMU_IOAS_ALLOC, big), E2BIG, "IOAS_ALLOC of 16 bytes with a non-zero tail");
	uint32_t ioas = ioas_alloc(ifd);
	pass("IOAS_ALLOC gave IOAS %u", ioas);

	cdev_path(a->ram, path, sizeof(path));
	int d = (int)CHECK_SUCCEEDS(open(path, O_RDWR | O_CLOEXEC), "open %s", path);
	struct vfio_device_info info = { .argsz = sizeof(info) };
	CHECK_ERR(ioctl(d, VFIO_DEVICE_GET_INFO, &info), EINVAL, "GET_INFO before BIND_IOMMUFD");
	uint32_t v;
	CHECK_ERR(pread(d, &v, 4, (off_t)((uint64_t)VFIO_PCI_CONFIG_REGION_INDEX << 40)), EINVAL, "pread before BIND_IOMMUFD");
	CHECK_MAP_ERR(mmap(NULL, PAGE, PROT_READ, MAP_SHARED, d, (off_t)(1ULL << 40)), EINVAL, "mmap before BIND_IOMMUFD");
	struct vfio_device_attach_iommufd_pt attach = { .argsz = sizeof(attach), .pt_id = ioas };
	CHECK_ERR(ioctl(d, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach), EINVAL, "ATTACH before BIND_IOMMUFD");

	int groupno;
	int g = group_open(a->ram, &groupno);
	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind), .iommufd = ifd };
	CHECK_ERR(ioctl(d, VFIO_DEVICE_BIND_IOMMUFD, &bind), EBUSY, "BIND_IOMMUFD while group %d is open", groupno);
	close(g);

	bind = (struct vfio_device_bind_iommufd){ .argsz = 8, .iommufd = ifd };
	CHECK_ERR(ioctl(d, VFIO_DEVICE_BIND_IOMMUFD, &bind), EINVAL, "BIND_IOMMUFD with argsz 8");
	bind = (struct vfio_device_bind_iommufd){ .argsz = sizeof(bind), .iommufd = -2 };
	CHECK_ERR(ioctl(d, VFIO_DEVICE_BIND_IOMMUFD, &bind), EINVAL, "BIND_IOMMUFD with iommufd -2");
	bind = (struct vfio_device_bind_iommufd){ .argsz = sizeof(bind), .flags = 1U << 1, .iommufd = ifd };
	CHECK_ERR(ioctl(d, VFIO_DEVICE_BIND_IOMMUFD, &bind), EINVAL, "BIND_IOMMUFD with an unknown flag");
	int efd = eventfd_new();
	bind = (struct vfio_device_bind_iommufd){ .argsz = sizeof(bind), .iommufd = efd };
	CHECK_ERR(ioctl(d, VFIO_DEVICE_BIND_IOMMUFD, &bind), EBADFD, "BIND_IOMMUFD with an eventfd for the iommufd");
	close(efd);
	uint32_t big_bind[8] = { 32, 0, (uint32_t)ifd, 0, 0, 0, 0, 1 };
	CHECK_ERR(ioctl(d, VFIO_DEVICE_BIND_IOMMUFD, big_bind), E2BIG, "BIND_IOMMUFD of 32 bytes with a non-zero tail");
	bind = (struct vfio_device_bind_iommufd){ .argsz = sizeof(bind), .iommufd = ifd };
	CHECK_SUCCEEDS(ioctl(d, VFIO_DEVICE_BIND_IOMMUFD, &bind), "BIND_IOMMUFD (argsz %zu)", sizeof(bind));
	uint32_t devid = bind.out_devid;
	CHECK(devid >= 1 && devid != ioas, "the device object has its own id %u", devid);
	CHECK_ERR(ioctl(d, VFIO_DEVICE_BIND_IOMMUFD, &bind), EINVAL, "a second BIND_IOMMUFD");
	char gpath[64];
	snprintf(gpath, sizeof(gpath), "/dev/vfio/%d", groupno);
	CHECK_ERR(open(gpath, O_RDWR | O_CLOEXEC), EBUSY, "opening group %d while a cdev of it is bound", groupno);
	CHECK_SUCCEEDS(ioctl(d, VFIO_DEVICE_GET_INFO, &info), "GET_INFO after BIND_IOMMUFD");

	attach = (struct vfio_device_attach_iommufd_pt){ .argsz = 8, .pt_id = ioas };
	CHECK_ERR(ioctl(d, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach), EINVAL, "ATTACH with argsz 8");
	attach = (struct vfio_device_attach_iommufd_pt){ .argsz = sizeof(attach), .pt_id = UINT32_MAX };
	CHECK_ERR(ioctl(d, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach), ENOENT, "ATTACH to an id that does not exist");
	attach = (struct vfio_device_attach_iommufd_pt){ .argsz = sizeof(attach), .pt_id = devid };
	CHECK_ERR(ioctl(d, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach), EINVAL, "ATTACH to the device's own object");
	attach = (struct vfio_device_attach_iommufd_pt){ .argsz = sizeof(attach), .flags = 1U << 1, .pt_id = ioas };
	CHECK_ERR(ioctl(d, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach), EINVAL, "ATTACH with an unknown flag");
	attach = (struct vfio_device_attach_iommufd_pt){ .argsz = sizeof(attach), .pt_id = ioas };
	CHECK_SUCCEEDS(ioctl(d, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach), "ATTACH_IOMMUFD_PT to IOAS %u", ioas);
	uint32_t hwpt = attach.pt_id;
	CHECK(hwpt != ioas && hwpt != devid && hwpt >= 1, "... wrote back the id %u of the page table it made", hwpt);

	ioas_ranges(ifd, ioas);
	ioas_map_unmap(ifd, ioas, d);

	volatile uint32_t *bar = map_region(d, 1, 0, 4 * PAGE);
	STORE(4, &bar[5], 0xcde7cde7, "BAR1 through the cdev");
	CHECK_EQ(region_read(d, 1, 20, 4), 0xcde7cde7, "a cdev-opened device maps and reads its BAR");
	unmap((void *)bar, 4 * PAGE);

	struct iommu_destroy destroy = { .size = sizeof(destroy), .id = 9999 };
	CHECK_ERR(ioctl(ifd, IOMMU_DESTROY, &destroy), ENOENT, "DESTROY of an id that does not exist");
	destroy.id = ioas;
	CHECK_ERR(ioctl(ifd, IOMMU_DESTROY, &destroy), EBUSY, "DESTROY of an IOAS a device is attached to");
	destroy.id = hwpt;
	CHECK_ERR(ioctl(ifd, IOMMU_DESTROY, &destroy), EBUSY, "DESTROY of a page table in use");
	destroy.id = devid;
	CHECK_ERR(ioctl(ifd, IOMMU_DESTROY, &destroy), EBUSY, "DESTROY of a bound device's object");

	struct vfio_device_detach_iommufd_pt detach = { .argsz = 4 };
	CHECK_ERR(ioctl(d, VFIO_DEVICE_DETACH_IOMMUFD_PT, &detach), EINVAL, "DETACH with argsz 4");
	detach = (struct vfio_device_detach_iommufd_pt){ .argsz = sizeof(detach) };
	CHECK_SUCCEEDS(ioctl(d, VFIO_DEVICE_DETACH_IOMMUFD_PT, &detach), "DETACH_IOMMUFD_PT");
	destroy.id = ioas;
	CHECK_SUCCEEDS(ioctl(ifd, IOMMU_DESTROY, &destroy), "DESTROY of the IOAS once nothing is attached");
	CHECK_ERR(ioctl(ifd, IOMMU_DESTROY, &destroy), ENOENT, "DESTROY of the same IOAS again");

	close(d);
	g = (int)CHECK_SUCCEEDS(open(gpath, O_RDWR | O_CLOEXEC), "group %d opens once the cdev is closed", groupno);
	close(g);
	close(ifd);
}

/* ---- hot reset -------------------------------------------------------------------- */

/* GET_PCI_HOT_RESET_INFO: the ENOSPC probe for the count, then the list. */
static struct vfio_pci_hot_reset_info *hot_reset_info(int d, uint32_t *count)
{
	struct vfio_pci_hot_reset_info small = { .argsz = 8 };
	CHECK_ERR(ioctl(d, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, &small), EINVAL, "GET_PCI_HOT_RESET_INFO with argsz 8");
	struct vfio_pci_hot_reset_info hdr = { .argsz = sizeof(hdr) };
	CHECK_ERR(ioctl(d, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, &hdr), ENOSPC,
		  "GET_PCI_HOT_RESET_INFO with no room for devices");
	CHECK(hdr.count >= 1, "... reports %u affected devices", hdr.count);
	size_t size = sizeof(hdr) + hdr.count * sizeof(struct vfio_pci_dependent_device);
	struct vfio_pci_hot_reset_info *info = calloc(1, size);
	info->argsz = (uint32_t)size;
	CHECK_SUCCEEDS(ioctl(d, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, info), "GET_PCI_HOT_RESET_INFO with room for %u", hdr.count);
	*count = info->count;
	return info;
}

static int find_dependent(const struct vfio_pci_hot_reset_info *info, const char *bdf)
{
	unsigned dom, bus, dev, fn;
	sscanf(bdf, "%x:%x:%x.%x", &dom, &bus, &dev, &fn);
	for (uint32_t i = 0; i < info->count; i++) {
		const struct vfio_pci_dependent_device *dd = &info->devices[i];
		if (dd->segment == dom && dd->bus == bus && dd->devfn == ((dev << 3) | fn))
			return (int)i;
	}
	FAIL("the hot reset info does not list %s itself", bdf);
}

static int hot_reset(int d, uint32_t flags, const int32_t *fds, uint32_t count)
{
	uint64_t buf[40];
	struct vfio_pci_hot_reset *r = (struct vfio_pci_hot_reset *)buf;
	if (count > 64)
		FAIL("too many group fds");
	memset(buf, 0, sizeof(buf));
	r->argsz = (uint32_t)(sizeof(*r) + count * sizeof(int32_t));
	r->flags = flags;
	r->count = count;
	if (count)
		memcpy(r->group_fds, fds, count * sizeof(int32_t));
	return ioctl(d, VFIO_DEVICE_PCI_HOT_RESET, r);
}

void section_hotreset(const struct uapi_args *a)
{
	struct legacy lg;
	int d = legacy_open(a->ram, &lg);
	volatile uint32_t *bar = map_region(d, 1, 0, PAGE);
	STORE(4, &bar[0], 0x40404040, "BAR1");

	uint32_t count;
	struct vfio_pci_hot_reset_info *info = hot_reset_info(d, &count);
	CHECK_EQ(info->flags, 0, "a group-opened device's hot reset info names groups, not device ids");
	int self = find_dependent(info, a->ram);
	CHECK_EQ(info->devices[self].group_id, lg.groupno, "it lists %s in group %d", a->ram, lg.groupno);

	/* One fd per affected group: ours, and the others opened here. */
	int32_t fds[64];
	uint32_t nfds = 0;
	int groups[64];
	for (uint32_t i = 0; i < count && nfds < 64; i++) {
		int gid = (int)info->devices[i].group_id;
		bool seen = false;
		for (uint32_t j = 0; j < nfds; j++)
			seen |= groups[j] == gid;
		if (seen)
			continue;
		char path[64];
		snprintf(path, sizeof(path), "/dev/vfio/%d", gid);
		groups[nfds] = gid;
		fds[nfds++] = gid == lg.groupno ? lg.group : (int32_t)MUST(open(path, O_RDWR | O_CLOEXEC), "open %s", path);
	}
	pass("%u affected groups, each with an open fd", nfds);

	struct vfio_pci_hot_reset r = { .argsz = 8 };
	CHECK_ERR(ioctl(d, VFIO_DEVICE_PCI_HOT_RESET, &r), EINVAL, "PCI_HOT_RESET with argsz 8");
	CHECK_ERR(hot_reset(d, 1, fds, nfds), EINVAL, "PCI_HOT_RESET with flags 1");
	CHECK_ERR(hot_reset(d, 0, fds, 0), EINVAL, "PCI_HOT_RESET of a group-opened device with no group fds");
	int32_t bad[64];
	memcpy(bad, fds, nfds * sizeof(int32_t));
	if (count < 64) {
		for (uint32_t i = nfds; i <= count; i++)
			bad[i] = fds[0];
		CHECK_ERR(hot_reset(d, 0, bad, count + 1), EINVAL, "PCI_HOT_RESET with more group fds than affected devices");
	}
	bad[0] = -1;
	CHECK_ERR(hot_reset(d, 0, bad, nfds), EBADF, "PCI_HOT_RESET with fd -1 among the group fds");
	bad[0] = lg.container;
	CHECK_ERR(hot_reset(d, 0, bad, nfds), EINVAL, "PCI_HOT_RESET with a container fd among the group fds");
	if (nfds >= 2) {
		int32_t only = lg.group;
		CHECK_ERR(hot_reset(d, 0, &only, 1), EINVAL, "PCI_HOT_RESET without the fds of every affected group");
	}
	CHECK_SUCCEEDS(hot_reset(d, 0, fds, nfds), "PCI_HOT_RESET with every affected group");
	CHECK(cfg_read(d, CFG_COMMAND, 2) & CMD_MEMORY, "after the hot reset the open device still decodes memory");
	STORE(4, &bar[1], 0x41414141, "BAR1 after hot reset");
	CHECK_EQ(LOAD(4, &bar[1], "BAR1 after hot reset"), 0x41414141, "its BAR mapping works after the hot reset");
	for (uint32_t i = 0; i < nfds; i++)
		if (fds[i] != lg.group)
			close(fds[i]);
	free(info);
	unmap((void *)bar, PAGE);
	close(d);
	legacy_close(&lg);

	/* The same over an iommufd context: device ids, and no group fds. */
	int ifd;
	uint32_t ioas, devid;
	d = cdev_open_attached(a->ram, &ifd, &ioas, &devid);
	info = hot_reset_info(d, &count);
	CHECK(info->flags & VFIO_PCI_HOT_RESET_FLAG_DEV_ID, "a cdev-opened device's hot reset info names device ids");
	self = find_dependent(info, a->ram);
	CHECK_EQ(info->devices[self].group_id, devid, "it lists %s as device %u", a->ram, devid);
	int32_t one = ifd;
	CHECK_ERR(hot_reset(d, 0, &one, 1), EINVAL, "PCI_HOT_RESET of a cdev-opened device with group fds");
	if (info->flags & VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED)
		CHECK_SUCCEEDS(hot_reset(d, 0, NULL, 0), "PCI_HOT_RESET: every affected device is owned by this iommufd");
	else
		CHECK_ERR(hot_reset(d, 0, NULL, 0), EINVAL, "PCI_HOT_RESET while an affected device is not owned");
	free(info);
	close(d);
	close(ifd);
}
