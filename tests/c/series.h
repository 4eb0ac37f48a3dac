/*
 * series_tests: the series' own test sequence T1-T18 ("vfio/pci: Add mmap()
 * for DMABUFs", spec §9.1), replayed through the real UAPI. Each T opens
 * the device afresh through the group kept open for the whole run, does
 * what the original does on the register BAR (magic and register checks
 * that memory cannot pass), then what scenarios/tNN-*.toml does on the
 * RAM BAR, and closes what it opened.
 */
#ifndef VFIO_TESTS_SERIES_H
#define VFIO_TESTS_SERIES_H

#include "common.h"

struct series {
	const char *bdf;   /* the device under test: edu-plus or bochs-display */
	const char *other; /* a second device, for buffers this one must refuse */
	struct legacy lg;  /* container and group, open for the whole run */
	struct profile p;
};

/* A fresh device fd from the group; prints the T's title. */
int series_open(struct series *s, const char *title);

/* value ^ (xor_base + x) at the first 4 bytes of every page x in
 * [from, from + len) of a mapping, as the scenarios' `fill`; and the check. */
void fill_pages(volatile uint8_t *base, uint64_t from, uint64_t len, uint32_t value, uint64_t xor_base);
void check_pages_at(volatile uint8_t *base, uint64_t from, uint64_t len, uint32_t value, uint64_t xor_base,
		    const char *file, int line, const char *what);
#define CHECK_PAGES(base, from, len, value, xor_base, what) \
	check_pages_at((base), (from), (len), (value), (xor_base), __FILE__, __LINE__, (what))

/* The file offset /proc/self/maps gives for the byte at addr (its VMA's
 * offset column plus the distance from the VMA's start). */
uint64_t maps_offset_of(const void *addr);

/* A buffer mapping of the whole of fd from offset off; must succeed. */
void *map_buf(int fd, uint64_t off, size_t len);

void t01(struct series *s);
void t02(struct series *s);
void t03(struct series *s);
void t04(struct series *s);
void t05(struct series *s);
void t06(struct series *s);
void t07(struct series *s);
void t08(struct series *s);
void t09(struct series *s);
void t10(struct series *s);
void t11(struct series *s);
void t12(struct series *s);
void t13(struct series *s);
void t14(struct series *s);
void t15(struct series *s);
void t16(struct series *s);
void t17(struct series *s);
void t18(struct series *s);

#endif /* VFIO_TESTS_SERIES_H */
