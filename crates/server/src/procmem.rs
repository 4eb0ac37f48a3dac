//! The memory of a process the server serves, by address: where the
//! `vaddr`s of its DMA mappings live.

use rustix::io::Errno;

use crate::iommu::ProcessMemory;

/// The memory of process `pid` (the peer of a connection, from
/// `SO_PEERCRED`), read and written with `process_vm_readv(2)` and
/// `process_vm_writev(2)`: the kernel checks that the server may access the
/// process and the page permissions of every byte.
///
/// The pid names the process as long as it lives; a server that outlives it
/// reads nothing (`ESRCH`), reported as `EFAULT` like any unreachable byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerMemory {
    pid: i32,
}

impl PeerMemory {
    /// The memory of process `pid`.
    pub fn new(pid: i32) -> Self {
        Self { pid }
    }

    /// The process.
    pub fn pid(&self) -> i32 {
        self.pid
    }
}

/// Every failure is the IOMMU's fault on that address: `EFAULT`. The cause
/// goes to the log.
fn fault(pid: i32, vaddr: u64, e: Errno) -> Errno {
    if e != Errno::FAULT {
        tracing::debug!(pid, vaddr, %e, "process memory unreachable");
    }
    Errno::FAULT
}

impl ProcessMemory for PeerMemory {
    fn read(&self, vaddr: u64, buf: &mut [u8]) -> Result<(), Errno> {
        mm::process_vm::read(self.pid, vaddr, buf).map_err(|e| fault(self.pid, vaddr, e))
    }

    fn write(&self, vaddr: u64, data: &[u8]) -> Result<(), Errno> {
        mm::process_vm::write(self.pid, vaddr, data).map_err(|e| fault(self.pid, vaddr, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_of_a_process_is_read_and_written_by_address() {
        let me = PeerMemory::new(std::process::id() as i32);
        let src = *b"dma";
        let mut dst = [0u8; 3];
        me.read(src.as_ptr() as u64, &mut dst).unwrap();
        assert_eq!(&dst, b"dma");
        me.write(dst.as_mut_ptr() as u64, b"DMA").unwrap();
        assert_eq!(&dst, b"DMA");
        assert_eq!(me.read(8, &mut dst), Err(Errno::FAULT));
    }
}
