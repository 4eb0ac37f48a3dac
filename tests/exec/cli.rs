//! The `exec` command itself: what it refuses, and the status it gives.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use super::{exec, exec_command, scratch};

#[test]
fn a_static_binary_is_refused_with_a_clear_message() {
    let dir = scratch("static");
    let src = dir.join("s.c");
    std::fs::write(&src, "int main(void) { return 0; }\n").unwrap();
    let bin = dir.join("s");
    let cc = std::process::Command::new("cc").arg("-static").arg("-o").arg(&bin).arg(&src).output().unwrap();
    assert!(cc.status.success(), "cc -static: {}", String::from_utf8_lossy(&cc.stderr));
    let out = exec(&bin, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is statically linked"), "{stderr}");
}

#[test]
fn the_program_s_exit_status_is_exec_s() {
    let out = exec(std::path::Path::new("/bin/sh"), &["-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
}

#[test]
fn a_program_killed_by_a_signal_gives_128_plus_its_number() {
    let out = exec(std::path::Path::new("/bin/sh"), &["-c", "kill -KILL $$"]);
    assert_eq!(out.status.code(), Some(128 + libc::SIGKILL), "{out:?}");
}

#[test]
fn sigterm_sent_to_exec_reaches_the_program() {
    let script = "trap 'exit 3' TERM; echo ready; while :; do sleep 0.05; done";
    let mut child =
        exec_command(&["/bin/sh".as_ref(), "-c".as_ref(), script.as_ref()]).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(3));
}

#[test]
fn a_missing_program_is_an_error_not_a_crash() {
    let out = exec(std::path::Path::new("no-such-program-anywhere"), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot find"), "{out:?}");
}
