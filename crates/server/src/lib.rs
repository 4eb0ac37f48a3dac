//! The vfio-dmabuf server: the kernel's part of VFIO for the processes it
//! serves (device models, BAR storage, buffers, statuses, lifetimes, the
//! revoke protocol), over the [`wire`] protocol.

pub mod iommu;
