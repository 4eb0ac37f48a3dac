//! One QEMU run: its command line, its processes, its two sockets, and a teardown that leaves
//! nothing running.
//!
//! QEMU is started either alone with one of its own device models, or under
//! `vfio-dmabuf exec` with `-device vfio-pci,host=<BDF>`, so that the device is ours, served
//! through the VFIO UAPI. The command line is the one the distribution's QEMU 7.2 needs
//! (its build has no qtest accelerator): `-M q35 -accel tcg -S -qtest unix:SOCK -qtest-log
//! /dev/null -display none -nodefaults`, plus a QMP monitor on a second socket. With `-S` no
//! guest code runs; QEMU's main loop still serves qtest, QMP and device events.
//!
//! Processes: the child we spawn (QEMU, or `vfio-dmabuf exec` with its server and QEMU below
//! it) leads a process group of its own. Teardown asks QEMU to quit over QMP, waits (bounded)
//! for the child to exit, then kills the whole group with SIGKILL before reaping the child, so
//! the group id cannot have been reused, and nothing of the run survives a failed test.
//! Deliberately not handled: a test binary killed with SIGKILL itself cannot tear down.

use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::process::{kill_process_group, pidfd_open, Pid, PidfdFlags, Signal};

use super::qmp::Qmp;
use super::qtest::Qtest;
use super::WATCHDOG;

/// The QEMU binary the tests run, and the distribution package that has it.
pub const QEMU: &str = "qemu-system-x86_64";
const QEMU_PACKAGE: &str = "qemu-system-x86";

/// Whose model of the device answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// QEMU's own device model (`-device edu`): the ground truth.
    Qemu,
    /// Ours, served by `vfio-dmabuf exec` and reached by unmodified QEMU through
    /// `-device vfio-pci,host=<BDF>`.
    Vfio,
}

/// The device under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// QEMU's edu (1234:11e8).
    Edu,
    /// QEMU's bochs-display (1234:1111).
    BochsDisplay,
}

impl Device {
    /// QEMU's name of its own model.
    fn qemu_model(self) -> &'static str {
        match self {
            Device::Edu => "edu",
            Device::BochsDisplay => "bochs-display",
        }
    }

    /// The devices file `vfio-dmabuf exec` serves this device from.
    pub fn devices_file(self) -> PathBuf {
        let name = match self {
            Device::Edu => "edu.toml",
            Device::BochsDisplay => "bochs.toml",
        };
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/qemu").join(name)
    }

    /// The host address (BDF) the devices file gives its only device.
    pub fn host_bdf(self) -> String {
        let path = self.devices_file();
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let table: toml::Table = text.parse().unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let devices = table.get("devices").and_then(toml::Value::as_table);
        let mut bdfs = devices.into_iter().flat_map(|d| d.values()).filter_map(|d| d.get("bdf")?.as_str());
        match (bdfs.next(), bdfs.next()) {
            (Some(bdf), None) => bdf.to_owned(),
            _ => panic!("{}: expected exactly one device with a `bdf`", path.display()),
        }
    }
}

/// Guest RAM: QEMU's default private anonymous memory, or a shared memfd backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum GuestRam {
    /// `-m 128M` of private anonymous memory (QEMU's default).
    #[default]
    Private,
    /// `-object memory-backend-memfd,share=on`: memory another process can map.
    SharedMemfd,
}

/// What else the run needs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// The guest RAM backend.
    pub ram: GuestRam,
    /// Run the VM (QMP `cont`) on firmware that only halts the CPU: the guest's virtual clock
    /// then advances, which QEMU's own edu needs to complete a DMA (its transfer is a timer),
    /// and still no guest code touches the PCI devices.
    pub running: bool,
}

/// A QEMU run, with its qtest and QMP connections.
#[derive(Debug)]
pub struct Machine {
    qtest: Qtest,
    qmp: Qmp,
    // Last: dropped after the connections, so QEMU sees them close before the kill.
    process: Process,
}

/// The spawned child, leader of its own process group, and its run directory.
#[derive(Debug)]
struct Process {
    child: Child,
    /// Readable once the child has exited (before it is reaped).
    pidfd: OwnedFd,
    /// Sockets, firmware and the log of everything the processes wrote.
    dir: PathBuf,
    reaped: Option<ExitStatus>,
}

/// Finds [`QEMU`] on `PATH`; a missing QEMU fails the test, naming the package to install.
fn find_qemu() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|dir| dir.join(QEMU)).find(|candidate| candidate.is_file()).unwrap_or_else(|| {
        panic!(
            "{QEMU} is not installed (not found on PATH): these tests need the distribution's QEMU; \
             install the `{QEMU_PACKAGE}` package, e.g. `apt-get install --no-install-recommends {QEMU_PACKAGE}` \
             (.ci/run does)"
        )
    })
}

/// A fresh run directory under the system temporary directory.
fn run_dir() -> PathBuf {
    static RUNS: AtomicU32 = AtomicU32::new(0);
    let n = RUNS.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("vfio-dmabuf-qemu.{}.{n}", std::process::id()));
    // A directory left by an earlier process of the same id is stale.
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

/// Firmware for a running VM that must not touch PCI: 64 KiB of `hlt`. The CPU starts at the
/// reset vector with interrupts off, halts, and stays halted.
fn write_halt_firmware(dir: &Path) -> PathBuf {
    let path = dir.join("halt.bin");
    fs::write(&path, vec![0xf4_u8; 64 << 10]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    path
}

/// Waits until `fd` is readable or `deadline` passes; `Ok(true)` if readable.
fn wait_readable(fd: impl AsFd, deadline: Instant) -> io::Result<bool> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = Timespec::try_from(left).map_err(|_| io::Error::other("time-out out of range"))?;
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

impl Process {
    fn log(&self) -> PathBuf {
        self.dir.join("output.log")
    }

    /// Accepts one connection on `listener`, unless the child exits first or the watchdog
    /// fires.
    fn accept(&self, listener: &UnixListener, what: &str) -> Result<UnixStream, String> {
        let deadline = Instant::now() + WATCHDOG;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let timeout = Timespec::try_from(left).map_err(|e| e.to_string())?;
            let mut fds = [PollFd::new(listener, PollFlags::IN), PollFd::new(&self.pidfd, PollFlags::IN)];
            match poll(&mut fds, Some(&timeout)) {
                Ok(0) => return Err(format!("QEMU did not connect its {what} socket within {WATCHDOG:?}")),
                Ok(_) if fds[0].revents().contains(PollFlags::IN) => {
                    return listener.accept().map(|(stream, _)| stream).map_err(|e| format!("accept {what}: {e}"))
                }
                Ok(_) => return Err(format!("the process exited before QEMU connected its {what} socket")),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(format!("poll: {e}")),
            }
        }
    }

    /// Whether the child exits within `timeout` (it is not reaped).
    fn exits_within(&self, timeout: Duration) -> bool {
        wait_readable(&self.pidfd, Instant::now() + timeout).unwrap_or(false)
    }

    /// Kills whatever is left of the process group, then reaps the child.
    fn kill_and_reap(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.reaped {
            return Ok(status);
        }
        // Before the reap the leader's id still names this group (a zombie keeps it).
        match kill_process_group(Pid::from_child(&self.child), Signal::KILL) {
            Ok(()) | Err(rustix::io::Errno::SRCH) => {}
            Err(e) => return Err(e.into()),
        }
        let status = self.child.wait()?;
        self.reaped = Some(status);
        Ok(status)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Err(e) = self.kill_and_reap() {
            eprintln!("could not kill and reap the QEMU run {}: {e}", self.dir.display());
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Machine {
    /// Starts QEMU with `device` modelled by `backend`, and connects qtest and QMP. Any
    /// failure panics with what QEMU (and `exec`) wrote.
    pub fn start(device: Device, backend: Backend, options: Options) -> Machine {
        let qemu = find_qemu();
        let dir = run_dir();
        let (qtest_path, qmp_path) = (dir.join("qtest.sock"), dir.join("qmp.sock"));
        let listen = |path: &Path| UnixListener::bind(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let (qtest_listener, qmp_listener) = (listen(&qtest_path), listen(&qmp_path));

        let mut qemu_args: Vec<String> =
            ["-M", "q35", "-accel", "tcg", "-S", "-display", "none", "-nodefaults", "-qtest-log", "/dev/null"]
                .map(String::from)
                .into();
        qemu_args.extend(["-qtest".into(), format!("unix:{}", qtest_path.display())]);
        qemu_args.extend(["-chardev".into(), format!("socket,path={},id=char0", qmp_path.display())]);
        qemu_args.extend(["-mon".into(), "chardev=char0,mode=control".into()]);
        let device_arg = match backend {
            Backend::Qemu => device.qemu_model().to_owned(),
            Backend::Vfio => format!("vfio-pci,host={}", device.host_bdf()),
        };
        qemu_args.extend(["-device".into(), device_arg]);
        if options.ram == GuestRam::SharedMemfd {
            qemu_args.extend(["-object", "memory-backend-memfd,id=mem,size=128M,share=on"].map(String::from));
            qemu_args.extend(["-machine", "memory-backend=mem"].map(String::from));
        }
        if options.running {
            qemu_args.extend(["-bios".into(), write_halt_firmware(&dir).display().to_string()]);
        }

        let mut command = match backend {
            Backend::Qemu => Command::new(&qemu),
            Backend::Vfio => {
                let mut exec = Command::new(env!("CARGO_BIN_EXE_vfio-dmabuf"));
                exec.arg("exec").arg("--devices").arg(device.devices_file()).arg("--").arg(&qemu);
                exec
            }
        };
        command.args(&qemu_args);
        let log = dir.join("output.log");
        let out = File::create(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let err = out.try_clone().unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        command.stdin(Stdio::null()).stdout(out).stderr(err).process_group(0);
        let command_line = format!("{command:?}");
        let mut child = command.spawn().unwrap_or_else(|e| panic!("{command_line}: {e}"));
        let pidfd = match pidfd_open(Pid::from_child(&child), PidfdFlags::empty()) {
            Ok(pidfd) => pidfd,
            Err(e) => {
                // Without a pidfd there is no bounded wait: end the run before failing.
                let _ = kill_process_group(Pid::from_child(&child), Signal::KILL);
                let _ = child.wait();
                panic!("pidfd_open: {e}");
            }
        };
        let process = Process { child, pidfd, dir, reaped: None };

        let connected = (|| {
            let qmp_stream = process.accept(&qmp_listener, "QMP")?;
            let qtest_stream = process.accept(&qtest_listener, "qtest")?;
            let qmp = Qmp::handshake(qmp_stream, WATCHDOG).map_err(|e| e.to_string())?;
            let qtest = Qtest::new(qtest_stream, WATCHDOG).map_err(|e| e.to_string())?;
            Ok::<_, String>((qtest, qmp))
        })();
        let (qtest, qmp) = match connected {
            Ok(connections) => connections,
            Err(e) => panic!("{}", failure_report(&process, &format!("starting {command_line}: {e}"))),
        };
        let mut machine = Machine { qtest, qmp, process };
        if options.running {
            machine.qmp_execute("cont");
        }
        machine
    }

    /// Panics with `what`, the error, and the end of what the processes wrote.
    pub fn fail(&self, what: &str, error: impl std::fmt::Display) -> ! {
        panic!("{}", failure_report(&self.process, &format!("{what}: {error}")))
    }

    /// The qtest connection; errors are the caller's to report (see [`Machine::fail`]).
    pub fn qtest(&mut self) -> &mut Qtest {
        &mut self.qtest
    }

    /// Runs a QMP command, failing the test if QEMU refuses it.
    pub fn qmp_execute(&mut self, name: &str) -> serde_json::Value {
        self.qmp.execute(name).unwrap_or_else(|e| self.fail(&format!("QMP {name}"), e))
    }

    /// QMP `system_reset`, and waits for QEMU to report the reset done (its `RESET` event):
    /// the request only schedules the reset, so a qtest access right after the answer could
    /// still see the old state.
    pub fn system_reset(&mut self) {
        self.qmp_execute("system_reset");
        let reset = self.qmp.wait_event("RESET", Instant::now() + WATCHDOG);
        reset.unwrap_or_else(|e| self.fail("system_reset", e));
    }

    /// QMP `quit`, then waits for the child we spawned to exit and reaps it. Returns its exit
    /// status and whether the process group was empty once the child had exited.
    pub fn quit(mut self) -> (ExitStatus, bool) {
        // QEMU may close the monitor before its answer arrives: the exit below is what counts.
        let _ = self.qmp.send("quit");
        if !self.process.exits_within(WATCHDOG) {
            self.fail("quit", format!("the process did not exit within {WATCHDOG:?}"));
        }
        let pgid = Pid::from_child(&self.process.child);
        let status = self.process.child.wait().unwrap_or_else(|e| self.fail("wait", e));
        self.process.reaped = Some(status);
        // The group is empty once no process is left in it: then signal 0 finds nobody.
        let empty = rustix::process::test_kill_process_group(pgid) == Err(rustix::io::Errno::SRCH);
        if !empty {
            // Survivors keep the group id from being reused, so this reaches only them.
            let _ = kill_process_group(pgid, Signal::KILL);
        }
        (status, empty)
    }
}

/// Guest-physical memory accesses through qtest; a refused access fails the test.
impl Machine {
    /// One load of `width` bytes (1, 2, 4 or 8).
    pub fn read(&mut self, width: u8, addr: u64) -> u64 {
        let value = self.qtest.mem_read(width, addr);
        value.unwrap_or_else(|e| self.fail(&format!("read of {width} bytes at {addr:#x}"), e))
    }

    /// One store of `width` bytes (1, 2, 4 or 8).
    pub fn write(&mut self, width: u8, addr: u64, value: u64) {
        let written = self.qtest.mem_write(width, addr, value);
        written.unwrap_or_else(|e| self.fail(&format!("write of {value:#x} ({width} bytes) at {addr:#x}"), e));
    }

    /// `readw`.
    pub fn readw(&mut self, addr: u64) -> u16 {
        self.read(2, addr) as u16
    }

    /// `readl`.
    pub fn readl(&mut self, addr: u64) -> u32 {
        self.read(4, addr) as u32
    }

    /// `readq`.
    pub fn readq(&mut self, addr: u64) -> u64 {
        self.read(8, addr)
    }

    /// `writew`.
    pub fn writew(&mut self, addr: u64, value: u16) {
        self.write(2, addr, value.into());
    }

    /// `writel`.
    pub fn writel(&mut self, addr: u64, value: u32) {
        self.write(4, addr, value.into());
    }

    /// `writeq`.
    pub fn writeq(&mut self, addr: u64, value: u64) {
        self.write(8, addr, value);
    }

    /// `read ADDR SIZE` (hex on the wire).
    pub fn read_bytes(&mut self, addr: u64, len: usize) -> Vec<u8> {
        let bytes = self.qtest.read_bytes(addr, len);
        bytes.unwrap_or_else(|e| self.fail(&format!("read of {len} bytes at {addr:#x}"), e))
    }

    /// `write ADDR SIZE 0xHEX`.
    pub fn write_bytes(&mut self, addr: u64, data: &[u8]) {
        let written = self.qtest.write_bytes(addr, data);
        written.unwrap_or_else(|e| self.fail(&format!("write of {} bytes at {addr:#x}", data.len()), e));
    }

    /// `b64read ADDR SIZE`.
    pub fn b64read(&mut self, addr: u64, len: usize) -> Vec<u8> {
        let bytes = self.qtest.b64read(addr, len);
        bytes.unwrap_or_else(|e| self.fail(&format!("b64read of {len} bytes at {addr:#x}"), e))
    }

    /// `b64write ADDR SIZE B64`.
    pub fn b64write(&mut self, addr: u64, data: &[u8]) {
        let written = self.qtest.b64write(addr, data);
        written.unwrap_or_else(|e| self.fail(&format!("b64write of {} bytes at {addr:#x}", data.len()), e));
    }

    /// Repeats `probe` until it returns `true`, failing the test if that takes longer than the
    /// watchdog. For device work that completes asynchronously (a factorial, a DMA, an MSI
    /// message); the pause between probes only spares the CPU, no result depends on it.
    pub fn poll_until(&mut self, what: &str, mut probe: impl FnMut(&mut Machine) -> bool) {
        let deadline = Instant::now() + WATCHDOG;
        while !probe(self) {
            if Instant::now() > deadline {
                self.fail(what, format!("not seen within {WATCHDOG:?}"));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        if self.process.reaped.is_none() {
            // A clean exit first, so `exec` stops its server as it would for any program;
            // the process group is killed afterwards in any case.
            let _ = self.qmp.send("quit");
            self.process.exits_within(Duration::from_secs(10));
        }
    }
}

/// `what` and the last lines the run's processes wrote (QEMU's errors, `exec`'s log).
fn failure_report(process: &Process, what: &str) -> String {
    // Give a dying process a moment to finish writing its error, bounded.
    process.exits_within(Duration::from_secs(5));
    let output = fs::read(process.log()).map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
    let output = output.unwrap_or_else(|e| format!("(no output: {e})"));
    let tail: Vec<&str> = output.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect();
    format!("{what}\n--- output of the run ({}) ---\n{}", process.log().display(), tail.join("\n"))
}
