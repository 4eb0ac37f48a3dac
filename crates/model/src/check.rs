//! What the model observes, and the invariants judged over it.
//!
//! [`Books`] is the model's record of everything the invariants of spec
//! §6.2 talk about: the page-table entry of each buffer's page, the status
//! each buffer was last given, the windows that open when a revoke or an
//! un-revoke returns, importer mappings, list membership, registrations and
//! whether the device was freed. The protocol updates it at the instant the
//! modelled step happens, and every update is followed by
//! [`check_state`], so a violation is reported at the first step that
//! exhibits it, with the schedule that led there.
//!
//! Each invariant has its own `check_*` function (STYLE §3.7). State
//! invariants are predicates over one buffer's books; event invariants
//! (using the device, unlinking, dropping a registration) are checked at the
//! event by the function named after it.

use std::fmt;

/// A buffer's status (`enum vfio_pci_dma_buf_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Usable.
    Ok,
    /// Revoked until un-revoked.
    TempRevoked,
    /// Revoked for good.
    PermRevoked,
}

/// The page-table entry of a buffer's page in the one address space the
/// model has: the kernel's PTE, or here the userfaultfd-managed page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pte {
    /// Nothing mapped: the next access faults into the handler.
    None,
    /// The BAR page is mapped: accesses reach the device.
    Present,
    /// A poison marker (`UFFDIO_POISON`): accesses raise SIGBUS without
    /// asking the handler.
    Poisoned,
}

/// The invariants the model checks (spec §6.2, numbered as in the crate doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Invariant {
    /// 1. No PTE is present for a buffer after a revoke of it returned and
    ///    before the next un-revoke began.
    NoPteWhileRevoked,
    /// 2. The device (`vdev`) is used only through a live registration: never
    ///    after it was freed, never through a buffer that cleanup severed, and
    ///    status Ok implies the buffer still holds its registration.
    VdevLive,
    /// 3. Exactly one of cleanup and release unlinks a buffer from the
    ///    device's list, and neither touches a buffer that was freed.
    UnlinkedOnce,
    /// 4. `PermRevoked` is absorbing.
    PermRevokedAbsorbing,
    /// 5. A revoke returns only after every importer mapping is unmapped, and
    ///    no importer maps the buffer until the next un-revoke.
    ImportersDrained,
    /// 6. No poison marker survives an un-revoke: once it returned, a fault on
    ///    the (Ok) buffer of the (enabled) device is served, not answered with SIGBUS.
    NoPoisonAfterUnrevoke,
    /// 7. No Ok buffer meets a cut frame: once the pass (`memory_lock`
    ///    write hold) that cut it off is over, a cut frame is reached by no
    ///    live Ok buffer.
    NoCutFrameForOk,
}

impl Invariant {
    /// Every invariant, in order.
    pub const ALL: [Invariant; 7] = [
        Invariant::NoPteWhileRevoked,
        Invariant::VdevLive,
        Invariant::UnlinkedOnce,
        Invariant::PermRevokedAbsorbing,
        Invariant::ImportersDrained,
        Invariant::NoPoisonAfterUnrevoke,
        Invariant::NoCutFrameForOk,
    ];

    /// The invariant's number in the crate doc (1–7).
    pub fn number(self) -> u32 {
        match self {
            Invariant::NoPteWhileRevoked => 1,
            Invariant::VdevLive => 2,
            Invariant::UnlinkedOnce => 3,
            Invariant::PermRevokedAbsorbing => 4,
            Invariant::ImportersDrained => 5,
            Invariant::NoPoisonAfterUnrevoke => 6,
            Invariant::NoCutFrameForOk => 7,
        }
    }

    /// The tag a violation message starts with: `invariant N`.
    pub fn tag(self) -> String {
        format!("invariant {}", self.number())
    }

    /// Recovers the invariant from a violation message (or any text that
    /// starts with its tag).
    pub fn from_message(message: &str) -> Option<Invariant> {
        Invariant::ALL.into_iter().find(|i| message.starts_with(&format!("{} ", i.tag())))
    }
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            Invariant::NoPteWhileRevoked => "no PTE between a revoke and the next un-revoke",
            Invariant::VdevLive => "vdev used only while registered",
            Invariant::UnlinkedOnce => "exactly one of cleanup and release unlinks",
            Invariant::PermRevokedAbsorbing => "PermRevoked is absorbing",
            Invariant::ImportersDrained => "a revoke returns only after importers unmapped",
            Invariant::NoPoisonAfterUnrevoke => "no poison marker survives an un-revoke",
            Invariant::NoCutFrameForOk => "no Ok buffer meets a cut frame",
        };
        write!(f, "{} ({what})", self.tag())
    }
}

/// A broken invariant: which one, and what was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The invariant.
    pub invariant: Invariant,
    /// What the model saw, naming the buffer.
    pub detail: String,
}

impl Violation {
    fn new(invariant: Invariant, detail: String) -> Self {
        Self { invariant, detail }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} violated: {}", self.invariant, self.detail)
    }
}

/// A racy situation the model is meant to reach. Counting how many
/// executions reach each one shows the checks are not vacuous: a model that
/// never made a fault wait for a revoke would pass every invariant without
/// testing anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    /// A revoke's zap removed a present page.
    RevokeZappedPte,
    /// An un-revoke's zap removed a poison marker left while revoked.
    UnrevokeClearedPoison,
    /// A fault passed step 2 (Ok under `resv`) and was refused at step 5 by
    /// the re-check under `memory_lock`.
    RecheckRefusedFault,
    /// A revoke found importer mappings still live and waited for them.
    RevokeWaitedForImporter,
    /// An importer unmapped from inside its invalidate callback.
    ImporterUnmappedInCallback,
    /// Cleanup unlinked a buffer.
    CleanupUnlinked,
    /// Release unlinked a buffer.
    ReleaseUnlinked,
    /// Cleanup severed a buffer while a fault held its own pin on the device.
    PinOutlivedSever,
    /// Unbinding had to wait for registrations still held.
    UnbindWaited,
    /// A huge fault installed a PMD entry.
    PmdInstalled,
    /// A revoke's zap removed a PMD entry.
    RevokeZappedPmd,
    /// A partial munmap inside a PMD-mapped 2 MiB dropped the whole PMD.
    SplitDroppedPmd,
    /// A huge fault after a split fell back to a PTE.
    HugeFellBackToPte,
    /// A revoke gave up waiting for a process's acknowledgement and cut
    /// off the frame.
    ProcessCutOff,
    /// A process's access was refused (SIGBUS) because its frame was cut.
    CutFrameRefusedAccess,
    /// A cut frame was restored because an Ok buffer (or one about to be
    /// un-revoked) reaches it.
    CutFrameRestored,
    /// A process's fault inserted after its slot check while its buffer was
    /// revoked, and its re-check removed the entry (the documented hole).
    ClientRecheckZapped,
    /// An access through an Ok buffer met its frame cut while the revoke
    /// pass that cut it was still running (SIGBUS from the kernel's
    /// end-of-file check; the pass restores the frame before it returns).
    OkAccessMetCutFrameInPass,
}

impl Event {
    /// Every event.
    pub const ALL: [Event; 18] = [
        Event::RevokeZappedPte,
        Event::UnrevokeClearedPoison,
        Event::RecheckRefusedFault,
        Event::RevokeWaitedForImporter,
        Event::ImporterUnmappedInCallback,
        Event::CleanupUnlinked,
        Event::ReleaseUnlinked,
        Event::PinOutlivedSever,
        Event::UnbindWaited,
        Event::PmdInstalled,
        Event::RevokeZappedPmd,
        Event::SplitDroppedPmd,
        Event::HugeFellBackToPte,
        Event::ProcessCutOff,
        Event::CutFrameRefusedAccess,
        Event::CutFrameRestored,
        Event::ClientRecheckZapped,
        Event::OkAccessMetCutFrameInPass,
    ];

    /// The events of the one-page, one-process protocol, which
    /// [`Scenario::Everything`](crate::Scenario::Everything) reaches.
    pub const CORE: &'static [Event] = Event::ALL.split_at(9).0;

    /// Position in [`Event::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Pages per buffer: one aligned 2 MiB, which one PMD entry may cover.
pub const PAGES: usize = 2;

/// The books of one buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BufBook {
    /// The primary's page-table entries of the buffer's pages (4 KiB each).
    pub ptes: [Pte; PAGES],
    /// The primary maps the buffer's whole 2 MiB with one PMD entry.
    pub pmd: bool,
    /// Page 1 was unmapped by a partial munmap: the 2 MiB is split for good.
    pub split: bool,
    /// The second process's entry for the buffer's page 0 (it maps it when
    /// the scenario has one).
    pub client: Pte,
    /// The second process's fault inserted and has not yet re-read its
    /// status slot: the documented hole (`docs/clients.md`), exempt from
    /// invariant 1 until that re-check.
    pub client_recheck_pending: bool,
    /// The status last published (mirrors the buffer's status word).
    pub status: Status,
    /// A revoke of the buffer has returned and no un-revoke has begun since.
    pub revoked_window: bool,
    /// An un-revoke of the buffer has returned and no revoke has begun since.
    pub clean_window: bool,
    /// The buffer was once `PermRevoked`.
    pub perm_seen: bool,
    /// Live importer mappings (mirrors the count under `resv`).
    pub importer_mappings: usize,
    /// On the device's `dmabufs` list.
    pub linked: bool,
    /// How many times it was unlinked from that list.
    pub unlinks: u32,
    /// `vdev` is set (not severed by cleanup, not cleared by release).
    pub vdev_set: bool,
    /// The buffer holds its registration on the device.
    pub holds_registration: bool,
    /// The last reference is gone: release is running or has run.
    pub dying: bool,
    /// Release has run: the buffer is freed.
    pub released: bool,
    /// Faults holding their own registration pin taken through this buffer.
    pub pins: usize,
}

impl BufBook {
    /// A buffer just exported from an enabled device: Ok, listed, holding
    /// its registration, nothing mapped.
    pub fn exported() -> Self {
        Self {
            ptes: [Pte::None; PAGES],
            pmd: false,
            split: false,
            client: Pte::None,
            client_recheck_pending: false,
            status: Status::Ok,
            revoked_window: false,
            clean_window: false,
            perm_seen: false,
            importer_mappings: 0,
            linked: true,
            unlinks: 0,
            vdev_set: true,
            holds_registration: true,
            dying: false,
            released: false,
            pins: 0,
        }
    }
}

/// The books of the device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DevBook {
    /// Registrations held (buffers' and faults' pins).
    pub registrations: usize,
    /// The last device file closed and cleanup ran.
    pub closed: bool,
    /// Unregistered and freed: any later use is a use-after-free.
    pub freed: bool,
    /// The one frame every buffer lies in is cut off (truncated).
    pub frame_cut: bool,
    /// `memory_lock` is held for write: a revoke or un-revoke pass runs.
    pub in_pass: bool,
}

/// Everything the invariants are judged on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Books {
    /// Per buffer, by index.
    pub bufs: Vec<BufBook>,
    /// The device.
    pub dev: DevBook,
    /// Which [`Event`]s this execution reached, by [`Event::index`].
    pub seen: [bool; Event::ALL.len()],
}

impl Books {
    /// `nr_bufs` freshly exported buffers of an enabled device.
    pub fn new(nr_bufs: usize) -> Self {
        Self {
            bufs: vec![BufBook::exported(); nr_bufs],
            dev: DevBook { registrations: nr_bufs, ..DevBook::default() },
            seen: [false; Event::ALL.len()],
        }
    }

    /// Notes that this execution reached `event`.
    pub fn saw(&mut self, event: Event) {
        self.seen[event.index()] = true;
    }
}

impl BufBook {
    /// Whether the primary reaches `page`: a present PTE or the PMD.
    pub fn mapped(&self, page: usize) -> bool {
        self.pmd || self.ptes[page] == Pte::Present
    }
}

/// Invariant 1: a buffer inside its revoked window has no present PTE or
/// PMD in the primary, and no present entry in the second process (other
/// than the one its in-flight fault re-checks next).
///
/// # Errors
///
/// The violation, naming the buffer.
pub fn check_no_pte_while_revoked(b: &BufBook, buf: usize) -> Result<(), Violation> {
    if !b.revoked_window {
        return Ok(());
    }
    let what = if b.pmd {
        "a PMD entry"
    } else if b.ptes.contains(&Pte::Present) {
        "a present PTE"
    } else if b.client == Pte::Present && !b.client_recheck_pending {
        "a present PTE in the second process"
    } else {
        return Ok(());
    };
    Err(Violation::new(
        Invariant::NoPteWhileRevoked,
        format!("buffer {buf} has {what} after a revoke returned (status {:?})", b.status),
    ))
}

/// Invariant 7: outside a pass, no live Ok buffer reaches a cut frame (every
/// buffer lies in the one frame).
///
/// # Errors
///
/// The violation, naming the buffer.
pub fn check_no_cut_frame_for_ok(books: &Books) -> Result<(), Violation> {
    if !books.dev.frame_cut || books.dev.in_pass {
        return Ok(());
    }
    match books.bufs.iter().position(|b| b.status == Status::Ok && !b.dying) {
        Some(buf) => Err(Violation::new(
            Invariant::NoCutFrameForOk,
            format!("buffer {buf} is Ok but its frame is still cut after the pass returned"),
        )),
        None => Ok(()),
    }
}

/// Invariant 2, state half: a live buffer whose status is Ok still has its
/// device and holds its registration (spec §6.2.2: "status == OK ⇒ vdev
/// valid and registration still held"). A dying buffer is exempt: release
/// severs it whatever its status, and nothing can map or fault it any more.
///
/// # Errors
///
/// The violation, naming the buffer.
pub fn check_ok_implies_vdev(b: &BufBook, buf: usize) -> Result<(), Violation> {
    if !b.dying && b.status == Status::Ok && !(b.vdev_set && b.holds_registration) {
        return Err(Violation::new(
            Invariant::VdevLive,
            format!(
                "buffer {buf} is Ok but severed from its device (vdev {}, registration {})",
                b.vdev_set, b.holds_registration
            ),
        ));
    }
    Ok(())
}

/// Invariant 2, event half: someone is about to use the device (take its
/// `memory_lock`, pin it) through `buf`'s view of it.
///
/// # Errors
///
/// The violation: the device was already freed.
pub fn check_vdev_use(books: &Books, buf: usize, what: &str) -> Result<(), Violation> {
    if books.dev.freed {
        return Err(Violation::new(
            Invariant::VdevLive,
            format!("{what} through buffer {buf} uses the device after it was unregistered and freed"),
        ));
    }
    Ok(())
}

/// Invariant 2 at cleanup: a buffer is severed only after it was revoked
/// and while it still holds its registration.
///
/// # Errors
///
/// The violation, naming the buffer.
pub fn check_sever(b: &BufBook, buf: usize) -> Result<(), Violation> {
    if b.status == Status::Ok {
        return Err(Violation::new(Invariant::VdevLive, format!("cleanup severs buffer {buf} while it is still Ok")));
    }
    check_registration_put(b, buf)
}

/// Invariant 2 when a buffer drops its registration: it must hold one.
///
/// # Errors
///
/// The violation: the registration was already dropped (a double put).
pub fn check_registration_put(b: &BufBook, buf: usize) -> Result<(), Violation> {
    if !b.holds_registration {
        return Err(Violation::new(
            Invariant::VdevLive,
            format!("buffer {buf} drops a registration it no longer holds (dropped twice)"),
        ));
    }
    Ok(())
}

/// Invariant 3 at an unlink: the buffer is still listed and not freed.
///
/// # Errors
///
/// The violation: a second unlink, or an unlink of a freed buffer.
pub fn check_unlink(b: &BufBook, buf: usize, by: &str) -> Result<(), Violation> {
    if b.released {
        return Err(Violation::new(Invariant::UnlinkedOnce, format!("{by} unlinks buffer {buf} after it was freed")));
    }
    if !b.linked {
        return Err(Violation::new(
            Invariant::UnlinkedOnce,
            format!("{by} unlinks buffer {buf}, which was already unlinked ({} time(s))", b.unlinks),
        ));
    }
    Ok(())
}

/// Invariant 3 when cleanup or a status change touches a buffer: it was not
/// freed.
///
/// # Errors
///
/// The violation, naming who touched it.
pub fn check_not_freed(b: &BufBook, buf: usize, by: &str) -> Result<(), Violation> {
    if b.released {
        return Err(Violation::new(Invariant::UnlinkedOnce, format!("{by} touches buffer {buf} after its release")));
    }
    Ok(())
}

/// Invariant 3 at the end of a run: every buffer was unlinked exactly once
/// if the device was closed or the buffer released, and never otherwise.
///
/// # Errors
///
/// The violation, naming the buffer.
pub fn check_unlinked_once(books: &Books, buf: usize) -> Result<(), Violation> {
    let b = &books.bufs[buf];
    let expected = u32::from(books.dev.closed || b.released);
    if b.unlinks != expected {
        return Err(Violation::new(
            Invariant::UnlinkedOnce,
            format!(
                "buffer {buf} was unlinked {} time(s), expected {expected} (closed {}, released {})",
                b.unlinks, books.dev.closed, b.released
            ),
        ));
    }
    Ok(())
}

/// Invariant 4: once `PermRevoked`, always `PermRevoked`.
///
/// # Errors
///
/// The violation, naming the status it left for.
pub fn check_perm_revoked_absorbing(b: &BufBook, buf: usize) -> Result<(), Violation> {
    if b.perm_seen && b.status != Status::PermRevoked {
        return Err(Violation::new(
            Invariant::PermRevokedAbsorbing,
            format!("buffer {buf} left PermRevoked for {:?}", b.status),
        ));
    }
    Ok(())
}

/// Invariant 5: inside the revoked window no importer mapping exists.
///
/// # Errors
///
/// The violation, naming the buffer and the count.
pub fn check_importers_drained(b: &BufBook, buf: usize) -> Result<(), Violation> {
    if b.revoked_window && b.importer_mappings > 0 {
        return Err(Violation::new(
            Invariant::ImportersDrained,
            format!("buffer {buf} has {} importer mapping(s) after a revoke returned", b.importer_mappings),
        ));
    }
    Ok(())
}

/// Invariant 6: inside the clean window (an un-revoke returned, no revoke
/// since) an Ok buffer has no poison marker, so every fault is served. (The
/// status test matters only when `set_status` calls overlap, which the
/// correct protocol's `memory_lock` forbids.)
///
/// # Errors
///
/// The violation, naming the buffer.
pub fn check_no_poison_after_unrevoke(b: &BufBook, buf: usize) -> Result<(), Violation> {
    if b.clean_window && b.status == Status::Ok && b.ptes.contains(&Pte::Poisoned) {
        return Err(Violation::new(
            Invariant::NoPoisonAfterUnrevoke,
            format!("buffer {buf} is Ok after an un-revoke returned, yet its page is poisoned (SIGBUS)"),
        ));
    }
    Ok(())
}

/// Every state invariant of every buffer; run after each step.
///
/// # Errors
///
/// The first violation found.
pub fn check_state(books: &Books) -> Result<(), Violation> {
    for (buf, b) in books.bufs.iter().enumerate() {
        check_no_pte_while_revoked(b, buf)?;
        check_ok_implies_vdev(b, buf)?;
        check_perm_revoked_absorbing(b, buf)?;
        check_importers_drained(b, buf)?;
        check_no_poison_after_unrevoke(b, buf)?;
    }
    check_no_cut_frame_for_ok(books)
}

/// The end of a run, once every actor finished: the state invariants, each
/// buffer unlinked exactly once where it should be, no importer mapping
/// left, and a closed device holding no registration.
///
/// # Errors
///
/// The first violation found.
pub fn check_final(books: &Books) -> Result<(), Violation> {
    check_state(books)?;
    for (buf, b) in books.bufs.iter().enumerate() {
        check_unlinked_once(books, buf)?;
        if b.importer_mappings > 0 {
            return Err(Violation::new(
                Invariant::ImportersDrained,
                format!("buffer {buf} still has {} importer mapping(s) at the end", b.importer_mappings),
            ));
        }
    }
    if books.dev.closed && books.dev.registrations > 0 {
        return Err(Violation::new(
            Invariant::VdevLive,
            format!("the closed device still has {} registration(s) at the end", books.dev.registrations),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn books() -> Books {
        Books::new(1)
    }

    #[test]
    fn fresh_books_satisfy_every_state_invariant() {
        assert_eq!(check_state(&books()), Ok(()));
    }

    #[test]
    fn a_present_pte_inside_the_revoked_window_breaks_invariant_1() {
        let mut b = books();
        b.bufs[0].status = Status::TempRevoked;
        b.bufs[0].revoked_window = true;
        b.bufs[0].ptes[1] = Pte::Present;
        assert_eq!(check_state(&b).unwrap_err().invariant, Invariant::NoPteWhileRevoked);
        // A poison marker there is the expected outcome of a fault.
        b.bufs[0].ptes[1] = Pte::Poisoned;
        assert_eq!(check_state(&b), Ok(()));
        // A PMD entry maps every page of the 2 MiB.
        b.bufs[0].pmd = true;
        assert_eq!(check_state(&b).unwrap_err().invariant, Invariant::NoPteWhileRevoked);
        b.bufs[0].pmd = false;
        // So does the second process's entry, unless its fault's re-check
        // is still to come.
        b.bufs[0].client = Pte::Present;
        assert_eq!(check_state(&b).unwrap_err().invariant, Invariant::NoPteWhileRevoked);
        b.bufs[0].client_recheck_pending = true;
        assert_eq!(check_state(&b), Ok(()));
    }

    #[test]
    fn a_cut_frame_an_ok_buffer_reaches_after_the_pass_breaks_invariant_7() {
        let mut b = books();
        b.dev.frame_cut = true;
        b.dev.in_pass = true;
        assert_eq!(check_state(&b), Ok(()));
        b.dev.in_pass = false;
        assert_eq!(check_state(&b).unwrap_err().invariant, Invariant::NoCutFrameForOk);
        b.bufs[0].status = Status::TempRevoked;
        assert_eq!(check_state(&b), Ok(()));
    }

    #[test]
    fn an_ok_buffer_without_its_device_breaks_invariant_2() {
        let mut b = books();
        b.bufs[0].vdev_set = false;
        assert_eq!(check_state(&b).unwrap_err().invariant, Invariant::VdevLive);
        // Once dying, a buffer's leftover status no longer matters.
        b.bufs[0].dying = true;
        assert_eq!(check_state(&b), Ok(()));
    }

    #[test]
    fn using_a_freed_device_breaks_invariant_2() {
        let mut b = books();
        assert_eq!(check_vdev_use(&b, 0, "fault"), Ok(()));
        b.dev.freed = true;
        assert_eq!(check_vdev_use(&b, 0, "fault").unwrap_err().invariant, Invariant::VdevLive);
    }

    #[test]
    fn severing_an_ok_buffer_or_putting_a_registration_twice_breaks_invariant_2() {
        let mut b = books();
        assert_eq!(check_sever(&b.bufs[0], 0).unwrap_err().invariant, Invariant::VdevLive);
        b.bufs[0].status = Status::TempRevoked;
        assert_eq!(check_sever(&b.bufs[0], 0), Ok(()));
        b.bufs[0].holds_registration = false;
        assert_eq!(check_registration_put(&b.bufs[0], 0).unwrap_err().invariant, Invariant::VdevLive);
    }

    #[test]
    fn a_second_unlink_or_an_unlink_after_free_breaks_invariant_3() {
        let mut b = books();
        assert_eq!(check_unlink(&b.bufs[0], 0, "cleanup"), Ok(()));
        b.bufs[0].linked = false;
        b.bufs[0].unlinks = 1;
        assert_eq!(check_unlink(&b.bufs[0], 0, "release").unwrap_err().invariant, Invariant::UnlinkedOnce);
        b.bufs[0].released = true;
        assert_eq!(check_not_freed(&b.bufs[0], 0, "cleanup").unwrap_err().invariant, Invariant::UnlinkedOnce);
    }

    #[test]
    fn the_final_check_wants_one_unlink_exactly_when_closed_or_released() {
        let mut b = books();
        // Neither closed nor released: still listed, never unlinked.
        assert_eq!(check_final(&b), Ok(()));
        b.dev.closed = true;
        b.dev.registrations = 0;
        assert_eq!(check_final(&b).unwrap_err().invariant, Invariant::UnlinkedOnce);
        b.bufs[0].unlinks = 1;
        b.bufs[0].linked = false;
        b.bufs[0].status = Status::TempRevoked;
        b.bufs[0].vdev_set = false;
        b.bufs[0].holds_registration = false;
        assert_eq!(check_final(&b), Ok(()));
    }

    #[test]
    fn leaving_perm_revoked_breaks_invariant_4() {
        let mut b = books();
        b.bufs[0].status = Status::PermRevoked;
        b.bufs[0].perm_seen = true;
        assert_eq!(check_state(&b), Ok(()));
        b.bufs[0].status = Status::TempRevoked;
        assert_eq!(check_state(&b).unwrap_err().invariant, Invariant::PermRevokedAbsorbing);
    }

    #[test]
    fn an_importer_mapping_inside_the_revoked_window_breaks_invariant_5() {
        let mut b = books();
        b.bufs[0].status = Status::TempRevoked;
        b.bufs[0].revoked_window = true;
        b.bufs[0].importer_mappings = 1;
        assert_eq!(check_state(&b).unwrap_err().invariant, Invariant::ImportersDrained);
    }

    #[test]
    fn a_poison_marker_inside_the_clean_window_breaks_invariant_6() {
        let mut b = books();
        b.bufs[0].clean_window = true;
        b.bufs[0].ptes[0] = Pte::Poisoned;
        assert_eq!(check_state(&b).unwrap_err().invariant, Invariant::NoPoisonAfterUnrevoke);
    }

    #[test]
    fn a_violation_message_names_its_invariant() {
        for invariant in Invariant::ALL {
            let message = Violation::new(invariant, "x".into()).to_string();
            assert_eq!(Invariant::from_message(&message), Some(invariant), "{message}");
        }
        assert_eq!(Invariant::from_message("deadlock! blocked tasks"), None);
    }
}
