//! The switches that break the protocol on purpose.
//!
//! Each variant removes one lock, skips one step or swaps one ordering of
//! the real protocol; the model runs the broken variant in place of the
//! correct step. A model that still passed with a switch on would prove
//! nothing about that step, so the tests run every switch and expect the
//! checker (or shuttle's deadlock detector) to object, except where the
//! variant's doc explains why the change is harmless.

use std::fmt;

/// One deliberate defect in the modelled protocol, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bug {
    /// The protocol as the series (and `crates/vfio`) implements it.
    None,
    /// Fault step 5 installs the page without re-reading the status under
    /// `memory_lock` (read): a revoke that ran between step 4 and step 5 is
    /// missed. Breaks invariant 1.
    FaultSkipsRecheckUnderMemoryLock,
    /// The fault keeps `resv` while it takes `memory_lock` (read), nesting the
    /// locks the other way round from revoke (`memory_lock` write → `resv`).
    /// ABBA deadlock.
    FaultNestsResvAndMemoryLock,
    /// The fault reads `vdev` under `resv` but takes no registration on it,
    /// so a close and unbind may free the device before step 5 uses it.
    /// Breaks invariant 2.
    FaultSkipsPin,
    /// The fault decides SIGBUS under its lock but installs the poison marker
    /// after dropping it, so an un-revoke (set Ok, zap) can slip in between
    /// and the marker outlives it. Breaks invariant 6.
    PoisonOutsideLock,
    /// A full revoke zaps the CPU page tables first and publishes the status
    /// afterwards. Harmless while the caller holds `memory_lock` (write)
    /// across both, because step 5 of the fault cannot run in between; the
    /// model keeps it to show that the lock, not the order, protects here.
    RevokeZapsBeforeSettingStatus,
    /// Un-revoke zaps before publishing Ok: a fault that sees the old status
    /// in between poisons the page after the zap. Breaks invariant 6.
    UnrevokeZapsBeforeSettingOk,
    /// Un-revoke does not zap at all, leaving the poison markers of faults
    /// taken while revoked. Breaks invariant 6.
    UnrevokeSkipsZap,
    /// Device close severs every buffer from the device without revoking it
    /// first. Breaks invariant 2 (a buffer is Ok with no device).
    CleanupSkipsRevoke,
    /// Cleanup also severs buffers whose last reference is already gone (it
    /// skips the `get_file_active` test), racing their release. Breaks
    /// invariant 3 (a second unlink), or 2 when unbind frees the device
    /// before the waiting release takes `memory_lock`.
    CleanupIgnoresDyingBuffers,
    /// Release unlinks the buffer from the device list even when cleanup has
    /// already severed it. Breaks invariant 3 (or 2: the device may be gone).
    ReleaseUnlinksWithoutCheck,
    /// A revoke does not wait for importers to unmap. Breaks invariant 5.
    NoImporterWait,
    /// An importer map succeeds whatever the status. Breaks invariant 5.
    ImporterMapsWithoutStatusCheck,
    /// `set_status` lets a permanently revoked buffer move again. Breaks
    /// invariant 4.
    PermRevokeNotAbsorbing,
    /// The permanent-revoke feature calls `set_status` without taking
    /// `memory_lock` (write), so a fault in step 5 can install a page after
    /// the revoke's zap. Breaks invariant 1.
    PermRevokeWithoutMemoryLock,
    /// The revoke's zap takes `mmap_lock` (write) instead of the VMA table
    /// lock, while a fault holds `mmap_lock` (read) and waits for
    /// `memory_lock`. Deadlock.
    ZapTakesMmapLock,
    /// The huge fault installs its PMD entry without re-reading the status
    /// under `memory_lock` (the 4 KiB path keeps the re-check): a revoke
    /// between steps 4 and 5 is missed for the whole 2 MiB. Breaks
    /// invariant 1, which covers PMD entries.
    PmdInstallSkipsRecheck,
    /// A partial munmap inside a PMD-mapped 2 MiB keeps the PMD's other
    /// page mapped by re-inserting it itself, outside the fault's locks and
    /// status checks, instead of dropping the whole PMD and letting the
    /// page fault back in. A revoke racing the munmap leaves that page
    /// mapped. Breaks invariant 1.
    SplitRemapsPmdPages,
    /// A revoke whose notification is not acknowledged within the bound
    /// returns without cutting the silent process off: it keeps its
    /// mapping. Breaks invariant 1.
    SkipCutOff,
    /// The un-revoke pass does not restore the cut frame before making its
    /// buffers Ok: a legitimate access meets the cut frame (SIGBUS). Breaks
    /// invariant 7.
    SkipRestoreBeforeUnrevoke,
    /// A revoke pass that cut the frame off does not restore it for the Ok
    /// buffer that still reaches it (the primary's other buffer). Breaks
    /// invariant 7.
    SkipRestoreAfterRevoke,
}

impl Bug {
    /// Every switch, `None` first.
    pub const ALL: [Bug; 21] = [
        Bug::None,
        Bug::FaultSkipsRecheckUnderMemoryLock,
        Bug::FaultNestsResvAndMemoryLock,
        Bug::FaultSkipsPin,
        Bug::PoisonOutsideLock,
        Bug::RevokeZapsBeforeSettingStatus,
        Bug::UnrevokeZapsBeforeSettingOk,
        Bug::UnrevokeSkipsZap,
        Bug::CleanupSkipsRevoke,
        Bug::CleanupIgnoresDyingBuffers,
        Bug::ReleaseUnlinksWithoutCheck,
        Bug::NoImporterWait,
        Bug::ImporterMapsWithoutStatusCheck,
        Bug::PermRevokeNotAbsorbing,
        Bug::PermRevokeWithoutMemoryLock,
        Bug::ZapTakesMmapLock,
        Bug::PmdInstallSkipsRecheck,
        Bug::SplitRemapsPmdPages,
        Bug::SkipCutOff,
        Bug::SkipRestoreBeforeUnrevoke,
        Bug::SkipRestoreAfterRevoke,
    ];

    /// Whether the switch touches only what [`Scenario::Everything`](crate::Scenario::Everything)
    /// does not run (PMD entries, a second process), so only its own
    /// scenarios can catch it.
    pub fn needs_own_scenario(self) -> bool {
        matches!(
            self,
            Bug::PmdInstallSkipsRecheck
                | Bug::SplitRemapsPmdPages
                | Bug::SkipCutOff
                | Bug::SkipRestoreBeforeUnrevoke
                | Bug::SkipRestoreAfterRevoke
        )
    }
}

impl fmt::Display for Bug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
