//! A client of QEMU's qtest protocol (QEMU v7.2.0 `softmmu/qtest.c`).
//!
//! One request per line, words separated by single spaces; QEMU answers each with one line
//! starting `OK`, `FAIL` or `ERR`. With `irq_intercept_in`, lines `IRQ raise N` and
//! `IRQ lower N` arrive asynchronously, also before a reply: the client records them (the
//! last level of each line) and keeps reading for the reply, as libqtest does.
//!
//! Every wait is bounded by the socket's read time-out, so a QEMU that stops answering
//! becomes an error naming the request, never a hung test.

use std::collections::{HashMap, VecDeque};
use std::io::{self, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// A change of an intercepted interrupt line, as QEMU reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IrqEvent {
    /// The line (a GSI for `irq_intercept_in ioapic`).
    pub line: u32,
    /// `true` for `IRQ raise`, `false` for `IRQ lower`.
    pub raised: bool,
}

/// The qtest connection QEMU opened to us.
#[derive(Debug)]
pub struct Qtest {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    /// Interrupt changes read but not yet consumed by [`Qtest::wait_irq`], oldest first.
    irq_events: VecDeque<IrqEvent>,
    /// The last level QEMU reported for each intercepted line.
    irq_levels: HashMap<u32, bool>,
}

fn protocol_error(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

impl Qtest {
    /// Wraps an accepted connection; each reply must arrive within `reply_timeout`.
    pub fn new(stream: UnixStream, reply_timeout: Duration) -> io::Result<Self> {
        stream.set_read_timeout(Some(reply_timeout))?;
        stream.set_write_timeout(Some(reply_timeout))?;
        let writer = stream.try_clone()?;
        Ok(Qtest { reader: BufReader::new(stream), writer, irq_events: VecDeque::new(), irq_levels: HashMap::new() })
    }

    /// Reads one line; an asynchronous `IRQ` line is recorded and returned as `None`.
    fn read_line(&mut self, waiting_for: &str, deadline: Option<Instant>) -> io::Result<Option<String>> {
        let line = super::read_line(&mut self.reader, waiting_for, deadline)?;
        let mut words = line.split(' ');
        if words.next() != Some("IRQ") {
            return Ok(Some(line));
        }
        let raised = match words.next() {
            Some("raise") => true,
            Some("lower") => false,
            _ => return Err(protocol_error(format!("malformed interrupt line {line:?}"))),
        };
        let irq = words.next().and_then(|n| n.parse().ok());
        let irq = irq.ok_or_else(|| protocol_error(format!("malformed interrupt line {line:?}")))?;
        self.irq_levels.insert(irq, raised);
        self.irq_events.push_back(IrqEvent { line: irq, raised });
        Ok(None)
    }

    /// Sends `request` and returns the words of QEMU's `OK` reply after `OK`; `FAIL` and `ERR`
    /// replies are errors.
    pub fn request(&mut self, request: &str) -> io::Result<String> {
        debug_assert!(!request.contains('\n'), "one request per line");
        self.writer.write_all(format!("{request}\n").as_bytes())?;
        let waiting_for = format!("answer to `{request}`");
        let reply = loop {
            if let Some(line) = self.read_line(&waiting_for, None)? {
                break line;
            }
        };
        match reply.split_once(' ').unwrap_or((reply.as_str(), "")) {
            ("OK", rest) => Ok(rest.to_owned()),
            _ => Err(protocol_error(format!("QEMU answered `{request}` with {reply:?}"))),
        }
    }

    /// Sends `request`, expecting a bare `OK`.
    fn command(&mut self, request: &str) -> io::Result<()> {
        let rest = self.request(request)?;
        if rest.is_empty() {
            Ok(())
        } else {
            Err(protocol_error(format!("QEMU answered `{request}` with unexpected data {rest:?}")))
        }
    }

    /// Sends `request`, expecting `OK 0x<hex>`.
    fn value(&mut self, request: &str) -> io::Result<u64> {
        let rest = self.request(request)?;
        rest.strip_prefix("0x")
            .and_then(|hex| u64::from_str_radix(hex, 16).ok())
            .ok_or_else(|| protocol_error(format!("QEMU answered `{request}` with a malformed value {rest:?}")))
    }

    /// `inb`/`inw`/`inl`: a port read of `width` bytes (1, 2 or 4).
    pub fn port_in(&mut self, width: u8, port: u16) -> io::Result<u32> {
        let value = self.value(&format!("in{} {port:#x}", suffix(width)))?;
        u32::try_from(value).map_err(|_| protocol_error(format!("port read of {port:#x} gave {value:#x}")))
    }

    /// `outb`/`outw`/`outl`: a port write of `width` bytes (1, 2 or 4).
    pub fn port_out(&mut self, width: u8, port: u16, value: u32) -> io::Result<()> {
        self.command(&format!("out{} {port:#x} {value:#x}", suffix(width)))
    }

    /// `readb`..`readq`: one guest-physical load of `width` bytes (1, 2, 4 or 8).
    pub fn mem_read(&mut self, width: u8, addr: u64) -> io::Result<u64> {
        self.value(&format!("read{} {addr:#x}", suffix(width)))
    }

    /// `writeb`..`writeq`: one guest-physical store of `width` bytes (1, 2, 4 or 8).
    pub fn mem_write(&mut self, width: u8, addr: u64, value: u64) -> io::Result<()> {
        self.command(&format!("write{} {addr:#x} {value:#x}", suffix(width)))
    }

    /// `read ADDR SIZE`: bytes in memory order, hex encoded on the wire.
    pub fn read_bytes(&mut self, addr: u64, len: usize) -> io::Result<Vec<u8>> {
        let request = format!("read {addr:#x} {len:#x}");
        let rest = self.request(&request)?;
        let hex = rest.strip_prefix("0x").filter(|hex| hex.len() == 2 * len);
        let bytes = hex.and_then(|hex| {
            (0..len).map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()).collect::<Option<Vec<u8>>>()
        });
        bytes.ok_or_else(|| protocol_error(format!("QEMU answered `{request}` with {rest:?}")))
    }

    /// `write ADDR SIZE 0xHEX`: bytes in memory order.
    pub fn write_bytes(&mut self, addr: u64, data: &[u8]) -> io::Result<()> {
        let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
        self.command(&format!("write {addr:#x} {:#x} 0x{hex}", data.len()))
    }

    /// `b64read ADDR SIZE`.
    pub fn b64read(&mut self, addr: u64, len: usize) -> io::Result<Vec<u8>> {
        let request = format!("b64read {addr:#x} {len:#x}");
        let rest = self.request(&request)?;
        base64_decode(&rest)
            .ok_or_else(|| protocol_error(format!("QEMU answered `{request}` with bad base64 {rest:?}")))
    }

    /// `b64write ADDR SIZE B64`.
    pub fn b64write(&mut self, addr: u64, data: &[u8]) -> io::Result<()> {
        self.command(&format!("b64write {addr:#x} {:#x} {}", data.len(), base64_encode(data)))
    }

    /// `irq_intercept_in QOMPATH`: report the device's input interrupt lines (PC: `ioapic`).
    pub fn irq_intercept_in(&mut self, qom_path: &str) -> io::Result<()> {
        self.command(&format!("irq_intercept_in {qom_path}"))
    }

    /// The last level QEMU reported for `line` (`None`: never reported).
    pub fn irq_level(&self, line: u32) -> Option<bool> {
        self.irq_levels.get(&line).copied()
    }

    /// Waits, up to `deadline`, for QEMU to report `line` changing to `raised`; changes of other
    /// lines and of this line to the other level are consumed on the way.
    pub fn wait_irq(&mut self, line: u32, raised: bool, deadline: Instant) -> io::Result<()> {
        let wanted = IrqEvent { line, raised };
        let what = format!("`IRQ {} {line}` line", if raised { "raise" } else { "lower" });
        loop {
            while let Some(event) = self.irq_events.pop_front() {
                if event == wanted {
                    return Ok(());
                }
            }
            if let Some(line) = self.read_line(&what, Some(deadline))? {
                return Err(protocol_error(format!("unexpected line {line:?} from QEMU while waiting for {what}")));
            }
        }
    }
}

fn suffix(width: u8) -> char {
    match width {
        1 => 'b',
        2 => 'w',
        4 => 'l',
        8 => 'q',
        _ => panic!("no qtest access of {width} bytes"),
    }
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding, as glib's `g_base64_encode` writes it.
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let bits = chunk.iter().enumerate().fold(0_u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(BASE64[(bits >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard padded base64; `None` for anything malformed.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.as_bytes();
    if text.len() % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    for (n, quad) in text.chunks(4).enumerate() {
        let last = n + 1 == text.len() / 4;
        let padding = quad.iter().rev().take_while(|c| **c == b'=').count();
        if padding > 2 || (padding > 0 && !last) {
            return None;
        }
        let mut bits = 0_u32;
        for (i, c) in quad[..4 - padding].iter().enumerate() {
            let sextet = BASE64.iter().position(|b| b == c)?;
            bits |= (sextet as u32) << (18 - 6 * i);
        }
        out.extend_from_slice(&bits.to_be_bytes()[1..4 - padding]);
    }
    Some(out)
}

#[test]
fn base64_round_trips_every_tail_length() {
    assert_eq!(base64_encode(b""), "");
    assert_eq!(
        base64_encode(b"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f"),
        "AAECAwQFBgcICQoLDA0ODw=="
    );
    assert_eq!(base64_encode(b"abc"), "YWJj");
    assert_eq!(base64_encode(b"ab"), "YWI=");
    for len in 0..20 {
        let data: Vec<u8> = (0..len).map(|i| (i * 37 + 250) as u8).collect();
        assert_eq!(base64_decode(&base64_encode(&data)).as_deref(), Some(&data[..]), "{len} bytes");
    }
    assert_eq!(base64_decode("YWI"), None);
    assert_eq!(base64_decode("Y===="), None);
    assert_eq!(base64_decode("YW=jYWJj"), None);
    assert_eq!(base64_decode("YW*j"), None);
}
