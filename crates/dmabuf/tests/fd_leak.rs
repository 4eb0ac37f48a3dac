//! No descriptor leaks. Alone in its binary, and a single test, so that no other test
//! opens or closes descriptors in this process while it counts them.

mod common;

use std::sync::Arc;

use common::{as_importer, export, OnInvalidate, Recorder};
use dmabuf::{DmaBufFd, Status};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn handles_dups_lookups_and_errors_leak_no_descriptor() {
    let before = open_fds();
    {
        let mut handles = Vec::new();
        for status in Status::ALL {
            let (buf, _) = export(status);
            let handle = DmaBufFd::new(Arc::clone(&buf)).unwrap();
            let dup = handle.dup().unwrap();
            let dup_of_dup = dup.dup().unwrap();
            assert!(Arc::ptr_eq(&dmabuf::get(dup_of_dup.raw_fd()).unwrap(), &buf));
            handles.push(handle);
            handles.push(dup);
            dup_of_dup.close();
        }
        assert_eq!(open_fds(), before + 6);
        // Failed lookups open nothing.
        assert!(dmabuf::get(1).is_err());
        assert!(dmabuf::get(-5).is_err());
        assert!(dmabuf::get(i32::MAX).is_err());
        // Revokes, attachments and mappings use no descriptors.
        let (buf, _) = export(Status::Ok);
        let importer = Recorder::new(OnInvalidate::UnmapInside);
        let attachment = buf.attach(as_importer(&importer)).unwrap();
        importer.hold(attachment.map().unwrap());
        buf.set_status(Status::TempRevoked).unwrap();
        assert_eq!(open_fds(), before + 6);
    }
    assert_eq!(open_fds(), before);
    assert_eq!(dmabuf::nr_handles(), 0);
}
