//! An eventfd that, when the user signals it, runs an action of the device: the `INTx` unmask
//! eventfd (`VFIO_IRQ_SET_ACTION_UNMASK` with `VFIO_IRQ_SET_DATA_EVENTFD`). Analogous to Linux's
//! `drivers/vfio/virqfd.c`.
//!
//! The kernel hooks the eventfd's wait queue; a process cannot, so a watcher thread polls the
//! eventfd beside a shutdown eventfd of its own. Each signal is consumed (the counter read back
//! to zero, as `eventfd_ctx_do_read()` does) and the action runs with `igate` held; a signal
//! already pending when the watcher starts runs it at once, as `vfio_virqfd_enable()` does.
//!
//! Not handled: a user that reads its own unmask eventfd between our poll and our read makes the
//! watcher's read wait for the next signal; the watcher then only notices its shutdown after that
//! signal (the kernel reads the counter inside the wake-up and cannot race so).

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use rustix::event::{poll, EventfdFlags, PollFd, PollFlags};
use rustix::io::Errno;

use crate::intrs::{IrqState, Irqs};

/// A running watcher; dropping it stops the watcher (`vfio_virqfd_disable()`).
#[derive(Debug)]
pub(crate) struct Virqfd {
    /// Set before the shutdown signal; the watcher checks it under `igate` before acting, so no
    /// action runs once the owner has let go (even one already past its poll).
    cancelled: Arc<AtomicBool>,
    /// Signalled to wake the watcher for good.
    shutdown: Arc<OwnedFd>,
}

impl Virqfd {
    /// `vfio_virqfd_enable()`: watch `eventfd`, running `action` on `irqs` at each signal.
    ///
    /// # Errors
    ///
    /// The errno of creating the shutdown eventfd or the thread (`EMFILE`, `EAGAIN`, ...).
    pub(crate) fn enable(irqs: Weak<Irqs>, eventfd: OwnedFd, action: fn(&mut IrqState)) -> Result<Self, Errno> {
        let shutdown = Arc::new(rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?);
        let cancelled = Arc::new(AtomicBool::new(false));
        let watcher =
            Watcher { irqs, eventfd, shutdown: Arc::clone(&shutdown), cancelled: Arc::clone(&cancelled), action };
        std::thread::Builder::new()
            .name("vfio-virqfd".into())
            .spawn(move || watcher.run())
            .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::AGAIN))?;
        Ok(Self { cancelled, shutdown })
    }
}

impl Drop for Virqfd {
    fn drop(&mut self) {
        self.cancelled.store(true, Ordering::Release);
        // Non-blocking: at worst the counter is already non-zero, which wakes the watcher too.
        let _ = rustix::io::write(&*self.shutdown, &1_u64.to_ne_bytes());
    }
}

/// The watcher thread's state.
struct Watcher {
    irqs: Weak<Irqs>,
    eventfd: OwnedFd,
    shutdown: Arc<OwnedFd>,
    cancelled: Arc<AtomicBool>,
    action: fn(&mut IrqState),
}

impl Watcher {
    fn run(self) {
        loop {
            let mut fds = [PollFd::new(&self.eventfd, PollFlags::IN), PollFd::new(&*self.shutdown, PollFlags::IN)];
            match poll(&mut fds, None) {
                Ok(_) | Err(Errno::INTR) => {}
                Err(error) => {
                    tracing::error!(%error, "unmask eventfd watcher cannot poll; it stops");
                    return;
                }
            }
            if self.cancelled.load(Ordering::Acquire) || !fds[1].revents().is_empty() {
                return;
            }
            let revents = fds[0].revents();
            if revents.intersects(PollFlags::HUP | PollFlags::ERR | PollFlags::NVAL) {
                return;
            }
            if !revents.contains(PollFlags::IN) {
                continue;
            }
            let mut count = [0_u8; 8];
            if rustix::io::read(&self.eventfd, &mut count).is_err() {
                continue;
            }
            let Some(irqs) = self.irqs.upgrade() else { return };
            if !irqs.run_unless_cancelled(&self.cancelled, self.action) {
                return;
            }
        }
    }
}
