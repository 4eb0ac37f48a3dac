//! `vfio-dmabuf exec` end to end: small C programs (`tests/exec/c/`),
//! compiled with the distribution's `cc`, run under `exec` against the
//! demo's device (edu-plus at 0000:00:03.0 in group 0), each proving one
//! part of the preload library: calls it must leave alone, the VFIO calls
//! it carries to the server, the mappings it makes, and the program's own
//! signal handlers behind the library's.
//!
//! Every program run starts its own private server, so tests run in
//! parallel. The preload library is the one cargo built next to the
//! binary (`VFIO_DMABUF_PRELOAD` names it, so `exec` never builds).

mod cli;
mod clients;
mod events;
mod forkmap;
mod frames;
mod pmd;
mod share;
mod signals;
mod storm;
mod vfio;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

/// The `vfio-dmabuf` binary.
pub fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vfio-dmabuf"))
}

/// The preload library next to the binary, built (or brought up to date)
/// once per test process: it is no dependency of the binary (linking it
/// into anything but a preload would interpose there), so `cargo test`
/// alone may leave none, or an old one.
pub fn preload() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = exe().parent().expect("the binary has a directory").to_owned();
            let target = dir.parent().expect("the profile directory has a parent");
            let profile = match dir.file_name().and_then(|n| n.to_str()) {
                Some("debug") | None => "dev",
                Some(p) => p,
            };
            let status = Command::new(env!("CARGO"))
                .args(["build", "-q", "-p", "vfio-dmabuf-preload", "--profile", profile, "--target-dir"])
                .arg(target)
                .status()
                .unwrap_or_else(|e| panic!("cannot run cargo: {e}"));
            assert!(status.success(), "cargo build -p vfio-dmabuf-preload: {status}");
            let lib = dir.join(vfio_dmabuf::exec::PRELOAD_FILE);
            assert!(lib.is_file(), "{} is missing after building it", lib.display());
            lib
        })
        .clone()
}

/// A fresh scratch directory for this test process.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("exec-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

/// `tests/exec/c/<name>.c` compiled (once per test process) with `cc`.
pub fn program(name: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let mut built = BUILT.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = built.get(name) {
        return p.clone();
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/exec/c").join(format!("{name}.c"));
    let out = scratch(&format!("bin-{name}")).join(name);
    let cc = Command::new("cc")
        .args(["-O1", "-g", "-Wall", "-Werror", "-pthread", "-o"])
        .arg(&out)
        .arg(&src)
        .output()
        .unwrap_or_else(|e| panic!("cannot run cc: {e}"));
    assert!(cc.status.success(), "cc {}: {}", src.display(), String::from_utf8_lossy(&cc.stderr));
    built.insert(name.to_owned(), out.clone());
    out
}

/// A command running `args` under `vfio-dmabuf exec`.
pub fn exec_command(args: &[&std::ffi::OsStr]) -> Command {
    exec_command_with(None, args)
}

/// A command running `args` under `vfio-dmabuf exec --devices devices`
/// (the demo's device without it).
pub fn exec_command_with(devices: Option<&Path>, args: &[&std::ffi::OsStr]) -> Command {
    let mut cmd = Command::new(exe());
    cmd.arg("exec");
    if let Some(d) = devices {
        cmd.arg("--devices").arg(d);
    }
    cmd.arg("--").args(args).env("VFIO_DMABUF_PRELOAD", preload()).env_remove("CARGO");
    cmd
}

/// Runs `prog args` under `exec` and returns what it did.
pub fn exec(prog: &Path, args: &[&str]) -> Output {
    let mut all: Vec<&std::ffi::OsStr> = vec![prog.as_os_str()];
    all.extend(args.iter().map(std::ffi::OsStr::new));
    exec_command(&all).output().unwrap_or_else(|e| panic!("cannot run vfio-dmabuf exec: {e}"))
}

/// Runs check `name` of `tests/exec/c/<prog>.c` under `exec` with a
/// devices file holding `devices`, asserts it printed `ok <name>`, and
/// returns what it did.
pub fn run_check(prog: &str, devices: &str, name: &str) -> Output {
    let dir = scratch(&format!("{prog}-{name}"));
    let file = dir.join("devices.toml");
    std::fs::write(&file, devices).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let prog = program(prog);
    let out = exec_command_with(Some(&file), &[prog.as_os_str(), name.as_ref()])
        .output()
        .unwrap_or_else(|e| panic!("cannot run vfio-dmabuf exec: {e}"));
    assert_ok(&out, &[name]);
    out
}

/// Asserts that the run succeeded and printed `ok <what>` for each check.
pub fn assert_ok(out: &Output, checks: &[&str]) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "status {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status);
    for c in checks {
        assert!(stdout.lines().any(|l| l == format!("ok {c}")), "no `ok {c}` in:\n{stdout}\nstderr:\n{stderr}");
    }
}

#[test]
fn calls_on_foreign_fds_and_paths_give_the_same_transcript_with_the_library() {
    let prog = program("passthrough");
    let plain_dir = scratch("pass-plain");
    let ours_dir = scratch("pass-ours");
    let plain = Command::new(&prog).arg(&plain_dir).output().unwrap();
    let ours = exec(&prog, &[ours_dir.to_str().unwrap()]);
    assert!(plain.status.success() && ours.status.success(), "{plain:?}\n{ours:?}");
    let transcript = String::from_utf8_lossy(&ours.stdout);
    assert!(transcript.lines().count() > 50, "too short:\n{transcript}");
    assert_eq!(String::from_utf8_lossy(&plain.stdout), transcript);
}
