//! `vfio-dmabuf`: run scenarios against emulated VFIO-PCI devices whose BAR
//! mappings are revocable DMA-buffers; the demo; inspect; bench.
#![forbid(unsafe_code)]

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vfio_dmabuf::scenario::{parse, run};
use vfio_dmabuf::{inspect, report, SEED_SCENARIO};

/// Exit status when the host lacks a kernel feature (kselftest's skip).
const EXIT_SKIP: u8 = 4;

#[derive(Debug, Parser)]
#[command(
    name = "vfio-dmabuf",
    version,
    about = "VFIO-PCI devices whose every BAR mapping is a revocable DMA-buffer, in userspace",
    long_about = "Emulated VFIO-PCI devices following the kernel series \"vfio/pci: Add mmap() for DMABUFs\": \
BAR mmaps backed by per-mapping DMA-buffers, explicit buffer export, mmap, permanent revoke and \
write-combining, with real mappings, real page faults and real SIGBUS.\n\nWith no command, runs the demo.",
    after_help = "Examples:\n  vfio-dmabuf                                  # the demo (the seed mail's example)\n  vfio-dmabuf run scenarios/*.toml             # every shipped scenario\n  vfio-dmabuf inspect scenarios/t14-two-range-buffer.toml\n\nExit status: 0 every expectation held, 1 one did not (or an error), 2 usage, 4 the kernel lacks a needed feature."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run scenario files and check every expectation.
    #[command(
        after_help = "Example:\n  vfio-dmabuf run scenarios/seed.toml scenarios/t05-permanent-revoke.toml\n  vfio-dmabuf run --json scenarios/*.toml | jq 'select(.pass == false)'\n  vfio-dmabuf run --narrate scenarios/clients-revoke.toml   # a story across two processes\n\nThe format is documented in docs/scenarios.md; client processes ([processes.<name>], `process = \"<name>\"` steps, \
`pass` of an fd over SCM_RIGHTS, `stop`/`cont`/`exit`) in docs/scenario-processes.md: they run a C worker built with cc \
under the preload library, against a server of the scenario's devices in this process. RAM BARs that need more memory than is available \
(MemAvailable) are refused before anything is allocated; VFIO_DMABUF_ALLOW_OVERCOMMIT=1 skips that check."
    )]
    Run {
        /// Scenario files (TOML).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// One JSON record per step on stdout instead of text.
        #[arg(long)]
        json: bool,
        /// Print the narrative (`say`) of each step too.
        #[arg(long)]
        narrate: bool,
    },
    /// The seed mail's example, step by step, in words a newcomer follows.
    #[command(after_help = "Example:\n  vfio-dmabuf demo")]
    Demo {
        /// One JSON record per step on stdout instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Measure fault, revoke, access and setup costs against the kernel's own paths, in one run.
    #[command(
        after_help = "Examples:\n  vfio-dmabuf bench --quick          # under a minute\n  vfio-dmabuf bench > results.md     # the full suite (1 GiB mappings), a Markdown table\n  vfio-dmabuf bench --quick --json | jq -c 'select(.met == false)'   # missed targets\n\nEvery figure is the median of several runs [min–max]; ratios compare medians measured in the same run."
    )]
    Bench {
        /// Smaller sizes and fewer runs: finishes in under a minute.
        #[arg(long)]
        quick: bool,
        /// Runs per measurement (default 7, or 5 with --quick; at least 5).
        #[arg(long)]
        runs: Option<usize>,
        /// One JSON object per row and line instead of a Markdown table (keys: section,
        /// measurement, unit, ours, baseline, ratio, target, met, ...; see BENCHMARKS.md).
        #[arg(long)]
        json: bool,
    },
    /// Serve emulated devices to other processes over a socket, in the foreground, until Ctrl-C or SIGTERM.
    #[command(
        long_about = "Runs a server that owns emulated VFIO-PCI devices and answers the processes that \
connect to its socket: the preload library of `vfio-dmabuf exec` makes their opens of /dev/vfio/..., \
/dev/iommu and /sys/bus/pci/devices/<BDF>/..., their ioctls, reads, writes and mmaps reach it. Stops on \
SIGINT or SIGTERM: every connection ends, every open file is released, the socket file is removed.\n\n\
The devices file holds the scenario format's [devices.<id>] tables (catalogue or bars, bdf, cdev, ...) \
plus `group = N`, the IOMMU group (/dev/vfio/N); by default each device gets its own group, numbered \
from its position (0, 1, ...). A `[server]` table may set `ack-timeout = \"1s\"`: how long a revoke waits \
for each client process before cutting it off from the buffer's frames (see docs/clients.md). Other contents of a scenario file are ignored. Without --devices, the \
demo's device is served: an edu-plus at 0000:00:03.0 (cdev vfio0, group 0).",
        after_help = "Example:\n  vfio-dmabuf serve --devices devices.toml --socket /tmp/vfio.sock\n  # devices.toml:\n  #   [devices.edu]\n  #   catalogue = \"edu-plus\"\n  #   bdf = \"0000:00:03.0\"\n  #   group = 3\n\nLog: VFIO_DMABUF_LOG=info (or debug) shows every device, connection and refused call."
    )]
    Serve {
        /// Devices file (the scenario format's [devices.<id>] tables plus `group = N`); the demo's device without it.
        #[arg(long)]
        devices: Option<PathBuf>,
        /// Path of the listening socket (a stale one left by a dead server is replaced).
        #[arg(long)]
        socket: PathBuf,
        /// How long a revoke waits for each client process before cutting it off (e.g. 1s, 200ms); overrides the
        /// devices file's `[server] ack-timeout`; default 1s.
        #[arg(long, value_parser = vfio_dmabuf::devices::parse_duration)]
        ack_timeout: Option<std::time::Duration>,
    },
    /// Run an unmodified, dynamically linked program against emulated devices (a private server and the
    /// preload library).
    #[command(
        after_help = "Examples:\n  vfio-dmabuf exec -- ./my-driver 0000:00:03.0      # the demo's edu-plus, group 0\n  vfio-dmabuf exec --devices devices.toml -- qemu-system-x86_64 -M q35 -device vfio-pci,host=0000:00:03.0 ...\n\ndevices.toml holds [devices.<id>] tables as in scenario files, each with an optional `group = N` (and `frame-size`, the size of the memory frames a client is given whole), and an optional [server] table (`ack-timeout`). \
The program's exit status is exec's (128 + N when signal N killed it). VFIO_DMABUF_LOG=debug logs the server and \
the preload library to stderr; VFIO_DMABUF_PRELOAD names the library if it is not next to this binary. See docs/exec.md."
    )]
    Exec {
        /// Devices file; the demo's device (edu-plus at 0000:00:03.0, group 0) when absent.
        #[arg(long)]
        devices: Option<PathBuf>,
        /// How long a revoke waits for each process before cutting it off (e.g. 1s, 200ms); overrides the devices
        /// file's `[server] ack-timeout`; default 1s.
        #[arg(long, value_parser = vfio_dmabuf::devices::parse_duration)]
        ack_timeout: Option<std::time::Duration>,
        /// The program and its arguments (after `--`).
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        program: Vec<std::ffi::OsString>,
    },
    /// Run a scenario (default: the built-in seed) and draw the state it leaves: BARs, buffers, VMAs.
    #[command(
        after_help = "Example:\n  vfio-dmabuf inspect scenarios/t14-two-range-buffer.toml\n  vfio-dmabuf inspect --json"
    )]
    Inspect {
        /// Scenario file; the built-in seed scenario when absent.
        file: Option<PathBuf>,
        /// The state as JSON instead of text art.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Scenario(#[from] parse::ScenarioError),
    #[error("cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} of {1} scenarios failed")]
    Failed(usize, usize),
    #[error("benchmark failed: {0}")]
    Bench(String),
    #[error(transparent)]
    Serve(#[from] vfio_dmabuf::serve::ServeError),
}

fn print_error_chain(e: &dyn std::error::Error) {
    eprintln!("Error: vfio-dmabuf exited with the following chain of errors:");
    let mut level = 0;
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = cur {
        eprintln!("  {level}: {err}");
        level += 1;
        cur = err.source();
    }
    tracing::debug!(error = ?e, "exit with error");
}

fn load(path: &PathBuf) -> Result<parse::Scenario, CliError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| CliError::Read { path: path.display().to_string(), source })?;
    Ok(parse::parse(&path.display().to_string(), &text)?)
}

/// Whether the error is the host lacking userfaultfd features.
fn is_unsupported(e: &parse::ScenarioError) -> bool {
    e.msg.contains("(EOPNOTSUPP)") || e.msg.contains("the kernel lacks")
}

fn run_one(sc: &parse::Scenario, json: bool, narrate: bool) -> Result<bool, parse::ScenarioError> {
    let mut world = run::build(sc)?;
    let mut stdout = std::io::stdout().lock();
    if !json {
        let _ = writeln!(stdout, "== {}: {}", sc.file, sc.name);
        if narrate {
            if let Some(d) = &sc.description {
                let _ = writeln!(stdout, "{}", d.trim());
            }
            if let Some(clients) = &world.clients {
                let _ = writeln!(stdout, "  processes: primary (this runner, pid {})", std::process::id());
                for ((name, pid), decl) in clients.list().into_iter().zip(&sc.processes) {
                    let role = decl.role.as_deref().map_or(String::new(), |r| format!(": {r}"));
                    let _ = writeln!(stdout, "             {name} (pid {pid}){role}");
                }
            }
        }
    }
    let rep = run::run(sc, &mut world, |rec| {
        if json {
            let _ = writeln!(stdout, "{}", report::json(&sc.file, rec));
        } else {
            let _ = write!(stdout, "{}", report::text(rec, narrate));
        }
    })?;
    let passed = rep.passed();
    if !json {
        let failed = rep.records.iter().filter(|r| !r.pass).count();
        let _ = writeln!(
            stdout,
            "== {}: {} ({} steps, {} failed)",
            sc.file,
            if passed { "PASS" } else { "FAIL" },
            rep.records.len(),
            failed
        );
    }
    Ok(passed)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VFIO_DMABUF_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Demo { json: false }) {
        Command::Exec { devices, ack_timeout, program } => {
            return match vfio_dmabuf::exec::run(devices.as_deref(), ack_timeout, &program) {
                Ok(status) => ExitCode::from(status),
                Err(e) => {
                    print_error_chain(&e);
                    ExitCode::from(if e.is_unsupported() { EXIT_SKIP } else { 1 })
                }
            }
        }
        Command::Run { files, json, narrate } => (|| {
            let mut failed = 0;
            for f in &files {
                let sc = load(f)?;
                if !run_one(&sc, json, narrate)? {
                    failed += 1;
                }
            }
            if failed > 0 {
                return Err(CliError::Failed(failed, files.len()));
            }
            Ok(())
        })(),
        Command::Demo { json } => (|| {
            let sc = parse::parse("seed (built in)", SEED_SCENARIO)?;
            if run_one(&sc, json, true)? {
                Ok(())
            } else {
                Err(CliError::Failed(1, 1))
            }
        })(),
        Command::Bench { quick, runs, json } => (|| {
            let mut opts =
                if quick { vfio_dmabuf::bench::Options::quick() } else { vfio_dmabuf::bench::Options::full() };
            if let Some(r) = runs {
                opts.runs = r.max(5);
            }
            let started = std::time::Instant::now();
            let rows = vfio_dmabuf::bench::run(opts).map_err(CliError::Bench)?;
            if json {
                for r in vfio_dmabuf::bench::json_rows(&rows) {
                    println!("{r}");
                }
            } else {
                print!("{}\n{}", vfio_dmabuf::bench::machine(), vfio_dmabuf::bench::markdown(&rows));
            }
            eprintln!("-i- measured in {:.1} s", started.elapsed().as_secs_f64());
            Ok(())
        })(),
        Command::Serve { devices, socket, ack_timeout } => {
            vfio_dmabuf::serve::run(devices, socket, ack_timeout).map_err(CliError::from)
        }
        Command::Inspect { file, json } => (|| {
            let sc = match &file {
                Some(f) => load(f)?,
                None => parse::parse("seed (built in)", SEED_SCENARIO)?,
            };
            let mut world = run::build(&sc)?;
            let rep = run::run(&sc, &mut world, |_| {})?;
            if json {
                println!("{}", serde_json::to_string_pretty(&inspect::json(&world)).unwrap_or_default());
            } else {
                print!("{}", inspect::draw(&world));
            }
            if rep.passed() {
                Ok(())
            } else {
                Err(CliError::Failed(1, 1))
            }
        })(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Scenario(e)) if is_unsupported(&e) => {
            eprintln!("-W- skipped: {e}");
            ExitCode::from(EXIT_SKIP)
        }
        Err(e) => {
            print_error_chain(&e);
            ExitCode::FAILURE
        }
    }
}
