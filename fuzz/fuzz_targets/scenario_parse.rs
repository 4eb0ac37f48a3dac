//! Scenario text → `parse`: never a panic, and every error names the file
//! and a line of the text (1 to one past the last).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vfio_dmabuf::scenario::parse;

const FILE: &str = "fuzz.toml";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(e) = parse::parse(FILE, text) {
        assert_eq!(e.file, FILE);
        let lines = text.lines().count();
        assert!((1..=lines + 1).contains(&e.line), "{e} is not a line of a {lines}-line text");
    }
});
