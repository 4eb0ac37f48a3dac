//! `vfio-dmabuf serve`: a foreground server that answers on its socket and
//! stops cleanly on SIGTERM.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustix::net::{AddressFamily, SocketAddrUnix, SocketType};
use wire::{Reply, Request, Role};

#[test]
fn serve_answers_on_its_socket_and_sigterm_removes_it() {
    let dir = std::env::temp_dir().join(format!("vfio-dmabuf-serve-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let devices = dir.join("devices.toml");
    std::fs::write(&devices, "[devices.a]\ncatalogue = \"edu\"\ngroup = 7\n").unwrap();
    let socket = dir.join("s.sock");
    let mut child = Command::new(env!("CARGO_BIN_EXE_vfio-dmabuf"))
        .args(["serve", "--devices"])
        .arg(&devices)
        .arg("--socket")
        .arg(&socket)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The socket appears once the server listens.
    let deadline = Instant::now() + Duration::from_secs(30);
    let conn = loop {
        let s = rustix::net::socket(AddressFamily::UNIX, SocketType::SEQPACKET, None).unwrap();
        if socket.exists() && rustix::net::connect(&s, &SocketAddrUnix::new(&socket).unwrap()).is_ok() {
            break s;
        }
        assert!(Instant::now() < deadline, "the server never listened");
        std::thread::yield_now();
    };
    wire::transport::send(&conn, &Request::Hello { token: 1, role: Role::Control }, &[]).unwrap();
    let (reply, _): (Reply, _) = wire::transport::recv(&conn).unwrap();
    assert!(matches!(reply, Reply::Hello { ref bdfs, .. } if bdfs == &["0000:00:03.0"]), "{reply:?}");
    wire::transport::send(&conn, &Request::Lookup { path: "/dev/vfio/7".into() }, &[]).unwrap();
    let (reply, _): (Reply, _) = wire::transport::recv(&conn).unwrap();
    assert!(matches!(reply, Reply::Node(wire::Node::CharDev { minor: 7, .. })), "{reply:?}");
    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    assert!(child.wait().unwrap().success());
    assert!(!socket.exists(), "the socket file is removed");
    assert!(wire::transport::recv::<Reply>(&conn).is_err(), "the connection ended");
    let _ = std::fs::remove_dir_all(&dir);
}
