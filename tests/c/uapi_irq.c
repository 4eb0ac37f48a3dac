/*
 * vfio_uapi sections "irq" and "dma" on QEMU's edu: interrupt information
 * and SET_IRQS with eventfds the device signals (edu's raise register,
 * level-triggered INTx with the kernel's automask, MSI where the device
 * declares it), and edu's DMA engine moving bytes through the container's
 * and the IOAS's mappings into this program's memory.
 */
#include "uapi.h"

#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

/* SET_IRQS with no data, or with `nfds` eventfds. */
static int set_irqs(int d, uint32_t index, uint32_t flags, uint32_t start, uint32_t count, const int32_t *fds,
		    uint32_t nfds)
{
	uint64_t buf[8];
	struct vfio_irq_set *s = (struct vfio_irq_set *)buf;
	memset(buf, 0, sizeof(buf));
	s->argsz = (uint32_t)(sizeof(*s) + nfds * sizeof(int32_t));
	s->flags = flags;
	s->index = index;
	s->start = start;
	s->count = count;
	if (nfds)
		memcpy(s->data, fds, nfds * sizeof(int32_t));
	return ioctl(d, VFIO_DEVICE_SET_IRQS, s);
}

static int set_eventfd(int d, uint32_t index, uint32_t action, int32_t fd)
{
	return set_irqs(d, index, VFIO_IRQ_SET_DATA_EVENTFD | action, 0, 1, &fd, 1);
}

static int set_none(int d, uint32_t index, uint32_t action, uint32_t count)
{
	return set_irqs(d, index, VFIO_IRQ_SET_DATA_NONE | action, 0, count, NULL, 0);
}

static struct vfio_irq_info irq_info(int d, uint32_t index)
{
	struct vfio_irq_info info = { .argsz = sizeof(info), .index = index };
	MUST(ioctl(d, VFIO_DEVICE_GET_IRQ_INFO, &info), "GET_IRQ_INFO(%u)", index);
	return info;
}

static void edu_write(volatile uint8_t *regs, uint32_t off, uint32_t v)
{
	STORE(4, regs + off, v, "edu register");
}

static uint32_t edu_read(volatile uint8_t *regs, uint32_t off)
{
	return (uint32_t)LOAD(4, regs + off, "edu register");
}

/* What GET_IRQ_INFO must say, derived from the capabilities the device's
 * config space declares (vfio_pci_get_irq_count()). */
static void irq_infos(int d, uint32_t *msi_count)
{
	struct vfio_irq_info small = { .argsz = 8 };
	CHECK_ERR(ioctl(d, VFIO_DEVICE_GET_IRQ_INFO, &small), EINVAL, "GET_IRQ_INFO with argsz 8");
	struct vfio_irq_info past = { .argsz = sizeof(past), .index = VFIO_PCI_NUM_IRQS };
	CHECK_ERR(ioctl(d, VFIO_DEVICE_GET_IRQ_INFO, &past), EINVAL, "GET_IRQ_INFO of index 5");

	uint32_t pin = cfg_read(d, CFG_INTERRUPT_PIN, 1);
	CHECK_EQ(pin, 1, "edu's interrupt pin is INTA");
	struct vfio_irq_info intx = irq_info(d, VFIO_PCI_INTX_IRQ_INDEX);
	CHECK(intx.count == 1 && intx.flags == (VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED),
	      "INTx: one interrupt, eventfd, maskable, automasked (count %u, flags 0x%x)", intx.count, intx.flags);

	uint32_t msi = find_cap(d, CAP_ID_MSI);
	uint32_t want = msi ? 1U << ((cfg_read(d, msi + 2, 2) >> 1) & 7) : 0;
	struct vfio_irq_info mi = irq_info(d, VFIO_PCI_MSI_IRQ_INDEX);
	CHECK(mi.count == want && mi.flags == (VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE),
	      "MSI: %u vectors as the capability declares, eventfd, no resize (count %u, flags 0x%x)", want, mi.count,
	      mi.flags);
	*msi_count = mi.count;

	uint32_t msix = find_cap(d, CAP_ID_MSIX);
	want = msix ? (cfg_read(d, msix + 2, 2) & 0x7ff) + 1 : 0;
	struct vfio_irq_info xi = irq_info(d, VFIO_PCI_MSIX_IRQ_INDEX);
	CHECK(xi.count == want && (xi.flags & VFIO_IRQ_INFO_EVENTFD), "MSI-X: %u vectors as the config space declares",
	      want);

	if (find_cap(d, CAP_ID_EXP)) {
		CHECK_EQ(irq_info(d, VFIO_PCI_ERR_IRQ_INDEX).count, 1, "ERR: one interrupt (a PCI Express device)");
	} else {
		struct vfio_irq_info err = { .argsz = sizeof(err), .index = VFIO_PCI_ERR_IRQ_INDEX };
		CHECK_ERR(ioctl(d, VFIO_DEVICE_GET_IRQ_INFO, &err), EINVAL, "ERR of a conventional PCI device");
	}
	CHECK_EQ(irq_info(d, VFIO_PCI_REQ_IRQ_INDEX).count, 1, "REQ: one interrupt");
}

static void set_irqs_errors(int d, int efd)
{
	uint64_t buf[8] = { 0 };
	struct vfio_irq_set *s = (struct vfio_irq_set *)buf;
	s->argsz = 16;
	s->flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER;
	CHECK_ERR(ioctl(d, VFIO_DEVICE_SET_IRQS, s), EINVAL, "SET_IRQS with argsz 16");
	CHECK_ERR(set_none(d, VFIO_PCI_NUM_IRQS, VFIO_IRQ_SET_ACTION_TRIGGER, 1), EINVAL, "SET_IRQS of index 5");
	int32_t two[2] = { efd, efd };
	CHECK_ERR(set_irqs(d, VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, 0, 2, two,
			   2),
		  EINVAL, "SET_IRQS of two INTx interrupts");
	CHECK_ERR(set_irqs(d, VFIO_PCI_INTX_IRQ_INDEX,
			   VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, 0, 1, two, 1),
		  EINVAL, "SET_IRQS with two data types");
	CHECK_ERR(set_irqs(d, VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_DATA_NONE | (1U << 6), 0, 1, NULL, 0), EINVAL,
		  "SET_IRQS with an unknown flag");
	CHECK_ERR(set_irqs(d, VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, 0, 1, NULL,
			   0),
		  EINVAL, "SET_IRQS with an eventfd but no room for it");
	CHECK_ERR(set_none(d, VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_MASK | VFIO_IRQ_SET_ACTION_UNMASK, 1), ENOTTY,
		  "SET_IRQS with two actions");
	CHECK_ERR(set_none(d, VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_TRIGGER, 1), EINVAL,
		  "a loopback trigger of INTx before INTx is enabled");
}

/* INTx as the kernel delivers it: level-triggered, masked by the kernel at
 * each interrupt until the program unmasks it. */
static void intx(int d, volatile uint8_t *regs, int efd)
{
	CHECK_SUCCEEDS(set_eventfd(d, VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_TRIGGER, efd), "INTx enabled with an eventfd");
	CHECK_SUCCEEDS(set_none(d, VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_TRIGGER, 1), "a loopback trigger of INTx");
	CHECK_EQ(EVENTFD_WAIT(efd, "INTx loopback"), 1, "the loopback trigger signals the eventfd once");

	edu_write(regs, EDU_IRQ_RAISE, 0x1234);
	CHECK(EVENTFD_WAIT(efd, "edu raise") >= 1, "edu's raise register signals the INTx eventfd");
	CHECK_EQ(edu_read(regs, EDU_IRQ_STATUS), 0x1234, "edu's interrupt status holds the raised bits");
	edu_write(regs, EDU_IRQ_RAISE, 0x1);
	CHECK(!fd_readable_now(efd), "another raise while INTx is automasked signals nothing");
	edu_write(regs, EDU_IRQ_ACK, 0x1235);
	CHECK_EQ(edu_read(regs, EDU_IRQ_STATUS), 0, "the acknowledge clears the interrupt status");
	CHECK_SUCCEEDS(set_none(d, VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_UNMASK, 1), "INTx unmasked");
	CHECK(!fd_readable_now(efd), "unmasking with nothing pending signals nothing");
	edu_write(regs, EDU_IRQ_RAISE, 0x2);
	CHECK(EVENTFD_WAIT(efd, "raise after unmask") >= 1, "after the unmask the next raise signals again");
	edu_write(regs, EDU_IRQ_ACK, 0x2);
	MUST(set_none(d, VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_UNMASK, 1), "unmask");

	/* Masked by the program: a raise is held, and delivered at the unmask. */
	CHECK_SUCCEEDS(set_none(d, VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_MASK, 1), "INTx masked");
	edu_write(regs, EDU_IRQ_RAISE, 0x4);
	CHECK(!fd_readable_now(efd), "a raise while masked signals nothing");
	MUST(set_none(d, VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_UNMASK, 1), "unmask");
	CHECK(EVENTFD_WAIT(efd, "unmask with the line asserted") >= 1,
	      "unmasking while the device still asserts INTx signals the eventfd");
	edu_write(regs, EDU_IRQ_ACK, 0x4);
	MUST(set_none(d, VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_UNMASK, 1), "unmask");
	CHECK(!fd_readable_now(efd), "after the acknowledge and unmask nothing is pending");

	/* The unmask eventfd (what KVM's resampler uses): writing it unmasks. */
	int ufd = eventfd_new();
	CHECK_SUCCEEDS(set_eventfd(d, VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_UNMASK, ufd), "an INTx unmask eventfd");
	edu_write(regs, EDU_IRQ_RAISE, 0x8);
	CHECK(EVENTFD_WAIT(efd, "raise with an unmask eventfd") >= 1, "a raise signals the trigger eventfd");
	edu_write(regs, EDU_IRQ_ACK, 0x8);
	uint64_t one = 1;
	MUST(write(ufd, &one, sizeof(one)), "write to the unmask eventfd");
	edu_write(regs, EDU_IRQ_RAISE, 0x10);
	CHECK(EVENTFD_WAIT(efd, "raise after the unmask eventfd") >= 1, "a write to the unmask eventfd unmasks INTx");
	edu_write(regs, EDU_IRQ_ACK, 0x10);
	MUST(write(ufd, &one, sizeof(one)), "write to the unmask eventfd");
	CHECK_SUCCEEDS(set_eventfd(d, VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_UNMASK, -1), "unmask eventfd removed");
	close(ufd);
}

static void msi(int d, volatile uint8_t *regs, int efd, uint32_t msi_count)
{
	int mfd = eventfd_new();
	if (!msi_count) {
		CHECK_ERR(set_eventfd(d, VFIO_PCI_MSI_IRQ_INDEX, VFIO_IRQ_SET_ACTION_TRIGGER, mfd), EINVAL,
			  "MSI of a device without an MSI capability");
		close(mfd);
		return;
	}
	CHECK_ERR(set_eventfd(d, VFIO_PCI_MSI_IRQ_INDEX, VFIO_IRQ_SET_ACTION_TRIGGER, mfd), EINVAL,
		  "MSI while INTx is enabled");
	CHECK_SUCCEEDS(set_none(d, VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_TRIGGER, 0), "INTx disabled");
	CHECK_SUCCEEDS(set_eventfd(d, VFIO_PCI_MSI_IRQ_INDEX, VFIO_IRQ_SET_ACTION_TRIGGER, mfd), "MSI vector 0 enabled");
	CHECK_ERR(set_eventfd(d, VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_TRIGGER, efd), EINVAL, "INTx while MSI is enabled");
	edu_write(regs, EDU_IRQ_RAISE, 0x40);
	CHECK(EVENTFD_WAIT(mfd, "MSI raise") >= 1, "edu's raise sends an MSI");
	edu_write(regs, EDU_IRQ_RAISE, 0x80);
	CHECK(EVENTFD_WAIT(mfd, "second MSI raise") >= 1, "every raise sends another MSI (no automask)");
	CHECK(!fd_readable_now(efd), "nothing reaches the INTx eventfd meanwhile");
	edu_write(regs, EDU_IRQ_ACK, 0xc0);
	CHECK_SUCCEEDS(set_none(d, VFIO_PCI_MSI_IRQ_INDEX, VFIO_IRQ_SET_ACTION_TRIGGER, 1), "a loopback trigger of MSI");
	CHECK(EVENTFD_WAIT(mfd, "MSI loopback") >= 1, "the loopback signals the MSI eventfd");
	CHECK_ERR(set_none(d, VFIO_PCI_MSI_IRQ_INDEX, VFIO_IRQ_SET_ACTION_MASK, 1), ENOTTY, "masking an MSI vector");
	CHECK_SUCCEEDS(set_none(d, VFIO_PCI_MSI_IRQ_INDEX, VFIO_IRQ_SET_ACTION_TRIGGER, 0), "MSI disabled");
	MUST(set_eventfd(d, VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_TRIGGER, efd), "INTx back");
	close(mfd);
}

void section_irq(const struct uapi_args *a)
{
	struct legacy lg;
	int d = legacy_open(a->edu, &lg);
	struct profile p;
	profile_detect(d, &p);
	CHECK(p.kind == KIND_EDU, "%s is QEMU's edu", a->edu);
	volatile uint8_t *regs = map_region(d, 0, 0, PAGE);
	CHECK_EQ(edu_read(regs, EDU_ID), EDU_ID_MAGIC, "edu's magic through the BAR0 mapping");
	/* Memory decode for the registers, bus mastering for MSI (a message is a
	 * memory write by the device), INTx not disabled: a driver's set-up. */
	uint16_t cmd = (uint16_t)cfg_read(d, CFG_COMMAND, 2);
	cfg_write(d, CFG_COMMAND, 2, (cmd | CMD_MEMORY | CMD_MASTER) & ~CMD_INTX_DISABLE);

	uint32_t msi_count;
	irq_infos(d, &msi_count);
	int efd = eventfd_new();
	set_irqs_errors(d, efd);
	intx(d, regs, efd);
	msi(d, regs, efd, msi_count);

	int xfd = eventfd_new();
	if (!irq_info(d, VFIO_PCI_MSIX_IRQ_INDEX).count)
		CHECK_ERR(set_eventfd(d, VFIO_PCI_MSIX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_TRIGGER, xfd), EINVAL,
			  "MSI-X of a device without an MSI-X capability");
	CHECK_SUCCEEDS(set_eventfd(d, VFIO_PCI_REQ_IRQ_INDEX, VFIO_IRQ_SET_ACTION_TRIGGER, xfd), "a REQ eventfd");
	CHECK_SUCCEEDS(set_none(d, VFIO_PCI_REQ_IRQ_INDEX, VFIO_IRQ_SET_ACTION_TRIGGER, 1), "a loopback trigger of REQ");
	CHECK_EQ(EVENTFD_WAIT(xfd, "REQ loopback"), 1, "the REQ eventfd is signalled once");
	CHECK_SUCCEEDS(set_eventfd(d, VFIO_PCI_REQ_IRQ_INDEX, VFIO_IRQ_SET_ACTION_TRIGGER, -1), "the REQ eventfd removed");

	CHECK_SUCCEEDS(set_none(d, VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_TRIGGER, 0), "INTx disabled");
	edu_write(regs, EDU_IRQ_RAISE, 0x20);
	CHECK(!fd_readable_now(efd), "with INTx disabled a raise signals nothing");
	edu_write(regs, EDU_IRQ_ACK, 0x20);
	close(xfd);
	close(efd);
	unmap((void *)regs, PAGE);
	close(d);
	legacy_close(&lg);
}

/* ---- edu's DMA engine ------------------------------------------------------ */

static void edu_dma_wait(volatile uint8_t *regs, const char *what)
{
	struct deadline dl;
	deadline_start(&dl, WATCHDOG_SECONDS);
	while (LOAD(8, regs + EDU_DMA_CMD, "DMA command") & EDU_DMA_RUN) {
		if (deadline_passed(&dl))
			FAIL("%s: the DMA command's run bit stayed set for the %d s watchdog", what, WATCHDOG_SECONDS);
		sched_yield();
	}
}

static void edu_dma_irq(int d, volatile uint8_t *regs, int efd, const char *what)
{
	CHECK(EVENTFD_WAIT(efd, what) >= 1, "%s: the completion interrupt arrived", what);
	CHECK(edu_read(regs, EDU_IRQ_STATUS) & EDU_IRQ_DMA, "%s: edu's interrupt status has 0x100", what);
	edu_write(regs, EDU_IRQ_ACK, EDU_IRQ_DMA);
	MUST(set_none(d, VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_UNMASK, 1), "unmask");
}

static void edu_dma_start(volatile uint8_t *regs, uint64_t src, uint64_t dst, uint64_t cnt, uint64_t cmd)
{
	STORE(8, regs + EDU_DMA_SRC, src, "DMA source");
	STORE(8, regs + EDU_DMA_DST, dst, "DMA destination");
	STORE(8, regs + EDU_DMA_CNT, cnt, "DMA count");
	STORE(8, regs + EDU_DMA_CMD, cmd, "DMA command");
}

/* Program memory -> edu's buffer -> program memory, through `iova`, which
 * maps `host` (two pages). */
static void edu_dma_roundtrip(int d, volatile uint8_t *regs, int efd, uint8_t *host, uint64_t iova, const char *via)
{
	char what[96];
	for (unsigned i = 0; i < PAGE; i++)
		host[i] = (uint8_t)(i * 13 + via[0]);
	memset(host + PAGE, 0, PAGE);

	edu_dma_start(regs, iova, EDU_DMA_BUFFER, 1024, EDU_DMA_RUN | EDU_DMA_IRQ);
	snprintf(what, sizeof(what), "DMA of 1 KiB from program memory into edu (%s)", via);
	edu_dma_wait(regs, what);
	pass("%s completed", what);
	edu_dma_irq(d, regs, efd, what);

	edu_dma_start(regs, EDU_DMA_BUFFER, iova + PAGE, 1024, EDU_DMA_RUN | EDU_DMA_TO_RAM | EDU_DMA_IRQ);
	snprintf(what, sizeof(what), "DMA of 1 KiB from edu into program memory (%s)", via);
	edu_dma_wait(regs, what);
	CHECK(memcmp(host + PAGE, host, 1024) == 0, "%s: the bytes arrived", what);
	bool rest_zero = true;
	for (unsigned i = 1024; i < PAGE; i++)
		rest_zero &= host[PAGE + i] == 0;
	CHECK(rest_zero, "%s: nothing past the 1 KiB changed", what);
	edu_dma_irq(d, regs, efd, what);
}

void section_dma(const struct uapi_args *a)
{
	uint8_t *host = MUST_MAP(mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), "buffer");

	/* Through a Type1 container. */
	struct legacy lg;
	int d = legacy_open(a->edu, &lg);
	volatile uint8_t *regs = map_region(d, 0, 0, PAGE);
	uint16_t cmd = (uint16_t)cfg_read(d, CFG_COMMAND, 2);
	cfg_write(d, CFG_COMMAND, 2, (cmd | CMD_MEMORY | CMD_MASTER) & ~CMD_INTX_DISABLE);
	int efd = eventfd_new();
	MUST(set_eventfd(d, VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_TRIGGER, efd), "INTx eventfd");
	struct vfio_iommu_type1_dma_map m = {
		.argsz = sizeof(m),
		.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
		.vaddr = (uint64_t)(uintptr_t)host,
		.iova = 0x100000,
		.size = 2 * PAGE,
	};
	CHECK_SUCCEEDS(ioctl(lg.container, VFIO_IOMMU_MAP_DMA, &m), "MAP_DMA of the program's buffer at IOVA 0x100000");
	edu_dma_roundtrip(d, regs, efd, host, 0x100000, "Type1 container");

	struct vfio_iommu_type1_dma_unmap u = { .argsz = sizeof(u), .iova = 0x100000, .size = 2 * PAGE };
	CHECK_SUCCEEDS(ioctl(lg.container, VFIO_IOMMU_UNMAP_DMA, &u), "UNMAP_DMA of the buffer");
	memset(host + PAGE, 0xaa, PAGE);
	edu_dma_start(regs, EDU_DMA_BUFFER, 0x100000 + PAGE, 1024, EDU_DMA_RUN | EDU_DMA_TO_RAM | EDU_DMA_IRQ);
	edu_dma_wait(regs, "DMA to an unmapped IOVA");
	edu_dma_irq(d, regs, efd, "DMA to an unmapped IOVA");
	bool untouched = true;
	for (unsigned i = 0; i < PAGE; i++)
		untouched &= host[PAGE + i] == 0xaa;
	CHECK(untouched, "a DMA to an IOVA no longer mapped lands nowhere in program memory");
	MUST(set_none(d, VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_TRIGGER, 0), "INTx off");
	unmap((void *)regs, PAGE);
	close(efd);
	close(d);
	legacy_close(&lg);

	/* Through an IOAS of iommufd, with the device opened as a cdev. */
	int iommufd;
	uint32_t ioas, devid;
	d = cdev_open_attached(a->edu, &iommufd, &ioas, &devid);
	regs = map_region(d, 0, 0, PAGE);
	cmd = (uint16_t)cfg_read(d, CFG_COMMAND, 2);
	cfg_write(d, CFG_COMMAND, 2, (cmd | CMD_MEMORY | CMD_MASTER) & ~CMD_INTX_DISABLE);
	efd = eventfd_new();
	MUST(set_eventfd(d, VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_TRIGGER, efd), "INTx eventfd");
	struct iommu_ioas_map im = {
		.size = sizeof(im),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
		.ioas_id = ioas,
		.user_va = (uint64_t)(uintptr_t)host,
		.length = 2 * PAGE,
		.iova = 0x200000,
	};
	CHECK_SUCCEEDS(ioctl(iommufd, IOMMU_IOAS_MAP, &im), "IOMMU_IOAS_MAP of the program's buffer at IOVA 0x200000");
	edu_dma_roundtrip(d, regs, efd, host, 0x200000, "iommufd IOAS");
	MUST(set_none(d, VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_TRIGGER, 0), "INTx off");
	unmap((void *)regs, PAGE);
	close(efd);
	close(d);
	close(iommufd);
	unmap(host, 2 * PAGE);
}
