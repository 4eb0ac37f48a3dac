//! Interrupts of the device: what `VFIO_DEVICE_SET_IRQS` sets up, and how the device model's
//! interrupts reach the user's eventfds. Analogous to Linux's `drivers/vfio/pci/vfio_pci_intrs.c`.
//!
//! The device model raises interrupts on its function's [`pci::IrqLine`]; [`Irqs`] is the line's
//! sink, standing where the kernel's interrupt handlers stand:
//! - `INTx` is a level. When the pin is asserted while `INTx` is the enabled type and not
//!   masked, it is masked and the trigger eventfd signalled once (`vfio_intx_handler()`,
//!   "automasked"). An unmask while the pin is still asserted stays masked and signals again
//!   (`pci_check_and_unmask_intx()` finding STATUS.INTERRUPT set). `COMMAND.INTX_DISABLE` as the
//!   user writes it masks and unmasks the same way (`virq_disabled`).
//! - MSI and MSI-X: a message of vector `n` signals vector `n`'s eventfd. The function sends
//!   messages (and leaves its pin alone) exactly while one of them is the enabled type.
//! - ERR and REQ hold one eventfd each, signalled only by the loopback forms of `SET_IRQS`
//!   (nothing here reports an AER error or asks for the device back).
//!
//! Only one of `INTx`, MSI and MSI-X is enabled at a time (`irq_type`); enabling another is
//! `EINVAL`. Reset paths leave this state alone, as the kernel's do (the user, e.g. QEMU's
//! pre-reset, disables interrupts itself); the last close disables everything
//! (`vfio_pci_core_disable()`, `vfio_pci_core_close_device()`).
//!
//! Signalling writes the eventfd (`eventfd_signal()`), never blocking: a counter the user left
//! saturated is left so, as the kernel's saturating add would leave it.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::Errno;

use crate::error::{fail, VfioError};
use crate::uapi::*;
use crate::virqfd::Virqfd;

/// The data of one `SET_IRQS`, decoded: `count` entries of the `DATA_` type its flags name.
#[derive(Debug)]
pub(crate) enum IrqSetData {
    /// `VFIO_IRQ_SET_DATA_NONE`.
    None,
    /// `VFIO_IRQ_SET_DATA_BOOL`: one flag per interrupt.
    Bool(Vec<bool>),
    /// `VFIO_IRQ_SET_DATA_EVENTFD`: one descriptor per interrupt.
    Eventfd(Vec<EventfdArg>),
}

/// One `s32` of a `VFIO_IRQ_SET_DATA_EVENTFD` array.
#[derive(Debug)]
pub(crate) enum EventfdArg {
    /// A descriptor number (0 or more): the file it names, or `None` when it was not open in the
    /// caller (`EBADF` where the kernel looks it up).
    Fd(Option<OwnedFd>),
    /// A negative number, as given: -1 detaches; ERR and REQ ignore the others.
    Negative(i32),
}

/// `eventfd_ctx_fdget()`: the eventfd behind `arg`.
///
/// # Errors
///
/// `EBADF` when the descriptor was not open (or for a negative number, which callers never pass);
/// `EINVAL` when it is not an eventfd.
fn eventfd_ctx_fdget(arg: EventfdArg) -> Result<OwnedFd, VfioError> {
    match arg {
        EventfdArg::Fd(Some(file)) => {
            eventfd_ctx_fileget(file).map_err(|e| VfioError::new(e, "the descriptor is not an eventfd"))
        }
        EventfdArg::Fd(None) | EventfdArg::Negative(_) => fail(Errno::BADF, "the eventfd is not an open descriptor"),
    }
}

/// `eventfd_ctx_fileget()`: `file` itself if it is an eventfd.
///
/// # Errors
///
/// `EINVAL` when it is not an eventfd (`EBADF` if its kind cannot be read at all).
pub(crate) fn eventfd_ctx_fileget(file: OwnedFd) -> Result<OwnedFd, Errno> {
    let target = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).map_err(|_| Errno::BADF)?;
    if target.as_os_str() != "anon_inode:[eventfd]" {
        return Err(Errno::INVAL);
    }
    Ok(file)
}

/// `eventfd_signal()`: adds 1 to the counter, without blocking. A counter at its maximum stays
/// there (the kernel saturates); a write that still fails is logged, as the kernel's signal has
/// no caller to report to.
pub(crate) fn eventfd_signal(efd: &OwnedFd) {
    // An eventfd polls writable while one more count fits, so the write below cannot block
    // unless the user's own write got in between; a zero timeout keeps the check itself short.
    let mut fds = [PollFd::new(efd, PollFlags::OUT)];
    let zero = Timespec { tv_sec: 0, tv_nsec: 0 };
    match poll(&mut fds, Some(&zero)) {
        Ok(1) if fds[0].revents().contains(PollFlags::OUT) => {}
        Ok(_) => return,
        Err(error) => {
            tracing::warn!(%error, "cannot poll an interrupt eventfd");
            return;
        }
    }
    if let Err(error) = rustix::io::write(efd, &1_u64.to_ne_bytes()) {
        tracing::warn!(%error, "cannot signal an interrupt eventfd");
    }
}

/// The `INTx` context (the kernel's `ctx` 0 while `irq_type` is `INTx`).
#[derive(Debug, Default)]
struct IntxCtx {
    /// The trigger eventfd; `INTx` may be enabled without one.
    trigger: Option<OwnedFd>,
    /// Masked: automasked by an interrupt, or masked by the user or by `virq_disabled`.
    masked: bool,
    /// The unmask eventfd's watcher, if any.
    unmask: Option<Virqfd>,
}

/// What `igate` protects (the interrupt part of `vfio_pci_core_device`).
#[derive(Debug)]
pub(crate) struct IrqState {
    /// `irq_type`: `VFIO_PCI_INTX_IRQ_INDEX`, `_MSI_`, `_MSIX_`, or `VFIO_PCI_NUM_IRQS` for none.
    irq_type: u32,
    /// Present exactly while `irq_type` is `INTx`.
    intx: Option<IntxCtx>,
    /// MSI or MSI-X contexts by vector: each vector's trigger.
    msi: BTreeMap<u32, OwnedFd>,
    /// Vectors allocated when MSI or MSI-X was enabled; no vector past them can be set.
    msi_nvec: u32,
    /// `virq_disabled`: `COMMAND.INTX_DISABLE` as the user wrote it.
    virq_disabled: bool,
    /// The device's pin, as last reported: what a physical STATUS.INTERRUPT would show.
    intx_asserted: bool,
    /// `err_trigger`.
    err_trigger: Option<OwnedFd>,
    /// `req_trigger`.
    req_trigger: Option<OwnedFd>,
}

impl IrqState {
    fn is_intx(&self) -> bool {
        self.irq_type == VFIO_PCI_INTX_IRQ_INDEX
    }

    fn is_irq_none(&self) -> bool {
        self.irq_type == VFIO_PCI_NUM_IRQS
    }

    fn is_msi(&self) -> bool {
        matches!(self.irq_type, VFIO_PCI_MSI_IRQ_INDEX | VFIO_PCI_MSIX_IRQ_INDEX)
    }

    /// `vfio_send_intx_eventfd()`.
    fn send_intx_eventfd(&self) {
        if self.is_intx() && !self.virq_disabled {
            if let Some(trigger) = self.intx.as_ref().and_then(|ctx| ctx.trigger.as_ref()) {
                eventfd_signal(trigger);
            }
        }
    }

    /// `__vfio_pci_intx_mask()`: mask unless masked; outside `INTx` there is nothing to mask.
    fn intx_mask(&mut self) {
        if let Some(ctx) = self.intx.as_mut() {
            ctx.masked = true;
        }
    }

    /// `vfio_pci_intx_unmask_handler()`: unmask, unless the pin is still asserted, in which
    /// case it stays masked and the interrupt must be sent again (returns `true`).
    fn intx_unmask_handler(&mut self) -> bool {
        let (asserted, virq_disabled) = (self.intx_asserted, self.virq_disabled);
        let Some(ctx) = self.intx.as_mut() else { return false };
        if !ctx.masked || virq_disabled {
            return false;
        }
        ctx.masked = asserted;
        asserted
    }

    /// `__vfio_pci_intx_unmask()`.
    pub(crate) fn intx_unmask(&mut self) {
        if self.intx_unmask_handler() {
            self.send_intx_eventfd();
        }
    }

    /// `vfio_intx_handler()`: the pin is asserted; if `INTx` is live and unmasked, automask and
    /// signal.
    fn intx_handler(&mut self) {
        let Some(ctx) = self.intx.as_mut() else { return };
        if ctx.masked {
            return;
        }
        ctx.masked = true;
        self.send_intx_eventfd();
    }

    /// `vfio_intx_enable()`: starts masked if the user disabled `INTx` in COMMAND; a pin
    /// already asserted interrupts at once, as a level does when its handler is installed.
    fn intx_enable(&mut self, trigger: Option<OwnedFd>) -> Result<(), VfioError> {
        if !self.is_irq_none() {
            return fail(Errno::INVAL, "another interrupt type is enabled");
        }
        self.intx = Some(IntxCtx { trigger, masked: self.virq_disabled, unmask: None });
        self.irq_type = VFIO_PCI_INTX_IRQ_INDEX;
        if self.intx_asserted {
            self.intx_handler();
        }
        Ok(())
    }

    /// `vfio_intx_disable()`: drops the trigger and the unmask watcher.
    fn intx_disable(&mut self) {
        self.intx = None;
        self.irq_type = VFIO_PCI_NUM_IRQS;
    }

    /// `vfio_msi_enable()`: allocate `nvec` vectors (all the device declares can be had).
    fn msi_enable(&mut self, nvec: u32, msix: bool) -> Result<(), VfioError> {
        if !self.is_irq_none() {
            return fail(Errno::INVAL, "another interrupt type is enabled");
        }
        self.msi_nvec = nvec;
        self.irq_type = if msix { VFIO_PCI_MSIX_IRQ_INDEX } else { VFIO_PCI_MSI_IRQ_INDEX };
        Ok(())
    }

    /// `vfio_msi_set_vector_signal()`: detach `vector`'s eventfd, then attach the new one if
    /// `arg` names one. A vector past those allocated at enable is `EINVAL` (no resizing).
    fn msi_set_vector_signal(&mut self, vector: u32, arg: EventfdArg) -> Result<(), VfioError> {
        self.msi.remove(&vector);
        if matches!(arg, EventfdArg::Negative(_)) {
            return Ok(());
        }
        if vector >= self.msi_nvec {
            return fail(Errno::INVAL, "vector past those allocated when the interrupts were enabled");
        }
        let trigger = eventfd_ctx_fdget(arg)?;
        self.msi.insert(vector, trigger);
        Ok(())
    }

    /// `vfio_msi_set_block()`: one vector after the other; on a failure every vector of the
    /// block handled so far is detached again.
    fn msi_set_block(&mut self, start: u32, args: Vec<EventfdArg>) -> Result<(), VfioError> {
        let mut done = start;
        let mut result = Ok(());
        for arg in args {
            result = self.msi_set_vector_signal(done, arg);
            if result.is_err() {
                break;
            }
            done += 1;
        }
        if result.is_err() {
            for vector in start..=done {
                self.msi.remove(&vector);
            }
        }
        result
    }

    /// `vfio_msi_disable()`.
    fn msi_disable(&mut self) {
        self.msi.clear();
        self.msi_nvec = 0;
        self.irq_type = VFIO_PCI_NUM_IRQS;
    }
}

/// The device's interrupts: `igate` and the state it protects.
#[derive(Debug)]
pub(crate) struct Irqs {
    /// `igate`. Protected by: itself. Lock order: a leaf — taken after `memory_lock`, after a
    /// device model's register lock and after the function's `IrqLine` (whose sink this is);
    /// nothing else is taken while it is held.
    igate: Mutex<IrqState>,
    /// Ourselves, for the unmask watchers (which must not keep the device alive).
    me: Weak<Irqs>,
}

impl Irqs {
    /// No interrupt enabled, nothing masked.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            igate: Mutex::new(IrqState {
                irq_type: VFIO_PCI_NUM_IRQS,
                intx: None,
                msi: BTreeMap::new(),
                msi_nvec: 0,
                virq_disabled: false,
                intx_asserted: false,
                err_trigger: None,
                req_trigger: None,
            }),
            me: me.clone(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, IrqState> {
        // Every update leaves the state consistent before anything could panic.
        self.igate.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The enabled type (`VFIO_PCI_NUM_IRQS` for none).
    pub(crate) fn irq_type(&self) -> u32 {
        self.lock().irq_type
    }

    /// Runs `action` under `igate` unless `cancelled`; `false` when cancelled (for a watcher).
    pub(crate) fn run_unless_cancelled(&self, cancelled: &AtomicBool, action: fn(&mut IrqState)) -> bool {
        let mut state = self.lock();
        if cancelled.load(Ordering::Acquire) {
            return false;
        }
        action(&mut state);
        true
    }

    /// The `INTx` emulation of a COMMAND write (`vfio_basic_config_write()`): a change of
    /// `INTX_DISABLE` masks or unmasks.
    pub(crate) fn set_virq_disabled(&self, disabled: bool) {
        let mut state = self.lock();
        if disabled && !state.virq_disabled {
            state.virq_disabled = true;
            state.intx_mask();
        } else if !disabled && state.virq_disabled {
            state.virq_disabled = false;
            state.intx_unmask();
        }
    }

    /// The last close (`vfio_pci_core_disable()`, `vfio_pci_core_close_device()`): whatever type
    /// is enabled is disabled, `virq_disabled` forgotten, ERR and REQ triggers released.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        if state.is_intx() {
            state.intx_disable();
        } else if state.is_msi() {
            state.msi_disable();
        }
        state.virq_disabled = false;
        state.err_trigger = None;
        state.req_trigger = None;
    }

    /// `vfio_pci_set_irqs_ioctl()`: the handler for (index, action), after the generic checks.
    ///
    /// # Errors
    ///
    /// `ENOTTY` for an action the index does not have (MSI and MSI-X mask and unmask, anything
    /// but a trigger for ERR and REQ, several actions at once); each handler's own errors.
    pub(crate) fn set_irqs_ioctl(
        &self,
        flags: u32,
        index: u32,
        start: u32,
        count: u32,
        data: IrqSetData,
    ) -> Result<(), VfioError> {
        let action = flags & VFIO_IRQ_SET_ACTION_TYPE_MASK;
        let mut state = self.lock();
        match (index, action) {
            (VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_MASK) => set_intx_mask(&mut state, start, count, data),
            (VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_UNMASK) => {
                set_intx_unmask(&mut state, &self.me, start, count, data)
            }
            (VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_TRIGGER) => set_intx_trigger(&mut state, start, count, data),
            (VFIO_PCI_MSI_IRQ_INDEX | VFIO_PCI_MSIX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_TRIGGER) => {
                set_msi_trigger(&mut state, index, start, count, data)
            }
            // The function is a PCI Express one, so ERR takes a trigger.
            (VFIO_PCI_ERR_IRQ_INDEX, VFIO_IRQ_SET_ACTION_TRIGGER) => {
                set_ctx_trigger_single(&mut state.err_trigger, start, count, data)
            }
            (VFIO_PCI_REQ_IRQ_INDEX, VFIO_IRQ_SET_ACTION_TRIGGER) => {
                set_ctx_trigger_single(&mut state.req_trigger, start, count, data)
            }
            _ => fail(Errno::NOTTY, "no such action for this interrupt index"),
        }
    }
}

impl pci::InterruptSink for Irqs {
    fn set_intx(&self, asserted: bool) {
        let mut state = self.lock();
        state.intx_asserted = asserted;
        if asserted {
            state.intx_handler();
        }
    }

    fn msi_notify(&self, vector: u32) {
        let state = self.lock();
        if state.is_msi() {
            if let Some(trigger) = state.msi.get(&vector) {
                eventfd_signal(trigger);
            }
        }
    }

    fn msi_enabled(&self) -> bool {
        self.lock().is_msi()
    }
}

/// The single flag of a `DATA_BOOL` (count is 1 where it is used).
fn first_bool(data: &IrqSetData) -> bool {
    matches!(data, IrqSetData::Bool(flags) if flags.first() == Some(&true))
}

/// `vfio_pci_set_intx_mask()`: the eventfd form is not implemented in the kernel (`ENOTTY`).
fn set_intx_mask(state: &mut IrqState, start: u32, count: u32, data: IrqSetData) -> Result<(), VfioError> {
    if !state.is_intx() || start != 0 || count != 1 {
        return fail(Errno::INVAL, "INTx is not enabled, or start/count is not 0/1");
    }
    match data {
        IrqSetData::None => state.intx_mask(),
        IrqSetData::Bool(_) if first_bool(&data) => state.intx_mask(),
        IrqSetData::Bool(_) => {}
        IrqSetData::Eventfd(_) => return fail(Errno::NOTTY, "INTx mask by eventfd is not implemented"),
    }
    Ok(())
}

/// `vfio_pci_set_intx_unmask()`: unmask now, or watch an eventfd that unmasks each time it is
/// signalled (`EBUSY` if one is watched already; a negative number stops watching).
fn set_intx_unmask(
    state: &mut IrqState,
    me: &Weak<Irqs>,
    start: u32,
    count: u32,
    data: IrqSetData,
) -> Result<(), VfioError> {
    if !state.is_intx() || start != 0 || count != 1 {
        return fail(Errno::INVAL, "INTx is not enabled, or start/count is not 0/1");
    }
    match data {
        IrqSetData::None => state.intx_unmask(),
        IrqSetData::Bool(_) if first_bool(&data) => state.intx_unmask(),
        IrqSetData::Bool(_) => {}
        IrqSetData::Eventfd(args) => {
            let Some(arg) = args.into_iter().next() else { return Ok(()) };
            let ctx = state.intx.as_mut().expect("INTx is enabled");
            if matches!(arg, EventfdArg::Negative(_)) {
                ctx.unmask = None;
                return Ok(());
            }
            let eventfd = eventfd_ctx_fdget(arg)?;
            if ctx.unmask.is_some() {
                return fail(Errno::BUSY, "an unmask eventfd is already set");
            }
            let watcher = Virqfd::enable(me.clone(), eventfd, IrqState::intx_unmask)
                .map_err(|e| VfioError::new(e, "cannot watch the unmask eventfd"))?;
            ctx.unmask = Some(watcher);
        }
    }
    Ok(())
}

/// `vfio_pci_set_intx_trigger()`: disable with `DATA_NONE` and count 0; enable or replace the
/// trigger with an eventfd (a negative number: none); signal it with `DATA_NONE`/`DATA_BOOL`.
fn set_intx_trigger(state: &mut IrqState, start: u32, count: u32, data: IrqSetData) -> Result<(), VfioError> {
    if state.is_intx() && count == 0 && matches!(data, IrqSetData::None) {
        state.intx_disable();
        return Ok(());
    }
    if !(state.is_intx() || state.is_irq_none()) || start != 0 || count != 1 {
        return fail(Errno::INVAL, "another interrupt type is enabled, or start/count is not 0/1");
    }
    match data {
        IrqSetData::Eventfd(args) => {
            let trigger = match args.into_iter().next() {
                Some(EventfdArg::Negative(_)) | None => None,
                Some(arg) => Some(eventfd_ctx_fdget(arg)?),
            };
            if let Some(ctx) = state.intx.as_mut() {
                // vfio_intx_set_signal(): the new trigger replaces the old one.
                ctx.trigger = trigger;
                Ok(())
            } else {
                state.intx_enable(trigger)
            }
        }
        _ if !state.is_intx() => fail(Errno::INVAL, "INTx is not enabled"),
        IrqSetData::None => {
            state.send_intx_eventfd();
            Ok(())
        }
        IrqSetData::Bool(_) => {
            if first_bool(&data) {
                state.send_intx_eventfd();
            }
            Ok(())
        }
    }
}

/// `vfio_pci_set_msi_trigger()`: disable with `DATA_NONE` and count 0; with eventfds, enable
/// `start + count` vectors (if not enabled yet) and set each vector's eventfd; with
/// `DATA_NONE`/`DATA_BOOL`, signal the vectors that have one.
fn set_msi_trigger(
    state: &mut IrqState,
    index: u32,
    start: u32,
    count: u32,
    data: IrqSetData,
) -> Result<(), VfioError> {
    let irq_is = state.irq_type == index;
    if irq_is && count == 0 && matches!(data, IrqSetData::None) {
        state.msi_disable();
        return Ok(());
    }
    if !(irq_is || state.is_irq_none()) {
        return fail(Errno::INVAL, "another interrupt type is enabled");
    }
    match data {
        IrqSetData::Eventfd(args) => {
            if irq_is {
                return state.msi_set_block(start, args);
            }
            // start + count cannot overflow: vfio_set_irqs_validate_and_prepare() checked it.
            state.msi_enable(start + count, index == VFIO_PCI_MSIX_IRQ_INDEX)?;
            let result = state.msi_set_block(start, args);
            if result.is_err() {
                state.msi_disable();
            }
            result
        }
        _ if !irq_is => fail(Errno::INVAL, "this interrupt type is not enabled"),
        IrqSetData::None => {
            for vector in start..start + count {
                state.msi.get(&vector).map(eventfd_signal);
            }
            Ok(())
        }
        IrqSetData::Bool(flags) => {
            for (vector, flag) in (start..start + count).zip(flags) {
                if flag {
                    state.msi.get(&vector).map(eventfd_signal);
                }
            }
            Ok(())
        }
    }
}

/// `vfio_pci_set_ctx_trigger_single()` (ERR and REQ): `DATA_NONE` signals (count 1) or releases
/// (count 0) the eventfd, and is `EINVAL` without one; `DATA_BOOL` signals it; an eventfd
/// replaces it, -1 releases it, other negative numbers change nothing.
fn set_ctx_trigger_single(
    ctx: &mut Option<OwnedFd>,
    start: u32,
    count: u32,
    data: IrqSetData,
) -> Result<(), VfioError> {
    if start != 0 || count > 1 {
        return fail(Errno::INVAL, "start/count is not 0/0 or 0/1");
    }
    match data {
        IrqSetData::None => match ctx {
            Some(trigger) if count == 1 => {
                eventfd_signal(trigger);
                Ok(())
            }
            Some(_) => {
                *ctx = None;
                Ok(())
            }
            None => fail(Errno::INVAL, "no eventfd is set"),
        },
        _ if count == 0 => fail(Errno::INVAL, "count is 0"),
        IrqSetData::Bool(flags) => {
            if flags.first() == Some(&true) {
                if let Some(trigger) = ctx {
                    eventfd_signal(trigger);
                }
            }
            Ok(())
        }
        IrqSetData::Eventfd(args) => {
            match args.into_iter().next() {
                Some(EventfdArg::Negative(-1)) => *ctx = None,
                Some(EventfdArg::Negative(_)) | None => {}
                Some(arg) => *ctx = Some(eventfd_ctx_fdget(arg)?),
            }
            Ok(())
        }
    }
}
