//! A QEMU Machine Protocol client: the greeting, `qmp_capabilities`, commands and events.
//!
//! QMP is one JSON object per line. A command is answered by `{"return": …}` or
//! `{"error": …}`; events (`{"event": …}`) can come before the answer (QMP `system_reset`
//! sends `RESET` first, `cont` sends `RESUME`) and are kept for [`Qmp::wait_event`].

use std::io::{self, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The monitor connection QEMU opened to us, past the capabilities negotiation.
#[derive(Debug)]
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    /// Names of events received and not yet consumed by [`Qmp::wait_event`], oldest first.
    events: Vec<String>,
}

impl Qmp {
    /// Reads the greeting and leaves capabilities negotiation mode; each answer must arrive
    /// within `reply_timeout`.
    pub fn handshake(stream: UnixStream, reply_timeout: Duration) -> io::Result<Self> {
        stream.set_read_timeout(Some(reply_timeout))?;
        stream.set_write_timeout(Some(reply_timeout))?;
        let writer = stream.try_clone()?;
        let mut qmp = Qmp { reader: BufReader::new(stream), writer, events: Vec::new() };
        let greeting = qmp.read_message("QMP greeting", None)?;
        if greeting.get("QMP").is_none() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("QMP greeting expected, got {greeting}")));
        }
        qmp.execute("qmp_capabilities")?;
        Ok(qmp)
    }

    fn read_message(&mut self, waiting_for: &str, deadline: Option<Instant>) -> io::Result<Value> {
        let line = super::read_line(&mut self.reader, waiting_for, deadline)?;
        serde_json::from_str(&line)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("QMP sent {line:?}: {e}")))
    }

    /// Sends the argument-less command `name` without waiting for its answer.
    pub fn send(&mut self, name: &str) -> io::Result<()> {
        let request = json!({ "execute": name });
        self.writer.write_all(format!("{request}\n").as_bytes())
    }

    /// Runs the argument-less command `name` and returns its `return` value.
    pub fn execute(&mut self, name: &str) -> io::Result<Value> {
        self.send(name)?;
        let waiting_for = format!("answer to QMP {name}");
        loop {
            let mut message = self.read_message(&waiting_for, None)?;
            if let Some(event) = message.get("event").and_then(Value::as_str) {
                self.events.push(event.to_owned());
            } else if let Some(value) = message.get_mut("return") {
                return Ok(value.take());
            } else {
                return Err(io::Error::other(format!("QMP {name} failed: {message}")));
            }
        }
    }

    /// Waits, up to `deadline`, for the event `name` (also one that arrived earlier).
    pub fn wait_event(&mut self, name: &str, deadline: Instant) -> io::Result<()> {
        let what = format!("QMP event {name}");
        loop {
            if let Some(at) = self.events.iter().position(|event| event == name) {
                self.events.drain(..=at);
                return Ok(());
            }
            let message = self.read_message(&what, Some(deadline))?;
            match message.get("event").and_then(Value::as_str) {
                Some(event) => self.events.push(event.to_owned()),
                None => return Err(io::Error::other(format!("unexpected QMP message while waiting for {what}"))),
            }
        }
    }
}
