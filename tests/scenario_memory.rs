//! A scenario whose RAM BARs the machine cannot hold is refused with
//! `ENOMEM` before anything is allocated, and says how to try anyway.

use std::process::Command;

use mm::budget::{memory_budget, ALLOW_OVERCOMMIT_ENV};
use vfio_dmabuf::scenario::{parse, run};

/// A device with a 4 KiB BAR and a BAR of `size`, cdev `cdev` (a 1 TiB BAR
/// makes 1 TiB + 4 KiB, which reads "1.0 TiB").
fn scenario(cdev: u32, size: &str) -> String {
    format!(
        "[devices.huge]\ncdev = {cdev}\nbars = [\n  {{ index = 0, size = \"4K\" }},\n  \
         {{ index = 2, size = \"{size}\", bits = 64 }},\n]\n"
    )
}

/// Names of this process's open memfds (without the `/memfd:` prefix).
fn memfd_names() -> Vec<String> {
    let links = std::fs::read_dir("/proc/self/fd").unwrap().flatten().filter_map(|e| std::fs::read_link(e.path()).ok());
    links.filter_map(|target| Some(target.to_str()?.strip_prefix("/memfd:")?.to_owned())).collect()
}

/// Those of device cdev 4242.
fn memfds_of_vfio4242() -> Vec<String> {
    memfd_names().into_iter().filter(|n| n.starts_with("vfio4242:")).collect()
}

/// Without the check these tests would allocate a terabyte; refuse to run
/// them with the override set rather than start the OOM killer.
fn assert_checked() {
    assert!(memory_budget().is_some(), "unset {ALLOW_OVERCOMMIT_ENV} (and mount /proc) to run these tests");
}

#[test]
fn a_terabyte_bar_is_refused_before_any_memfd_exists() {
    assert_checked();
    let sc = parse::parse("t.toml", &scenario(4242, "1024G")).unwrap();
    let e = run::build(&sc).unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with("t.toml:1: device `huge`: BARs need 1.0 TiB but only "), "{msg}");
    assert!(msg.ends_with(" is available; set VFIO_DMABUF_ALLOW_OVERCOMMIT=1 to try anyway (ENOMEM)"), "{msg}");
    // Neither BAR's memfd was made: not the 4 KiB one declared first either.
    assert_eq!(memfds_of_vfio4242(), Vec::<String>::new());
    // What fits is built, and its memfds show (so the count above could see them).
    let sc = parse::parse("t.toml", &scenario(4242, "64K")).unwrap();
    let world = run::build(&sc).unwrap();
    assert_eq!(memfds_of_vfio4242().len(), 2, "{:?}", memfd_names());
    drop(world);
}

#[test]
fn the_command_line_reports_the_refusal_and_fails() {
    assert_checked();
    let dir = std::env::temp_dir().join(format!("scenario-memory-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("huge.toml");
    std::fs::write(&file, scenario(4243, "1024G")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vfio-dmabuf"))
        .arg("run")
        .arg(&file)
        .env_remove(ALLOW_OVERCOMMIT_ENV)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(":1: device `huge`: BARs need 1.0 TiB but only "), "{stderr}");
    assert!(stderr.contains("set VFIO_DMABUF_ALLOW_OVERCOMMIT=1 to try anyway (ENOMEM)"), "{stderr}");
}

/// The PCI rules for a BAR's size come first, at parse time: a size that
/// breaks them is refused for that reason whatever memory there is.
#[test]
fn pci_size_rules_still_refuse_before_memory_is_considered() {
    for (size, bits, msg) in [
        ("3G", 64, "BAR2 size 0xc0000000 is not a power of two"),
        ("4G", 32, "BAR2 size 0x100000000 exceeds 0x80000000, the largest a 32-bit BAR can decode"),
        ("2048G", 64, "BAR2 size 0x20000000000 exceeds 0x10000000000, the largest BAR this model supports"),
    ] {
        let text = scenario(1, size).replace("bits = 64", &format!("bits = {bits}"));
        let e = parse::parse("t.toml", &text).unwrap_err();
        assert_eq!(e.to_string(), format!("t.toml:1: device `huge`: {msg}"));
    }
}
