//! Support for driving QEMU over qtest: the machine's processes and sockets ([`machine`]), the
//! qtest and QMP clients ([`qtest`], [`qmp`]), PCI config cycles and BAR placement ([`config`]),
//! and the device checks ([`edu`], [`bochs`]) that run against QEMU's own device models and
//! against ours.

pub mod bochs;
pub mod config;
pub mod edu;
pub mod machine;
pub mod qmp;
pub mod qtest;

use std::io::{self, BufRead, BufReader};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// Longest wait for one answer from QEMU (a reply, a connection, an exit). Generous: it only
/// bounds a test that would otherwise hang, nothing is expected to come close.
pub const WATCHDOG: Duration = Duration::from_secs(60);

/// Reads one line from QEMU (without its newline), waiting no longer than the stream's read
/// time-out, nor past `deadline` if one is given. End of file and time-outs become errors that
/// say what was awaited.
pub fn read_line(
    reader: &mut BufReader<UnixStream>,
    waiting_for: &str,
    deadline: Option<Instant>,
) -> io::Result<String> {
    let stream_timeout = reader.get_ref().read_timeout()?;
    if let Some(deadline) = deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, format!("QEMU gave no {waiting_for} in time")));
        }
        reader.get_ref().set_read_timeout(Some(stream_timeout.map_or(left, |t| t.min(left))))?;
    }
    let mut line = String::new();
    let read = reader.read_line(&mut line);
    if deadline.is_some() {
        reader.get_ref().set_read_timeout(stream_timeout)?;
    }
    match read {
        Ok(0) => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("QEMU closed the connection; expected {waiting_for}"),
        )),
        Ok(_) => Ok(line.trim_end_matches('\n').to_owned()),
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
            Err(io::Error::new(io::ErrorKind::TimedOut, format!("QEMU gave no {waiting_for} in time")))
        }
        Err(e) => Err(e),
    }
}
