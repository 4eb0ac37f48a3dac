/*
 * vfio_uapi section "device": the device fd's information calls, config
 * space and BAR access through pread/pwrite, the events that revoke BAR
 * mappings (COMMAND.MEMORY, D3hot, FLR, reset, low power) and the device
 * feature ioctl with PROBE.
 */
#include "uapi.h"

#include <sys/ioctl.h>
#include <sys/mman.h>
#include <termios.h>
#include <unistd.h>

/* Every region the device reports, checked against what the kernel's
 * vfio-pci gives and against the BAR sizing the config space shows. */
static void regions(int d, uint32_t num_regions)
{
	struct vfio_region_info small = { .argsz = 16, .index = 0 };
	CHECK_ERR(ioctl(d, VFIO_DEVICE_GET_REGION_INFO, &small), EINVAL, "GET_REGION_INFO with argsz 16");
	struct vfio_region_info past = { .argsz = sizeof(past), .index = num_regions };
	CHECK_ERR(ioctl(d, VFIO_DEVICE_GET_REGION_INFO, &past), EINVAL, "GET_REGION_INFO of index %u (past the last)",
		  num_regions);

	for (uint32_t i = VFIO_PCI_BAR0_REGION_INDEX; i <= VFIO_PCI_BAR5_REGION_INDEX; i++) {
		struct vfio_region_info r = region_info(d, i);
		CHECK_EQ(r.offset, (uint64_t)i << 40, "BAR%u's region offset is %u << 40", i, i);
		if (!r.size) {
			CHECK_EQ(r.flags, 0, "BAR%u is not implemented: size 0, no flags", i);
			continue;
		}
		CHECK_EQ(r.flags & (VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE | VFIO_REGION_INFO_FLAG_MMAP),
			 VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE | VFIO_REGION_INFO_FLAG_MMAP,
			 "BAR%u (0x%llx bytes) reads, writes and maps", i, (unsigned long long)r.size);
		/* Sizing through config space: all-ones written, the size mask read. */
		uint32_t bar = i, reg = CFG_BAR0 + 4 * i;
		uint32_t saved = cfg_read(d, reg, 4);
		cfg_write(d, reg, 4, 0xffffffff);
		uint32_t mask = cfg_read(d, reg, 4);
		cfg_write(d, reg, 4, saved);
		uint64_t size = (uint64_t)(uint32_t)~(mask & ~0xfU) + 1;
		if ((mask & 0x6) == 0x4) {
			uint32_t hi_saved = cfg_read(d, reg + 4, 4);
			cfg_write(d, reg + 4, 4, 0xffffffff);
			uint64_t full = ((uint64_t)cfg_read(d, reg + 4, 4) << 32) | (mask & ~0xfU);
			cfg_write(d, reg + 4, 4, hi_saved);
			size = ~full + 1;
			i++; /* the upper half takes the next BAR slot */
			CHECK_EQ(region_info(d, i).size, 0, "BAR%u, the upper half of a 64-bit BAR, has no region", i);
		}
		CHECK_EQ(size, r.size, "BAR%u sizing through config space agrees with REGION_INFO", bar);
	}
	struct vfio_region_info rom = region_info(d, VFIO_PCI_ROM_REGION_INDEX);
	CHECK(rom.size == 0 && rom.flags == 0, "no ROM: the ROM region has size 0 and no flags");
	struct vfio_region_info cfg = region_info(d, VFIO_PCI_CONFIG_REGION_INDEX);
	CHECK(cfg.offset == (uint64_t)VFIO_PCI_CONFIG_REGION_INDEX << 40 && (cfg.size == 256 || cfg.size == 4096) &&
		      cfg.flags == (VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE),
	      "config region: offset 7 << 40, 0x%llx bytes, read/write, not mappable", (unsigned long long)cfg.size);
	struct vfio_region_info vga = { .argsz = sizeof(vga), .index = VFIO_PCI_VGA_REGION_INDEX };
	CHECK_ERR(ioctl(d, VFIO_DEVICE_GET_REGION_INFO, &vga), EINVAL, "the VGA region of a device that is no VGA");
}

static void config_space(int d, const struct uapi_args *a)
{
	uint64_t cfg_off = region_offset(d, VFIO_PCI_CONFIG_REGION_INDEX);
	uint64_t cfg_size = region_info(d, VFIO_PCI_CONFIG_REGION_INDEX).size;
	uint8_t all[4096];
	CHECK_EQ(pread(d, all, cfg_size, (off_t)cfg_off), cfg_size, "one pread of the whole config space");
	CHECK_EQ(all[0] | all[1] << 8, 0x1234, "vendor ID 0x1234");
	CHECK_EQ(all[2] | all[3] << 8, 0x11e8, "device ID 0x11e8");

	char path[128], text[64];
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/class", a->ram);
	read_text(path, text, sizeof(text));
	snprintf(path, sizeof(path), "0x%02x%02x%02x\n", all[0xb], all[0xa], all[0x9]);
	CHECK(strcmp(text, path) == 0, "the sysfs class file matches the class code in config space (%.8s)", path);

	uint32_t two = 0;
	CHECK_EQ(pread(d, &two, 4, (off_t)cfg_off + 2), 4, "an unaligned 4-byte config read");
	CHECK_EQ(two, (uint32_t)(all[2] | all[3] << 8 | all[4] << 16 | all[5] << 24), "... reads device ID and command");
	uint16_t junk = 0xbeef;
	CHECK_EQ(pwrite(d, &junk, 2, (off_t)cfg_off + CFG_VENDOR_ID), 2, "a write to the read-only vendor ID is accepted");
	CHECK_EQ(cfg_read(d, CFG_VENDOR_ID, 2), 0x1234, "... and changes nothing");
	CHECK_ERR(pread(d, &two, 4, (off_t)(cfg_off + cfg_size - 2)), EFAULT, "a config read past the end");
	CHECK_ERR(pread(d, &two, 4, (off_t)((uint64_t)20 << 40)), EINVAL, "a read of a region that does not exist");

	uint16_t cmd = (uint16_t)cfg_read(d, CFG_COMMAND, 2);
	CHECK(cmd & CMD_MEMORY, "the open device decodes memory (COMMAND 0x%04x)", cmd);
	cfg_write(d, CFG_COMMAND, 2, cmd | CMD_MASTER);
	CHECK(cfg_read(d, CFG_COMMAND, 2) & CMD_MASTER, "COMMAND.MASTER sets");
	cfg_write(d, CFG_COMMAND, 2, cmd);
}

static void bar_rw(int d, const struct profile *p)
{
	CHECK_EQ(region_read(d, p->reg_bar, EDU_ID, 4), EDU_ID_MAGIC, "BAR0 register 0x00 reads edu's magic");
	reg_behaviour_region_ok(p, d, 0x13572468);
	uint64_t bar1 = region_offset(d, 1);
	uint8_t out[64], in[64];
	for (unsigned i = 0; i < sizeof(out); i++)
		out[i] = (uint8_t)(i * 7 + 1);
	CHECK_EQ(pwrite(d, out, sizeof(out), (off_t)(bar1 + 0x1230)), sizeof(out), "a 64-byte pwrite to BAR1");
	CHECK_EQ(pread(d, in, sizeof(in), (off_t)(bar1 + 0x1230)), sizeof(in), "a 64-byte pread from BAR1");
	CHECK(memcmp(in, out, sizeof(in)) == 0, "... reads back what was written");
	CHECK_EQ(pread(d, in, 8, (off_t)(bar1 + p->ram_size - 4)), 4, "a pread crossing the end of BAR1 is cut short");
	CHECK_ERR(pread(d, in, 4, (off_t)(bar1 + p->ram_size)), EINVAL, "a pread at the end of BAR1");
	CHECK_ERR(pread(d, in, 4, (off_t)region_offset(d, 3)), EINVAL, "a pread of BAR3, which is not implemented");

	/* Memory decode off: BAR accesses through the file fail with EIO. */
	set_memory(d, false);
	CHECK_ERR(pread(d, in, 4, (off_t)bar1), EIO, "pread of BAR1 with COMMAND.MEMORY clear");
	CHECK_ERR(pwrite(d, out, 4, (off_t)bar1), EIO, "pwrite of BAR1 with COMMAND.MEMORY clear");
	CHECK_EQ(cfg_read(d, CFG_VENDOR_ID, 2), 0x1234, "config space still reads with memory off");
	set_memory(d, true);
	CHECK_EQ(pread(d, in, sizeof(in), (off_t)(bar1 + 0x1230)), sizeof(in), "pread of BAR1 with memory on again");
	CHECK(memcmp(in, out, sizeof(in)) == 0, "... the bytes are as they were");
}

/* The events that revoke mappings, each followed by its recovery. */
static void revoking_events(int d, const struct profile *p)
{
	volatile uint32_t *ram = map_region(d, p->ram_bar, 0, 2 * PAGE);
	STORE(4, &ram[1], 0xfeedf00d, "BAR1");

	uint32_t pm = find_cap(d, CAP_ID_PM);
	if (pm) {
		uint16_t pmcsr = (uint16_t)cfg_read(d, pm + 4, 2);
		cfg_write(d, pm + 4, 2, (pmcsr & ~3U) | 3);
		CHECK_EQ(cfg_read(d, pm + 4, 2) & 3, 3, "PMCSR: the device is in D3hot");
		EXPECT_SIGBUS_LOAD(4, &ram[1], "a load from BAR1 in D3hot");
		cfg_write(d, pm + 4, 2, pmcsr & ~3U);
		CHECK_EQ(LOAD(4, &ram[1], "BAR1 back in D0"), 0xfeedf00d, "back in D0 the mapping works and kept its data");
	} else {
		pass("no power-management capability: D3hot is not reachable through config space");
	}

	uint32_t exp = find_cap(d, CAP_ID_EXP);
	if (exp && (cfg_read(d, exp + 4, 4) & (1U << 28))) {
		uint16_t devctl = (uint16_t)cfg_read(d, exp + 8, 2);
		cfg_write(d, exp + 8, 2, devctl | 0x8000); /* Initiate Function Level Reset */
		CHECK(cfg_read(d, CFG_COMMAND, 2) & CMD_MEMORY, "after an FLR through DevCtl the command register is restored");
		STORE(4, &ram[1], 0xf1f1f1f1, "BAR1 after FLR");
		CHECK_EQ(LOAD(4, &ram[1], "BAR1 after FLR"), 0xf1f1f1f1, "the mapping works after the FLR");
	} else {
		pass("no FLR capability: FLR through DevCtl is not offered");
	}

	struct vfio_device_info info = { .argsz = sizeof(info) };
	MUST(ioctl(d, VFIO_DEVICE_GET_INFO, &info), "GET_INFO");
	CHECK_SUCCEEDS(ioctl(d, VFIO_DEVICE_RESET), "VFIO_DEVICE_RESET");
	CHECK(cfg_read(d, CFG_COMMAND, 2) & CMD_MEMORY, "after the reset COMMAND.MEMORY is still set");
	STORE(4, &ram[1], 0x0badf00d, "BAR1 after reset");
	CHECK_EQ(LOAD(4, &ram[1], "BAR1 after reset"), 0x0badf00d, "the mapping works after the reset");

	/* Low power: mappings are revoked until exit, and entry is not nested. */
	CHECK_SUCCEEDS(feature(d, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY, NULL, 0),
		       "LOW_POWER_ENTRY");
	EXPECT_SIGBUS_LOAD(4, &ram[1], "a load from BAR1 in low power");
	CHECK_ERR(feature(d, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY, NULL, 0), EINVAL,
		  "LOW_POWER_ENTRY while in low power");
	CHECK_SUCCEEDS(feature(d, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_LOW_POWER_EXIT, NULL, 0), "LOW_POWER_EXIT");
	CHECK_EQ(LOAD(4, &ram[1], "BAR1 after low power"), 0x0badf00d, "after LOW_POWER_EXIT the mapping works, data kept");
	CHECK_SUCCEEDS(feature(d, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_LOW_POWER_EXIT, NULL, 0),
		       "LOW_POWER_EXIT when not in low power is harmless");

	struct vfio_device_low_power_entry_with_wakeup w = { .wakeup_eventfd = -1 };
	CHECK_ERR(feature(d, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP, &w, 4), EINVAL,
		  "LOW_POWER_ENTRY_WITH_WAKEUP with a 4-byte payload");
	CHECK_ERR(feature(d, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP, &w, sizeof(w)),
		  EINVAL, "LOW_POWER_ENTRY_WITH_WAKEUP with eventfd -1");
	int pipefd[2];
	MUST(pipe(pipefd), "pipe");
	w.wakeup_eventfd = pipefd[0];
	CHECK_ERR(feature(d, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP, &w, sizeof(w)),
		  EINVAL, "LOW_POWER_ENTRY_WITH_WAKEUP with a pipe instead of an eventfd");
	close(pipefd[0]);
	close(pipefd[1]);
	w.wakeup_eventfd = eventfd_new();
	CHECK_SUCCEEDS(feature(d, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP, &w, sizeof(w)),
		       "LOW_POWER_ENTRY_WITH_WAKEUP with an eventfd");
	EXPECT_SIGBUS_LOAD(4, &ram[1], "a load from BAR1 in low power with wake-up");
	CHECK_SUCCEEDS(feature(d, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_LOW_POWER_EXIT, NULL, 0), "LOW_POWER_EXIT");
	CHECK_EQ(LOAD(4, &ram[1], "BAR1 after low power"), 0x0badf00d, "the mapping works again");
	close(w.wakeup_eventfd);
	unmap((void *)ram, 2 * PAGE);
}

static void features(int d)
{
	struct vfio_device_feature hdr = { .argsz = 4, .flags = VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_GET |
								  VFIO_DEVICE_FEATURE_DMA_BUF };
	CHECK_ERR(ioctl(d, VFIO_DEVICE_FEATURE, &hdr), EINVAL, "VFIO_DEVICE_FEATURE with argsz 4");
	CHECK_ERR(feature(d, VFIO_DEVICE_FEATURE_DMA_BUF | VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET, NULL, 0),
		  EINVAL, "GET and SET together without PROBE");
	CHECK_ERR(feature(d, VFIO_DEVICE_FEATURE_DMA_BUF | VFIO_DEVICE_FEATURE_PROBE | (1U << 19), NULL, 0), EINVAL,
		  "an unknown flag bit");
	CHECK_ERR(feature(d, VFIO_DEVICE_FEATURE_DMA_BUF, NULL, 0), EINVAL, "a feature with neither GET, SET nor PROBE");
	CHECK_ERR(feature_probe(d, 1000, VFIO_DEVICE_FEATURE_GET), ENOTTY, "PROBE of an unknown feature");

	static const struct {
		uint32_t nr;
		const char *name;
		uint32_t ok, refused;
	} table[] = {
		{ VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY, "LOW_POWER_ENTRY", VFIO_DEVICE_FEATURE_SET, VFIO_DEVICE_FEATURE_GET },
		{ VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP, "LOW_POWER_ENTRY_WITH_WAKEUP", VFIO_DEVICE_FEATURE_SET,
		  VFIO_DEVICE_FEATURE_GET },
		{ VFIO_DEVICE_FEATURE_LOW_POWER_EXIT, "LOW_POWER_EXIT", VFIO_DEVICE_FEATURE_SET, VFIO_DEVICE_FEATURE_GET },
		{ VFIO_DEVICE_FEATURE_DMA_BUF, "DMA_BUF", VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_SET },
		{ VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE, "DMA_BUF_REVOKE", VFIO_DEVICE_FEATURE_SET, VFIO_DEVICE_FEATURE_GET },
		{ VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR, "DMA_BUF_MEMATTR", VFIO_DEVICE_FEATURE_SET, VFIO_DEVICE_FEATURE_GET },
	};
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		CHECK_EQ(feature_probe(d, table[i].nr, table[i].ok), 0, "PROBE of feature %u (%s) with %s", table[i].nr,
			 table[i].name, table[i].ok == VFIO_DEVICE_FEATURE_GET ? "GET" : "SET");
		CHECK_ERR(feature_probe(d, table[i].nr, table[i].refused), EINVAL, "PROBE of feature %u (%s) with %s",
			  table[i].nr, table[i].name, table[i].refused == VFIO_DEVICE_FEATURE_GET ? "GET" : "SET");
	}
}

void section_device(const struct uapi_args *a)
{
	struct legacy lg;
	int d = legacy_open(a->ram, &lg);
	struct profile p;
	profile_detect(d, &p);
	CHECK(p.kind == KIND_EDU_PLUS, "%s is edu-plus (a register BAR0 and a RAM BAR1)", a->ram);

	struct vfio_device_info small = { .argsz = 8 };
	CHECK_ERR(ioctl(d, VFIO_DEVICE_GET_INFO, &small), EINVAL, "GET_INFO with argsz 8");
	struct vfio_device_info info = { .argsz = sizeof(info) };
	CHECK_SUCCEEDS(ioctl(d, VFIO_DEVICE_GET_INFO, &info), "VFIO_DEVICE_GET_INFO");
	CHECK((info.flags & VFIO_DEVICE_FLAGS_PCI) && (info.flags & VFIO_DEVICE_FLAGS_RESET),
	      "a PCI device that can be reset (flags 0x%x)", info.flags);
	CHECK(info.num_regions >= VFIO_PCI_NUM_REGIONS, "%u regions, at least the 9 of vfio-pci", info.num_regions);
	CHECK_EQ(info.num_irqs, VFIO_PCI_NUM_IRQS, "5 interrupt indexes (INTx, MSI, MSI-X, ERR, REQ)");

	regions(d, info.num_regions);
	config_space(d, a);
	bar_rw(d, &p);
	features(d);
	revoking_events(d, &p);

	CHECK_ERR(ioctl(d, UNKNOWN_IOCTL, unknown_ioctl_arg), ENOTTY, "an unknown device ioctl");
	struct termios t;
	CHECK_ERR(ioctl(d, TCGETS, &t), ENOTTY, "a terminal ioctl on the device fd (isatty's)");
	close(d);
	legacy_close(&lg);
}
