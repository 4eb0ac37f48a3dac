//! Handles as real file descriptors and `get()` (Linux's `dma_buf_fd()`/`dma_buf_get()`).
//!
//! Every test takes `SERIAL`: a test that closes a descriptor and then looks its number up
//! must not see another test reuse the number in between.

mod common;

use std::sync::{Arc, Mutex, MutexGuard};

use common::{as_importer, export, OnInvalidate, Recorder};
use dmabuf::{DmaBufFd, Error, Status};
use rustix::io::Errno;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[test]
fn get_returns_the_buffer_of_a_live_handle() {
    let _serial = serial();
    let (buf, _) = export(Status::Ok);
    let handle = DmaBufFd::new(Arc::clone(&buf)).unwrap();
    assert!(handle.raw_fd() > 2);
    assert!(Arc::ptr_eq(&dmabuf::get(handle.raw_fd()).unwrap(), &buf));
    assert!(Arc::ptr_eq(handle.buffer(), &buf));
}

#[test]
fn get_on_a_closed_handle_fails_with_ebadf() {
    let _serial = serial();
    let (buf, _) = export(Status::Ok);
    let handle = DmaBufFd::new(buf).unwrap();
    let fd = handle.raw_fd();
    handle.close();
    let error = dmabuf::get(fd).unwrap_err();
    assert_eq!(error, Error::BadFd { fd });
    assert_eq!(error.errno(), Errno::BADF);
}

#[test]
fn get_on_stdout_fails_with_einval() {
    let _serial = serial();
    let error = dmabuf::get(1).unwrap_err();
    assert_eq!(error, Error::NotDmaBuf { fd: 1 });
    assert_eq!(error.errno(), Errno::INVAL);
}

#[test]
fn dup_gives_a_distinct_number_for_the_same_buffer() {
    let _serial = serial();
    let (buf, _) = export(Status::Ok);
    let handle = DmaBufFd::new(Arc::clone(&buf)).unwrap();
    let dup = handle.dup().unwrap();
    assert_ne!(dup.raw_fd(), handle.raw_fd());
    assert!(Arc::ptr_eq(&dmabuf::get(dup.raw_fd()).unwrap(), &buf));
    assert!(Arc::ptr_eq(&dmabuf::get(handle.raw_fd()).unwrap(), &buf));
    // A dup shares the open file: both numbers name the same memfd inode.
    let inode = |fd: i32| std::fs::metadata(format!("/proc/self/fd/{fd}")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(inode(dup.raw_fd()).ino(), inode(handle.raw_fd()).ino());
}

#[test]
fn closing_one_handle_keeps_the_other_valid() {
    let _serial = serial();
    let (buf, exporter) = export(Status::Ok);
    let handle = DmaBufFd::new(Arc::clone(&buf)).unwrap();
    let dup = handle.dup().unwrap();
    drop(buf);
    let closed = handle.raw_fd();
    handle.close();
    assert_eq!(dmabuf::get(closed).unwrap_err().errno(), Errno::BADF);
    assert_eq!(dmabuf::get(dup.raw_fd()).unwrap().size(), 0x3000);
    assert_eq!(exporter.releases(), 0);
    dup.close();
    assert_eq!(exporter.releases(), 1);
}

#[test]
fn closing_every_handle_keeps_live_mappings_working() {
    let _serial = serial();
    let (buf, exporter) = export(Status::Ok);
    let importer = Recorder::new(OnInvalidate::UnmapInside);
    let attachment = buf.attach(as_importer(&importer)).unwrap();
    let handle = DmaBufFd::new(buf).unwrap();
    handle.close();
    let mapping = attachment.map().unwrap();
    assert_eq!(mapping.ranges().len(), 2);
    assert_eq!(exporter.releases(), 0);
    // Revoke through the buffer still reaches the importer.
    importer.hold(mapping);
    attachment.buffer().set_status(Status::PermRevoked).unwrap();
    assert_eq!(importer.invalidations(), 1);
}

#[test]
fn handle_shows_in_proc_self_fd_with_the_buffer_name_and_is_cloexec() {
    let _serial = serial();
    let (buf, _) = export(Status::Ok);
    let handle = DmaBufFd::new(buf).unwrap();
    let dup = handle.dup().unwrap();
    for fd in [handle.raw_fd(), dup.raw_fd()] {
        let target = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
        assert!(target.to_string_lossy().contains("dmabuf:test-buffer"), "{}", target.display());
        // fdinfo's `flags:` is octal; O_CLOEXEC is 02000000.
        let fdinfo = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap();
        let flags = fdinfo
            .lines()
            .find_map(|line| line.strip_prefix("flags:"))
            .map(|v| u32::from_str_radix(v.trim(), 8).unwrap())
            .unwrap();
        assert_ne!(flags & 0o2000000, 0, "fd {fd} flags {flags:o}");
    }
}

#[test]
fn nr_handles_counts_live_handles() {
    let _serial = serial();
    let before = dmabuf::nr_handles();
    let (buf, _) = export(Status::Ok);
    let handle = DmaBufFd::new(buf).unwrap();
    let dup = handle.dup().unwrap();
    assert_eq!(dmabuf::nr_handles(), before + 2);
    drop(handle);
    drop(dup);
    assert_eq!(dmabuf::nr_handles(), before);
}
