/* series_tests: T10-T18 (see series_tests.c). */
#include "series.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define L MiB              /* T14-T16: the length of each range */
#define RANGE0 (3 * PAGE)   /* range 0 starts 3 pages into the BAR ... */
#define RANGE1 (RANGE0 + L + 5 * PAGE) /* ... range 1 after a gap of 5 pages */
#define MARK 0xca77faceU

static int two_range_buffer(int d, const struct profile *p)
{
	struct vfio_region_dma_range r[2] = { { RANGE0, L }, { RANGE1, L } };
	return (int)MUST(dmabuf_export(d, (uint32_t)p->ram_bar, O_RDWR | O_CLOEXEC, 2, r), "two-range export");
}

void t10(struct series *s)
{
	const struct profile *p = &s->p;
	int d = series_open(s, "T10: two overlapping buffers alias the same BAR bytes");
	int ra = dmabuf_export1(d, p->reg_bar, 0, p->reg_size);
	int rbuf = dmabuf_export1(d, p->reg_bar, 0, PAGE);
	volatile uint8_t *a = map_buf(ra, 0, p->reg_size);
	volatile uint8_t *b = map_buf(rbuf, 0, PAGE);
	REG_BEHAVES(p, a, b, 0x5555aaaa, "register buffer A written, overlapping register buffer B read");

	int xa = dmabuf_export1(d, p->ram_bar, 0, 2 * MiB);
	int xb = dmabuf_export1(d, p->ram_bar, MiB, 2 * MiB);
	volatile uint8_t *ma = map_buf(xa, 0, 2 * MiB);
	volatile uint8_t *mb = map_buf(xb, 0, 2 * MiB);
	STORE(4, ma + 0x100010, 0x11223344, "buffer A");
	CHECK_EQ(LOAD(4, mb + 0x10, "buffer B"), 0x11223344, "A's byte 1 MiB + 0x10 is B's byte 0x10");
	STORE(4, mb + 0xffff0, 0x55667788, "buffer B");
	CHECK_EQ(LOAD(4, ma + 0x1ffff0, "buffer A"), 0x55667788, "and the other way round");
	STORE(4, mb + 0x180000, 0x99aabbcc, "buffer B");
	CHECK_EQ(region_read(d, p->ram_bar, 0x280000, 4), 0x99aabbcc, "B's upper half is BAR bytes [2 MiB, 3 MiB)");
	unmap((void *)mb, 2 * MiB);
	unmap((void *)ma, 2 * MiB);
	unmap((void *)b, PAGE);
	unmap((void *)a, p->reg_size);
	close(xb);
	close(xa);
	close(rbuf);
	close(ra);
	close(d);
}

void t11(struct series *s)
{
	const struct profile *p = &s->p;
	int d = series_open(s, "T11: a second mmap of the same buffer fd sees the same device state");
	int rb = dmabuf_export1(d, p->reg_bar, 0, p->reg_size);
	volatile uint8_t *r1 = map_buf(rb, 0, p->reg_size);
	volatile uint8_t *r2 = map_buf(rb, 0, p->reg_size);
	REG_BEHAVES(p, r1, r2, 0x24682468, "the first mapping of the register buffer written, the second read");

	const uint64_t size = 16 * MiB, half = size / 2;
	int b = dmabuf_export1(d, p->ram_bar, 0, size);
	volatile uint8_t *first = map_buf(b, 0, size);
	fill_pages(first, half, half, 0x7e577e57, 0);
	volatile uint8_t *second = map_buf(b, half, half);
	CHECK_PAGES(second, 0, half, 0x7e577e57, half, "the second mapping, at buffer offset 8 MiB");
	STORE(4, second + 0x10, 0xabcdef01, "second mapping");
	CHECK_EQ(LOAD(4, first + half + 0x10, "first mapping"), 0xabcdef01, "a store through the second shows in the first");
	unmap((void *)second, half);
	unmap((void *)first, size);
	unmap((void *)r2, p->reg_size);
	unmap((void *)r1, p->reg_size);
	close(b);
	close(rb);
	close(d);
}

void t12(struct series *s)
{
	const struct profile *p = &s->p;
	int d = series_open(s, "T12: a revoke through a dup()ed fd faults every mapping of that buffer, and no other");
	int rb = dmabuf_export1(d, p->reg_bar, 0, p->reg_size);
	int rother = dmabuf_export1(d, p->reg_bar, 0, p->reg_size);
	volatile uint8_t *r1 = map_buf(rb, 0, p->reg_size);
	volatile uint8_t *r2 = map_buf(rb, 0, p->reg_size);
	volatile uint8_t *r3 = map_buf(rother, 0, p->reg_size);
	int rdup = (int)MUST(dup(rb), "dup");
	CHECK_SUCCEEDS(dmabuf_revoke(d, rdup), "DMA_BUF_REVOKE of the register buffer through a dup of its fd");
	EXPECT_SIGBUS_LOAD(4, r1 + reg_id_offset(p), "the first mapping of that buffer faults");
	EXPECT_SIGBUS_LOAD(4, r2 + reg_id_offset(p), "the second too");
	REG_BEHAVES(p, r3, r3, 0x13579bdf, "another register buffer of the same range");

	const uint64_t size = 8 * MiB;
	int b = dmabuf_export1(d, p->ram_bar, 0, size);
	volatile uint8_t *m1 = map_buf(b, 0, size);
	volatile uint8_t *m2 = map_buf(b, size / 2, size / 2);
	int other = dmabuf_export1(d, p->ram_bar, 0, size);
	volatile uint8_t *m3 = map_buf(other, 0, size);
	STORE(4, m1 + size / 2, 0x2468ace0, "m1");
	CHECK_EQ(LOAD(4, m2, "m2"), 0x2468ace0, "both mappings of the buffer see the store");
	int bdup = (int)MUST(dup(b), "dup");
	CHECK_SUCCEEDS(dmabuf_revoke(d, bdup), "DMA_BUF_REVOKE of the RAM buffer through the dup");
	EXPECT_SIGBUS_LOAD(4, m1 + size / 2, "the first mapping faults");
	EXPECT_SIGBUS_LOAD(4, m2, "the second mapping faults");
	CHECK_EQ(LOAD(4, m3 + size / 2, "other buffer"), 0x2468ace0, "the other buffer over the same range reads the data");
	STORE(4, m3 + size / 2, 0x13579bdf, "other buffer");
	CHECK_EQ(LOAD(4, m3 + size / 2, "other buffer"), 0x13579bdf, "... and takes stores");
	CHECK_EQ(region_read(d, p->ram_bar, size / 2, 4), 0x13579bdf, "... which reach the BAR");
	CHECK_ERR(dmabuf_revoke(d, b), EBADFD, "a revoke through the original fd: the same, already revoked buffer");
	unmap((void *)m3, size);
	unmap((void *)m2, size / 2);
	unmap((void *)m1, size);
	unmap((void *)r3, p->reg_size);
	unmap((void *)r2, p->reg_size);
	unmap((void *)r1, p->reg_size);
	close(bdup);
	close(other);
	close(b);
	close(rdup);
	close(rother);
	close(rb);
	close(d);
}

void t13(struct series *s)
{
	const struct profile *p = &s->p;
	const uint64_t size = p->ram_size, dev_len = size - 0x30000, hole = size / 2;
	int d = series_open(s, "T13: huge pages, write-combining, and splitting a device-fd mapping");
	uint64_t ram_off = region_offset(d, p->ram_bar);
	volatile uint8_t *dev = map_region(d, p->ram_bar, 0x30000, dev_len);
	CHECK_EQ(maps_offset_of((const void *)dev), ram_off + 0x30000,
		 "/proc/self/maps shows the device-fd mapping at offset region + 0x30000");
	int b = dmabuf_export1(d, p->ram_bar, 0, size);
	CHECK_EQ(feature_probe(d, VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR, VFIO_DEVICE_FEATURE_SET), 0,
		 "PROBE|SET of DMA_BUF_MEMATTR");
	CHECK_ERR(feature_probe(d, VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR, VFIO_DEVICE_FEATURE_GET), EINVAL,
		  "PROBE|GET of DMA_BUF_MEMATTR: SET only since v3");
	CHECK_ERR(dmabuf_memattr(d, b, 7), ENOENT, "an attribute the feature does not know");
	CHECK_SUCCEEDS(dmabuf_memattr(d, b, VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_WC), "write-combining for later mmaps");
	volatile uint8_t *big = map_aligned(b, 0, size, 32 * MiB);
	(void)madvise((void *)big, size, MADV_HUGEPAGE); /* a hint; the original ignores its result too */
	pass("the whole buffer maps at %p, 32 MiB aligned", (void *)big);

	fill_pages(big, 0, size, MARK, 0);
	CHECK_PAGES(big, 0, size, MARK, 0, "the buffer mapping");
	CHECK_EQ(LOAD(4, dev, "device-fd mapping"), MARK ^ 0x30000, "the device-fd mapping's byte 0 is BAR byte 0x30000");
	CHECK_PAGES(dev, 0, dev_len, MARK, 0x30000, "the device-fd mapping");

	set_memory(d, false); /* revoke: every page of both is zapped ... */
	set_memory(d, true);  /* ... so each access below is a fresh fault */
	unmap((void *)(dev + hole), PAGE);
	EXPECT_SIGSEGV_LOAD(4, dev + hole, "the hole unmapped in the middle of the device-fd mapping");
	const uint64_t tail = dev_len - 0x4000;
	CHECK_EQ(LOAD(4, dev + tail, "split tail"), MARK ^ (uint32_t)(0x30000 + tail),
		 "near the end of the split-off tail the value is right (the fault follows the tail's vm_pgoff)");
	STORE(4, dev + tail, 0x7a117a11, "split tail");
	CHECK_EQ(LOAD(4, big + 0x30000 + tail, "buffer mapping"), 0x7a117a11, "a store through the tail is the same BAR byte");
	CHECK_EQ(maps_offset_of((const void *)(dev + hole + PAGE)), ram_off + 0x30000 + hole + PAGE,
		 "the tail's /proc/self/maps offset is exact after the split");
	unmap((void *)dev, dev_len); /* the whole original range, hole included */
	EXPECT_SIGSEGV_LOAD(4, dev + tail, "after the munmap nothing is mapped there");
	CHECK_EQ(LOAD(4, big + 0x30000 + tail, "buffer mapping"), 0x7a117a11, "the buffer mapping is unaffected");
	unmap((void *)big, size);
	close(b);
	close(d);
}

void t14(struct series *s)
{
	const struct profile *p = &s->p;
	int d = series_open(s, "T14: a buffer of two ranges, mapped as one contiguous window");
	int full = dmabuf_export1(d, p->ram_bar, 0, p->ram_size);
	volatile uint8_t *fm = map_buf(full, 0, p->ram_size);
	fill_pages(fm, 0, 4 * MiB, MARK, 0);
	int two = two_range_buffer(d, p);
	pass("export of [0x%lx, +L) and [0x%lx, +L), L = 1 MiB", RANGE0, RANGE1);
	volatile uint8_t *tm = map_aligned(two, 0, 2 * L, 2 * MiB);
	(void)madvise((void *)tm, 2 * L, MADV_HUGEPAGE);
	CHECK_PAGES(tm, 0, L, MARK, RANGE0, "pages 0 .. L-1 are range 0");
	CHECK_PAGES(tm, L, L, MARK, RANGE1 - L, "pages L .. 2L-1 are range 1");
	STORE(4, fm + RANGE0 + 4, 0xb16b00b5, "whole-BAR buffer");
	CHECK_EQ(LOAD(4, tm + 4, "two-range mapping"), 0xb16b00b5, "BAR byte range0 + 4 is byte 4 of the two-range mapping");
	STORE(4, tm + L, 0x5ea75ea7, "two-range mapping");
	CHECK_EQ(LOAD(4, fm + RANGE1, "whole-BAR buffer"), 0x5ea75ea7, "byte L of the mapping is the first byte of range 1");
	CHECK_EQ(LOAD(4, fm + RANGE0 + L, "whole-BAR buffer"), MARK ^ (uint32_t)(RANGE0 + L),
		 "the gap between the ranges is not part of the buffer and kept its mark");
	unmap((void *)tm, 2 * L);
	unmap((void *)fm, p->ram_size);
	close(two);
	close(full);
	close(d);
}

void t15(struct series *s)
{
	const struct profile *p = &s->p;
	int d = series_open(s, "T15: mapping a two-range buffer from an offset inside it");
	int full = dmabuf_export1(d, p->ram_bar, 0, p->ram_size);
	volatile uint8_t *fm = map_buf(full, 0, p->ram_size);
	fill_pages(fm, 0, 4 * MiB, MARK, 0);
	int two = two_range_buffer(d, p);
	volatile uint8_t *tail = map_aligned(two, L, L - PAGE, 32 * MiB);
	CHECK_EQ(LOAD(4, tail, "mapping at buffer offset L"), MARK ^ (uint32_t)RANGE1,
		 "byte 0 of a mapping at buffer offset L is the first byte of range 1");
	CHECK_PAGES(tail, 0, L - PAGE, MARK, RANGE1, "the mapping at buffer offset L");
	CHECK_MAP_ERR(mmap(NULL, L + PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, two, L), EINVAL,
		      "a mapping one page longer than what is left after offset L");
	unmap((void *)tail, L - PAGE);
	unmap((void *)fm, p->ram_size);
	close(two);
	close(full);
	close(d);
}

void t16(struct series *s)
{
	const struct profile *p = &s->p;
	int d = series_open(s, "T16: closing a buffer fd leaves its mappings working");
	int two = two_range_buffer(d, p);
	volatile uint8_t *tm = map_buf(two, 0, 2 * L);
	fill_pages(tm, 0, 2 * L, 0x0f0f0f0f, 0);
	int two_dup = (int)MUST(dup(two), "dup");
	close(two);
	close(two_dup);
	pass("the buffer fd and its dup are closed");
	CHECK_PAGES(tm, 0, 2 * L, 0x0f0f0f0f, 0, "the mapping of the closed buffer");
	STORE(4, tm + L + 0x10, 0xc105ed00, "mapping of the closed buffer");
	CHECK_EQ(region_read(d, p->ram_bar, RANGE1 + 0x10, 4), 0xc105ed00, "... and still writes, into range 1");
	unmap((void *)tm, 2 * L);
	close(d);
}

void t17(struct series *s)
{
	const struct profile *p = &s->p;
	int d = series_open(s, "T17: the revoke feature refuses an fd that is not this device's DMA-buffer");
	CHECK_ERR(dmabuf_revoke(d, STDOUT_FILENO), EINVAL, "DMA_BUF_REVOKE with fd 1 (stdout)");
	CHECK_ERR(dmabuf_revoke(d, 1000000), EBADF, "DMA_BUF_REVOKE with a number that is no open fd");
	CHECK_ERR(dmabuf_memattr(d, STDOUT_FILENO, VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_WC), EINVAL,
		  "DMA_BUF_MEMATTR with fd 1");
	struct legacy olg;
	int od = legacy_open(s->other, &olg);
	struct profile op;
	profile_detect(od, &op);
	int foreign = dmabuf_export1(od, op.reg_bar, 0, PAGE);
	CHECK_ERR(dmabuf_revoke(d, foreign), ENODEV, "DMA_BUF_REVOKE of a buffer of %s (%s)", s->other, op.name);
	CHECK_SUCCEEDS(dmabuf_revoke(od, foreign), "... which its own device fd revokes");
	CHECK_ERR(dmabuf_revoke(od, foreign), EBADFD, "... once");
	int mine = dmabuf_export1(d, p->ram_bar, 0, 2 * MiB);
	CHECK_ERR(dmabuf_revoke(od, mine), ENODEV, "nor can the other device revoke this one's buffer");
	close(mine);
	close(foreign);
	close(od);
	legacy_close(&olg);
	close(d);
}

void t18(struct series *s)
{
	const struct profile *p = &s->p;
	int d = series_open(s, "T18: closing the device while its BARs are mapped");
	volatile uint8_t *dev = map_region(d, p->ram_bar, 0, MiB);
	volatile uint8_t *dreg = map_region(d, p->reg_bar, 0, p->reg_size);
	int b = dmabuf_export1(d, p->ram_bar, 0, MiB);
	int rb = dmabuf_export1(d, p->reg_bar, 0, p->reg_size);
	volatile uint8_t *bm = map_buf(b, 0, MiB);
	volatile uint8_t *rm = map_buf(rb, 0, p->reg_size);
	STORE(4, dev + 0x80, 0x0c105ed0, "device-fd mapping");

	close(d);
	close(s->lg.container);
	s->lg.container = -1;
	pass("the device fd and the container fd are closed");
	CHECK_EQ(LOAD(4, dev + 0x80, "device-fd mapping"), 0x0c105ed0, "the device-fd mapping still works: it holds the device");
	CHECK_EQ(LOAD(4, bm + 0x80, "buffer mapping"), 0x0c105ed0, "so does the buffer mapping");
	STORE(4, bm + 0x88, 0x5711a11e, "buffer mapping");
	REG_BEHAVES(p, dreg, rm, 0x10101010, "the register mappings, device-fd and buffer");

	unmap((void *)dreg, p->reg_size);
	CHECK_EQ(LOAD(4, bm + 0x80, "buffer mapping"), 0x0c105ed0, "with one device-fd mapping left the device stays open");
	unmap((void *)dev, MiB);
	EXPECT_SIGBUS_LOAD(4, bm + 0x80, "unmapping the last device-fd mapping closed the device: the buffer mapping faults");
	EXPECT_SIGBUS_LOAD(4, rm + reg_id_offset(p), "... and so does the register buffer's");
	CHECK_MAP_ERR(mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, b, 0), ENODEV, "a new mmap of the buffer fails");

	d = (int)MUST(ioctl(s->lg.group, VFIO_GROUP_GET_DEVICE_FD, s->bdf), "GET_DEVICE_FD");
	pass("the device opens again through the group, which kept the container");
	EXPECT_SIGBUS_LOAD(4, bm + 0x80, "opening the device again does not bring the old buffer back");
	CHECK_ERR(dmabuf_revoke(d, b), ENODEV, "nor can the new device fd revoke it");
	volatile uint8_t *dev2 = map_region(d, p->ram_bar, 0, PAGE);
	CHECK_EQ(LOAD(4, dev2 + 0x88, "new device-fd mapping"), 0x5711a11e,
		 "the BAR bytes are intact: a new mapping reads what the buffer wrote before the close");
	unmap((void *)dev2, PAGE);
	unmap((void *)rm, p->reg_size);
	unmap((void *)bm, MiB);
	close(rb);
	close(b);
	close(d);
}
