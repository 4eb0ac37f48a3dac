//! The project's C programs (`tests/c`), compiled with the distribution's C
//! compiler against its kernel headers, run unmodified under
//! `vfio-dmabuf exec`: each one exercises the real VFIO and iommufd UAPI and
//! checks every answer against what the kernel gives.
//!
//! One test per program and, where the device matters, per device file
//! (`tests/c/devices`). A test passes only when the program exits 0 and
//! printed its summary line; otherwise it fails with the program's whole
//! output. Nothing is skipped: without `cc` or the kernel headers every test
//! fails and says how to install them.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::Duration;

/// The flags every program is built with: C11, and any warning is an error.
const CFLAGS: &[&str] = &["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-pthread"];

/// How long one program may run before it counts as hung. A watchdog, not a
/// timing assertion: a healthy run ends long before.
const WATCHDOG: Duration = Duration::from_secs(900);

const HOW_TO_INSTALL: &str = "install the distribution's C compiler and kernel headers \
     (Debian: `apt-get install gcc libc6-dev linux-libc-dev`; .ci/run does this)";

/// A program and its translation units (`common.c` is added to each).
struct Program {
    name: &'static str,
    sources: &'static [&'static str],
}

const PROGRAMS: &[Program] = &[
    Program {
        name: "vfio_uapi",
        sources: &["vfio_uapi.c", "uapi_legacy.c", "uapi_device.c", "uapi_irq.c", "uapi_dmabuf.c", "uapi_cdev.c"],
    },
    Program { name: "series_tests", sources: &["series_tests.c", "series_more.c"] },
    Program { name: "mt_stress", sources: &["mt_stress.c"] },
    Program { name: "signals", sources: &["signals.c"] },
];

/// `edu.toml`: QEMU's edu here, edu-plus beside it.
const EDU: &str = "0000:00:03.0";
const EDU_PLUS: &str = "0000:00:04.0";
/// `series.toml`: edu-plus and bochs-display.
const SERIES_EDU_PLUS: &str = "0000:00:03.0";
const SERIES_BOCHS: &str = "0000:00:05.0";

fn c_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("c")
}

/// The directory holding every built program, built once per test run.
fn built() -> &'static Path {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BUILT.get_or_init(build_all) {
        Ok(dir) => dir,
        Err(e) => panic!("{e}"),
    }
}

fn build_all() -> Result<PathBuf, String> {
    match Command::new("cc").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => return Err(format!("`cc --version` failed ({}); {HOW_TO_INSTALL}", out.status)),
        Err(e) => return Err(format!("no C compiler: running `cc` failed ({e}); {HOW_TO_INSTALL}")),
    }
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    remove_stale_builds(tmp);
    let dir = tmp.join(format!("c-programs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    for p in PROGRAMS {
        let out = Command::new("cc")
            .args(CFLAGS)
            .arg("-I")
            .arg(c_dir())
            .arg("-o")
            .arg(dir.join(p.name))
            .args(p.sources.iter().chain(&["common.c"]).map(|s| c_dir().join(s)))
            .output()
            .map_err(|e| format!("running cc for {}: {e}", p.name))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() || !stderr.trim().is_empty() {
            let hint = if stderr.contains("No such file") { format!("\n{HOW_TO_INSTALL}") } else { String::new() };
            return Err(format!("cc {} {:?} ({}):\n{stderr}{hint}", p.name, CFLAGS, out.status));
        }
    }
    Ok(dir)
}

/// Removes the programs earlier test runs built (their process is gone);
/// a run still going keeps its own. Best effort: a directory that cannot be
/// removed only takes space.
fn remove_stale_builds(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("c-programs-")).and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Runs `program args` under `vfio-dmabuf exec --devices tests/c/devices/<devices>`.
fn run_under_exec(program: &str, devices: &str, args: &[&str]) {
    let bin = built().join(program);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vfio-dmabuf"));
    cmd.arg("exec")
        .arg("--devices")
        .arg(c_dir().join("devices").join(devices))
        .arg("--")
        .arg(&bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so the watchdog can end the whole tree.
        .process_group(0);
    let child = cmd.spawn().unwrap_or_else(|e| panic!("spawning vfio-dmabuf exec: {e}"));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let (out, hung): (Output, bool) = match rx.recv_timeout(WATCHDOG) {
        Ok(out) => (out.expect("waiting for vfio-dmabuf exec"), false),
        Err(_) => {
            let group = rustix::process::Pid::from_raw(pid as i32).expect("a child's pid is positive");
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
            (rx.recv().expect("the waiting thread answers").expect("waiting for vfio-dmabuf exec"), true)
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary = format!("PASS {program}: ");
    assert!(
        !hung && out.status.success() && stdout.lines().any(|l| l.starts_with(&summary)),
        "{program} {args:?} under `vfio-dmabuf exec --devices tests/c/devices/{devices}` {}:\n\
         --- stdout\n{stdout}\n--- stderr\n{stderr}",
        if hung {
            format!("was still running after the {WATCHDOG:?} watchdog")
        } else {
            format!("ended with {}", out.status)
        },
    );
    let checks = stdout.lines().filter(|l| l.starts_with("ok ")).count();
    assert!(checks > 0, "{program} passed without a single check:\n{stdout}");
}

/// One section of `vfio_uapi`, on edu and edu-plus.
fn uapi_section(section: &str) {
    run_under_exec("vfio_uapi", "edu.toml", &["-e", EDU, "-r", EDU_PLUS, "-s", section]);
}

#[test]
fn c_programs_compile_warning_free_against_the_distributions_headers() {
    for p in PROGRAMS {
        assert!(built().join(p.name).is_file(), "{} was not built", p.name);
    }
}

#[test]
fn uapi_sysfs_and_dev_nodes_lead_to_each_device() {
    uapi_section("sysfs");
}

#[test]
fn uapi_container_and_group_calls_answer_as_the_kernel_does() {
    uapi_section("legacy");
}

#[test]
fn uapi_device_calls_config_space_and_revoking_events_answer_as_the_kernel_does() {
    uapi_section("device");
}

#[test]
fn uapi_edu_interrupts_reach_eventfds_as_the_kernel_delivers_them() {
    uapi_section("irq");
}

#[test]
fn uapi_dma_buffers_export_map_alias_and_revoke_as_the_kernel_does() {
    uapi_section("dmabuf");
}

#[test]
fn uapi_hot_reset_over_groups_and_over_iommufd() {
    uapi_section("hotreset");
}

#[test]
fn uapi_cdev_and_iommufd_calls_answer_as_the_kernel_does() {
    uapi_section("cdev");
}

#[test]
fn uapi_edu_dma_moves_bytes_through_container_and_ioas_mappings() {
    uapi_section("dma");
}

#[test]
fn series_t1_to_t18_pass_on_edu_plus() {
    run_under_exec("series_tests", "series.toml", &["-d", SERIES_EDU_PLUS, "-o", SERIES_BOCHS]);
}

#[test]
fn series_t1_to_t18_pass_on_bochs_display() {
    run_under_exec("series_tests", "series.toml", &["-d", SERIES_BOCHS, "-o", SERIES_EDU_PLUS]);
}

#[test]
fn concurrent_faults_register_pokes_and_revokes_on_edu_plus_never_cross() {
    run_under_exec("mt_stress", "edu.toml", &["-d", EDU_PLUS]);
}

#[test]
fn concurrent_faults_register_pokes_and_revokes_on_bochs_display_never_cross() {
    run_under_exec("mt_stress", "series.toml", &["-d", SERIES_BOCHS]);
}

#[test]
fn the_programs_signal_handlers_see_revoked_accesses_as_the_kernel_sends_them() {
    run_under_exec("signals", "edu.toml", &["-d", EDU_PLUS]);
}
