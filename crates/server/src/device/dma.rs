//! A device's DMA: the port its model issues bus transfers through, made
//! from the IOMMU side's view of the container or IOAS the device file
//! reaches ([`crate::iommu::DmaSpace`]).
//!
//! Analogous to what the kernel gets for free from the IOMMU domain the
//! group or device is attached to: once a device file is usable with an
//! IOMMU behind it (group path with a Type1 container, group path through
//! the iommufd compatibility IOAS, a cdev attached to an IOAS or HWPT), the
//! function's bus-master transfers are translated by it; with none, they
//! reach nothing.

use std::fmt;
use std::sync::{Arc, Mutex};

use rustix::io::Errno;

use crate::iommu::DmaSpace;
use crate::lock;
use crate::server::Served;

/// `pci::DmaPort` over an IOMMU view. It holds the container or context
/// state, never the device, so no cycle keeps a device alive.
struct IommuPort(Arc<dyn DmaSpace>);

impl fmt::Debug for IommuPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("IommuPort").field(&self.0).finish()
    }
}

impl pci::DmaPort for IommuPort {
    fn read(&self, iova: u64, buf: &mut [u8]) -> Result<(), Errno> {
        self.0.dma_read(iova, buf)
    }

    fn write(&self, iova: u64, data: &[u8]) -> Result<(), Errno> {
        self.0.dma_write(iova, data)
    }
}

/// The IOMMU views of a device's usable files, by file. Group-path files
/// of one device all reach the same container (or the same context), so
/// the newest one serves as the port; a cdev is the only file of its
/// device.
#[derive(Debug, Default)]
pub(crate) struct DmaUsers {
    /// Protected by: itself, a leaf but for the device's bus-master port
    /// lock taken under it (so ports are set in the order users change).
    users: Mutex<Vec<(usize, Arc<dyn DmaSpace>)>>,
}

impl DmaUsers {
    /// File `key` reaches memory through `space` (replacing what it had).
    pub(crate) fn attach(&self, served: &Served, key: usize, space: Arc<dyn DmaSpace>) {
        let mut users = lock(&self.users);
        users.retain(|(k, _)| *k != key);
        users.push((key, space));
        set_port(served, &users);
    }

    /// File `key` no longer reaches memory (detached, or closed).
    pub(crate) fn detach(&self, served: &Served, key: usize) {
        let mut users = lock(&self.users);
        let before = users.len();
        users.retain(|(k, _)| *k != key);
        if users.len() != before {
            set_port(served, &users);
        }
    }
}

fn set_port(served: &Served, users: &[(usize, Arc<dyn DmaSpace>)]) {
    let port = users.last().map(|(_, space)| Arc::new(IommuPort(Arc::clone(space))) as Arc<dyn pci::DmaPort>);
    tracing::debug!(device = %served.vdev.bdf(), attached = port.is_some(), "DMA port");
    served.vdev.set_dma_port(port);
}
