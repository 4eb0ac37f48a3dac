/*
 * vfio_uapi: every call of the VFIO and iommufd UAPI a driver or VMM makes,
 * with the errors the kernel gives, one section per area. Sections open
 * what they need themselves and close it again, so each runs on its own.
 */
#ifndef VFIO_TESTS_UAPI_H
#define VFIO_TESTS_UAPI_H

#include "common.h"

struct uapi_args {
	const char *edu; /* QEMU's edu: registers, interrupts, DMA engine */
	const char *ram; /* edu-plus: a RAM BAR beside edu's registers */
};

void section_sysfs(const struct uapi_args *a);
void section_legacy(const struct uapi_args *a);
void section_device(const struct uapi_args *a);
void section_irq(const struct uapi_args *a);
void section_dmabuf(const struct uapi_args *a);
void section_hotreset(const struct uapi_args *a);
void section_cdev(const struct uapi_args *a);
void section_dma(const struct uapi_args *a);

/* The cdev + iommufd path as the upstream selftests take it: /dev/iommu,
 * IOAS_ALLOC, the device's /dev/vfio/devices/vfioN, BIND_IOMMUFD and
 * ATTACH_IOMMUFD_PT to the IOAS. Returns the device fd. */
int cdev_open_attached(const char *bdf, int *iommufd, uint32_t *ioas, uint32_t *devid);
/* /dev/vfio/devices/<the vfioN of bdf> into path. */
void cdev_path(const char *bdf, char *path, size_t len);

/* An ioctl number no VFIO or iommufd file knows, and a zeroed argument
 * for it (the kernel never reads it; the argument is valid memory so that
 * only the number decides the answer). */
#define UNKNOWN_IOCTL _IO(VFIO_TYPE, VFIO_BASE + 60)
extern uint64_t unknown_ioctl_arg[8];

#endif /* VFIO_TESTS_UAPI_H */
