//! The storm gains client processes (`c/storm.c`): a primary's threads
//! clear and set COMMAND.MEMORY, reset and FLR the device, and permanently
//! revoke and re-export buffers of edu-plus's RAM BAR1, while forked client
//! processes that received the buffers over `SCM_RIGHTS` read and write
//! them, catching SIGBUS. Every access is judged against revocation epochs
//! the primary publishes in a page all processes share (see the program's
//! opening comment): a SIGBUS only under a revoke, no success inside a
//! memory-clear window or after a permanent revoke, no lost or stray write,
//! every word intact after each un-revoke, and the primary's last close of
//! the device revoking every client mapping. Counts bound the run, not time.
//!
//! `VFIO_DMABUF_STORM_CYCLES` sets the cycles of each of the primary's
//! threads (default [`CYCLES`]), `VFIO_DMABUF_STORM_SEED` the seed.

use super::{assert_ok, exec, program};

/// Client processes.
const CLIENTS: u32 = 3;
/// Cycles of each revoking thread of the primary.
const CYCLES: u64 = 200;
/// Accesses each client makes at least.
const ACCESSES: u64 = 20_000;

#[test]
fn client_processes_fault_only_under_a_revoke_and_keep_their_data_through_a_revoke_storm() {
    let env = |name: &str, default: u64| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (cycles, seed) = (env("VFIO_DMABUF_STORM_CYCLES", CYCLES), env("VFIO_DMABUF_STORM_SEED", 1));
    let out =
        exec(&program("storm"), &[&CLIENTS.to_string(), &seed.to_string(), &cycles.to_string(), &ACCESSES.to_string()]);
    assert_ok(&out, &["storm"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let tally = stdout.lines().find(|l| l.starts_with("storm:")).unwrap_or_default();
    eprintln!("{tally}");
}
