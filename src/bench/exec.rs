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

use std::path::{Path, PathBuf};
use std::process::Command;

use mm::AddressSpace;
use page::PAGE_SIZE;
use vfio::{index_to_offset, MmapArgs};

use super::{ram_device, row, timed, Options, Progress, Result, Row, Stat};

/// Section number in the suite.
pub const SECTION: u32 = 8;

/// Progress steps this section reports.
pub(super) const STEPS: usize = 2;

/// The probe's source, built at bench time.
const PROBE_SOURCE: &str = include_str!("exec_probe.c");

/// Calls per run for each measurement.
fn calls(opts: &Options) -> u64 {
    (opts.register_accesses / 20).clamp(200, 5_000)
}

/// Compiles the probe into `dir`.
fn build_probe(dir: &Path) -> Result<PathBuf> {
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
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    // The demo's device: edu-plus at 0000:00:03.0 in group 0, RAM in BAR1.
    let out = probe.and_then(|probe| {
        Command::new(exe)
            .arg("exec")
            .arg("--")
            .arg(&probe)
            .args(["0", "0000:00:03.0", "1", &opts.runs.to_string(), &n.to_string()])
            .output()
            .map_err(|e| format!("cannot run vfio-dmabuf exec: {e}"))
    });
    let _ = std::fs::remove_dir_all(&dir);
    let out = out?;
    if !out.status.success() {
        return Err(format!(
            "the exec probe failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("the exec probe's output is not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))?;

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
    Ok(vec![
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
    ])
}
