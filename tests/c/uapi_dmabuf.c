/*
 * vfio_uapi section "dmabuf" on edu-plus: exporting BAR ranges as
 * DMA-buffers (VFIO_DEVICE_FEATURE_DMA_BUF) with the kernel's errno for
 * each bad request, mmap of the device fd and of buffer fds and how they
 * alias, SIGBUS while memory decode is off and the data afterwards, the
 * series' permanent revoke and memory attribute, and device close.
 */
#include "uapi.h"

#include <fcntl.h>
#include <linux/dma-buf.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define BUF_LEN (2 * MiB)

/* A DMA_BUF request laid out by hand, for the malformed ones. */
static int export_raw(int d, uint32_t index, uint32_t flags, uint32_t nr, const struct vfio_region_dma_range *r,
		      size_t payload_len)
{
	uint64_t buf[16];
	struct vfio_device_feature_dma_buf *get = (struct vfio_device_feature_dma_buf *)buf;
	memset(buf, 0, sizeof(buf));
	get->region_index = index;
	get->open_flags = O_RDWR | O_CLOEXEC;
	get->flags = flags;
	get->nr_ranges = nr;
	memcpy(get->dma_ranges, r, nr * sizeof(*r));
	return feature(d, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF, get, payload_len);
}

static void export_errors(int d, const struct profile *p)
{
	struct vfio_region_dma_range r = { 0, BUF_LEN };
	const size_t one = sizeof(struct vfio_device_feature_dma_buf) + sizeof(r);

	CHECK_ERR(export_raw(d, 1, 0, 1, &r, 8), EINVAL, "DMA_BUF with a payload shorter than its 16-byte header");
	CHECK_ERR(export_raw(d, 1, 0, 0, &r, one), EINVAL, "DMA_BUF with nr_ranges 0");
	CHECK_ERR(export_raw(d, 1, 1, 1, &r, one), EINVAL, "DMA_BUF with flags 1");
	CHECK_ERR(export_raw(d, VFIO_PCI_ROM_REGION_INDEX, 0, 1, &r, one), ENODEV, "DMA_BUF of the ROM region");
	CHECK_ERR(export_raw(d, VFIO_PCI_CONFIG_REGION_INDEX, 0, 1, &r, one), ENODEV, "DMA_BUF of the config region");
	struct vfio_region_dma_range bad[2];
	bad[0] = (struct vfio_region_dma_range){ 0, 0 };
	CHECK_ERR(export_raw(d, 1, 0, 1, bad, one), EINVAL, "DMA_BUF with a range of length 0");
	bad[0] = (struct vfio_region_dma_range){ 0x800, PAGE };
	CHECK_ERR(export_raw(d, 1, 0, 1, bad, one), EINVAL, "DMA_BUF with an offset that is not page aligned");
	bad[0] = (struct vfio_region_dma_range){ 0, PAGE + 0x800 };
	CHECK_ERR(export_raw(d, 1, 0, 1, bad, one), EINVAL, "DMA_BUF with a length that is not page aligned");
	bad[0] = (struct vfio_region_dma_range){ p->ram_size - PAGE, 2 * PAGE };
	CHECK_ERR(export_raw(d, 1, 0, 1, bad, one), EINVAL, "DMA_BUF of a range reaching past the end of the BAR");
	bad[0] = (struct vfio_region_dma_range){ ~0ULL & ~(PAGE - 1), 2 * PAGE };
	CHECK_ERR(export_raw(d, 1, 0, 1, bad, one), EOVERFLOW, "DMA_BUF of a range whose end overflows");
	bad[0] = (struct vfio_region_dma_range){ 0, 1ULL << 63 };
	bad[1] = (struct vfio_region_dma_range){ 0, 1ULL << 63 };
	CHECK_ERR(export_raw(d, 1, 0, 2, bad, one + sizeof(r)), EINVAL, "DMA_BUF whose ranges add up past 2^64");
}

static void aliasing(int d, int buf, volatile uint32_t *bm, volatile uint32_t *dm)
{
	STORE(4, &bm[0x1000 / 4], 0xb0ffe7ed, "buffer mapping");
	CHECK_EQ(region_read(d, 1, 0x1000, 4), 0xb0ffe7ed, "a store through the buffer mapping is BAR1 byte 0x1000 (pread)");
	CHECK_EQ(LOAD(4, &dm[0x1000 / 4], "device-fd mapping"), 0xb0ffe7ed, "... and the device-fd mapping sees it");
	STORE(4, &dm[0x2004 / 4], 0x0d15ea5e, "device-fd mapping");
	CHECK_EQ(LOAD(4, &bm[0x2004 / 4], "buffer mapping"), 0x0d15ea5e, "a store through the device-fd mapping shows in the buffer mapping");
	region_write(d, 1, 0x3008, 4, 0xc0ffee00);
	CHECK_EQ(LOAD(4, &bm[0x3008 / 4], "buffer mapping"), 0xc0ffee00, "a pwrite of BAR1 shows in the buffer mapping");

	CHECK_MAP_ERR(mmap(NULL, BUF_LEN + PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, buf, 0), EINVAL,
		      "a buffer mmap one page longer than the buffer");
	CHECK_MAP_ERR(mmap(NULL, BUF_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, buf, PAGE), EINVAL,
		      "a buffer mmap of the full size from offset 4 KiB");
	CHECK_MAP_ERR(mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, buf, BUF_LEN), EINVAL,
		      "a buffer mmap at the end of the buffer");
	CHECK_MAP_ERR(mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, buf, 0), EINVAL, "a MAP_PRIVATE buffer mmap");
	uint64_t off = region_offset(d, 1);
	CHECK_MAP_ERR(mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, d, (off_t)off), EINVAL,
		      "a MAP_PRIVATE device-fd mmap");
	CHECK_MAP_ERR(mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, d, (off_t)(off + region_info(d, 1).size - PAGE)),
		      EINVAL, "a device-fd mmap reaching past the end of BAR1");
	CHECK_MAP_ERR(mmap(NULL, PAGE, PROT_READ, MAP_SHARED, d, (off_t)region_offset(d, VFIO_PCI_CONFIG_REGION_INDEX)),
		      EINVAL, "a device-fd mmap of the config region");
	CHECK_MAP_ERR(mmap(NULL, PAGE, PROT_READ, MAP_SHARED, d, (off_t)((uint64_t)20 << 40)), EINVAL,
		      "a device-fd mmap of a region that does not exist");
	CHECK_MAP_ERR(mmap(NULL, PAGE, PROT_READ, MAP_SHARED, d, (off_t)(off + 0x800)), EINVAL,
		      "a device-fd mmap at an offset that is not page aligned");

	struct dma_buf_sync sync = { .flags = DMA_BUF_SYNC_START | DMA_BUF_SYNC_RW };
	CHECK_SUCCEEDS(ioctl(buf, DMA_BUF_IOCTL_SYNC, &sync), "DMA_BUF_IOCTL_SYNC start, read/write");
	sync.flags = DMA_BUF_SYNC_END | DMA_BUF_SYNC_RW;
	CHECK_SUCCEEDS(ioctl(buf, DMA_BUF_IOCTL_SYNC, &sync), "DMA_BUF_IOCTL_SYNC end");
	sync.flags = DMA_BUF_SYNC_START;
	CHECK_ERR(ioctl(buf, DMA_BUF_IOCTL_SYNC, &sync), EINVAL, "DMA_BUF_IOCTL_SYNC with neither read nor write");
	CHECK_ERR(ioctl(buf, UNKNOWN_IOCTL, unknown_ioctl_arg), ENOTTY, "an unknown ioctl on a buffer fd");
}

static void read_only_export(int d, volatile uint32_t *bm)
{
	struct vfio_region_dma_range r = { 0, BUF_LEN };
	int ro = (int)CHECK_SUCCEEDS(dmabuf_export(d, 1, O_RDONLY | O_CLOEXEC, 1, &r), "an O_RDONLY export");
	CHECK_MAP_ERR(mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, ro, 0), EACCES,
		      "a writable shared mmap of a read-only buffer fd");
	volatile uint32_t *rm = MUST_MAP(mmap(NULL, 2 * PAGE, PROT_READ, MAP_SHARED, ro, 0), "read-only mmap");
	CHECK_EQ(LOAD(4, &rm[0x1000 / 4], "read-only mapping"), LOAD(4, &bm[0x1000 / 4], "buffer mapping"),
		 "a read-only mapping reads the same BAR bytes");
	unmap((void *)rm, 2 * PAGE);
	close(ro);
}

/* COMMAND.MEMORY off revokes every mapping (SIGBUS) until it is on again. */
static void memory_off(int d, volatile uint32_t *bm, volatile uint32_t *dm)
{
	set_memory(d, false);
	EXPECT_SIGBUS_LOAD(4, &bm[0x1000 / 4], "a load through the buffer mapping with memory off");
	EXPECT_SIGBUS_STORE(4, &bm[0x5000 / 4], "a store to a page never touched, memory off");
	EXPECT_SIGBUS_LOAD(4, &dm[0x2004 / 4], "a load through the device-fd mapping with memory off");
	EXPECT_SIGBUS_STORE(4, &dm[0x2004 / 4], "a store through the device-fd mapping with memory off");

	volatile uint32_t *late = map_region(d, 1, 0, 2 * PAGE);
	pass("a device-fd mmap while memory is off succeeds (faults are what fail)");
	EXPECT_SIGBUS_LOAD(4, &late[0x100 / 4], "a load through that mapping");
	int t = dmabuf_export1(d, 1, 0, BUF_LEN);
	pass("an export while memory is off succeeds");
	CHECK_MAP_ERR(mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, t, 0), ENODEV,
		      "... but the buffer is born revoked: its mmap fails");

	set_memory(d, true);
	CHECK_EQ(LOAD(4, &bm[0x1000 / 4], "buffer mapping"), 0xb0ffe7ed, "memory on: the buffer mapping reads the data again");
	CHECK_EQ(LOAD(4, &dm[0x2004 / 4], "device-fd mapping"), 0x0d15ea5e, "memory on: the device-fd mapping too");
	CHECK_EQ(LOAD(4, &late[0x1000 / 4], "late mapping"), 0xb0ffe7ed, "memory on: the mapping made while off works");
	volatile uint32_t *tm = MUST_MAP(mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, t, 0), "mmap");
	CHECK_EQ(LOAD(4, &tm[0x100 / 4], "buffer born revoked"), LOAD(4, &late[0x100 / 4], "late mapping"),
		 "memory on: the buffer born revoked maps and reads BAR1");
	unmap((void *)tm, PAGE);
	unmap((void *)late, 2 * PAGE);
	close(t);
}

static void permanent_revoke(int d, int buf, volatile uint32_t *bm, volatile uint32_t *dm, const char *other_bdf)
{
	struct vfio_device_feature_dma_buf_revoke r = { .dmabuf_fd = buf };
	CHECK_ERR(feature(d, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE, &r, 0), EINVAL,
		  "DMA_BUF_REVOKE with no payload");
	CHECK_ERR(dmabuf_revoke(d, -1), EBADF, "DMA_BUF_REVOKE of fd -1");
	CHECK_ERR(dmabuf_revoke(d, STDOUT_FILENO), EINVAL, "DMA_BUF_REVOKE of stdout, which is no DMA-buffer");
	CHECK_ERR(dmabuf_memattr(d, STDOUT_FILENO, VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_WC), EINVAL,
		  "DMA_BUF_MEMATTR of stdout");

	struct legacy other;
	int od = legacy_open(other_bdf, &other);
	int foreign = dmabuf_export1(od, 0, 0, PAGE);
	CHECK_ERR(dmabuf_revoke(d, foreign), ENODEV, "DMA_BUF_REVOKE of another device's buffer");
	CHECK_ERR(dmabuf_memattr(d, foreign, VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_WC), ENODEV,
		  "DMA_BUF_MEMATTR of another device's buffer");
	close(foreign);
	close(od);
	legacy_close(&other);

	CHECK_SUCCEEDS(dmabuf_revoke(d, buf), "DMA_BUF_REVOKE of the buffer");
	EXPECT_SIGBUS_LOAD(4, &bm[0x1000 / 4], "a load through the revoked buffer's mapping");
	EXPECT_SIGBUS_STORE(4, &bm[0x7000 / 4], "a store to a page of it never touched");
	CHECK_EQ(LOAD(4, &dm[0x1000 / 4], "device-fd mapping"), 0xb0ffe7ed, "the device-fd mapping of the same bytes is unaffected");
	CHECK_ERR(dmabuf_revoke(d, buf), EBADFD, "DMA_BUF_REVOKE a second time");
	CHECK_MAP_ERR(mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, buf, 0), ENODEV, "mmap of the revoked buffer");
	set_memory(d, false);
	set_memory(d, true);
	EXPECT_SIGBUS_LOAD(4, &bm[0x1000 / 4], "memory off and on again does not bring a revoked buffer back");
}

static void memattr(int d, volatile uint32_t *dm)
{
	int w = dmabuf_export1(d, 1, 0, BUF_LEN);
	CHECK_ERR(dmabuf_memattr(d, w, 7), ENOENT, "DMA_BUF_MEMATTR with an unknown attribute");
	CHECK_SUCCEEDS(dmabuf_memattr(d, w, VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_WC), "DMA_BUF_MEMATTR write-combining");
	volatile uint32_t *wm = MUST_MAP(mmap(NULL, BUF_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, w, 0), "mmap");
	STORE(4, &wm[0x40 / 4], 0x3c3c3c3c, "write-combining mapping");
	CHECK_EQ(LOAD(4, &dm[0x40 / 4], "device-fd mapping"), 0x3c3c3c3c, "a write-combining mapping writes the same BAR bytes");
	CHECK_SUCCEEDS(dmabuf_memattr(d, w, VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_NC), "DMA_BUF_MEMATTR back to non-cached");
	unmap((void *)wm, BUF_LEN);
	close(w);
}

void section_dmabuf(const struct uapi_args *a)
{
	struct legacy lg;
	int d = legacy_open(a->ram, &lg);
	struct profile p;
	profile_detect(d, &p);
	CHECK(p.kind == KIND_EDU_PLUS && p.ram_size >= 8 * MiB, "%s is edu-plus with a RAM BAR1 of 0x%llx bytes", a->ram,
	      (unsigned long long)p.ram_size);
	export_errors(d, &p);

	int buf = (int)CHECK_SUCCEEDS(dmabuf_export1(d, 1, 0, BUF_LEN), "export BAR1 [0, 2 MiB)");
	CHECK(fcntl(buf, F_GETFD) & FD_CLOEXEC, "the buffer fd is close-on-exec (O_CLOEXEC in open_flags)");
	volatile uint32_t *bm = MUST_MAP(mmap(NULL, BUF_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, buf, 0), "buffer mmap");
	pass("the buffer maps");
	volatile uint32_t *dm = map_region(d, 1, 0, BUF_LEN);
	pass("BAR1 maps through the device fd");
	aliasing(d, buf, bm, dm);
	read_only_export(d, bm);
	memory_off(d, bm, dm);
	permanent_revoke(d, buf, bm, dm, a->edu);
	memattr(d, dm);

	/* Closing the buffer fd leaves its mapping working. */
	int c = dmabuf_export1(d, 1, 0, BUF_LEN);
	volatile uint32_t *cm = MUST_MAP(mmap(NULL, BUF_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, c, 0), "mmap");
	close(c);
	CHECK_EQ(LOAD(4, &cm[0x1000 / 4], "mapping of a closed buffer fd"), 0xb0ffe7ed,
		 "after its fd is closed a buffer's mapping still reads the BAR");

	/* The last close of the device revokes its explicit buffers for good. */
	int e = dmabuf_export1(d, 1, 0, BUF_LEN);
	volatile uint32_t *em = MUST_MAP(mmap(NULL, BUF_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, e, 0), "mmap");
	CHECK_EQ(LOAD(4, &em[0x1000 / 4], "buffer mapping"), 0xb0ffe7ed, "a buffer mapping before the device closes");
	unmap((void *)dm, BUF_LEN);
	close(d);
	EXPECT_SIGBUS_LOAD(4, &em[0x1000 / 4], "a load through the buffer mapping after the device closed");
	EXPECT_SIGBUS_LOAD(4, &cm[0x1000 / 4], "the same through the mapping whose fd was closed");
	CHECK_MAP_ERR(mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, e, 0), ENODEV,
		      "mmap of a buffer whose device closed");
	d = (int)MUST(ioctl(lg.group, VFIO_GROUP_GET_DEVICE_FD, a->ram), "GET_DEVICE_FD");
	CHECK_ERR(dmabuf_revoke(d, e), ENODEV, "the reopened device cannot revoke the old buffer: it belongs to no open device");
	EXPECT_SIGBUS_LOAD(4, &em[0x1000 / 4], "reopening the device does not bring the buffer back");
	CHECK_EQ(region_read(d, 1, 0x1000, 4), 0xb0ffe7ed, "BAR1's bytes themselves are as they were");

	unmap((void *)em, BUF_LEN);
	unmap((void *)cm, BUF_LEN);
	unmap((void *)bm, BUF_LEN);
	close(e);
	close(buf);
	close(d);
	legacy_close(&lg);
}
