/*
 * The code the project's C programs share: checks that print one line
 * each and stop the program at the first failure with file:line, errno
 * names, a SIGBUS/SIGSEGV catcher for probed accesses, and the small VFIO
 * chores every program repeats (open a device through its group, read
 * config space, map a BAR, export and revoke DMA-buffers).
 *
 * Everything here is written against the kernel's UAPI and documentation;
 * nothing knows how the devices are provided.
 */
#ifndef VFIO_TESTS_COMMON_H
#define VFIO_TESTS_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "vfio_dmabuf_compat.h"

#define FMT(a, b) __attribute__((format(printf, a, b)))

#define PAGE 4096UL
#define MiB (1UL << 20)

/* How long a wait for an event may take before it counts as a failure. A
 * watchdog, never a timing assertion: every wait ends at the event. */
#define WATCHDOG_SECONDS 60

/* PCI config registers (include/uapi/linux/pci_regs.h names, minus PCI_). */
#define CFG_VENDOR_ID 0x00
#define CFG_DEVICE_ID 0x02
#define CFG_COMMAND 0x04
#define CFG_STATUS 0x06
#define CFG_CLASS_REVISION 0x08
#define CFG_BAR0 0x10
#define CFG_CAP_PTR 0x34
#define CFG_INTERRUPT_PIN 0x3d
#define CMD_MEMORY 0x0002
#define CMD_MASTER 0x0004
#define CMD_INTX_DISABLE 0x0400
#define STATUS_CAP_LIST 0x0010
#define CAP_ID_PM 0x01
#define CAP_ID_MSI 0x05
#define CAP_ID_EXP 0x10
#define CAP_ID_MSIX 0x11

/* ---- checks --------------------------------------------------------- */

/* Names the program in messages and installs the fault catcher; call first,
 * before any mapping exists. */
void tests_init(const char *name);
/* The same without the fault catcher, for a program that installs its own
 * handlers (LOAD, STORE and the EXPECT_ checks need the catcher). */
void tests_init_without_catcher(const char *name);
/* Prints the summary line the harness looks for; returns the exit status. */
int tests_done(void);

/* One passed check: "ok N - message". */
void pass(const char *fmt, ...) FMT(1, 2);
/* A failed check: message with file:line, then exit(1). */
_Noreturn void fail_at(const char *file, int line, const char *fmt, ...) FMT(3, 4);
const char *errno_name(int e);
const char *signal_name(int sig);

#define FAIL(...) fail_at(__FILE__, __LINE__, __VA_ARGS__)

void check_at(int ok, const char *expr, const char *file, int line, const char *fmt, ...) FMT(5, 6);
void check_eq_at(uint64_t got, uint64_t want, const char *file, int line, const char *fmt, ...) FMT(5, 6);
long check_ok_at(long ret, const char *file, int line, const char *fmt, ...) FMT(4, 5);
void check_err_at(long ret, int want, const char *file, int line, const char *fmt, ...) FMT(5, 6);
void *check_map_at(void *p, const char *file, int line, const char *fmt, ...) FMT(4, 5);
void check_map_err_at(void *p, int want, const char *file, int line, const char *fmt, ...) FMT(5, 6);

/*
 * The errno checks read errno first thing, so the call under test must be
 * the only thing in their arguments that can change it (format arguments are
 * plain values).
 */
#define CHECK(cond, ...) check_at(!!(cond), #cond, __FILE__, __LINE__, __VA_ARGS__)
#define CHECK_EQ(got, want, ...) check_eq_at((uint64_t)(got), (uint64_t)(want), __FILE__, __LINE__, __VA_ARGS__)
/* A call that must succeed (return >= 0); returns its value. Prints no line
 * of its own unless it fails: the calls whose success is the point are
 * followed by a CHECK or use CHECK_SUCCEEDS. */
#define MUST(ret, ...) check_ok_at((long)(ret), __FILE__, __LINE__, __VA_ARGS__)
#define CHECK_SUCCEEDS(ret, ...) (pass_after(check_ok_at((long)(ret), __FILE__, __LINE__, __VA_ARGS__), __VA_ARGS__))
#define CHECK_ERR(ret, err, ...) check_err_at((long)(ret), (err), __FILE__, __LINE__, __VA_ARGS__)
#define MUST_MAP(p, ...) check_map_at((p), __FILE__, __LINE__, __VA_ARGS__)
#define CHECK_MAP_ERR(p, err, ...) check_map_err_at((p), (err), __FILE__, __LINE__, __VA_ARGS__)
long pass_after(long ret, const char *fmt, ...) FMT(2, 3);

/* ---- probed accesses (SIGBUS/SIGSEGV caught with sigsetjmp) ----------- */

struct fault {
	int signo;      /* SIGBUS or SIGSEGV */
	int code;       /* si_code, e.g. BUS_ADRERR */
	uintptr_t addr; /* si_addr */
};

/* One load or store of 1, 2, 4 or 8 bytes at p. Returns 0, or the signal
 * the access raised (recorded in *f); the calling thread survives it. */
int try_load(const volatile void *p, unsigned width, uint64_t *value, struct fault *f);
int try_store(volatile void *p, unsigned width, uint64_t value, struct fault *f);

uint64_t load_at(const volatile void *p, unsigned width, const char *file, int line, const char *what);
void store_at(volatile void *p, unsigned width, uint64_t v, const char *file, int line, const char *what);
void expect_fault_at(volatile void *p, unsigned width, bool write, int signo, const char *file, int line,
		     const char *fmt, ...) FMT(7, 8);

/* Loads and stores that must not fault; a fault fails the program with the
 * signal, si_code and address. */
#define LOAD(width, p, what) load_at((p), (width), __FILE__, __LINE__, (what))
#define STORE(width, p, v, what) store_at((p), (width), (v), __FILE__, __LINE__, (what))
/* A check: the access raises SIGBUS with si_code BUS_ADRERR and si_addr p
 * (what the kernel gives for a revoked or disabled BAR page). */
#define EXPECT_SIGBUS_LOAD(width, p, ...) expect_fault_at((p), (width), false, SIGBUS, __FILE__, __LINE__, __VA_ARGS__)
#define EXPECT_SIGBUS_STORE(width, p, ...) expect_fault_at((p), (width), true, SIGBUS, __FILE__, __LINE__, __VA_ARGS__)
#define EXPECT_SIGSEGV_LOAD(width, p, ...) expect_fault_at((p), (width), false, SIGSEGV, __FILE__, __LINE__, __VA_ARGS__)

/* ---- time ----------------------------------------------------------- */

struct deadline {
	struct timespec end;
};
void deadline_start(struct deadline *d, unsigned seconds);
bool deadline_passed(const struct deadline *d);

/* ---- eventfds ------------------------------------------------------- */

int eventfd_new(void);
/* Whether fd is readable at this instant (poll with a zero timeout). */
bool fd_readable_now(int fd);
/* Waits until the eventfd is readable (watchdog: WATCHDOG_SECONDS), reads
 * and returns its counter; fails on the watchdog. */
uint64_t eventfd_wait_at(int fd, const char *file, int line, const char *what);
#define EVENTFD_WAIT(fd, what) eventfd_wait_at((fd), __FILE__, __LINE__, (what))

/* ---- sysfs and device nodes ----------------------------------------- */

/* Checks s looks like DDDD:BB:DD.F and returns it. */
const char *parse_bdf(const char *s);
/* Reads a small text file with open(2)/read(2) (not stdio, whose opens the
 * C library makes internally); returns the length, NUL-terminated. */
size_t read_text(const char *path, char *buf, size_t len);
/* The IOMMU group number of a PCI function, from the basename of the
 * /sys/bus/pci/devices/<BDF>/iommu_group link. */
int iommu_group_of(const char *bdf);

/* ---- the legacy container/group path --------------------------------- */

struct legacy {
	int container;
	int group;
	int groupno;
};

/* /dev/vfio/vfio with its API version checked. */
int container_open(void);
/* /dev/vfio/<group of bdf>, viable. */
int group_open(const char *bdf, int *groupno);
/* The full path QEMU and the selftests take: container, group, SET_CONTAINER,
 * SET_IOMMU(TYPE1v2), GET_DEVICE_FD. Returns the device fd. */
int legacy_open(const char *bdf, struct legacy *lg);
/* Closes the group and container fds that are still open (>= 0). */
void legacy_close(struct legacy *lg);

/* ---- regions and config space --------------------------------------- */

struct vfio_region_info region_info(int dev, uint32_t index);
uint64_t region_offset(int dev, uint32_t index);
uint32_t cfg_read(int dev, uint32_t off, unsigned width);
void cfg_write(int dev, uint32_t off, unsigned width, uint32_t value);
/* COMMAND.MEMORY on or off (a config write, as a driver or VMM does it). */
void set_memory(int dev, bool on);
/* Offset of the first capability with this ID, 0 if there is none. */
uint32_t find_cap(int dev, uint8_t id);
/* pread/pwrite of a whole value in a region; fail unless complete. */
uint64_t region_read(int dev, uint32_t index, uint64_t off, unsigned width);
void region_write(int dev, uint32_t index, uint64_t off, unsigned width, uint64_t value);

/* A MAP_SHARED read/write mapping of len bytes of region index at off. */
void *map_region(int dev, uint32_t index, uint64_t off, size_t len);
/* The same of any fd at file offset off, at an address aligned to align:
 * an anonymous PROT_NONE reservation first, then MAP_FIXED inside it (the
 * upstream selftests' way of making huge mappings possible). */
void *map_aligned(int fd, uint64_t off, size_t len, size_t align);
void unmap(void *p, size_t len);

/* ---- device features ------------------------------------------------ */

/* VFIO_DEVICE_FEATURE with flags and a payload of len bytes (argsz =
 * header + len); the raw ioctl result. */
int feature(int dev, uint32_t flags, const void *payload, size_t len);
/* PROBE with GET or SET; the raw ioctl result. */
int feature_probe(int dev, uint32_t feature_nr, uint32_t get_or_set);
/* VFIO_DEVICE_FEATURE_DMA_BUF (GET); the raw ioctl result (an fd). */
int dmabuf_export(int dev, uint32_t index, uint32_t open_flags, uint32_t nr,
		  const struct vfio_region_dma_range *ranges);
/* One range, O_RDWR | O_CLOEXEC; must succeed. */
int dmabuf_export1(int dev, uint32_t index, uint64_t off, uint64_t len);
int dmabuf_revoke(int dev, int buf);
int dmabuf_memattr(int dev, int buf, uint32_t attr);

/* ---- the emulated devices, told apart by their config space ------------ */

enum dev_kind { KIND_EDU, KIND_EDU_PLUS, KIND_BOCHS };

struct profile {
	enum dev_kind kind;
	const char *name;
	uint32_t reg_bar;  /* the register BAR */
	uint64_t reg_size;
	int ram_bar;       /* the RAM BAR, -1 without one */
	uint64_t ram_size;
};

/* QEMU's edu (1234:11e8, one register BAR), edu-plus (edu's registers and
 * a RAM BAR1) or bochs-display (1234:1111: VRAM BAR0, register BAR2). */
void profile_detect(int dev, struct profile *p);
/* A register that plain memory cannot imitate, at a register window
 * (mapping base, or NULL for pread/pwrite on the region): edu's liveness
 * register (0x04 reads back ~v) or bochs-display's byte-order register
 * (0x604 keeps only 0x1e1e1e1e or 0xbebebebe). Writes through `writer`,
 * reads through `reader` (the same window, or an alias of it). Returns 0,
 * the signal an access raised, or -1 with *why set when a value is wrong. */
int reg_behaviour(const struct profile *p, volatile uint8_t *writer, volatile uint8_t *reader, uint32_t seed,
		  struct fault *f, const char **why);
/* Checks reg_behaviour passes; one line. */
void reg_behaviour_ok_at(const struct profile *p, volatile uint8_t *writer, volatile uint8_t *reader,
			 uint32_t seed, const char *file, int line, const char *via);
#define REG_BEHAVES(p, writer, reader, seed, via) reg_behaviour_ok_at((p), (writer), (reader), (seed), __FILE__, __LINE__, (via))
/* The same through pread/pwrite of the register region. */
void reg_behaviour_region_ok(const struct profile *p, int dev, uint32_t seed);
/* The identification register: its offset and the value it must read. */
uint32_t reg_id_offset(const struct profile *p);
uint32_t reg_id_value(const struct profile *p);

/* edu's registers (QEMU hw/misc/edu.c, docs/specs/edu.rst). */
#define EDU_ID 0x00
#define EDU_ID_MAGIC 0x010000edU
#define EDU_LIVENESS 0x04
#define EDU_IRQ_STATUS 0x24
#define EDU_IRQ_RAISE 0x60
#define EDU_IRQ_ACK 0x64
#define EDU_DMA_SRC 0x80
#define EDU_DMA_DST 0x88
#define EDU_DMA_CNT 0x90
#define EDU_DMA_CMD 0x98
#define EDU_DMA_RUN 0x1
#define EDU_DMA_TO_RAM 0x2
#define EDU_DMA_IRQ 0x4
#define EDU_IRQ_DMA 0x100
#define EDU_DMA_BUFFER 0x40000
/* bochs-display's registers (QEMU hw/display/bochs-display.c). */
#define BOCHS_DISPI_ID 0x500
#define BOCHS_DISPI_ID5 0xb0c5
#define BOCHS_QEXT_SIZE 0x600
#define BOCHS_BYTEORDER 0x604
#define BOCHS_LITTLE 0x1e1e1e1eU
#define BOCHS_BIG 0xbebebebeU

#endif /* VFIO_TESTS_COMMON_H */
