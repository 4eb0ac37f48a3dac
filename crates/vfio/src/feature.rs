//! `VFIO_DEVICE_FEATURE`: the header checks every request passes, and the
//! dispatch to the feature.
//!
//! Analogous to Linux's `vfio_ioctl_device_feature()` (`drivers/vfio/vfio_main.c`),
//! `vfio_check_feature()` (include/linux/vfio.h) and the feature switch of
//! `vfio_pci_core_ioctl_feature()` (`vfio_pci_core.c`). Each feature is one
//! [`Feature`] row, declared beside its code, saying which operations it
//! supports and how large its payload must be; [`vfio_check_feature`] checks
//! every request against its row, once, before the feature runs.
//!
//! Spec §2.1.

use rustix::io::Errno;

use crate::core::{DeviceFd, FeatureReply};
use crate::error::{fail, VfioError};
use crate::uapi::*;

/// One device feature: the operations it supports, its minimum payload, and
/// the code that performs a checked request.
#[derive(Debug)]
pub(crate) struct Feature {
    /// The name shown in errors (`DMA_BUF`, `LOW_POWER_EXIT`, ...).
    pub(crate) name: &'static str,
    /// The subset of `VFIO_DEVICE_FEATURE_GET | _SET` the feature implements.
    pub(crate) supported_ops: u32,
    /// The smallest payload (after the 8-byte header) a GET or SET needs.
    pub(crate) minsz: usize,
    /// Performs a GET or SET that passed [`vfio_check_feature`]; `data` is the
    /// payload, at least `minsz` bytes.
    pub(crate) run: fn(&DeviceFd, &[u8]) -> Result<FeatureReply, VfioError>,
}

/// What the caller of [`check_feature`] should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FeatureCheck {
    /// A `VFIO_DEVICE_FEATURE_PROBE` request for a supported operation: the
    /// ioctl returns 0 without doing anything.
    Probe,
    /// Perform the requested GET or SET.
    Go,
}

/// `vfio_ioctl_device_feature()`: the checks of the header itself, then the
/// feature's row ([`vfio_check_feature`]) and, for a GET or SET, the feature.
///
/// # Errors
///
/// - `EINVAL`: unknown flag bits, or GET and SET together without PROBE.
/// - `ENOTTY`: a feature number this device does not implement.
/// - As [`vfio_check_feature`], then the feature's own errors.
pub(crate) fn device_feature(fd: &DeviceFd, flags: u32, data: &[u8]) -> Result<FeatureReply, VfioError> {
    // vfio_ioctl_device_feature(): unknown flag bits, or GET and SET
    // together outside a PROBE, are EINVAL before any driver sees them.
    let known =
        VFIO_DEVICE_FEATURE_MASK | VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_PROBE;
    if flags & !known != 0 {
        return fail(Errno::INVAL, "unknown feature flag bits");
    }
    let get_set = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET;
    if flags & VFIO_DEVICE_FEATURE_PROBE == 0 && flags & get_set == get_set {
        return fail(Errno::INVAL, "GET and SET together without PROBE");
    }
    let feature = match flags & VFIO_DEVICE_FEATURE_MASK {
        VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY => &crate::pm::LOW_POWER_ENTRY,
        VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP => &crate::pm::LOW_POWER_ENTRY_WITH_WAKEUP,
        VFIO_DEVICE_FEATURE_LOW_POWER_EXIT => &crate::pm::LOW_POWER_EXIT,
        VFIO_DEVICE_FEATURE_DMA_BUF => &crate::dmabuf::DMA_BUF,
        VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE => &crate::dmabuf::DMA_BUF_REVOKE,
        VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR => &crate::dmabuf::DMA_BUF_MEMATTR,
        _ => return fail(Errno::NOTTY, "unknown device feature"),
    };
    match vfio_check_feature(flags, data.len(), feature)? {
        FeatureCheck::Probe => Ok(FeatureReply::Done),
        FeatureCheck::Go => (feature.run)(fd, data),
    }
}

/// `vfio_check_feature()` for one feature's row, with the refusal named.
///
/// # Errors
///
/// As [`check_feature`], each `EINVAL` saying which operations the feature
/// supports and how large its payload must be.
pub(crate) fn vfio_check_feature(flags: u32, argsz: usize, feature: &Feature) -> Result<FeatureCheck, VfioError> {
    check_feature(flags, argsz, feature.supported_ops, feature.minsz).map_err(|e| {
        let ops = match feature.supported_ops {
            VFIO_DEVICE_FEATURE_GET => "GET-only",
            VFIO_DEVICE_FEATURE_SET => "SET-only",
            _ => "GET and SET",
        };
        VfioError::new(e, format!("{} is {ops} and needs a {}-byte payload", feature.name, feature.minsz))
    })
}

/// `vfio_check_feature()`—validate the flags and payload size of one
/// `VFIO_DEVICE_FEATURE` request against the operations a feature supports.
///
/// `flags` is the header's flags word (the feature number in its low 16 bits
/// is ignored here), `argsz` the payload size after the 8-byte header,
/// `supported_ops` the subset of `VFIO_DEVICE_FEATURE_GET | _SET` the feature
/// implements and `minsz` its minimum payload size. The checks run in the
/// kernel's order, so PROBE of a supported operation succeeds even with a
/// short payload, but PROBE of an unsupported one fails.
///
/// Kernel: `vfio_check_feature()`, `include/linux/vfio.h`; spec §2.1.
///
/// # Errors
///
/// - `EINVAL`: GET or SET is requested but not in `supported_ops`.
/// - `EINVAL`: not a probe, and neither GET nor SET is requested.
/// - `EINVAL`: not a probe, and `argsz < minsz`.
pub(crate) fn check_feature(flags: u32, argsz: usize, supported_ops: u32, minsz: usize) -> Result<FeatureCheck, Errno> {
    let requested = flags & (VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET);
    // vfio_check_feature(): an operation the feature lacks is refused even
    // when only probing for it.
    if requested & !supported_ops != 0 {
        return Err(Errno::INVAL);
    }
    // vfio_check_feature(): a probe of supported operations answers yes.
    if flags & VFIO_DEVICE_FEATURE_PROBE != 0 {
        return Ok(FeatureCheck::Probe);
    }
    // vfio_check_feature(): a real request must say which way data flows.
    if requested == 0 {
        return Err(Errno::INVAL);
    }
    // vfio_check_feature(): the payload must hold the feature's fixed part.
    if argsz < minsz {
        return Err(Errno::INVAL);
    }
    Ok(FeatureCheck::Go)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GET: u32 = VFIO_DEVICE_FEATURE_GET;
    const SET: u32 = VFIO_DEVICE_FEATURE_SET;
    const PROBE: u32 = VFIO_DEVICE_FEATURE_PROBE;
    /// `VFIO_DEVICE_FEATURE_DMA_BUF`, to show the feature bits are ignored.
    const DMA_BUF: u32 = 11;

    #[test]
    fn check_feature_rejects_set_on_a_get_only_feature() {
        assert_eq!(check_feature(DMA_BUF | SET, 16, GET, 16), Err(Errno::INVAL));
    }

    #[test]
    fn check_feature_rejects_get_on_a_set_only_feature() {
        assert_eq!(check_feature(GET, 16, SET, 16), Err(Errno::INVAL));
    }

    #[test]
    fn check_feature_rejects_probe_of_an_unsupported_operation() {
        assert_eq!(check_feature(DMA_BUF | PROBE | SET, 16, GET, 16), Err(Errno::INVAL));
    }

    #[test]
    fn check_feature_answers_probe_even_with_a_short_payload() {
        assert_eq!(check_feature(DMA_BUF | PROBE | GET, 0, GET, 16), Ok(FeatureCheck::Probe));
        assert_eq!(check_feature(PROBE, 0, GET, 16), Ok(FeatureCheck::Probe));
    }

    #[test]
    fn check_feature_rejects_a_request_without_direction() {
        assert_eq!(check_feature(DMA_BUF, 16, GET | SET, 16), Err(Errno::INVAL));
    }

    #[test]
    fn check_feature_rejects_a_short_payload() {
        assert_eq!(check_feature(DMA_BUF | GET, 15, GET, 16), Err(Errno::INVAL));
    }

    #[test]
    fn check_feature_goes_ahead_with_a_full_payload() {
        assert_eq!(check_feature(DMA_BUF | GET, 16, GET, 16), Ok(FeatureCheck::Go));
        assert_eq!(check_feature(SET, 100, GET | SET, 16), Ok(FeatureCheck::Go));
    }

    #[test]
    fn every_feature_row_names_its_operations_in_the_refusal() {
        for (feature, wrong) in [
            (&crate::dmabuf::DMA_BUF, SET),
            (&crate::dmabuf::DMA_BUF_REVOKE, GET),
            (&crate::dmabuf::DMA_BUF_MEMATTR, GET),
            (&crate::pm::LOW_POWER_ENTRY, GET),
            (&crate::pm::LOW_POWER_ENTRY_WITH_WAKEUP, GET),
            (&crate::pm::LOW_POWER_EXIT, GET),
        ] {
            let e = vfio_check_feature(wrong, 64, feature).unwrap_err();
            assert_eq!(e.errno(), Errno::INVAL);
            assert!(e.message().starts_with(feature.name), "{e}");
        }
    }
}
