//! The actors and the scenarios that combine them.
//!
//! Each actor is one shuttle thread doing what a user thread, an importer
//! or an ioctl does in the real system. A scenario is a set of actors over
//! one device and one or two buffers; an execution spawns them all, joins
//! them, and runs the final check.

use std::fmt;
use std::sync::Arc;

use shuttle::thread;

use crate::check::{check_final, Event};
use crate::process::{answer_notifications, process_access};
use crate::protocol::{
    config_write_memory, cpu_access, device_file_put, dma_buf_put, feature_dma_buf_revoke, invalidated, map_attachment,
    munmap_page1, reset, unmap_attachment, Access,
};
use crate::world::World;
use crate::Bug;

/// A set of concurrent actors to run the protocol under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scenario {
    /// One buffer: two faulting threads and an importer against a memory
    /// disable followed by a memory enable (revoke, then un-revoke). The
    /// device stays open.
    RevokeVsFault,
    /// Two buffers: a thread faulting on buffer 0, a thread that faults on
    /// buffer 1 and then unmaps it (its release), an importer on buffer 0,
    /// and the last close of the device file (cleanup, then unbind).
    CloseVsFault,
    /// One buffer: a faulting thread and an importer against the
    /// permanent-revoke feature and a memory disable/enable.
    PermRevoke,
    /// Two buffers and every actor: two faulting threads (one of which
    /// releases buffer 1), two importers on buffer 0 (one unmaps from its
    /// invalidate callback), memory disable/enable, a reset, a permanent
    /// revoke of buffer 1, and the last close.
    Everything,
    /// One buffer, one aligned 2 MiB of two pages: a thread whose faults
    /// may map the 2 MiB with one PMD entry, a 4 KiB faulting thread, a
    /// partial munmap of page 1 (dropping the PMD), against a permanent
    /// revoke and a memory disable/enable.
    Huge,
    /// Two buffers in one frame: a second process maps buffer 0 and never
    /// answers its notifications, the primary faults on buffer 1 (its own,
    /// still Ok), against a permanent revoke of buffer 0 (cut-off, then the
    /// frame restored for buffer 1) and a memory disable/enable (cut-off,
    /// then restored before the un-revoke).
    SilentProcess,
    /// As [`Scenario::SilentProcess`], with a process that answers.
    AnsweringProcess,
}

impl Scenario {
    /// Every scenario.
    pub const ALL: [Scenario; 7] = [
        Scenario::RevokeVsFault,
        Scenario::CloseVsFault,
        Scenario::PermRevoke,
        Scenario::Everything,
        Scenario::Huge,
        Scenario::SilentProcess,
        Scenario::AnsweringProcess,
    ];

    fn setup(self) -> Setup {
        use Actor::*;
        match self {
            Scenario::RevokeVsFault => Setup {
                nr_bufs: 1,
                attachments: vec![(0, false)],
                actors: vec![
                    Fault { buf: 0, accesses: 2, then_put: false },
                    Fault { buf: 0, accesses: 1, then_put: false },
                    Importer { buf: 0, attachment: 0, rounds: 2 },
                    ToggleMemory,
                ],
            },
            Scenario::CloseVsFault => Setup {
                nr_bufs: 2,
                attachments: vec![(0, false)],
                actors: vec![
                    Fault { buf: 0, accesses: 2, then_put: false },
                    Fault { buf: 1, accesses: 1, then_put: true },
                    Importer { buf: 0, attachment: 0, rounds: 1 },
                    Close,
                ],
            },
            Scenario::PermRevoke => Setup {
                nr_bufs: 1,
                attachments: vec![(0, false)],
                actors: vec![
                    Fault { buf: 0, accesses: 2, then_put: false },
                    Importer { buf: 0, attachment: 0, rounds: 1 },
                    PermRevoke { buf: 0 },
                    ToggleMemory,
                ],
            },
            Scenario::Everything => Setup {
                nr_bufs: 2,
                attachments: vec![(0, false), (0, true)],
                actors: vec![
                    Fault { buf: 0, accesses: 2, then_put: false },
                    Fault { buf: 1, accesses: 1, then_put: true },
                    Importer { buf: 0, attachment: 0, rounds: 2 },
                    Importer { buf: 0, attachment: 1, rounds: 1 },
                    ToggleMemory,
                    Reset,
                    PermRevoke { buf: 1 },
                    Close,
                ],
            },
            Scenario::Huge => Setup {
                nr_bufs: 1,
                attachments: vec![],
                actors: vec![
                    HugeFault { buf: 0 },
                    Fault { buf: 0, accesses: 1, then_put: false },
                    Munmap { buf: 0 },
                    PermRevoke { buf: 0 },
                    ToggleMemory,
                ],
            },
            Scenario::SilentProcess | Scenario::AnsweringProcess => {
                let mut actors = vec![
                    ProcessAccess { accesses: 2 },
                    Fault { buf: 1, accesses: 2, then_put: false },
                    PermRevoke { buf: 0 },
                    ToggleMemory,
                ];
                if self == Scenario::AnsweringProcess {
                    actors.push(ProcessAnswers);
                }
                Setup { nr_bufs: 2, attachments: vec![], actors }
            }
        }
    }

    /// The buffer the second process maps, if the scenario has one.
    fn process_buf(self) -> Option<usize> {
        matches!(self, Scenario::SilentProcess | Scenario::AnsweringProcess).then_some(0)
    }

    /// Number of concurrent actors (shuttle threads besides the main one).
    pub fn actors(self) -> usize {
        self.setup().actors.len()
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// One actor.
#[derive(Debug, Clone, Copy)]
enum Actor {
    /// A user thread touching buffer `buf`'s page `accesses` times, then, if
    /// `then_put`, unmapping it (dropping the buffer's last reference).
    Fault { buf: usize, accesses: usize, then_put: bool },
    /// An importer mapping `buf` through `attachment`, doing some DMA (cut
    /// short when invalidated) and unmapping, `rounds` times.
    Importer { buf: usize, attachment: usize, rounds: usize },
    /// `COMMAND.MEMORY` cleared (revoke), then set (un-revoke), through a
    /// device fd.
    ToggleMemory,
    /// `VFIO_DEVICE_RESET` through a device fd.
    Reset,
    /// `VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE` of `buf`, holding the buffer's fd.
    PermRevoke { buf: usize },
    /// Closes the device fd.
    Close,
    /// A user thread touching pages 0, 1, 0 of `buf` with faults that may
    /// map the aligned 2 MiB with one PMD entry.
    HugeFault { buf: usize },
    /// `munmap` of page 1 of `buf`, splitting its 2 MiB.
    Munmap { buf: usize },
    /// A thread of the second process touching its page `accesses` times.
    ProcessAccess { accesses: usize },
    /// The second process's notify thread, answering revoke notifications.
    ProcessAnswers,
}

/// Buffers, attachments (buffer, unmaps in its callback) and actors.
#[derive(Debug)]
struct Setup {
    nr_bufs: usize,
    attachments: Vec<(usize, bool)>,
    actors: Vec<Actor>,
}

impl Actor {
    fn holds_device_file(self) -> bool {
        matches!(self, Actor::ToggleMemory | Actor::Reset | Actor::PermRevoke { .. } | Actor::Close)
    }

    fn run(self, w: &World) {
        match self {
            Actor::Fault { buf, accesses, then_put } => {
                for _ in 0..accesses {
                    // SIGBUS and hits are both legitimate here; the books
                    // judge whether this outcome was allowed.
                    let _: Access = cpu_access(w, buf, 0, false);
                }
                if then_put {
                    dma_buf_put(w, buf);
                }
            }
            Actor::Importer { buf, attachment, rounds } => {
                for _ in 0..rounds {
                    if map_attachment(w, buf, attachment) {
                        for _ in 0..2 {
                            thread::yield_now();
                            if invalidated(w, buf, attachment) {
                                break;
                            }
                        }
                        unmap_attachment(w, buf, attachment);
                    }
                }
            }
            Actor::ToggleMemory => {
                config_write_memory(w, false);
                config_write_memory(w, true);
                device_file_put(w);
            }
            Actor::Reset => {
                reset(w);
                device_file_put(w);
            }
            Actor::PermRevoke { buf } => {
                // Refusals (ENODEV, EBADFD) are legitimate outcomes too.
                let _ = feature_dma_buf_revoke(w, buf);
                dma_buf_put(w, buf);
                device_file_put(w);
            }
            Actor::Close => device_file_put(w),
            Actor::HugeFault { buf } => {
                for page in [0, 1, 0] {
                    let _: Access = cpu_access(w, buf, page, true);
                }
            }
            Actor::Munmap { buf } => munmap_page1(w, buf),
            Actor::ProcessAccess { accesses } => {
                for _ in 0..accesses {
                    let _: Access = process_access(w);
                    // Lets the revokes run before the next access.
                    thread::yield_now();
                }
            }
            Actor::ProcessAnswers => answer_notifications(w),
        }
    }
}

/// One execution of `scenario` with `bug`: build the world, run every actor
/// on its own shuttle thread, join them, and check the end state. Panics on
/// a violation; shuttle itself panics on a deadlock. Returns the events the
/// execution reached.
pub(crate) fn execute(bug: Bug, scenario: Scenario) -> [bool; Event::ALL.len()] {
    let setup = scenario.setup();
    // The device file stays open unless some actor closes the fd.
    let closes = setup.actors.iter().any(|a| matches!(a, Actor::Close));
    let file_refs = setup.actors.iter().filter(|a| a.holds_device_file()).count() + usize::from(!closes);
    let mut world = World::new(bug, setup.nr_bufs, &setup.attachments, file_refs);
    if let Some(buf) = scenario.process_buf() {
        world = world.with_process(buf);
    }
    let world = Arc::new(world);
    // A permanent revoke holds the buffer's fd: one more reference.
    for actor in &setup.actors {
        if let Actor::PermRevoke { buf } = actor {
            world.bufs[*buf].refs.fetch_add(1, shuttle::sync::atomic::Ordering::SeqCst);
        }
    }
    let handles: Vec<_> = setup
        .actors
        .iter()
        .map(|&actor| {
            let world = Arc::clone(&world);
            thread::spawn(move || actor.run(&world))
        })
        .collect();
    for h in handles {
        h.join().expect("actor threads only fail by panicking, which fails the execution first");
    }
    let books = world.books();
    if let Err(v) = check_final(&books) {
        panic!("{v}");
    }
    books.seen
}
