/* The code the project's C programs share; see common.h. */
#include "common.h"

#include <fcntl.h>
#include <libgen.h>
#include <poll.h>
#include <stdarg.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static const char *prog = "test";
static unsigned long checks;

static void install_fault_catcher(void);

/* ---- checks --------------------------------------------------------- */

const char *errno_name(int e)
{
	static const struct {
		int e;
		const char *name;
	} names[] = {
		{ EPERM, "EPERM" },	{ ENOENT, "ENOENT" },	  { EINTR, "EINTR" },	    { EIO, "EIO" },
		{ E2BIG, "E2BIG" },	{ EBADF, "EBADF" },	  { EAGAIN, "EAGAIN" },	    { ENOMEM, "ENOMEM" },
		{ EACCES, "EACCES" },	{ EFAULT, "EFAULT" },	  { EBUSY, "EBUSY" },	    { EEXIST, "EEXIST" },
		{ ENODEV, "ENODEV" },	{ ENOTDIR, "ENOTDIR" },	  { EISDIR, "EISDIR" },	    { EINVAL, "EINVAL" },
		{ ENFILE, "ENFILE" },	{ EMFILE, "EMFILE" },	  { ENOTTY, "ENOTTY" },	    { ENOSPC, "ENOSPC" },
		{ ESPIPE, "ESPIPE" },	{ EPIPE, "EPIPE" },	  { ERANGE, "ERANGE" },	    { ENOSYS, "ENOSYS" },
		{ EOVERFLOW, "EOVERFLOW" }, { EBADFD, "EBADFD" }, { EMSGSIZE, "EMSGSIZE" }, { EOPNOTSUPP, "EOPNOTSUPP" },
		{ EADDRINUSE, "EADDRINUSE" }, { ECONNREFUSED, "ECONNREFUSED" }, { ETIMEDOUT, "ETIMEDOUT" },
		{ ENXIO, "ENXIO" },	{ ECHILD, "ECHILD" },	  { EROFS, "EROFS" },
	};
	static _Thread_local char other[32];
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (names[i].e == e)
			return names[i].name;
	snprintf(other, sizeof(other), "errno %d", e);
	return other;
}

const char *signal_name(int sig)
{
	switch (sig) {
	case 0: return "no signal";
	case SIGBUS: return "SIGBUS";
	case SIGSEGV: return "SIGSEGV";
	default: return "another signal";
	}
}

static const char *code_name(int signo, int code)
{
	if (signo == SIGBUS) {
		switch (code) {
		case BUS_ADRALN: return "BUS_ADRALN";
		case BUS_ADRERR: return "BUS_ADRERR";
		case BUS_OBJERR: return "BUS_OBJERR";
		default: break;
		}
	} else if (signo == SIGSEGV) {
		switch (code) {
		case SEGV_MAPERR: return "SEGV_MAPERR";
		case SEGV_ACCERR: return "SEGV_ACCERR";
		default: break;
		}
	}
	return code == SI_USER ? "SI_USER" : "another si_code";
}

void tests_init_without_catcher(const char *name)
{
	prog = name;
	setvbuf(stdout, NULL, _IOLBF, 0);
}

void tests_init(const char *name)
{
	tests_init_without_catcher(name);
	install_fault_catcher();
}

int tests_done(void)
{
	printf("PASS %s: %lu checks\n", prog, checks);
	return 0;
}

static void vmessage(const char *prefix, const char *fmt, va_list ap)
{
	char text[1024];
	vsnprintf(text, sizeof(text), fmt, ap);
	printf("%s%s\n", prefix, text);
}

/* One passed check: "ok N - message". */
static void vpass(const char *fmt, va_list ap)
{
	char prefix[32];
	snprintf(prefix, sizeof(prefix), "ok %lu - ", ++checks);
	vmessage(prefix, fmt, ap);
}

void pass(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vpass(fmt, ap);
	va_end(ap);
}

long pass_after(long ret, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vpass(fmt, ap);
	va_end(ap);
	return ret;
}

_Noreturn void fail_at(const char *file, int line, const char *fmt, ...)
{
	char prefix[256];
	va_list ap;
	snprintf(prefix, sizeof(prefix), "FAIL %s %s:%d (after %lu checks): ", prog, file, line, checks);
	va_start(ap, fmt);
	vmessage(prefix, fmt, ap);
	va_end(ap);
	fflush(stdout);
	exit(1);
}

static _Noreturn void vfail(const char *file, int line, const char *fmt, va_list ap, const char *detail)
{
	char text[1024];
	vsnprintf(text, sizeof(text), fmt, ap);
	fail_at(file, line, "%s: %s", text, detail);
}

void check_at(int ok, const char *expr, const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (!ok) {
		char detail[512];
		snprintf(detail, sizeof(detail), "(%s) does not hold", expr);
		vfail(file, line, fmt, ap, detail);
	}
	vpass(fmt, ap);
	va_end(ap);
}

void check_eq_at(uint64_t got, uint64_t want, const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (got != want) {
		char detail[128];
		snprintf(detail, sizeof(detail), "got 0x%" PRIx64 ", want 0x%" PRIx64, got, want);
		vfail(file, line, fmt, ap, detail);
	}
	vpass(fmt, ap);
	va_end(ap);
}

/*
 * The errno checks. `failed` says whether the call failed (ret -1, or
 * MAP_FAILED), e is the errno it left, want the errno wanted (0: success).
 */
static void vcheck_errno(bool failed, long ret, int e, int want, const char *file, int line, const char *fmt,
			 va_list ap)
{
	char detail[160];
	if (failed == (want != 0) && (!failed || e == want))
		return;
	if (!failed)
		snprintf(detail, sizeof(detail), "succeeded (returned %#lx), want %s", ret, errno_name(want));
	else if (!want)
		snprintf(detail, sizeof(detail), "failed with %s (%s)", errno_name(e), strerror(e));
	else
		snprintf(detail, sizeof(detail), "failed with %s, want %s", errno_name(e), errno_name(want));
	vfail(file, line, fmt, ap, detail);
}

long check_ok_at(long ret, const char *file, int line, const char *fmt, ...)
{
	int e = errno;
	va_list ap;
	va_start(ap, fmt);
	vcheck_errno(ret < 0, ret, e, 0, file, line, fmt, ap);
	va_end(ap);
	return ret;
}

void check_err_at(long ret, int want, const char *file, int line, const char *fmt, ...)
{
	int e = errno;
	va_list ap;
	va_start(ap, fmt);
	vcheck_errno(ret == -1, ret, e, want, file, line, fmt, ap);
	vpass(fmt, ap);
	va_end(ap);
}

void *check_map_at(void *p, const char *file, int line, const char *fmt, ...)
{
	int e = errno;
	va_list ap;
	va_start(ap, fmt);
	vcheck_errno(p == MAP_FAILED, (long)(intptr_t)p, e, 0, file, line, fmt, ap);
	va_end(ap);
	return p;
}

void check_map_err_at(void *p, int want, const char *file, int line, const char *fmt, ...)
{
	int e = errno;
	va_list ap;
	va_start(ap, fmt);
	vcheck_errno(p == MAP_FAILED, (long)(intptr_t)p, e, want, file, line, fmt, ap);
	vpass(fmt, ap);
	va_end(ap);
}

/* ---- probed accesses ------------------------------------------------ */

/*
 * Each thread arms its own jump buffer around one access. The handler runs
 * on the faulting thread (a fault's signal is thread-directed), so
 * thread-local state is what it needs. An unarmed fault is a bug of the
 * program under test: it is reported, and the default action ends the
 * program with that signal.
 */
static _Thread_local sigjmp_buf *fault_jb;
static _Thread_local volatile sig_atomic_t fault_armed;
static _Thread_local struct fault fault_seen;

static void fault_catcher(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	if (fault_armed) {
		fault_armed = 0;
		fault_seen.signo = sig;
		fault_seen.code = si->si_code;
		fault_seen.addr = (uintptr_t)si->si_addr;
		siglongjmp(*fault_jb, 1);
	}
	static const char msg[] = "unexpected SIGBUS or SIGSEGV outside a probed access: dying of it\n";
	if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0) {
		/* Nothing else to do: the signal below says it all. */
	}
	struct sigaction dfl;
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	sigemptyset(&dfl.sa_mask);
	sigaction(sig, &dfl, NULL);
	/* Returning re-runs the access, which now takes the default action. */
}

static void install_fault_catcher(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = fault_catcher;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGBUS, &sa, NULL) || sigaction(SIGSEGV, &sa, NULL))
		FAIL("sigaction: %s", errno_name(errno));
}

static int try_access(volatile void *p, unsigned width, bool write, uint64_t *value, struct fault *f)
{
	sigjmp_buf jb;
	fault_jb = &jb;
	if (sigsetjmp(jb, 1) != 0) {
		*f = fault_seen;
		return f->signo;
	}
	fault_armed = 1;
	if (write) {
		switch (width) {
		case 1: *(volatile uint8_t *)p = (uint8_t)*value; break;
		case 2: *(volatile uint16_t *)p = (uint16_t)*value; break;
		case 4: *(volatile uint32_t *)p = (uint32_t)*value; break;
		default: *(volatile uint64_t *)p = *value; break;
		}
	} else {
		switch (width) {
		case 1: *value = *(volatile uint8_t *)p; break;
		case 2: *value = *(volatile uint16_t *)p; break;
		case 4: *value = *(volatile uint32_t *)p; break;
		default: *value = *(volatile uint64_t *)p; break;
		}
	}
	fault_armed = 0;
	memset(f, 0, sizeof(*f));
	return 0;
}

int try_load(const volatile void *p, unsigned width, uint64_t *value, struct fault *f)
{
	return try_access((volatile void *)(uintptr_t)p, width, false, value, f);
}

int try_store(volatile void *p, unsigned width, uint64_t value, struct fault *f)
{
	return try_access(p, width, true, &value, f);
}

uint64_t load_at(const volatile void *p, unsigned width, const char *file, int line, const char *what)
{
	uint64_t v = 0;
	struct fault f;
	if (try_load(p, width, &v, &f))
		fail_at(file, line, "%u-byte load at %p (%s) raised %s %s at 0x%" PRIxPTR, width, (const void *)p, what,
			signal_name(f.signo), code_name(f.signo, f.code), f.addr);
	return v;
}

void store_at(volatile void *p, unsigned width, uint64_t v, const char *file, int line, const char *what)
{
	struct fault f;
	if (try_store(p, width, v, &f))
		fail_at(file, line, "%u-byte store at %p (%s) raised %s %s at 0x%" PRIxPTR, width, (void *)p, what,
			signal_name(f.signo), code_name(f.signo, f.code), f.addr);
}

void expect_fault_at(volatile void *p, unsigned width, bool write, int signo, const char *file, int line,
		     const char *fmt, ...)
{
	uint64_t v = 0x5a5a5a5a5a5a5a5aULL;
	struct fault f;
	int got = write ? try_store(p, width, v, &f) : try_load(p, width, &v, &f);
	char detail[256];
	va_list ap;
	va_start(ap, fmt);
	if (got == 0) {
		snprintf(detail, sizeof(detail), "the %s at %p succeeded (read 0x%" PRIx64 "), want %s",
			 write ? "store" : "load", (void *)p, v, signal_name(signo));
		vfail(file, line, fmt, ap, detail);
	}
	if (got != signo) {
		snprintf(detail, sizeof(detail), "raised %s %s, want %s", signal_name(got), code_name(got, f.code),
			 signal_name(signo));
		vfail(file, line, fmt, ap, detail);
	}
	/* The kernel reports the faulting address itself, and a BAR page that
	 * cannot be mapped as BUS_ADRERR (VM_FAULT_SIGBUS). */
	if (signo == SIGBUS && (f.code != BUS_ADRERR || f.addr != (uintptr_t)p)) {
		snprintf(detail, sizeof(detail), "SIGBUS with %s at 0x%" PRIxPTR ", want BUS_ADRERR at %p",
			 code_name(f.signo, f.code), f.addr, (void *)p);
		vfail(file, line, fmt, ap, detail);
	}
	vpass(fmt, ap);
	va_end(ap);
}

/* ---- time and eventfds ---------------------------------------------- */

void deadline_start(struct deadline *d, unsigned seconds)
{
	clock_gettime(CLOCK_MONOTONIC, &d->end);
	d->end.tv_sec += seconds;
}

bool deadline_passed(const struct deadline *d)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec > d->end.tv_sec || (now.tv_sec == d->end.tv_sec && now.tv_nsec >= d->end.tv_nsec);
}

int eventfd_new(void)
{
	return (int)MUST(eventfd(0, EFD_CLOEXEC), "eventfd");
}

bool fd_readable_now(int fd)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	int n = poll(&pfd, 1, 0);
	if (n < 0)
		FAIL("poll: %s", errno_name(errno));
	return n == 1 && (pfd.revents & POLLIN);
}

uint64_t eventfd_wait_at(int fd, const char *file, int line, const char *what)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	int n;
	do
		n = poll(&pfd, 1, WATCHDOG_SECONDS * 1000);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		fail_at(file, line, "poll for %s: %s", what, errno_name(errno));
	if (n == 0)
		fail_at(file, line, "%s: the eventfd was not signalled within the %d s watchdog", what, WATCHDOG_SECONDS);
	uint64_t count = 0;
	if (read(fd, &count, sizeof(count)) != (ssize_t)sizeof(count))
		fail_at(file, line, "read of the eventfd for %s: %s", what, errno_name(errno));
	return count;
}

/* ---- sysfs ------------------------------------------------------------ */

const char *parse_bdf(const char *s)
{
	unsigned dom, bus, dev, fn;
	char tail;
	if (!s || strlen(s) != 12 || sscanf(s, "%4x:%2x:%2x.%1x%c", &dom, &bus, &dev, &fn, &tail) != 4 || dev > 0x1f ||
	    fn > 7)
		FAIL("%s is not a PCI address of the form DDDD:BB:DD.F", s ? s : "(none)");
	return s;
}

size_t read_text(const char *path, char *buf, size_t len)
{
	int fd = (int)MUST(open(path, O_RDONLY | O_CLOEXEC), "open %s", path);
	ssize_t n = MUST(read(fd, buf, len - 1), "read %s", path);
	close(fd);
	buf[n] = '\0';
	return (size_t)n;
}

int iommu_group_of(const char *bdf)
{
	char path[256], target[4096];
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/iommu_group", bdf);
	ssize_t n = MUST(readlink(path, target, sizeof(target) - 1), "readlink %s", path);
	target[n] = '\0';
	char *end;
	const char *base = basename(target);
	long group = strtol(base, &end, 10);
	if (*base == '\0' || *end != '\0' || group < 0)
		FAIL("%s links to %s, whose last component is not a group number", path, target);
	return (int)group;
}

/* ---- the legacy path ---------------------------------------------------- */

int container_open(void)
{
	int c = (int)MUST(open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC), "open /dev/vfio/vfio");
	int version = (int)MUST(ioctl(c, VFIO_GET_API_VERSION), "VFIO_GET_API_VERSION");
	if (version != VFIO_API_VERSION)
		FAIL("VFIO_GET_API_VERSION is %d, want %d", version, VFIO_API_VERSION);
	return c;
}

int group_open(const char *bdf, int *groupno)
{
	char path[64];
	*groupno = iommu_group_of(bdf);
	snprintf(path, sizeof(path), "/dev/vfio/%d", *groupno);
	int g = (int)MUST(open(path, O_RDWR | O_CLOEXEC), "open %s", path);
	struct vfio_group_status status = { .argsz = sizeof(status) };
	MUST(ioctl(g, VFIO_GROUP_GET_STATUS, &status), "VFIO_GROUP_GET_STATUS of group %d", *groupno);
	if (!(status.flags & VFIO_GROUP_FLAGS_VIABLE))
		FAIL("group %d is not viable (flags 0x%x)", *groupno, status.flags);
	return g;
}

int legacy_open(const char *bdf, struct legacy *lg)
{
	lg->container = container_open();
	lg->group = group_open(bdf, &lg->groupno);
	MUST(ioctl(lg->group, VFIO_GROUP_SET_CONTAINER, &lg->container), "VFIO_GROUP_SET_CONTAINER");
	MUST(ioctl(lg->container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU), "VFIO_SET_IOMMU(TYPE1v2)");
	return (int)MUST(ioctl(lg->group, VFIO_GROUP_GET_DEVICE_FD, bdf), "VFIO_GROUP_GET_DEVICE_FD(%s)", bdf);
}

void legacy_close(struct legacy *lg)
{
	if (lg->group >= 0)
		close(lg->group);
	if (lg->container >= 0)
		close(lg->container);
	lg->group = lg->container = -1;
}

/* ---- regions and config space ------------------------------------------ */

struct vfio_region_info region_info(int dev, uint32_t index)
{
	struct vfio_region_info info = { .argsz = sizeof(info), .index = index };
	MUST(ioctl(dev, VFIO_DEVICE_GET_REGION_INFO, &info), "VFIO_DEVICE_GET_REGION_INFO(%u)", index);
	return info;
}

uint64_t region_offset(int dev, uint32_t index)
{
	return region_info(dev, index).offset;
}

uint64_t region_read(int dev, uint32_t index, uint64_t off, unsigned width)
{
	uint64_t v = 0;
	ssize_t n = pread(dev, &v, width, (off_t)(region_offset(dev, index) + off));
	if (n != (ssize_t)width)
		FAIL("pread of %u bytes at 0x%" PRIx64 " of region %u: %s", width, off, index,
		     n < 0 ? errno_name(errno) : "short");
	return v;
}

void region_write(int dev, uint32_t index, uint64_t off, unsigned width, uint64_t value)
{
	ssize_t n = pwrite(dev, &value, width, (off_t)(region_offset(dev, index) + off));
	if (n != (ssize_t)width)
		FAIL("pwrite of %u bytes at 0x%" PRIx64 " of region %u: %s", width, off, index,
		     n < 0 ? errno_name(errno) : "short");
}

uint32_t cfg_read(int dev, uint32_t off, unsigned width)
{
	return (uint32_t)region_read(dev, VFIO_PCI_CONFIG_REGION_INDEX, off, width);
}

void cfg_write(int dev, uint32_t off, unsigned width, uint32_t value)
{
	region_write(dev, VFIO_PCI_CONFIG_REGION_INDEX, off, width, value);
}

void set_memory(int dev, bool on)
{
	uint16_t cmd = (uint16_t)cfg_read(dev, CFG_COMMAND, 2);
	cmd = on ? (cmd | CMD_MEMORY) : (cmd & ~CMD_MEMORY);
	cfg_write(dev, CFG_COMMAND, 2, cmd);
}

uint32_t find_cap(int dev, uint8_t id)
{
	if (!(cfg_read(dev, CFG_STATUS, 2) & STATUS_CAP_LIST))
		return 0;
	uint32_t pos = cfg_read(dev, CFG_CAP_PTR, 1) & ~3U;
	/* A list longer than the standard header has room for is broken. */
	for (int hops = 0; pos >= 0x40 && hops < 48; hops++) {
		if (cfg_read(dev, pos, 1) == id)
			return pos;
		pos = cfg_read(dev, pos + 1, 1) & ~3U;
	}
	return 0;
}

void *map_region(int dev, uint32_t index, uint64_t off, size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, dev, (off_t)(region_offset(dev, index) + off));
	return MUST_MAP(p, "mmap of 0x%zx bytes of region %u at 0x%" PRIx64, len, index, off);
}

void *map_aligned(int fd, uint64_t off, size_t len, size_t align)
{
	uint8_t *resv = MUST_MAP(mmap(NULL, len + align, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
				 "anonymous reservation of 0x%zx bytes", len + align);
	uint8_t *at = (uint8_t *)(((uintptr_t)resv + align - 1) & ~(uintptr_t)(align - 1));
	void *p = mmap(at, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, (off_t)off);
	MUST_MAP(p, "MAP_FIXED mmap of 0x%zx bytes at file offset 0x%" PRIx64 " at %p", len, off, (void *)at);
	/* Give back the parts of the reservation around the mapping. */
	if (at > resv)
		unmap(resv, (size_t)(at - resv));
	if (at + len < resv + len + align)
		unmap(at + len, (size_t)(resv + len + align - (at + len)));
	return p;
}

void unmap(void *p, size_t len)
{
	MUST(munmap(p, len), "munmap of %p, 0x%zx bytes", p, len);
}

/* ---- device features ------------------------------------------------ */

int feature(int dev, uint32_t flags, const void *payload, size_t len)
{
	uint64_t buf[64];
	struct vfio_device_feature *f = (struct vfio_device_feature *)buf;
	if (sizeof(*f) + len > sizeof(buf))
		FAIL("feature payload of %zu bytes is too large for this function", len);
	memset(buf, 0, sizeof(buf));
	f->argsz = (uint32_t)(sizeof(*f) + len);
	f->flags = flags;
	if (len)
		memcpy(f->data, payload, len);
	return ioctl(dev, VFIO_DEVICE_FEATURE, f);
}

int feature_probe(int dev, uint32_t feature_nr, uint32_t get_or_set)
{
	return feature(dev, feature_nr | VFIO_DEVICE_FEATURE_PROBE | get_or_set, NULL, 0);
}

int dmabuf_export(int dev, uint32_t index, uint32_t open_flags, uint32_t nr,
		  const struct vfio_region_dma_range *ranges)
{
	uint64_t buf[32];
	struct vfio_device_feature_dma_buf *get = (struct vfio_device_feature_dma_buf *)buf;
	if (sizeof(*get) + nr * sizeof(ranges[0]) > sizeof(buf))
		FAIL("%u ranges are too many for this function", nr);
	memset(buf, 0, sizeof(buf));
	get->region_index = index;
	get->open_flags = open_flags;
	get->flags = 0;
	get->nr_ranges = nr;
	memcpy(get->dma_ranges, ranges, nr * sizeof(ranges[0]));
	return feature(dev, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF, get,
		       sizeof(*get) + nr * sizeof(ranges[0]));
}

int dmabuf_export1(int dev, uint32_t index, uint64_t off, uint64_t len)
{
	struct vfio_region_dma_range r = { .offset = off, .length = len };
	return (int)MUST(dmabuf_export(dev, index, O_RDWR | O_CLOEXEC, 1, &r),
			 "VFIO_DEVICE_FEATURE_DMA_BUF of BAR%u [0x%" PRIx64 ", +0x%" PRIx64 ")", index, off, len);
}

int dmabuf_revoke(int dev, int buf)
{
	struct vfio_device_feature_dma_buf_revoke r = { .dmabuf_fd = buf };
	return feature(dev, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE, &r, sizeof(r));
}

int dmabuf_memattr(int dev, int buf, uint32_t attr)
{
	struct vfio_device_feature_dma_buf_memattr m = { .dmabuf_fd = buf, .memattr = attr };
	return feature(dev, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR, &m, sizeof(m));
}

/* ---- device profiles ---------------------------------------------------- */

void profile_detect(int dev, struct profile *p)
{
	uint16_t vendor = (uint16_t)cfg_read(dev, CFG_VENDOR_ID, 2);
	uint16_t device = (uint16_t)cfg_read(dev, CFG_DEVICE_ID, 2);
	memset(p, 0, sizeof(*p));
	p->ram_bar = -1;
	if (vendor == 0x1234 && device == 0x11e8) {
		p->reg_bar = 0;
		p->reg_size = region_info(dev, 0).size;
		uint64_t bar1 = region_info(dev, 1).size;
		if (bar1) {
			p->kind = KIND_EDU_PLUS;
			p->name = "edu-plus";
			p->ram_bar = 1;
			p->ram_size = bar1;
		} else {
			p->kind = KIND_EDU;
			p->name = "edu";
		}
	} else if (vendor == 0x1234 && device == 0x1111) {
		p->kind = KIND_BOCHS;
		p->name = "bochs-display";
		p->reg_bar = 2;
		p->reg_size = region_info(dev, 2).size;
		p->ram_bar = 0;
		p->ram_size = region_info(dev, 0).size;
	} else {
		FAIL("device %04x:%04x is none of edu, edu-plus, bochs-display", vendor, device);
	}
}

uint32_t reg_id_offset(const struct profile *p)
{
	return p->kind == KIND_BOCHS ? BOCHS_QEXT_SIZE : EDU_ID;
}

uint32_t reg_id_value(const struct profile *p)
{
	return p->kind == KIND_BOCHS ? 8 : EDU_ID_MAGIC;
}

static int reg_rw(volatile uint8_t *base, uint32_t off, bool write, uint32_t *v, struct fault *f)
{
	uint64_t value = *v;
	int sig = write ? try_store(base + off, 4, value, f) : try_load(base + off, 4, &value, f);
	*v = (uint32_t)value;
	return sig;
}

int reg_behaviour(const struct profile *p, volatile uint8_t *writer, volatile uint8_t *reader, uint32_t seed,
		  struct fault *f, const char **why)
{
	uint32_t v;
	int sig;
	if (p->kind != KIND_BOCHS) {
		/* edu: whatever is written to the liveness register reads back inverted. */
		v = seed;
		if ((sig = reg_rw(writer, EDU_LIVENESS, true, &v, f)) || (sig = reg_rw(reader, EDU_LIVENESS, false, &v, f)))
			return sig;
		*why = "the liveness register did not read back the inverse of what was written";
		return v == ~seed ? 0 : -1;
	}
	/* bochs-display: the byte-order register takes only its two markers. */
	const uint32_t seq[3] = { BOCHS_BIG, (seed == BOCHS_LITTLE || seed == BOCHS_BIG) ? 0x12345678U : seed,
				  BOCHS_LITTLE };
	const uint32_t want[3] = { BOCHS_BIG, BOCHS_BIG, BOCHS_LITTLE };
	for (int i = 0; i < 3; i++) {
		v = seq[i];
		if ((sig = reg_rw(writer, BOCHS_BYTEORDER, true, &v, f)) ||
		    (sig = reg_rw(reader, BOCHS_BYTEORDER, false, &v, f)))
			return sig;
		if (v != want[i]) {
			*why = "the byte-order register did not keep only 0x1e1e1e1e or 0xbebebebe";
			return -1;
		}
	}
	return 0;
}

void reg_behaviour_ok_at(const struct profile *p, volatile uint8_t *writer, volatile uint8_t *reader,
			 uint32_t seed, const char *file, int line, const char *via)
{
	struct fault f;
	const char *why = "";
	int r = reg_behaviour(p, writer, reader, seed, &f, &why);
	if (r > 0)
		fail_at(file, line, "%s register check through %s: an access raised %s %s at 0x%" PRIxPTR, p->name, via,
			signal_name(f.signo), code_name(f.signo, f.code), f.addr);
	if (r < 0)
		fail_at(file, line, "%s register check through %s: %s", p->name, via, why);
	pass("%s registers behave as registers (not memory) through %s", p->name, via);
}

void reg_behaviour_region_ok(const struct profile *p, int dev, uint32_t seed)
{
	if (p->kind != KIND_BOCHS) {
		region_write(dev, p->reg_bar, EDU_LIVENESS, 4, seed);
		CHECK_EQ(region_read(dev, p->reg_bar, EDU_LIVENESS, 4), ~seed & 0xffffffffU,
			 "%s liveness register through pwrite/pread of BAR%u reads back ~0x%x", p->name, p->reg_bar, seed);
		return;
	}
	region_write(dev, p->reg_bar, BOCHS_BYTEORDER, 4, BOCHS_BIG);
	region_write(dev, p->reg_bar, BOCHS_BYTEORDER, 4, 0x12345678);
	CHECK_EQ(region_read(dev, p->reg_bar, BOCHS_BYTEORDER, 4), BOCHS_BIG,
		 "bochs-display byte order through pwrite/pread keeps 0xbebebebe and ignores 0x12345678");
	region_write(dev, p->reg_bar, BOCHS_BYTEORDER, 4, BOCHS_LITTLE);
	CHECK_EQ(region_read(dev, p->reg_bar, BOCHS_BYTEORDER, 4), BOCHS_LITTLE,
		 "bochs-display byte order through pwrite/pread takes 0x1e1e1e1e");
}
