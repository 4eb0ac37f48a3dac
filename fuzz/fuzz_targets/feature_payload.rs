//! Bytes → one `VFIO_DEVICE_FEATURE` call on one long-lived device.
//!
//! Input: byte 0 is a control byte (bit 0: memory decoding on; bit 1: put
//! the fd of a fresh buffer of this device in the first four payload bytes,
//! so revoke and memattr reach a real buffer; bit 2: permanently revoke that
//! buffer first), bytes 1..5 the header flags (little endian), the rest the
//! payload after the 8-byte header, of any length.
//!
//! Checks: no panic; an error is one of the errnos the feature paths can
//! return; an exported buffer has the size its ranges add up to; and after
//! each call every buffer is gone again and the device is still open once.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use vfio::uapi::encode_dma_buf_payload;
use vfio::{DeviceFd, FeatureReply, VfioPciDevice};

struct Fixture {
    vdev: Arc<VfioPciDevice>,
    fd: DeviceFd,
}

/// Created on the first input; the fuzz target is its own process.
static FIXTURE: OnceLock<Fixture> = OnceLock::new();

fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(|| {
        let vdev = VfioPciDevice::from_catalogue(0, "0000:00:03.0".parse().unwrap(), "edu-plus").unwrap();
        let fd = vdev.open();
        Fixture { vdev, fd }
    })
}

/// What `VFIO_DEVICE_FEATURE` and the three features may answer (spec
/// §2.1, §4.4, §4.9, §4.10); `EMFILE`/`ENFILE` when no fd is left.
const ERRNOS: &[i32] = &[
    libc::EINVAL,
    libc::ENOTTY,
    libc::ENODEV,
    libc::EFAULT,
    libc::EOVERFLOW,
    libc::ENOMEM,
    libc::EBADF,
    libc::EBADFD,
    libc::ENOENT,
    libc::EMFILE,
    libc::ENFILE,
];

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else { return };
    let Some((flags, payload)) = rest.split_first_chunk::<4>() else { return };
    let flags = u32::from_le_bytes(*flags);
    let f = fixture();
    f.fd.set_memory_enable(control & 1 != 0).unwrap();
    let rw = (libc::O_RDWR | libc::O_CLOEXEC) as u32;
    let fresh =
        match f.fd.feature(vfio::uapi::VFIO_DEVICE_FEATURE_GET | 11, &encode_dma_buf_payload(1, rw, 0, &[(0, 4096)])) {
            Ok(FeatureReply::DmaBuf(b)) => b,
            other => panic!("a one-page export failed: {other:?}"),
        };
    if control & 4 != 0 {
        f.fd.feature_dma_buf_revoke(fresh.raw_fd()).unwrap();
    }
    let mut payload = payload.to_vec();
    if control & 2 != 0 && payload.len() >= 4 {
        payload[..4].copy_from_slice(&fresh.raw_fd().to_ne_bytes());
    }

    match f.fd.feature(flags, &payload) {
        Ok(FeatureReply::DmaBuf(b)) => {
            let nr = u32::from_ne_bytes(payload[12..16].try_into().unwrap()) as usize;
            let size: u64 =
                (0..nr).map(|i| u64::from_ne_bytes(payload[24 + i * 16..32 + i * 16].try_into().unwrap())).sum();
            assert_eq!(b.buffer().size(), size);
            assert_eq!(f.vdev.dmabufs().len(), 2);
        }
        Ok(FeatureReply::Done) => {}
        Err(e) => {
            let errno = e.errno().raw_os_error();
            assert!(ERRNOS.contains(&errno), "unexpected errno {errno} ({e})");
        }
    }
    drop(fresh);
    assert!(f.vdev.dmabufs().is_empty(), "a buffer outlived its handle");
    assert_eq!(f.vdev.open_count(), 1);
});
