//! Section 8 of `vfio-dmabuf bench`: what VFIO calls cost a program that
//! runs under `vfio-dmabuf exec`.
//!
//! A small C program (`exec_probe.c`, compiled here with the system's `cc`)
//! runs under `exec` against the demo's device and times, in one process
//! and run:
//!
//! - an intercepted ioctl (`VFIO_DEVICE_GET_INFO` on the device fd: the
//!   preload library's recognition, one request to the server and its
//!   reply) against a plain ioctl on a real fd (`FIONREAD` on a pipe,
//!   issued with `syscall(2)`, which no preload library sees);
//! - a 4 KiB device-fd `mmap` + `munmap` through the library (a server
//!   round trip for the plan and its notification, the local mapping, and
//!   the unmap notice), against the same pair made in-process on a device
//!   of this process ([`vfio::DeviceFd::mmap`]), measured here in the same run.
//!
//! Both rows are informative: the issue sets no target for them.
//!
//! Then, in a second run of the probe, revokes that reach client processes
//! (issue 11): the probe forks 16 clients before it opens anything, exports
//! buffers of edu-plus's RAM BAR1 and passes them over `SCM_RIGHTS`; the
//! clients map and touch them. It times the socket round trip to a client,
//! a permanent revoke (`DMA_BUF_REVOKE`) and a COMMAND.MEMORY clear of a
//! 2 MiB buffer that 1, 4 and 16 clients map, first touch of 2 MiB and
//! 64 MiB (huge-aligned, a fresh mapping each time) in a client and in the
//! probe, and the permanent revoke with one client stopped by `SIGSTOP`
//! under a 50 ms bound (`exec --ack-timeout`). The baselines come
//! from this process in the same run: the in-process revoke of the same
//! buffer with as many touched mappings as there are clients (the kernel's
//! revoke zaps each), plus two measured round trips per client (the
//! issue's target), and the probe's own first touch.

use std::path::{Path, PathBuf};
use std::process::Command;

use mm::AddressSpace;
use page::PAGE_SIZE;
use vfio::{index_to_offset, MmapArgs};

use super::{ram_device, row, timed, touch, Options, Progress, Result, Row, Stat, Target};

/// Section number in the suite.
pub const SECTION: u32 = 8;

/// Progress steps this section reports.
pub(super) const STEPS: usize = 4;

/// Client counts of the revoke rows (the probe forks the largest).
const CLIENTS: [usize; 3] = [1, 4, 16];

/// Bytes of the buffer the revoke rows revoke.
const REVOKE_LEN: u64 = 2 << 20;

/// Samples per run of the probe's client measurements.
const REPS: usize = 3;

/// The ack bound the stopped-client row configures (`exec --ack-timeout`).
const ACK_BOUND: &str = "50ms";

/// The same in milliseconds.
const ACK_BOUND_MS: f64 = 50.0;

/// The probe's source, built at bench time.
const PROBE_SOURCE: &str = include_str!("exec_probe.c");

/// The exec tests' C helpers, which the probe includes.
const PROBE_UTIL: &str = include_str!("../../tests/exec/c/util.h");

/// Calls per run for each measurement.
fn calls(opts: &Options) -> u64 {
    (opts.register_accesses / 20).clamp(200, 5_000)
}

/// Compiles the probe into `dir`.
fn build_probe(dir: &Path) -> Result<PathBuf> {
    // The probe includes the exec tests' helpers: they go beside it.
    let util = dir.join("util.h");
    std::fs::write(&util, PROBE_UTIL).map_err(|e| format!("{}: {e}", util.display()))?;
    crate::cc::compile(dir, "exec_probe", PROBE_SOURCE, "the exec probe of section 8")
}

/// The per-run samples the probe printed under `key`.
fn samples(json: &serde_json::Value, key: &str) -> Result<Vec<f64>> {
    json.get(key)
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect::<Vec<_>>())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("the exec probe printed no `{key}`"))
}

/// Runs the section: the probe under `exec`, then the in-process baseline.
///
/// # Errors
///
/// No `cc`, a probe that fails (its output is in the message), or a failed
/// in-process mapping.
pub(super) fn section(opts: Options, p: &mut Progress) -> Result<Vec<Row>> {
    p.step("exec: intercepted ioctl and device-fd mmap + munmap, under vfio-dmabuf exec");
    let n = calls(&opts);
    let dir = std::env::temp_dir().join(format!("vfio-dmabuf-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let probe = build_probe(&dir);
    // The demo's device: edu-plus at 0000:00:03.0 in group 0, RAM in BAR1.
    let runs = opts.runs.to_string();
    let json =
        probe.as_ref().map_err(Clone::clone).and_then(|probe| run_probe(&[], probe, &["calls", &runs, &n.to_string()]));
    p.step("exec: revokes reaching 1, 4 and 16 client processes, first touch in a client");
    let clients = probe
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|probe| run_probe(&["--ack-timeout", ACK_BOUND], probe, &["clients", &runs, &REPS.to_string(), "1"]));
    let _ = std::fs::remove_dir_all(&dir);
    let (json, clients) = (json?, clients?);

    p.step("exec: in-process device-fd mmap + munmap, the baseline");
    let vdev = ram_device(901, 2 << 20)?;
    let fd = vdev.open();
    let aspace = AddressSpace::new().map_err(|e| e.to_string())?;
    let mut in_process = Vec::with_capacity(opts.runs);
    for _ in 0..opts.runs {
        let d = timed(|| {
            (0..n).try_for_each(|_| {
                let va =
                    fd.mmap(&aspace, MmapArgs::shared(index_to_offset(0), PAGE_SIZE)).map_err(|e| e.to_string())?;
                aspace.munmap(va, PAGE_SIZE).map_err(|e| e.to_string())
            })
        })?;
        in_process.push(d.as_nanos() as f64 / n as f64 / 1e3);
    }
    let us = |v: Vec<f64>| v.into_iter().map(|ns| ns / 1e3).collect::<Vec<_>>();
    let mut rows = vec![
        row(
            SECTION,
            "intercepted ioctl (VFIO_DEVICE_GET_INFO) under exec".into(),
            Stat::new("µs", us(samples(&json, "ioctl_ns")?)),
            Stat::new("µs", us(samples(&json, "plain_ioctl_ns")?)),
            "plain ioctl on a real fd (FIONREAD on a pipe, by syscall)",
            "ours / baseline",
            None,
        ),
        row(
            SECTION,
            "device-fd mmap + munmap of 4 KiB under exec".into(),
            Stat::new("µs", us(samples(&json, "mmap_munmap_ns")?)),
            Stat::new("µs", in_process),
            "the same, in-process (DeviceFd::mmap)",
            "ours / baseline",
            None,
        ),
    ];
    p.step("exec: in-process revokes of the same mapping, the baseline");
    rows.extend(client_rows(&opts, &json, &clients)?);
    Ok(rows)
}

/// Runs `vfio-dmabuf exec EXTRA -- PROBE ARGS` and parses what it printed.
fn run_probe(extra: &[&str], probe: &Path, args: &[&str]) -> Result<serde_json::Value> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    let out = Command::new(exe)
        .arg("exec")
        .args(extra)
        .arg("--")
        .arg(probe)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run vfio-dmabuf exec: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "the exec probe failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("the exec probe's output is not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// In-process revokes of a 2 MiB buffer with `n` touched mappings in this
/// process (the kernel's revoke zaps every mapping of the buffer, so `n`
/// clients' mappings are the same work for it as `n` mappings here): the
/// permanent revoke and COMMAND.MEMORY clear, in µs.
fn in_process_revokes(opts: &Options, n: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    let vdev = ram_device(902, REVOKE_LEN)?;
    let fd = vdev.open();
    let aspace = AddressSpace::new().map_err(|e| e.to_string())?;
    let rdwr = (libc::O_RDWR | libc::O_CLOEXEC) as u32;
    let (mut perm, mut memory) = (Vec::new(), Vec::new());
    for _ in 0..opts.runs * REPS {
        for (clear, out) in [(false, &mut perm), (true, &mut memory)] {
            let b = fd.feature_dma_buf(0, rdwr, &[(0, REVOKE_LEN)]).map_err(|e| e.to_string())?;
            let mut vas = Vec::with_capacity(n);
            for _ in 0..n {
                let va = vfio::mmap_dmabuf(&aspace, &b, MmapArgs::shared(0, REVOKE_LEN)).map_err(|e| e.to_string())?;
                touch(va, REVOKE_LEN, true)?;
                vas.push(va);
            }
            let d = if clear {
                let d = timed(|| fd.set_memory_enable(false).map_err(|e| e.to_string()))?;
                fd.set_memory_enable(true).map_err(|e| e.to_string())?;
                d
            } else {
                timed(|| fd.feature_dma_buf_revoke(b.raw_fd()).map_err(|e| e.to_string()))?
            };
            out.push(d.as_secs_f64() * 1e6);
            for va in vas {
                aspace.munmap(va, REVOKE_LEN).map_err(|e| e.to_string())?;
            }
        }
    }
    Ok((perm, memory))
}

/// The rows of the client measurements.
fn client_rows(opts: &Options, calls: &serde_json::Value, json: &serde_json::Value) -> Result<Vec<Row>> {
    let us = |key: &str| samples(json, key).map(|v| v.into_iter().map(|ns| ns / 1e3).collect::<Vec<_>>());
    let rtt = Stat::new("µs", us("rtt_ns")?);
    let mut rows = vec![row(
        SECTION,
        "socket round trip, probe ↔ client process (SOCK_SEQPACKET)".into(),
        rtt.clone(),
        Stat::new("µs", samples(calls, "ioctl_ns")?.into_iter().map(|ns| ns / 1e3).collect()),
        "intercepted ioctl (a server round trip with the fd attached)",
        "ours / baseline",
        None,
    )];
    let mut inproc = Vec::new();
    for n in CLIENTS {
        inproc.push((n, in_process_revokes(opts, n)?));
    }
    for (what, key, clear) in
        [("permanent revoke", "perm_revoke", false), ("COMMAND.MEMORY clear", "memory_clear", true)]
    {
        for (n, (perm, memory)) in &inproc {
            let n = *n;
            let base = if clear { memory } else { perm };
            // The budget: the in-process revoke of as many
            // mappings, plus two round trips per client process.
            let budget = 2.0 * n as f64 * rtt.median();
            let base = Stat::new("µs", base.iter().map(|x| x + budget).collect());
            rows.push(row(
                SECTION,
                format!(
                    "{what}, {} MiB buffer, {n} client process{} mapping it (touched)",
                    REVOKE_LEN >> 20,
                    if n == 1 { "" } else { "es" }
                ),
                Stat::new("µs", us(&format!("{key}_{n}_ns"))?),
                base,
                &format!(
                    "in-process {what} of {n} touched mapping{} + 2×{n} socket round trips",
                    if n == 1 { "" } else { "s" }
                ),
                "ours / baseline",
                Some(Target::AtMost(1.0)),
            ));
        }
    }
    for (n, (perm, memory)) in &inproc {
        rows.push(row(
            SECTION,
            format!(
                "in-process permanent revoke, {} MiB buffer, {n} touched mapping{} (the budget's base)",
                REVOKE_LEN >> 20,
                if *n == 1 { "" } else { "s" }
            ),
            Stat::new("µs", perm.clone()),
            Stat::new("µs", memory.clone()),
            "in-process COMMAND.MEMORY clear of the same",
            "ours / baseline",
            None,
        ));
    }
    let perm = &inproc[0].1 .0;
    for mib in [2, 64] {
        rows.push(row(
            SECTION,
            format!("first touch write, {mib} MiB buffer, huge-aligned, in a client process"),
            Stat::new("ns/page", samples(json, &format!("touch_client_{mib}_ns"))?),
            Stat::new("ns/page", samples(json, &format!("touch_primary_{mib}_ns"))?),
            "the same in the primary (the exporting process)",
            "ours / baseline",
            Some(Target::AtMost(1.1)),
        ));
    }
    let ms: Vec<f64> = us("stopped_revoke_ns")?.into_iter().map(|x| x / 1e3).collect();
    rows.push(row(
        SECTION,
        format!("permanent revoke, {} MiB buffer, one client stopped (SIGSTOP)", REVOKE_LEN >> 20),
        Stat::new("ms", ms),
        Stat::new("ms", perm.iter().map(|x| ACK_BOUND_MS + x / 1e3).collect()),
        &format!("the ack bound ({ACK_BOUND}) + the in-process revoke"),
        "ours / baseline",
        None,
    ));

    Ok(rows)
}
