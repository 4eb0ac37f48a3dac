//! Inputs on which the library once answered otherwise than the kernel
//! (the errno, or the order of the checks that pick it) or panicked. Each
//! test pins one of them; the properties cover them too.

use super::*;

/// `get_unmapped_area()` refuses a length beyond `TASK_SIZE` with `ENOMEM`
/// before the file's mmap runs, so no driver check (`EINVAL` for a window
/// past the BAR) is reached. The library once ran the driver's checks first.
#[test]
fn mmap_longer_than_the_address_space_is_enomem_before_the_driver_checks() {
    let _q = quiet();
    let aspace = AddressSpace::new().unwrap();
    let vdev = device("edu-plus");
    let fd = vdev.open();
    let r = fd.mmap(&aspace, MmapArgs::shared(1 << 40, 1 << 60));
    assert_eq!(errno_of(&r), Some(Errno::NOMEM), "device fd: {r:?}");
    let buf = fd.feature_dma_buf(1, RDWR, &[(0, PAGE)]).unwrap();
    let r = mmap_dmabuf(&aspace, &buf, MmapArgs::shared(0, 1 << 60));
    assert_eq!(errno_of(&r), Some(Errno::NOMEM), "buffer fd: {r:?}");
}

/// `do_mmap()` fails `MAP_FIXED_NOREPLACE` over an existing mapping with
/// `EEXIST` (and an unaligned exact address with `EINVAL`) before the file's
/// access checks and its mmap run. The library once validated the request
/// first and looked at the address last.
#[test]
fn mmap_at_a_taken_address_is_eexist_before_the_driver_checks() {
    let _q = quiet();
    let aspace = AddressSpace::new().unwrap();
    let vdev = device("edu-plus");
    let fd = vdev.open();
    let taken = fd.mmap(&aspace, MmapArgs::shared(1 << 40, PAGE)).unwrap();
    // MAP_PRIVATE: the driver would say EINVAL.
    let private = MmapArgs { addr: Some(taken), shared: false, ..MmapArgs::shared(1 << 40, PAGE) };
    assert_eq!(errno_of(&fd.mmap(&aspace, private)), Some(Errno::EXIST));
    // A read-only buffer mapped shared and writable: the VFS would say EACCES.
    let ro = fd.feature_dma_buf(1, RDONLY, &[(0, PAGE)]).unwrap();
    let at_taken = MmapArgs { addr: Some(taken), ..MmapArgs::shared(0, PAGE) };
    assert_eq!(errno_of(&mmap_dmabuf(&aspace, &ro, at_taken)), Some(Errno::EXIST));
    // A revoked buffer at an unaligned address: EINVAL, not ENODEV.
    let rw = fd.feature_dma_buf(1, RDWR, &[(0, PAGE)]).unwrap();
    fd.feature_dma_buf_revoke(rw.raw_fd()).unwrap();
    let unaligned = MmapArgs { addr: Some(taken + 1), ..MmapArgs::shared(0, PAGE) };
    assert_eq!(errno_of(&mmap_dmabuf(&aspace, &rw, unaligned)), Some(Errno::INVAL));
}

/// `do_mmap()`'s `file_mmap_ok()` refuses a mapping whose end passes the
/// file's size limit with `EOVERFLOW`, before the access and driver checks:
/// `ULONG_MAX` for the device fd, `MAX_LFS_FILESIZE` for a buffer fd (a
/// regular-mode anonymous inode since Linux 6.15), so for any file an offset
/// plus length beyond `u64::MAX`. (`do_mmap()`'s own pgoff check counts pages
/// and cannot fire for a 64-bit byte offset.) The library once had no such
/// check.
#[test]
fn mmap_whose_end_passes_the_file_limit_is_eoverflow() {
    let _q = quiet();
    let aspace = AddressSpace::new().unwrap();
    let vdev = device("edu-plus");
    let fd = vdev.open();
    let last = LAST_PAGE;
    assert_eq!(errno_of(&fd.mmap(&aspace, MmapArgs::shared(last, 2 * PAGE))), Some(Errno::OVERFLOW));
    let buf = fd.feature_dma_buf(1, RDWR, &[(0, PAGE)]).unwrap();
    assert_eq!(errno_of(&mmap_dmabuf(&aspace, &buf, MmapArgs::shared(last, 2 * PAGE))), Some(Errno::OVERFLOW));
}

/// `vfio_config_do_rw()` refuses a config access that does not lie wholly
/// inside config space with `EFAULT` (it does not clip), and
/// `vfio_pci_config_rw()` returns 0 for 0 bytes without looking at the
/// position. The library once answered `EINVAL` past the end and clipped an
/// access that straddled it.
#[test]
fn config_access_outside_config_space_is_efault_and_never_clipped() {
    let _q = quiet();
    let vdev = device("edu-plus");
    let fd = vdev.open();
    let mut four = [0u8; 4];
    assert_eq!(errno_of(&fd.read(CONFIG + 4096, &mut four)), Some(Errno::FAULT));
    assert_eq!(errno_of(&fd.read(CONFIG + 4094, &mut four)), Some(Errno::FAULT));
    assert_eq!(errno_of(&fd.write(CONFIG + 4094, &four)), Some(Errno::FAULT));
    assert_eq!(fd.read(CONFIG + 5000, &mut []).ok(), Some(0));
}

/// `DeviceFd::config_read()` and `config_write()` refuse a register offset
/// near `u64::MAX` as an access past config space. They once added it to
/// the config region's base unchecked: a panic ("attempt to add with
/// overflow") in a debug build, another region in a release build.
#[test]
fn config_accessors_refuse_an_offset_near_u64_max_without_panicking() {
    let _q = quiet();
    let vdev = device("edu-plus");
    let fd = vdev.open();
    assert!(fd.config_read(u64::MAX - 1, 2).is_err());
    assert!(fd.config_write(u64::MAX - 1, 2, 0).is_err());
}
