//! The devices file of `serve` (and `exec`): the scenario file's
//! `[devices.<id>]` tables, each with an optional `group = N` (the IOMMU
//! group number; by default one group per device, numbered from the
//! device's position), and an optional `[server]` table of the server's
//! own settings:
//!
//! ```toml
//! [server]
//! ack-timeout = "1s"   # how long a revoke waits for each client process
//! ```
//!
//! Anything else a scenario file holds (a name, steps) is read and
//! ignored. With no file, the demo's device.

use std::path::Path;

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
pub type ServerSettings = parse::ServerDecl;

/// Parses a duration written with its unit (`"1s"`, `"200ms"`).
pub use parse::parse_duration;

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
    let sc = parse::parse(file, text)?;
    let mut devices = Vec::new();
    for d in &sc.devices {
        let vdev = d.create().map_err(|e| ScenarioError {
            file: file.to_owned(),
            line: d.line,
            msg: format!("device `{}`: {e}", d.id),
        })?;
        devices.push(ServedDevice { vdev, group: d.group, cdev_index: d.cdev });
    }
    Ok((devices, sc.server))
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
    use std::time::Duration;

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
        let text = "[devices.a]\ncatalogue = \"edu-plus\"\nframe-size = \"64K\"\n[devices.b]\ncatalogue = \"edu\"\n";
        let d = parse_devices("t.toml", text).unwrap();
        assert_eq!((d[0].vdev.frame_size(), d[1].vdev.frame_size()), (64 << 10, 2 << 20));
        for bad in ["\"96K\"", "\"2K\"", "0"] {
            let text = format!("[devices.a]\ncatalogue = \"edu\"\nframe-size = {bad}\n");
            let e = parse_devices("t.toml", &text).unwrap_err().to_string();
            assert!(e.starts_with("t.toml:1:") && e.contains("power of two"), "{e}");
        }
    }

    #[test]
    fn the_server_table_sets_the_ack_timeout_and_keeps_line_numbers() {
        let text = "[server]\nack-timeout = \"200ms\" # bound\n[devices.a]\ncatalogue = \"edu\"\n";
        let (d, s) = parse_file("t.toml", text).unwrap();
        assert_eq!((d.len(), s.ack_timeout), (1, Some(Duration::from_millis(200))));
        let e = parse_file("t.toml", "[server]\nack-timeout = \"2 weeks\"\n").unwrap_err();
        assert!(e.to_string().starts_with("t.toml:1:") && e.to_string().contains("ack-timeout"), "{e}");
        let e = parse_file("t.toml", "[server]\nlinger = 1\n").unwrap_err();
        assert!(e.to_string().contains("linger"), "{e}");
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
