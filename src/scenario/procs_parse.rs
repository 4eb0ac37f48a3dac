//! The process part of the scenario format: `[processes.<name>]` tables
//! declaring client processes, and where each step may run.
//!
//! The primary (the runner itself) does everything it always did; a
//! client process receives fds from it (`pass`), maps them, loads and
//! stores through its mappings, unmaps and closes; the primary stops,
//! continues and ends it (`stop`, `cont`, `exit`). Names are checked here,
//! before anything runs: a client step may only name an fd passed to that
//! process or a mapping it made, and `pass` only an fd an earlier step of
//! the primary made. The `[server]` table sets the server that serves
//! them (and `exec`'s and `serve`'s, from a devices file).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use toml::{Spanned, Table};

use super::fields::{Ctx, Fields};
use super::parse::{ScenarioError, Step, StepAt};

/// The name of the runner's own process in `process = "..."`.
pub const PRIMARY: &str = "primary";

/// The verbs a client process runs (with `process = "<name>"`).
pub const CLIENT_VERBS: &[&str] = &["say", "mmap", "mmap-buf", "munmap", "read", "write", "close"];

/// The verbs that act on a client process from the primary; their value
/// names the process.
pub const PROCESS_VERBS: &[&str] = &["stop", "cont", "exit"];

/// A client process declared under `[processes.<name>]`.
#[derive(Debug, Clone)]
pub struct ProcessDecl {
    /// The name steps use in `process`, `to`, `stop`, `cont` and `exit`.
    pub name: String,
    /// Line of the declaration.
    pub line: usize,
    /// What it stands for in the story, printed by `run --narrate`.
    pub role: Option<String>,
}

/// Reads one `[processes.<name>]` table.
pub(super) fn parse_process(cx: &Ctx<'_>, name: String, t: Spanned<Table>) -> Result<ProcessDecl, ScenarioError> {
    let line = cx.line_of(t.span().start);
    let mut f = Fields { cx, line, what: format!("process `{name}`"), t: t.into_inner() };
    if name == PRIMARY {
        return Err(f.err(format!("`{PRIMARY}` is the runner's own process; give the client another name")));
    }
    let role = f.opt_str("role")?;
    f.finish()?;
    Ok(ProcessDecl { name, line, role })
}

/// The server's settings, `[server]`: read by the server the runner starts
/// for client processes, and by `exec` and `serve` from a devices file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerDecl {
    /// `ack-timeout`: how long a revoke waits for each process that maps
    /// the buffer before it cuts the process off; the server's default
    /// when absent.
    pub ack_timeout: Option<Duration>,
}

/// Reads the `[server]` table, if there is one.
pub(super) fn parse_server(cx: &Ctx<'_>, t: Option<Spanned<Table>>) -> Result<ServerDecl, ScenarioError> {
    let Some(t) = t else { return Ok(ServerDecl::default()) };
    let line = cx.line_of(t.span().start);
    let mut f = Fields { cx, line, what: "[server]".to_owned(), t: t.into_inner() };
    let ack_timeout = match f.opt_str("ack-timeout")? {
        None => None,
        Some(text) => Some(parse_duration(&text).map_err(|m| f.err(format!("`ack-timeout`: {m}")))?),
    };
    f.finish()?;
    Ok(ServerDecl { ack_timeout })
}

/// Parses a duration written with its unit: `"1s"`, `"200ms"`, `"500us"`,
/// `"0s"`.
///
/// # Errors
///
/// A message saying what is wrong.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(digits);
    let n: u64 = n.parse().map_err(|_| format!("`{text}` is not a duration (a whole number and a unit: 1s, 200ms)"))?;
    match unit.trim() {
        "s" => Ok(Duration::from_secs(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "us" | "µs" => Ok(Duration::from_micros(n)),
        "ns" => Ok(Duration::from_nanos(n)),
        _ => Err(format!("`{text}` has no unit the server knows (s, ms, us, ns)")),
    }
}

/// The names each process holds, step by step.
#[derive(Default)]
struct Names {
    /// Device and buffer fds of the primary.
    primary: BTreeSet<String>,
    /// Fds each client received.
    fds: BTreeMap<String, BTreeSet<String>>,
    /// Mappings each client made.
    maps: BTreeMap<String, BTreeSet<String>>,
}

/// Checks that every step runs where it can and names what its process
/// holds.
pub(super) fn check_places(cx: &Ctx<'_>, procs: &[ProcessDecl], steps: &[StepAt]) -> Result<(), ScenarioError> {
    let declared: BTreeSet<&str> = procs.iter().map(|p| p.name.as_str()).collect();
    let known = |line: usize, what: &str, p: &str| -> Result<(), ScenarioError> {
        if declared.contains(p) {
            return Ok(());
        }
        let list = if declared.is_empty() {
            format!("this file declares none: add a `[processes.{p}]` table")
        } else {
            format!("declared: {}", declared.iter().copied().collect::<Vec<_>>().join(", "))
        };
        Err(cx.err(line, format!("{what}: unknown process `{p}` ({list})")))
    };
    let mut names = Names::default();
    for st in steps {
        let what = format!("step `{}`", st.verb);
        let here = |msg: String| cx.err(st.line, format!("{what}: {msg}"));
        match &st.process {
            Some(p) => {
                known(st.line, &what, p)?;
                if PROCESS_VERBS.contains(&st.verb) || st.verb == "pass" {
                    return Err(here(format!(
                        "runs in the primary (it acts on a client), not in process `{p}`: drop `process`"
                    )));
                }
                if !CLIENT_VERBS.contains(&st.verb) {
                    return Err(here(format!(
                        "runs in the primary only; the steps of a client process are: {}",
                        CLIENT_VERBS.join(", ")
                    )));
                }
                check_client_names(&mut names, p, &st.step).map_err(here)?;
            }
            None => match &st.step {
                Step::Pass { fd, to, as_ } => {
                    known(st.line, &what, to)?;
                    if !names.primary.contains(fd) {
                        return Err(here(format!(
                            "pass of an unknown fd `{fd}`: no earlier step of the primary made a device or buffer fd \
                             of that name (`open`, `dup` or `export` with `as`)"
                        )));
                    }
                    names.fds.entry(to.clone()).or_default().insert(as_.clone());
                }
                Step::Stop { process } | Step::Cont { process } | Step::Exit { process } => {
                    if process == PRIMARY {
                        return Err(here(format!(
                            "acts on a client process; the {PRIMARY} cannot `{}` itself",
                            st.verb
                        )));
                    }
                    known(st.line, &what, process)?;
                }
                Step::Open { as_, .. } | Step::Dup { as_, .. } | Step::Export { as_, .. } => {
                    names.primary.insert(as_.clone());
                }
                Step::Close { handle } => {
                    names.primary.remove(handle);
                }
                _ => {}
            },
        }
    }
    Ok(())
}

/// Checks the names a client step of process `p` uses, and records the
/// names it makes.
fn check_client_names(names: &mut Names, p: &str, step: &Step) -> Result<(), String> {
    let fds = names.fds.entry(p.to_owned()).or_default();
    let maps = names.maps.entry(p.to_owned()).or_default();
    let no_fd = |fd: &str| format!("process `{p}` holds no fd named `{fd}` (a client gets its fds by `pass`)");
    let no_map =
        |m: &str| format!("process `{p}` has no mapping named `{m}` (a client maps with `mmap` or `mmap-buf`)");
    match step {
        Step::Mmap { fd, as_, .. } | Step::MmapBuf { buf: fd, as_, .. } => {
            if !fds.contains(fd) {
                return Err(no_fd(fd));
            }
            maps.insert(as_.clone());
        }
        Step::Close { handle } if !fds.remove(handle) => return Err(no_fd(handle)),
        Step::Munmap { map, .. } | Step::Read { map, .. } | Step::Write { map, .. } if !maps.contains(map) => {
            return Err(no_map(map))
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::scenario::parse::{parse, Step};

    const HEAD: &str = "[devices.plus]\ncatalogue = \"edu-plus\"\n[processes.client]\n\
                        [[steps]]\nopen = \"plus\"\nas = \"dev\"\n\
                        [[steps]]\nexport = \"dev\"\nregion = 1\nranges = [[0, \"64K\"]]\nas = \"buf\"\n";

    fn err(tail: &str) -> String {
        let text = format!("{HEAD}{tail}");
        let e = parse("p.toml", &text).unwrap_err();
        let line = text.lines().enumerate().filter(|(_, l)| *l == "[[steps]]").last().map_or(0, |(i, _)| i + 1);
        assert_eq!(e.line, line, "{e}");
        e.msg
    }

    #[test]
    fn a_story_across_processes_parses() {
        let tail = "[[steps]]\npass = \"buf\"\nto = \"client\"\nas = \"cbuf\"\n\
                    [[steps]]\nprocess = \"client\"\nmmap-buf = \"cbuf\"\nlen = \"64K\"\nas = \"m\"\n\
                    [[steps]]\nprocess = \"client\"\nread = \"m\"\nexpect = \"sigbus BUS_ADRERR\"\n\
                    [[steps]]\nstop = \"client\"\n[[steps]]\ncont = \"client\"\n\
                    [[steps]]\nprocess = \"primary\"\nclose = \"buf\"\n[[steps]]\nexit = \"client\"\n";
        let sc = parse("p.toml", &format!("{HEAD}{tail}")).unwrap();
        assert_eq!(sc.processes.len(), 1);
        assert!(
            matches!(&sc.steps[2].step, Step::Pass { fd, to, as_ } if fd == "buf" && to == "client" && as_ == "cbuf")
        );
        assert_eq!(sc.steps[3].process.as_deref(), Some("client"));
        assert_eq!(sc.steps[4].expect.to_string(), "sigbus BUS_ADRERR");
        assert_eq!(sc.steps[7].process, None, "`process = \"primary\"` is the default");
    }

    #[test]
    fn an_unknown_process_is_refused_with_the_declared_ones() {
        let m = err("[[steps]]\nprocess = \"clinet\"\nread = \"m\"\n");
        assert_eq!(m, "step `read`: unknown process `clinet` (declared: client)");
        let m = err("[[steps]]\npass = \"buf\"\nto = \"nobody\"\nas = \"b\"\n");
        assert!(m.contains("unknown process `nobody`"), "{m}");
        let m = err("[[steps]]\nstop = \"nobody\"\n");
        assert!(m.contains("unknown process `nobody`"), "{m}");
        let e = parse("p.toml", "[[steps]]\nprocess = \"c\"\nread = \"m\"\n").unwrap_err();
        assert!(e.msg.contains("this file declares none: add a `[processes.c]` table"), "{e}");
    }

    #[test]
    fn passing_an_fd_the_primary_does_not_hold_is_refused() {
        let m = err("[[steps]]\npass = \"nothing\"\nto = \"client\"\nas = \"b\"\n");
        assert!(m.starts_with("step `pass`: pass of an unknown fd `nothing`"), "{m}");
        let m = err("[[steps]]\nclose = \"buf\"\n[[steps]]\npass = \"buf\"\nto = \"client\"\nas = \"b\"\n");
        assert!(m.contains("unknown fd `buf`"), "a closed fd cannot be passed: {m}");
        let m = err("[[steps]]\npass = \"buf\"\nto = \"client\"\n");
        assert!(m.contains("needs `as`"), "{m}");
    }

    #[test]
    fn primary_steps_are_refused_in_a_client_and_client_steps_in_the_primary() {
        let m = err("[[steps]]\nprocess = \"client\"\nrevoke = \"dev\"\nbuf = \"buf\"\n");
        assert_eq!(
            m,
            "step `revoke`: runs in the primary only; the steps of a client process are: \
             say, mmap, mmap-buf, munmap, read, write, close"
        );
        let m = err("[[steps]]\nprocess = \"client\"\npass = \"buf\"\nto = \"client\"\nas = \"b\"\n");
        assert!(m.contains("runs in the primary (it acts on a client)"), "{m}");
        let m = err("[[steps]]\nprocess = \"client\"\nstop = \"client\"\n");
        assert!(m.contains("drop `process`"), "{m}");
        let m = err("[[steps]]\nstop = \"primary\"\n");
        assert_eq!(m, "step `stop`: acts on a client process; the primary cannot `stop` itself");
        let e = parse("p.toml", "[processes.primary]\n").unwrap_err();
        assert!(e.msg.contains("the runner's own process"), "{e}");
    }

    #[test]
    fn a_client_names_only_what_it_received_or_mapped() {
        let m = err("[[steps]]\nprocess = \"client\"\nmmap-buf = \"buf\"\nlen = \"4K\"\nas = \"m\"\n");
        assert_eq!(m, "step `mmap-buf`: process `client` holds no fd named `buf` (a client gets its fds by `pass`)");
        let m = err("[[steps]]\nprocess = \"client\"\nwrite = \"m\"\nvalue = 1\n");
        assert!(m.contains("process `client` has no mapping named `m`"), "{m}");
        let m = err("[[steps]]\npass = \"buf\"\nto = \"client\"\nas = \"b\"\n\
                     [[steps]]\nprocess = \"client\"\nclose = \"b\"\n\
                     [[steps]]\nprocess = \"client\"\nclose = \"b\"\n");
        assert!(m.contains("holds no fd named `b`"), "closed already: {m}");
    }

    #[test]
    fn a_sigbus_expectation_names_a_real_si_code() {
        let m = err("[[steps]]\nread = \"x\"\nexpect = \"sigbus BUS_NOPE\"\n");
        assert!(m.contains("the si_code of a SIGBUS is one of BUS_ADRALN, BUS_ADRERR"), "{m}");
    }
}
