/*
 * UAPI the distribution's kernel headers may lack.
 *
 * The programs include <linux/vfio.h> from the distribution (Debian 12 ships
 * the 6.1 headers) and this file for what came later:
 *   - the device cdev calls (VFIO_DEVICE_BIND_IOMMUFD and the IOMMUFD_PT
 *     attach/detach, Linux 6.6; the bind token, 6.17),
 *   - the iommufd calls the programs use (<linux/iommufd.h>, Linux 6.2),
 *   - the DMA-buffer export feature (VFIO_DEVICE_FEATURE_DMA_BUF, 6.19),
 *   - the two features of the series "vfio/pci: Add mmap() for DMABUFs"
 *     (v4), not upstream: DMA_BUF_REVOKE (13) and DMA_BUF_MEMATTR (14).
 *
 * Every definition is guarded by the macro its kernel header defines with
 * it, so newer headers win and nothing is defined twice. Layouts and
 * numbers are those of the kernel's UAPI (the project's Rust side keeps the
 * same ones in crates/vfio/src/uapi.rs and crates/wire).
 */
#ifndef VFIO_DMABUF_COMPAT_H
#define VFIO_DMABUF_COMPAT_H

#include <linux/ioctl.h>
#include <linux/types.h>
#include <linux/vfio.h>

#if defined(__has_include)
#if __has_include(<linux/iommufd.h>)
#include <linux/iommufd.h>
#endif
#endif

/* ---- VFIO device cdev (/dev/vfio/devices/vfioN) ---------------------- */

#ifndef VFIO_DEVICE_BIND_IOMMUFD
/* 24 bytes since 6.17 (token_uuid_ptr); the kernel accepts argsz 16 too. */
struct vfio_device_bind_iommufd {
	__u32 argsz;
	__u32 flags;
	__s32 iommufd;
	__u32 out_devid;
	__aligned_u64 token_uuid_ptr;
};
#define VFIO_DEVICE_BIND_IOMMUFD _IO(VFIO_TYPE, VFIO_BASE + 18)
#endif
#ifndef VFIO_DEVICE_BIND_FLAG_TOKEN
#define VFIO_DEVICE_BIND_FLAG_TOKEN (1 << 0)
#endif

#ifndef VFIO_DEVICE_ATTACH_IOMMUFD_PT
/* 12 bytes before the PASID field (6.13); both sizes are accepted. */
struct vfio_device_attach_iommufd_pt {
	__u32 argsz;
	__u32 flags;
	__u32 pt_id;
	__u32 pasid;
};
#define VFIO_DEVICE_ATTACH_IOMMUFD_PT _IO(VFIO_TYPE, VFIO_BASE + 19)
#endif

#ifndef VFIO_DEVICE_DETACH_IOMMUFD_PT
struct vfio_device_detach_iommufd_pt {
	__u32 argsz;
	__u32 flags;
	__u32 pasid;
};
#define VFIO_DEVICE_DETACH_IOMMUFD_PT _IO(VFIO_TYPE, VFIO_BASE + 20)
#endif

/* Hot reset of a cdev-opened device reports iommufd device ids (6.6). */
#ifndef VFIO_PCI_HOT_RESET_FLAG_DEV_ID
#define VFIO_PCI_HOT_RESET_FLAG_DEV_ID (1 << 0)
#endif
#ifndef VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED
#define VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED (1 << 1)
#endif

/* ---- iommufd (/dev/iommu) ------------------------------------------- */

#ifndef IOMMUFD_TYPE
#define IOMMUFD_TYPE (';')
#endif

#ifndef IOMMU_DESTROY
struct iommu_destroy {
	__u32 size;
	__u32 id;
};
#define IOMMU_DESTROY _IO(IOMMUFD_TYPE, 0x80)
#endif

#ifndef IOMMU_IOAS_ALLOC
struct iommu_ioas_alloc {
	__u32 size;
	__u32 flags;
	__u32 out_ioas_id;
};
#define IOMMU_IOAS_ALLOC _IO(IOMMUFD_TYPE, 0x81)
#endif

#ifndef IOMMU_IOAS_IOVA_RANGES
struct iommu_iova_range {
	__aligned_u64 start;
	__aligned_u64 last;
};
struct iommu_ioas_iova_ranges {
	__u32 size;
	__u32 ioas_id;
	__u32 num_iovas;
	__u32 __reserved;
	__aligned_u64 allowed_iovas;
	__aligned_u64 out_iova_alignment;
};
#define IOMMU_IOAS_IOVA_RANGES _IO(IOMMUFD_TYPE, 0x84)
#endif

#ifndef IOMMU_IOAS_MAP
/* The flags are an enum upstream; they come with the map call. */
#define IOMMU_IOAS_MAP_FIXED_IOVA (1 << 0)
#define IOMMU_IOAS_MAP_WRITEABLE (1 << 1)
#define IOMMU_IOAS_MAP_READABLE (1 << 2)
struct iommu_ioas_map {
	__u32 size;
	__u32 flags;
	__u32 ioas_id;
	__u32 __reserved;
	__aligned_u64 user_va;
	__aligned_u64 length;
	__aligned_u64 iova;
};
#define IOMMU_IOAS_MAP _IO(IOMMUFD_TYPE, 0x85)
#endif

#ifndef IOMMU_IOAS_UNMAP
struct iommu_ioas_unmap {
	__u32 size;
	__u32 ioas_id;
	__aligned_u64 iova;
	__aligned_u64 length;
};
#define IOMMU_IOAS_UNMAP _IO(IOMMUFD_TYPE, 0x86)
#endif

/* ---- DMA-buffer export (upstream since 6.19) ------------------------ */

#ifndef VFIO_DEVICE_FEATURE_DMA_BUF
struct vfio_region_dma_range {
	__u64 offset;
	__u64 length;
};
/* GET only; the ioctl returns the new buffer's fd. */
struct vfio_device_feature_dma_buf {
	__u32 region_index;
	__u32 open_flags;
	__u32 flags;
	__u32 nr_ranges;
	struct vfio_region_dma_range dma_ranges[];
};
#define VFIO_DEVICE_FEATURE_DMA_BUF 11
#endif

/* ---- The series' features (v4; not upstream) ------------------------ */

#ifndef VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE
/* SET only: permanently revoke the buffer behind dmabuf_fd. */
struct vfio_device_feature_dma_buf_revoke {
	__s32 dmabuf_fd;
};
#define VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE 13
#endif

#ifndef VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR
/* SET only: the CPU memory attribute of later mmaps of the buffer. */
struct vfio_device_feature_dma_buf_memattr {
	__s32 dmabuf_fd;
	__u32 memattr;
};
#define VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR 14
#define VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_NC 0
#define VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_WC 1
#endif

#endif /* VFIO_DMABUF_COMPAT_H */
