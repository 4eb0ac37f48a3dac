/*
 * Section 8 of `vfio-dmabuf bench`: what a VFIO call costs a program that
 * runs under `vfio-dmabuf exec`, against the kernel's own path in the same
 * process and run.
 *
 * Usage: exec_probe GROUP BDF BAR RUNS CALLS
 *
 * Opens the device through the legacy container/group flow, then times, in
 * RUNS runs of CALLS calls each:
 *   - VFIO_DEVICE_GET_INFO on the device fd (interposed: a server round
 *     trip), against FIONREAD on a pipe issued with syscall(2), which no
 *     preload library can see (the plain kernel ioctl);
 *   - mmap + munmap of the first page of BAR on the device fd (interposed).
 * Prints one JSON object: the per-call nanoseconds of every run.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/vfio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what)
{
	fprintf(stderr, "exec_probe: %s: %s\n", what, strerror(errno));
	exit(1);
}

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void print_runs(const char *name, const double *ns, int runs, int last)
{
	printf("\"%s\": [", name);
	for (int i = 0; i < runs; i++)
		printf("%s%.1f", i ? ", " : "", ns[i]);
	printf("]%s", last ? "" : ", ");
}

int main(int argc, char **argv)
{
	if (argc != 6) {
		fprintf(stderr, "usage: %s GROUP BDF BAR RUNS CALLS\n", argv[0]);
		return 2;
	}
	int runs = atoi(argv[4]), calls = atoi(argv[5]);
	unsigned bar = (unsigned)atoi(argv[3]);
	if (runs < 1 || runs > 1000 || calls < 1)
		return 2;

	char path[64];
	snprintf(path, sizeof(path), "/dev/vfio/%s", argv[1]);
	int container = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
	if (container < 0)
		die("open /dev/vfio/vfio");
	int group = open(path, O_RDWR | O_CLOEXEC);
	if (group < 0)
		die(path);
	if (ioctl(group, VFIO_GROUP_SET_CONTAINER, &container))
		die("VFIO_GROUP_SET_CONTAINER");
	if (ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU))
		die("VFIO_SET_IOMMU");
	int device = ioctl(group, VFIO_GROUP_GET_DEVICE_FD, argv[2]);
	if (device < 0)
		die("VFIO_GROUP_GET_DEVICE_FD");
	struct vfio_region_info region = { .argsz = sizeof(region), .index = bar };
	if (ioctl(device, VFIO_DEVICE_GET_REGION_INFO, &region))
		die("VFIO_DEVICE_GET_REGION_INFO");
	int pipefd[2];
	if (pipe(pipefd))
		die("pipe");

	double *ioctl_ns = calloc((size_t)runs, sizeof(double));
	double *plain_ns = calloc((size_t)runs, sizeof(double));
	double *mmap_ns = calloc((size_t)runs, sizeof(double));
	if (!ioctl_ns || !plain_ns || !mmap_ns)
		die("calloc");
	for (int r = 0; r < runs; r++) {
		struct vfio_device_info info = { .argsz = sizeof(info) };
		double t = now_ns();
		for (int i = 0; i < calls; i++)
			if (ioctl(device, VFIO_DEVICE_GET_INFO, &info))
				die("VFIO_DEVICE_GET_INFO");
		ioctl_ns[r] = (now_ns() - t) / calls;

		int queued;
		t = now_ns();
		for (int i = 0; i < calls; i++)
			if (syscall(SYS_ioctl, pipefd[0], FIONREAD, &queued))
				die("FIONREAD");
		plain_ns[r] = (now_ns() - t) / calls;

		t = now_ns();
		for (int i = 0; i < calls; i++) {
			void *va = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, device, (off_t)region.offset);
			if (va == MAP_FAILED)
				die("mmap of the device fd");
			if (munmap(va, 4096))
				die("munmap");
		}
		mmap_ns[r] = (now_ns() - t) / calls;
	}
	printf("{");
	print_runs("ioctl_ns", ioctl_ns, runs, 0);
	print_runs("plain_ioctl_ns", plain_ns, runs, 0);
	print_runs("mmap_munmap_ns", mmap_ns, runs, 1);
	printf("}\n");
	return 0;
}
