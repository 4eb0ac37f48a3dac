//! Every numeric key of the scenario format is checked against its field:
//! a value the field cannot hold is an error at the file's line naming the
//! key and its range, never a truncated value (docs/scenarios.md, Numbers).

use vfio_dmabuf::scenario::parse::{self, BufRef, Expect, Step};

/// Line 1-2: a device; line 4: the step under test.
const DEVICE: &str = "[devices.d]\ncatalogue = \"edu-plus\"\n\n";

/// The error of parsing `DEVICE` followed by `step`.
fn step_error(step: &str) -> String {
    let text = format!("{DEVICE}[[steps]]\n{step}\n");
    match parse::parse("t.toml", &text) {
        Ok(_) => panic!("accepted:\n{step}"),
        Err(e) => e.to_string(),
    }
}

/// The one step of `DEVICE` followed by `step`.
fn step_ok(step: &str) -> Step {
    let text = format!("{DEVICE}[[steps]]\n{step}\n");
    let mut sc = parse::parse("t.toml", &text).unwrap_or_else(|e| panic!("{e}"));
    sc.steps.remove(0).step
}

/// Each step key, a value just past its range, and the message.
#[test]
fn step_numbers_past_their_range_are_refused_with_file_line_key_and_range() {
    let cases = [
        (
            "region-info = \"fd\"\nregion = \"0x100000001\"",
            "step `region-info`: `region`: 0x100000001 is out of range (0..=0xffffffff)",
        ),
        (
            "region-read = \"fd\"\nregion = 0x1000000",
            "step `region-read`: `region`: 0x1000000 is out of range (0..=0xffffff)",
        ),
        (
            "region-write = \"fd\"\nregion = 0x1000000\nvalue = 0",
            "step `region-write`: `region`: 0x1000000 is out of range (0..=0xffffff)",
        ),
        (
            "region-write = \"fd\"\nregion = 0\nwidth = 8\nvalue = 0x100",
            "step `region-write`: `value`: 0x100 is out of range (0..=0xff)",
        ),
        (
            "config-write = \"fd\"\nreg = \"COMMAND\"\nvalue = 0x10000",
            "step `config-write`: `value`: 0x10000 is out of range (0..=0xffff)",
        ),
        (
            "config-write = \"fd\"\nreg = 0x44\nvalue = \"0x100000000\"",
            "step `config-write`: `value`: 0x100000000 is out of range (0..=0xffffffff)",
        ),
        (
            "mmap = \"fd\"\nregion = 0x1000000\nlen = 4096\nas = \"m\"",
            "step `mmap`: `region`: 0x1000000 is out of range (0..=0xffffff)",
        ),
        (
            "write = \"m\"\nwidth = 32\nvalue = 0x100000000",
            "step `write`: `value`: 0x100000000 is out of range (0..=0xffffffff)",
        ),
        ("fill = \"m\"\nwidth = 16\nvalue = 0x10000", "step `fill`: `value`: 0x10000 is out of range (0..=0xffff)"),
        ("check = \"m\"\nwidth = 8\nvalue = 0x1ff", "step `check`: `value`: 0x1ff is out of range (0..=0xff)"),
        (
            "export = \"fd\"\nregion = \"0x100000001\"\nranges = [[0, 4096]]\nas = \"b\"",
            "step `export`: `region`: 0x100000001 is out of range (0..=0xffffffff)",
        ),
        (
            "export = \"fd\"\nregion = 1\nranges = [[0, 4096]]\nopen-flags = \"0x100000002\"\nas = \"b\"",
            "step `export`: `open-flags` (rdwr, rdonly, wronly or a number): 0x100000002 is out of range \
             (0..=0xffffffff)",
        ),
        (
            "export = \"fd\"\nregion = 1\nranges = [[0, 4096]]\nflags = \"0x100000000\"\nas = \"b\"",
            "step `export`: `flags`: 0x100000000 is out of range (0..=0xffffffff)",
        ),
        (
            "revoke = \"fd\"\nraw-fd = \"0x100000001\"",
            "step `revoke`: `raw-fd`: 4294967297 is out of range (0..=2147483647)",
        ),
        (
            "memattr = \"fd\"\nraw-fd = 2147483648\nattr = \"wc\"",
            "step `memattr`: `raw-fd`: 2147483648 is out of range (0..=2147483647)",
        ),
        (
            "memattr = \"fd\"\nraw-fd = 1\nattr = \"0x100000001\"",
            "step `memattr`: `attr` (nc, wc or a number): 0x100000001 is out of range (0..=0xffffffff)",
        ),
        ("probe = \"fd\"\nfeature = 0x1000b", "step `probe`: `feature`: 0x1000b is out of range (0..=0xffff)"),
        ("attach = \"b\"\nas = \"i\"\nhold-ms = 60001", "step `attach`: `hold-ms`: 60001 is out of range (0..=60000)"),
    ];
    for (step, msg) in cases {
        assert_eq!(step_error(step), format!("t.toml:4: {msg}"), "for:\n{step}");
    }
}

#[test]
fn device_numbers_past_their_range_are_refused_with_file_line_key_and_range() {
    let cases = [
        ("catalogue = \"edu\"\ncdev = 0x100000", "device `d`: `cdev`: 1048576 is out of range (0..=1048575)"),
        (
            "vendor = 0x10000\nbars = [{ index = 0, size = \"4K\" }]",
            "device `d`: `vendor`: 0x10000 is out of range (0..=0xffff)",
        ),
        (
            "device = \"0x11234\"\nbars = [{ index = 0, size = \"4K\" }]",
            "device `d`: `device`: 0x11234 is out of range (0..=0xffff)",
        ),
        ("bars = [{ index = 6, size = \"4K\" }]", "device `d` BAR: `index`: 6 is out of range (0..=5)"),
    ];
    for (keys, msg) in cases {
        let text = format!("name = \"n\"\n[devices.d]\n{keys}\n");
        let e = parse::parse("t.toml", &text).unwrap_err();
        assert_eq!(e.to_string(), format!("t.toml:2: {msg}"), "for:\n{keys}");
    }
}

/// The largest value of each range is taken exactly as written.
#[test]
fn the_last_value_of_each_range_is_kept_exactly() {
    assert!(matches!(step_ok("region-info = \"fd\"\nregion = 0xffffffff"), Step::RegionInfo { region: u32::MAX, .. }));
    assert!(matches!(step_ok("region-read = \"fd\"\nregion = 0xffffff"), Step::RegionRead { region: 0xff_ffff, .. }));
    assert!(matches!(
        step_ok("config-write = \"fd\"\nreg = \"COMMAND\"\nvalue = 0xffff"),
        Step::ConfigWrite { value: 0xffff, width: 16, .. }
    ));
    assert!(matches!(
        step_ok("write = \"m\"\nvalue = \"0xffffffffffffffff\""),
        Step::Write { value: u64::MAX, width: 64, .. }
    ));
    assert!(matches!(
        step_ok("revoke = \"fd\"\nraw-fd = 2147483647"),
        Step::Revoke { target: BufRef::Raw(i32::MAX), .. }
    ));
    assert!(matches!(
        step_ok("export = \"fd\"\nregion = 1\nranges = [[0, 4096]]\nflags = 0xffffffff\nas = \"b\""),
        Step::Export { flags: u32::MAX, .. }
    ));
    assert!(matches!(step_ok("probe = \"fd\"\nfeature = 0xffff"), Step::Probe { feature: 0xffff, .. }));
    assert!(matches!(step_ok("attach = \"b\"\nas = \"i\"\nhold-ms = 60000"), Step::Attach { hold_ms: 60_000, .. }));
    let text = "[devices.d]\ncdev = 1048575\nvendor = 0xffff\nbars = [{ index = 5, size = \"4K\" }]\n";
    let sc = parse::parse("t.toml", text).unwrap();
    assert_eq!((sc.devices[0].cdev, sc.devices[0].spec.vendor_id), (0xf_ffff, 0xffff));
    assert!(sc.devices[0].spec.bars[5].is_some());
}

#[test]
fn a_negative_expect_is_refused_by_name() {
    assert_eq!(step_error("read = \"m\"\nexpect = -1"), "t.toml:4: step `read`: `expect`: -1 is negative");
    let text = format!("{DEVICE}[[steps]]\nread = \"m\"\nexpect = 7\n");
    assert_eq!(parse::parse("t.toml", &text).unwrap().steps[0].expect, Expect::Value(7));
}
