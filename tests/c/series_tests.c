/*
 * series_tests: T1-T18 of the series' standalone test, through the real
 * UAPI, against edu-plus or bochs-display.
 *
 *   series_tests -d <BDF under test> -o <BDF of another device>
 *
 * T1-T9 are here, T10-T18 in series_more.c. One line per check; the first
 * failure ends the program with exit status 1.
 */
#include "series.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

/* ---- shared code --------------------------------------------------------------- */

int series_open(struct series *s, const char *title)
{
	printf("# %s\n", title);
	return (int)MUST(ioctl(s->lg.group, VFIO_GROUP_GET_DEVICE_FD, s->bdf), "GET_DEVICE_FD(%s)", s->bdf);
}

void fill_pages(volatile uint8_t *base, uint64_t from, uint64_t len, uint32_t value, uint64_t xor_base)
{
	for (uint64_t x = from; x < from + len; x += PAGE)
		STORE(4, base + x, value ^ (uint32_t)(xor_base + x), "fill");
}

void check_pages_at(volatile uint8_t *base, uint64_t from, uint64_t len, uint32_t value, uint64_t xor_base,
		    const char *file, int line, const char *what)
{
	for (uint64_t x = from; x < from + len; x += PAGE) {
		uint32_t got = (uint32_t)load_at(base + x, 4, file, line, what);
		uint32_t want = value ^ (uint32_t)(xor_base + x);
		if (got != want)
			fail_at(file, line, "%s: page at mapping offset 0x%" PRIx64 " holds 0x%x, want 0x%x", what, x, got,
				want);
	}
	pass("%s: every page of [0x%" PRIx64 ", +0x%" PRIx64 ") holds 0x%x ^ (0x%" PRIx64 " + offset)", what, from, len,
	     value, xor_base);
}

uint64_t maps_offset_of(const void *addr)
{
	static char text[1 << 20];
	int fd = (int)MUST(open("/proc/self/maps", O_RDONLY | O_CLOEXEC), "open /proc/self/maps");
	size_t used = 0;
	ssize_t n;
	while ((n = read(fd, text + used, sizeof(text) - 1 - used)) > 0)
		used += (size_t)n;
	close(fd);
	text[used] = '\0';
	for (char *line = text; line && *line;) {
		char *next = strchr(line, '\n');
		unsigned long long start, end, off;
		if (sscanf(line, "%llx-%llx %*s %llx", &start, &end, &off) == 3 && (uintptr_t)addr >= start &&
		    (uintptr_t)addr < end)
			return off + ((uintptr_t)addr - start);
		line = next ? next + 1 : NULL;
	}
	FAIL("/proc/self/maps has no line for %p", addr);
}

void *map_buf(int fd, uint64_t off, size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)off);
	return MUST_MAP(p, "mmap of buffer fd %d, 0x%zx bytes at 0x%" PRIx64, fd, len, off);
}

/* A buffer of the whole register BAR, as the original exports BAR0. */
static int reg_buffer(int d, const struct profile *p)
{
	return dmabuf_export1(d, p->reg_bar, 0, p->reg_size);
}

static uint32_t reg_id(const struct profile *p, volatile uint8_t *regs, const char *via)
{
	return (uint32_t)LOAD(4, regs + reg_id_offset(p), via);
}

/* ---- T1-T9 ------------------------------------------------------------------------ */

void t01(struct series *s)
{
	const struct profile *p = &s->p;
	int d = series_open(s, "T1: probe for DMA-buffer export; plain device-fd BAR mappings");
	CHECK_EQ(feature_probe(d, VFIO_DEVICE_FEATURE_DMA_BUF, VFIO_DEVICE_FEATURE_GET), 0,
		 "PROBE|GET of DMA_BUF: the device exports its BARs");
	CHECK_ERR(feature_probe(d, 1000, VFIO_DEVICE_FEATURE_GET), ENOTTY,
		  "PROBE of an unknown feature: ENOTTY, what a kernel without DMA_BUF answers");
	CHECK_EQ(region_read(d, p->reg_bar, reg_id_offset(p), 4), reg_id_value(p), "the identification register through pread");
	reg_behaviour_region_ok(p, d, 0x12345678);

	volatile uint8_t *regs = map_region(d, p->reg_bar, 0, PAGE);
	CHECK_EQ(reg_id(p, regs, "register mapping"), reg_id_value(p), "the identification register through a mapping");
	REG_BEHAVES(p, regs, regs, 0x0f0f0f0f, "a device-fd mapping of the register BAR");

	volatile uint8_t *ram = map_region(d, p->ram_bar, 0, 64 * 1024);
	STORE(4, ram + 0x100, 0x5eed5eed, "RAM BAR mapping");
	CHECK_EQ(LOAD(4, ram + 0x100, "RAM BAR mapping"), 0x5eed5eed, "a store through the RAM BAR mapping reads back");
	CHECK_EQ(region_read(d, p->ram_bar, 0x100, 4), 0x5eed5eed, "... and through pread of the region");
	unmap((void *)ram, 64 * 1024);
	unmap((void *)regs, PAGE);
	close(d);
}

void t02(struct series *s)
{
	const struct profile *p = &s->p;
	int d = series_open(s, "T2: export a whole BAR and mmap the buffer");
	int rb = (int)CHECK_SUCCEEDS(reg_buffer(d, p), "export the register BAR [0, 0x%llx), O_RDWR|O_CLOEXEC, flags 0",
				     (unsigned long long)p->reg_size);
	volatile uint8_t *r = map_buf(rb, 0, p->reg_size);
	CHECK_EQ(reg_id(p, r, "register buffer mapping"), reg_id_value(p), "the identification register through the buffer mapping");
	REG_BEHAVES(p, r, r, 0x12345678, "the register buffer's mapping");

	int b = dmabuf_export1(d, p->ram_bar, 0, p->ram_size);
	pass("export the RAM BAR [0, 0x%llx)", (unsigned long long)p->ram_size);
	volatile uint8_t *m = map_buf(b, 0, p->ram_size);
	STORE(4, m + 0x1000, 0xd00dfeed, "RAM buffer mapping");
	CHECK_EQ(region_read(d, p->ram_bar, 0x1000, 4), 0xd00dfeed, "a store through the buffer mapping is BAR byte 0x1000");
	region_write(d, p->ram_bar, 0x2000, 4, 0x0badcafe);
	CHECK_EQ(LOAD(4, m + 0x2000, "RAM buffer mapping"), 0x0badcafe, "a pwrite of the region shows through the mapping");
	unmap((void *)m, p->ram_size);
	unmap((void *)r, p->reg_size);
	close(b);
	close(rb);
	close(d);
}

void t03(struct series *s)
{
	const struct profile *p = &s->p;
	int d = series_open(s, "T3: a buffer mmap may not reach past the buffer's end");
	int rb = reg_buffer(d, p);
	CHECK_MAP_ERR(mmap(NULL, p->reg_size + PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, rb, 0), EINVAL,
		      "register buffer: mmap of size + 4 KiB");
	CHECK_MAP_ERR(mmap(NULL, p->reg_size, PROT_READ | PROT_WRITE, MAP_SHARED, rb, PAGE), EINVAL,
		      "register buffer: mmap of the full size at offset 4 KiB");

	int b = dmabuf_export1(d, p->ram_bar, 0, p->ram_size);
	CHECK_MAP_ERR(mmap(NULL, p->ram_size + PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, b, 0), EINVAL,
		      "RAM buffer: mmap of size + 4 KiB");
	CHECK_MAP_ERR(mmap(NULL, p->ram_size, PROT_READ | PROT_WRITE, MAP_SHARED, b, PAGE), EINVAL,
		      "RAM buffer: mmap of the full size at offset 4 KiB");
	CHECK_MAP_ERR(mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, b, (off_t)p->ram_size), EINVAL,
		      "RAM buffer: mmap of one page at the end");
	volatile uint8_t *whole = map_buf(b, 0, p->ram_size);
	volatile uint8_t *last = map_buf(b, p->ram_size - PAGE, PAGE);
	pass("the whole buffer and its last page map");
	STORE(4, whole + p->ram_size - PAGE + 8, 0x1a57ba9e, "whole mapping");
	CHECK_EQ(LOAD(4, last + 8, "last-page mapping"), 0x1a57ba9e, "the last-page mapping is the end of the whole one");
	unmap((void *)last, PAGE);
	unmap((void *)whole, p->ram_size);
	close(b);
	close(rb);
	close(d);
}

void t04(struct series *s)
{
	const struct profile *p = &s->p;
	int d = series_open(s, "T4: device-fd BAR mmap beside a buffer, and its bounds");
	int rb = reg_buffer(d, p);
	volatile uint8_t *r = map_buf(rb, 0, p->reg_size);
	volatile uint8_t *dr = map_region(d, p->reg_bar, 0, p->reg_size);
	pass("a device-fd mmap of the register BAR works while its buffer exists");
	REG_BEHAVES(p, dr, r, 0x5a5a0f0f, "the device-fd mapping (written) and the buffer mapping (read)");
	uint64_t reg_off = region_offset(d, p->reg_bar);
	CHECK_MAP_ERR(mmap(NULL, p->reg_size + PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, d, (off_t)reg_off), EINVAL,
		      "device-fd mmap of the register BAR, size + 4 KiB");
	CHECK_MAP_ERR(mmap(NULL, p->reg_size, PROT_READ | PROT_WRITE, MAP_SHARED, d, (off_t)(reg_off + PAGE)), EINVAL,
		      "device-fd mmap of the register BAR, full size at offset 4 KiB");

	uint64_t ram_off = region_offset(d, p->ram_bar);
	int b = dmabuf_export1(d, p->ram_bar, 0, p->ram_size);
	volatile uint8_t *bm = map_buf(b, 0, p->ram_size);
	volatile uint8_t *dm = map_region(d, p->ram_bar, 0, p->ram_size);
	STORE(4, dm + 0x123000, 0xfeedc0de, "device-fd mapping");
	CHECK_EQ(LOAD(4, bm + 0x123000, "buffer mapping"), 0xfeedc0de, "device-fd and buffer mappings of the RAM BAR alias");
	CHECK_MAP_ERR(mmap(NULL, p->ram_size + PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, d, (off_t)ram_off), EINVAL,
		      "device-fd mmap of the RAM BAR, size + 4 KiB");
	CHECK_MAP_ERR(mmap(NULL, p->ram_size, PROT_READ | PROT_WRITE, MAP_SHARED, d, (off_t)(ram_off + PAGE)), EINVAL,
		      "device-fd mmap of the RAM BAR, full size at offset 4 KiB");
	CHECK_MAP_ERR(mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, d, (off_t)ram_off), EINVAL,
		      "a MAP_PRIVATE device-fd mmap");
	volatile uint8_t *page = MUST_MAP(mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, d, (off_t)(ram_off + 0x123000)),
					  "mmap at a raw file offset");
	CHECK_EQ(LOAD(4, page, "raw-offset mapping"), 0xfeedc0de, "a mapping at file offset region + 0x123000 reads that byte");
	CHECK_EQ(maps_offset_of((const void *)page), ram_off + 0x123000,
		 "/proc/self/maps shows the mmap offset exactly as passed, region index included");
	unmap((void *)page, PAGE);
	unmap((void *)dm, p->ram_size);
	unmap((void *)bm, p->ram_size);
	unmap((void *)dr, p->reg_size);
	unmap((void *)r, p->reg_size);
	close(b);
	close(rb);
	close(d);
}

void t05(struct series *s)
{
	const struct profile *p = &s->p;
	int d = series_open(s, "T5: a permanently revoked buffer's mapping faults");
	int rb = reg_buffer(d, p);
	volatile uint8_t *r = map_buf(rb, 0, p->reg_size);
	REG_BEHAVES(p, r, r, 0x01020304, "the register buffer mapping before the revoke");
	CHECK_SUCCEEDS(dmabuf_revoke(d, rb), "DMA_BUF_REVOKE of the register buffer");
	EXPECT_SIGBUS_LOAD(4, r + reg_id_offset(p), "a register load through the revoked buffer");
	EXPECT_SIGBUS_STORE(4, r + (p->kind == KIND_BOCHS ? BOCHS_BYTEORDER : EDU_LIVENESS),
			    "a register store through the revoked buffer");

	int b = dmabuf_export1(d, p->ram_bar, 0, p->ram_size);
	volatile uint8_t *m = map_buf(b, 0, p->ram_size);
	STORE(4, m + 0x40, 0x600dda7a, "RAM buffer mapping");
	CHECK_EQ(LOAD(4, m + 0x40, "RAM buffer mapping"), 0x600dda7a, "the RAM buffer mapping works like memory");
	CHECK_SUCCEEDS(dmabuf_revoke(d, b), "DMA_BUF_REVOKE of the RAM buffer");
	EXPECT_SIGBUS_LOAD(4, m + 0x40, "a load from the page mapped before the revoke");
	EXPECT_SIGBUS_LOAD(4, m + p->ram_size / 2, "a load from a page never touched");
	EXPECT_SIGBUS_STORE(4, m + 0x1000, "a store");
	unmap((void *)m, p->ram_size);
	unmap((void *)r, p->reg_size);
	close(b);
	close(rb);
	close(d);
}

void t06(struct series *s)
{
	const struct profile *p = &s->p;
	int d = series_open(s, "T6: a device-fd mapping survives the revoke of a buffer of the same BAR");
	volatile uint8_t *dr = map_region(d, p->reg_bar, 0, p->reg_size);
	int rb = reg_buffer(d, p);
	volatile uint8_t *r = map_buf(rb, 0, p->reg_size);
	MUST(dmabuf_revoke(d, rb), "DMA_BUF_REVOKE");
	EXPECT_SIGBUS_LOAD(4, r + reg_id_offset(p), "the revoked register buffer's mapping faults");
	REG_BEHAVES(p, dr, dr, 0x77777777, "the device-fd register mapping after the buffer's revoke");

	volatile uint8_t *dm = map_region(d, p->ram_bar, 0, MiB);
	int b = dmabuf_export1(d, p->ram_bar, 0, MiB);
	volatile uint8_t *bm = map_buf(b, 0, MiB);
	STORE(4, bm + 0x8000, 0xaaaa5555, "buffer mapping");
	MUST(dmabuf_revoke(d, b), "DMA_BUF_REVOKE");
	EXPECT_SIGBUS_LOAD(4, bm + 0x8000, "the revoked RAM buffer's mapping faults");
	CHECK_EQ(LOAD(4, dm + 0x8000, "device-fd mapping"), 0xaaaa5555,
		 "the device-fd mapping reads what was written through the buffer before the revoke");
	STORE(4, dm + 0x8008, 0x12121212, "device-fd mapping");
	CHECK_EQ(LOAD(4, dm + 0x8008, "device-fd mapping"), 0x12121212, "... and is writable as before");
	unmap((void *)bm, MiB);
	unmap((void *)dm, MiB);
	unmap((void *)r, p->reg_size);
	unmap((void *)dr, p->reg_size);
	close(b);
	close(rb);
	close(d);
}

void t07(struct series *s)
{
	const struct profile *p = &s->p;
	int d = series_open(s, "T7: revoking an already revoked buffer is EBADFD");
	int rb = reg_buffer(d, p);
	CHECK_SUCCEEDS(dmabuf_revoke(d, rb), "the first revoke of the register buffer");
	CHECK_ERR(dmabuf_revoke(d, rb), EBADFD, "the second revoke");
	int b = dmabuf_export1(d, p->ram_bar, 0, 2 * MiB);
	CHECK_SUCCEEDS(dmabuf_revoke(d, b), "the first revoke of a RAM buffer");
	CHECK_ERR(dmabuf_revoke(d, b), EBADFD, "the second revoke");
	close(b);
	close(rb);
	close(d);
}

void t08(struct series *s)
{
	const struct profile *p = &s->p;
	int d = series_open(s, "T8: a revoked buffer cannot be mapped again");
	int rb = reg_buffer(d, p);
	MUST(dmabuf_revoke(d, rb), "DMA_BUF_REVOKE");
	CHECK_MAP_ERR(mmap(NULL, p->reg_size, PROT_READ | PROT_WRITE, MAP_SHARED, rb, 0), ENODEV,
		      "mmap of the revoked register buffer");

	int b = dmabuf_export1(d, p->ram_bar, 0, 4 * MiB);
	volatile uint8_t *before = map_buf(b, 0, 4 * MiB);
	pass("before the revoke the RAM buffer maps");
	MUST(dmabuf_revoke(d, b), "DMA_BUF_REVOKE");
	CHECK_MAP_ERR(mmap(NULL, 4 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, b, 0), ENODEV, "after it, mmap fails");
	CHECK_MAP_ERR(mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, b, (off_t)MiB), ENODEV, "... however small");
	EXPECT_SIGBUS_LOAD(4, before, "the mapping made before the revoke faults");
	unmap((void *)before, 4 * MiB);
	close(b);
	close(rb);
	close(d);
}

void t09(struct series *s)
{
	const struct profile *p = &s->p;
	int d = series_open(s, "T9: after a revoke the same range can be exported again");
	int rb = reg_buffer(d, p);
	MUST(dmabuf_revoke(d, rb), "DMA_BUF_REVOKE");
	int rb2 = reg_buffer(d, p);
	volatile uint8_t *r2 = map_buf(rb2, 0, p->reg_size);
	REG_BEHAVES(p, r2, r2, 0x31415926, "a new register buffer of the same range");

	int old = dmabuf_export1(d, p->ram_bar, 0, p->ram_size);
	volatile uint8_t *om = map_buf(old, 0, p->ram_size);
	STORE(4, om + p->ram_size / 2, 0x0ddba11, "old buffer mapping");
	MUST(dmabuf_revoke(d, old), "DMA_BUF_REVOKE");
	EXPECT_SIGBUS_LOAD(4, om + p->ram_size / 2, "the old buffer's mapping faults");
	int nw = dmabuf_export1(d, p->ram_bar, 0, p->ram_size);
	volatile uint8_t *nm = map_buf(nw, 0, p->ram_size);
	CHECK_EQ(LOAD(4, nm + p->ram_size / 2, "new buffer mapping"), 0x0ddba11,
		 "the new buffer of the same range reads the bytes written through the old one");
	EXPECT_SIGBUS_LOAD(4, om + p->ram_size / 2, "the old buffer stays revoked");
	unmap((void *)nm, p->ram_size);
	unmap((void *)om, p->ram_size);
	unmap((void *)r2, p->reg_size);
	close(nw);
	close(old);
	close(rb2);
	close(rb);
	close(d);
}

int main(int argc, char **argv)
{
	struct series s = { 0 };
	int opt;
	tests_init("series_tests");
	while ((opt = getopt(argc, argv, "d:o:")) != -1) {
		if (opt == 'd')
			s.bdf = parse_bdf(optarg);
		else if (opt == 'o')
			s.other = parse_bdf(optarg);
		else
			break;
	}
	if (!s.bdf || !s.other || optind != argc) {
		fprintf(stderr, "usage: series_tests -d BDF -o OTHER_BDF\n");
		return 2;
	}
	int d = legacy_open(s.bdf, &s.lg);
	profile_detect(d, &s.p);
	if (s.p.ram_bar < 0 || s.p.ram_size < 16 * MiB)
		FAIL("%s (%s) has no RAM BAR of at least 16 MiB", s.bdf, s.p.name);
	printf("# %s at %s: register BAR%u (0x%llx bytes), RAM BAR%d (0x%llx bytes)\n", s.p.name, s.bdf, s.p.reg_bar,
	       (unsigned long long)s.p.reg_size, s.p.ram_bar, (unsigned long long)s.p.ram_size);
	close(d);

	void (*const tests[])(struct series *) = { t01, t02, t03, t04, t05, t06, t07, t08, t09,
						   t10, t11, t12, t13, t14, t15, t16, t17, t18 };
	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++)
		tests[i](&s);
	legacy_close(&s.lg);
	return tests_done();
}
