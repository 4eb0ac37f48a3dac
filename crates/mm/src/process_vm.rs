//! Another process's memory, read and written by address: what a server
//! that emulates DMA for a process needs to reach the buffers that process
//! mapped for its device.
//!
//! Analogous to Linux's `mm/process_vm_access.c` (`process_vm_readv(2)`,
//! `process_vm_writev(2)`): the kernel checks that we may access the
//! process (ptrace access mode) and the page permissions of every byte; a
//! page that is not there, or not readable (writable), ends the copy.

use rustix::io::Errno;

use crate::sys;

/// Reads up to `buf.len()` bytes at `addr` in process `pid`, stopping at the
/// first unreadable page; returns how many it read.
///
/// # Errors
///
/// `EFAULT` when not even the first byte is readable; else as [`read`].
pub fn read_some(pid: i32, addr: u64, buf: &mut [u8]) -> Result<usize, Errno> {
    sys::process_vm_readv(pid, addr, buf)
}

/// Reads `buf.len()` bytes at `addr` in process `pid`.
///
/// # Errors
///
/// `EFAULT` when some byte of the range is not readable there (the copy
/// stopped short); `ESRCH` when the process is gone; `EPERM` when we may
/// not access it.
pub fn read(pid: i32, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
    let mut done = 0;
    while done < buf.len() {
        let at = addr.checked_add(done as u64).ok_or(Errno::FAULT)?;
        match sys::process_vm_readv(pid, at, &mut buf[done..])? {
            0 => return Err(Errno::FAULT),
            n => done += n,
        }
    }
    Ok(())
}

/// Writes `data` at `addr` in process `pid`.
///
/// # Errors
///
/// `EFAULT` when some byte of the range is not writable there; else as
/// [`read`].
pub fn write(pid: i32, addr: u64, data: &[u8]) -> Result<(), Errno> {
    let mut done = 0;
    while done < data.len() {
        let at = addr.checked_add(done as u64).ok_or(Errno::FAULT)?;
        match sys::process_vm_writev(pid, at, &data[done..])? {
            0 => return Err(Errno::FAULT),
            n => done += n,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_memory_round_trips_and_a_hole_is_efault() {
        let pid = std::process::id() as i32;
        let src = [1u8, 2, 3, 4, 5];
        let mut dst = [0u8; 5];
        read(pid, src.as_ptr() as u64, &mut dst).unwrap();
        assert_eq!(dst, src);
        write(pid, dst.as_mut_ptr() as u64, &[9, 9]).unwrap();
        assert_eq!(dst[..2], [9, 9]);
        assert_eq!(read(pid, 0, &mut dst), Err(Errno::FAULT));
    }
}
