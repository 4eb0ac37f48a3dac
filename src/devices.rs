//! The devices file of `serve` (and `exec`): the scenario file's
//! `[devices.<id>]` tables, each with an optional `group = N` (the IOMMU
//! group number; by default one group per device, numbered from the
//! device's position), and an optional `[server]` table of the server's
//! own settings:
//!
//! ```toml
//! [server]
//! ack_timeout = "1s"   # how long a revoke waits for each client process
//! ```
//!
//! Anything else a scenario file holds (a name, steps) is read and
//! ignored. With no file, the demo's device.

use std::path::Path;
use std::time::Duration;

use server::ServedDevice;

use crate::scenario::parse::{self, ScenarioError};

/// Why the devices could not be had.
#[derive(Debug, thiserror::Error)]
pub enum DevicesError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is malformed, or a device could not be created.
    #[error(transparent)]
    Parse(#[from] ScenarioError),
}

/// The demo's device: an `edu-plus` at `0000:00:03.0`, cdev `vfio0`, group 0.
pub const DEMO_DEVICES: &str = "[devices.edu]\ncatalogue = \"edu-plus\"\nbdf = \"0000:00:03.0\"\n";

/// The server's settings from the `[server]` table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerSettings {
    /// `ack_timeout`: how long a revoke waits for each process that maps
    /// the buffer before it cuts the process off; the server's default
    /// when absent.
    pub ack_timeout: Option<Duration>,
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

/// Splits the `[server]` table out of `text`: its lines are blanked (so
/// the scenario parser's line numbers stay right) and its keys read.
fn split_server(file: &str, text: &str) -> Result<(String, ServerSettings), ScenarioError> {
    let mut rest = String::with_capacity(text.len());
    let mut settings = ServerSettings::default();
    let mut in_server = false;
    for (i, line) in text.lines().enumerate() {
        let head = line.split('#').next().unwrap_or("").trim();
        if head.starts_with('[') {
            in_server = head.trim_start_matches('[').trim_end_matches(']').trim() == "server";
        }
        if !in_server {
            rest.push_str(line);
            rest.push('\n');
            continue;
        }
        rest.push('\n');
        let err = |msg: String| ScenarioError { file: file.to_owned(), line: i + 1, msg };
        if head.is_empty() || head.starts_with('[') {
            continue;
        }
        let kv: toml::Table = toml::from_str(head).map_err(|e| err(e.message().trim_end().to_owned()))?;
        for (k, v) in kv {
            match (k.as_str(), v) {
                ("ack_timeout", toml::Value::String(d)) => {
                    settings.ack_timeout = Some(parse_duration(&d).map_err(err)?);
                }
                ("ack_timeout", _) => return Err(err("ack_timeout is a string with a unit, e.g. \"1s\"".into())),
                (other, _) => return Err(err(format!("unknown key `{other}` in [server] (known: ack_timeout)"))),
            }
        }
    }
    Ok((rest, settings))
}

/// The devices of `text`, read from `file` (for messages), created.
///
/// # Errors
///
/// A [`ScenarioError`] naming the line for a malformed table or a device
/// that cannot be created (e.g. not enough memory for its RAM BARs).
pub fn parse_devices(file: &str, text: &str) -> Result<Vec<ServedDevice>, DevicesError> {
    Ok(parse_file(file, text)?.0)
}

/// The devices of `text`, created, and the `[server]` settings.
///
/// # Errors
///
/// As [`parse_devices`], and a malformed `[server]` table.
pub fn parse_file(file: &str, text: &str) -> Result<(Vec<ServedDevice>, ServerSettings), DevicesError> {
    let (text, settings) = split_server(file, text)?;
    let sc = parse::parse(file, &text)?;
    let mut devices = Vec::new();
    for d in &sc.devices {
        let vdev = d.create().map_err(|e| ScenarioError {
            file: file.to_owned(),
            line: d.line,
            msg: format!("device `{}`: {e}", d.id),
        })?;
        devices.push(ServedDevice { vdev, group: d.group, cdev_index: d.cdev });
    }
    Ok((devices, settings))
}

/// The devices of the file at `path`, or the demo's device.
///
/// # Errors
///
/// As [`parse_devices`], or the file cannot be read.
pub fn load(path: Option<&Path>) -> Result<Vec<ServedDevice>, DevicesError> {
    Ok(load_with_settings(path)?.0)
}

/// The devices and the `[server]` settings of the file at `path`, or the
/// demo's device and the defaults.
///
/// # Errors
///
/// As [`parse_file`], or the file cannot be read.
pub fn load_with_settings(path: Option<&Path>) -> Result<(Vec<ServedDevice>, ServerSettings), DevicesError> {
    match path {
        None => parse_file("demo devices (built in)", DEMO_DEVICES),
        Some(p) => {
            let file = p.display().to_string();
            let text =
                std::fs::read_to_string(p).map_err(|source| DevicesError::Read { path: file.clone(), source })?;
            parse_file(&file, &text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_default_to_the_position_and_can_be_shared() {
        let text = "[devices.a]\ncatalogue = \"edu\"\n[devices.b]\ncatalogue = \"edu\"\ngroup = 0\n[devices.c]\ncatalogue = \"edu\"\n";
        let d = parse_devices("t.toml", text).unwrap();
        let groups: Vec<u32> = d.iter().map(|d| d.group).collect();
        assert_eq!(groups, vec![0, 0, 2]);
        assert_eq!(d[2].vdev.bdf().to_string(), "0000:00:05.0");
        assert_eq!(d[2].cdev_index, 2);
    }

    #[test]
    fn a_bad_group_names_its_line() {
        let e = parse_devices("t.toml", "[devices.a]\ncatalogue = \"edu\"\ngroup = -1\n").unwrap_err();
        assert!(e.to_string().starts_with("t.toml:1:"), "{e}");
    }

    #[test]
    fn frame_size_is_per_device_and_must_be_a_power_of_two_page_multiple() {
        let text = "[devices.a]\ncatalogue = \"edu-plus\"\nframe_size = \"64K\"\n[devices.b]\ncatalogue = \"edu\"\n";
        let d = parse_devices("t.toml", text).unwrap();
        assert_eq!((d[0].vdev.frame_size(), d[1].vdev.frame_size()), (64 << 10, 2 << 20));
        for bad in ["\"96K\"", "\"2K\"", "0"] {
            let text = format!("[devices.a]\ncatalogue = \"edu\"\nframe_size = {bad}\n");
            let e = parse_devices("t.toml", &text).unwrap_err().to_string();
            assert!(e.starts_with("t.toml:1:") && e.contains("power of two"), "{e}");
        }
    }

    #[test]
    fn the_server_table_sets_the_ack_timeout_and_keeps_line_numbers() {
        let text = "[server]\nack_timeout = \"200ms\" # bound\n[devices.a]\ncatalogue = \"edu\"\n";
        let (d, s) = parse_file("t.toml", text).unwrap();
        assert_eq!((d.len(), s.ack_timeout), (1, Some(Duration::from_millis(200))));
        let e = parse_file("t.toml", "[server]\nack_timeout = \"2 weeks\"\n").unwrap_err();
        assert!(e.to_string().starts_with("t.toml:2:"), "{e}");
        let e = parse_file("t.toml", "[server]\nlinger = 1\n").unwrap_err();
        assert!(e.to_string().contains("unknown key `linger`"), "{e}");
        let e = parse_file("t.toml", "[server]\n[devices.a]\ncatalogue = \"edu\"\ngroup = -1\n").unwrap_err();
        assert!(e.to_string().starts_with("t.toml:2:"), "{e}");
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_duration("ms").is_err());
    }

    #[test]
    fn without_a_file_the_demo_device_is_served() {
        let d = load(None).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].vdev.bdf().to_string(), "0000:00:03.0");
        assert_eq!((d[0].group, d[0].cdev_index), (0, 0));
    }
}
