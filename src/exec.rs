//! `vfio-dmabuf exec [--devices FILE] -- PROG ARGS...`: runs an unmodified
//! program against emulated devices.
//!
//! Before anything starts: the program must be dynamically linked (a
//! static binary never loads the preload library, so its VFIO calls would
//! reach the host kernel: refused with a clear message), and the kernel
//! must offer userfaultfd with MINOR faults on shmem and `UFFDIO_POISON`
//! (refused with exit status 4 otherwise). Then a private server (the
//! `server` crate) listens on a socket in a fresh directory, the program
//! runs with `VFIO_DMABUF_SOCKET` naming it and `LD_PRELOAD` naming the
//! preload library, SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to `exec` are
//! forwarded to it, and when it ends the server stops and `exec` exits
//! with the program's status (128 + the signal number when a signal killed
//! it).
//!
//! The preload library is `libvfio_dmabuf_preload.so` next to the running
//! executable, or the file `VFIO_DMABUF_PRELOAD` names. Under `cargo run`
//! (`CARGO` set) the library is built (or brought up to date) first with
//! the same profile, so `cargo run -- exec -- ./prog` works from a clean
//! checkout.

use std::ffi::{OsStr, OsString};
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rustix::process::{Pid, Signal};
use server::Server;

use crate::devices::{self, DevicesError};

/// The file name of the preload library.
pub const PRELOAD_FILE: &str = "libvfio_dmabuf_preload.so";
/// Environment variable naming the preload library explicitly.
pub const PRELOAD_ENV: &str = "VFIO_DMABUF_PRELOAD";

/// Why the program could not be run.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// `PATH` has no such program.
    #[error("cannot find {0:?} in PATH")]
    NotFound(OsString),
    /// The program could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The program.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A statically linked program.
    #[error(
        "{0} is statically linked (no program interpreter): it would not load the preload library, and its \
VFIO calls would reach the host kernel instead of the emulated devices; link it dynamically"
    )]
    Static(String),
    /// The kernel lacks a feature the preload library's mappings need.
    #[error("this kernel cannot serve device mappings to a program")]
    Kernel(#[source] mm::MmError),
    /// No preload library.
    #[error(
        "the preload library {0} is missing: build it with `cargo build -p vfio-dmabuf-preload` \
(same profile as this binary), or name it in {PRELOAD_ENV}"
    )]
    NoPreload(String),
    /// Building the preload library under cargo failed.
    #[error("`cargo build -p vfio-dmabuf-preload` failed ({0})")]
    Build(String),
    /// The devices.
    #[error(transparent)]
    Devices(#[from] DevicesError),
    /// The server.
    #[error("cannot start the server")]
    Server(#[from] server::ServerError),
    /// The program could not be started.
    #[error("cannot run {program}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The private socket directory.
    #[error("cannot create the server's socket directory {path}")]
    SocketDir {
        /// The directory.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl ExecError {
    /// Whether this is the host lacking a feature (exit status 4).
    pub fn is_unsupported(&self) -> bool {
        matches!(self, ExecError::Kernel(e) if matches!(e, mm::MmError::Unsupported(_)))
    }
}

/// Runs `program` (name and arguments) against the devices of `devices`
/// (the demo's device when `None`); returns the exit status to give.
/// `ack_timeout`, when given, overrides the devices file's
/// `[server] ack-timeout` (default 1 s): how long a revoke waits for each
/// process before it cuts that process off.
///
/// # Errors
///
/// [`ExecError`]: nothing was run, or the program could not start.
pub fn run(devices: Option<&Path>, ack_timeout: Option<Duration>, program: &[OsString]) -> Result<u8, ExecError> {
    let (name, args) = program.split_first().ok_or_else(|| ExecError::NotFound(OsString::new()))?;
    let path = find_program(name)?;
    check_dynamic(&path)?;
    check_kernel()?;
    let preload = preload_library()?;
    let (devices, settings) = devices::load_with_settings(devices)?;
    let dir = SocketDir::new()?;
    let mut server = Server::new(devices)?;
    if let Some(t) = ack_timeout.or(settings.ack_timeout) {
        server.set_ack_timeout(t);
    }
    server.bind(dir.socket())?;
    let handle = server.spawn()?;
    let ld_preload = match std::env::var_os("LD_PRELOAD").filter(|v| !v.is_empty()) {
        Some(old) => {
            let mut v = preload.clone().into_os_string();
            v.push(":");
            v.push(old);
            v
        }
        None => preload.clone().into_os_string(),
    };
    // Caught from before the spawn, so a signal sent as soon as the program
    // runs is forwarded rather than ending `exec` (handled signals revert
    // to their default action in the program at its exec).
    let signals = catch_signals();
    let spawned = Command::new(&path)
        .arg0(name)
        .args(args)
        .env(wire::SOCKET_ENV, dir.socket())
        .env("LD_PRELOAD", ld_preload)
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(source) => {
            handle.shutdown();
            return Err(ExecError::Spawn { program: path.display().to_string(), source });
        }
    };
    tracing::info!(program = %path.display(), pid = child.id(), preload = %preload.display(), "running");
    let forwarder = signals.and_then(|s| forward_signals(s, child.id()));
    let status = child.wait();
    if let Some((h, t)) = forwarder {
        h.close();
        let _ = t.join();
    }
    let cut_offs = handle.cut_offs();
    handle.shutdown();
    drop(dir);
    if cut_offs > 0 {
        eprintln!("-W- {cut_offs} client cut-off(s): a process did not acknowledge a revoke within the bound");
    }
    let status = status.map_err(|source| ExecError::Spawn { program: path.display().to_string(), source })?;
    Ok(match (status.code(), status.signal()) {
        (Some(c), _) => c as u8,
        (None, Some(sig)) => (128 + sig) as u8,
        (None, None) => 1,
    })
}

/// The program's path: `name` itself when it has a slash, else its first
/// executable match in `PATH`.
fn find_program(name: &OsStr) -> Result<PathBuf, ExecError> {
    if name.as_encoded_bytes().contains(&b'/') {
        return Ok(PathBuf::from(name));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| rustix::fs::access(p, rustix::fs::Access::EXEC_OK).is_ok() && p.is_file())
        .ok_or_else(|| ExecError::NotFound(name.to_owned()))
}

/// Refuses a program without a program interpreter (`PT_INTERP`): static
/// and static-pie binaries start without the dynamic loader, which is what
/// reads `LD_PRELOAD`. Scripts and other formats are left to the kernel.
fn check_dynamic(path: &Path) -> Result<(), ExecError> {
    let read = |source| ExecError::Read { path: path.display().to_string(), source };
    let bytes = std::fs::read(path).map_err(read)?;
    match elf_has_interpreter(&bytes) {
        Some(false) => Err(ExecError::Static(path.display().to_string())),
        _ => Ok(()),
    }
}

/// Whether a 64-bit little-endian ELF file has `PT_INTERP` (with
/// `PT_DYNAMIC`); `None` for anything else.
pub fn elf_has_interpreter(bytes: &[u8]) -> Option<bool> {
    const PT_DYNAMIC: u32 = 2;
    const PT_INTERP: u32 = 3;
    if bytes.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let u16_at = |o: usize| bytes.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| bytes.get(o..o + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let u64_at = |o: usize| bytes.get(o..o + 8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let (phentsize, phnum) = (usize::from(u16_at(0x36)?), usize::from(u16_at(0x38)?));
    let types: Vec<u32> = (0..phnum).filter_map(|i| u32_at(phoff.checked_add(i.checked_mul(phentsize)?)?)).collect();
    Some(types.contains(&PT_INTERP) && types.contains(&PT_DYNAMIC))
}

/// Refuses a kernel without userfaultfd `MINOR_SHMEM` and `POISON` (what every
/// mapping of the program needs), by making the address space the preload
/// library will make.
fn check_kernel() -> Result<(), ExecError> {
    mm::AddressSpace::new().map(drop).map_err(ExecError::Kernel)
}

/// The preload library (see the module doc). From a test binary (in the
/// profile directory's `deps`), the library next to the profile's binaries.
pub(crate) fn preload_library() -> Result<PathBuf, ExecError> {
    if let Some(p) = std::env::var_os(PRELOAD_ENV) {
        let p = PathBuf::from(p);
        return if p.is_file() { Ok(p) } else { Err(ExecError::NoPreload(p.display().to_string())) };
    }
    let exe =
        std::env::current_exe().map_err(|source| ExecError::Read { path: "the running executable".into(), source })?;
    let mut dir = exe.parent().unwrap_or(Path::new("."));
    if dir.file_name() == Some(OsStr::new("deps")) {
        dir = dir.parent().unwrap_or(dir);
    }
    let lib = dir.join(PRELOAD_FILE);
    // Under cargo the library is brought up to date first: it is no
    // dependency of this binary, so `cargo run` alone builds none.
    if let Some(cargo) = std::env::var_os("CARGO") {
        build_preload(&cargo, dir, !lib.is_file())?;
    }
    if lib.is_file() {
        // An absolute path: the program may change its working directory.
        Ok(lib.canonicalize().unwrap_or(lib))
    } else {
        Err(ExecError::NoPreload(lib.display().to_string()))
    }
}

/// `$CARGO build -p vfio-dmabuf-preload` into the target directory holding
/// `dir` (`<target>/<profile dir>`), with that profile; with progress when
/// the library is `missing`, quietly when it is only brought up to date.
fn build_preload(cargo: &OsStr, dir: &Path, missing: bool) -> Result<(), ExecError> {
    let profile = match dir.file_name().and_then(OsStr::to_str) {
        Some("debug") | None => "dev",
        Some(p) => p,
    };
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-p", "vfio-dmabuf-preload", "--profile", profile]);
    if !missing {
        cmd.arg("--quiet");
    }
    if let Some(target) = dir.parent() {
        cmd.arg("--target-dir").arg(target);
    }
    if missing {
        eprintln!("-i- building the preload library (cargo build -p vfio-dmabuf-preload --profile {profile})");
    }
    let status = cmd.status().map_err(|e| ExecError::Build(e.to_string()))?;
    if status.success() {
        Ok(())
    } else {
        Err(ExecError::Build(status.to_string()))
    }
}

/// Catches the signals that end a program, to forward them.
fn catch_signals() -> Option<signal_hook::iterator::Signals> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
    signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP, SIGQUIT])
        .map_err(|e| tracing::warn!(%e, "cannot forward signals to the program"))
        .ok()
}

/// Forwards the caught signals to `pid` until closed.
fn forward_signals(
    mut signals: signal_hook::iterator::Signals,
    pid: u32,
) -> Option<(signal_hook::iterator::Handle, std::thread::JoinHandle<()>)> {
    let handle = signals.handle();
    let pid = Pid::from_raw(pid as i32)?;
    let thread = std::thread::Builder::new()
        .name("vfio-dmabuf-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if let Some(s) = Signal::from_named_raw(sig) {
                    let _ = rustix::process::kill_process(pid, s);
                }
            }
        })
        .ok()?;
    Some((handle, thread))
}

/// A fresh directory (mode 0700) for the server's socket, removed on drop.
#[derive(Debug)]
pub(crate) struct SocketDir(PathBuf);

impl SocketDir {
    pub(crate) fn new() -> Result<Self, ExecError> {
        let base = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
        let mut last = None;
        for attempt in 0..100u32 {
            let dir = base.join(format!("vfio-dmabuf-{}-{attempt}", std::process::id()));
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => return Ok(SocketDir(dir)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
                Err(source) => return Err(ExecError::SocketDir { path: dir.display().to_string(), source }),
            }
        }
        let source = last.unwrap_or_else(|| std::io::Error::from(std::io::ErrorKind::AlreadyExists));
        Err(ExecError::SocketDir { path: base.display().to_string(), source })
    }

    pub(crate) fn socket(&self) -> PathBuf {
        self.0.join("server.sock")
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

use std::os::unix::fs::DirBuilderExt as _;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_binary_is_dynamic_and_a_bare_header_is_static() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(elf_has_interpreter(&me), Some(true));
        // An ELF header with no program headers at all.
        let mut bare = vec![0u8; 64];
        bare[..6].copy_from_slice(b"\x7fELF\x02\x01");
        assert_eq!(elf_has_interpreter(&bare), Some(false));
        assert_eq!(elf_has_interpreter(b"#!/bin/sh\n"), None);
    }
}
