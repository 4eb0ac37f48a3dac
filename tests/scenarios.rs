//! Every scenario shipped under `scenarios/` passes, and malformed ones are
//! refused with file, line and problem.

use std::path::Path;

use vfio_dmabuf::scenario::{parse, run};

/// Scenarios that assert SIGSEGV on an address they unmapped must be alone
/// in this process (another test's mmap could reuse the hole): the shipped
/// scenarios take this lock for write, every other test for read.
static ADDRESS_SPACE_USERS: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn run_file(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let sc = parse::parse(&path.display().to_string(), &text).map_err(|e| e.to_string())?;
    let mut world = run::build(&sc).map_err(|e| e.to_string())?;
    let rep = run::run(&sc, &mut world, |_| {}).map_err(|e| e.to_string())?;
    Ok(rep
        .records
        .iter()
        .filter(|r| !r.pass)
        .map(|r| format!("{}:{}: {} -> {}, expected {}", rep.file, r.line, r.detail, r.outcome, r.expected))
        .collect())
}

#[test]
fn every_shipped_scenario_passes() {
    let _vm = ADDRESS_SPACE_USERS.write().unwrap_or_else(|e| e.into_inner());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no scenarios in {}", dir.display());
    let mut failures = Vec::new();
    for f in &files {
        match run_file(f) {
            Ok(fails) => failures.extend(fails),
            Err(e) => failures.push(e),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} scenarios had failures:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
    eprintln!("{} scenarios passed", files.len());
}

#[test]
fn the_built_in_seed_scenario_passes() {
    let _vm = ADDRESS_SPACE_USERS.read().unwrap_or_else(|e| e.into_inner());
    let sc = parse::parse("seed", vfio_dmabuf::SEED_SCENARIO).unwrap();
    let mut world = run::build(&sc).unwrap();
    let rep = run::run(&sc, &mut world, |_| {}).unwrap();
    assert!(rep.passed(), "{:?}", rep.records.iter().filter(|r| !r.pass).collect::<Vec<_>>());
    assert!(rep.records.iter().any(|r| r.outcome.starts_with("sigbus")), "the seed shows a real SIGBUS");
}

#[test]
fn a_scenario_that_expects_the_wrong_thing_fails_rather_than_passing() {
    let _vm = ADDRESS_SPACE_USERS.read().unwrap_or_else(|e| e.into_inner());
    let text = r#"
[devices.d]
catalogue = "edu-plus"
[[steps]]
open = "d"
as = "fd"
[[steps]]
mmap = "fd"
region = 1
len = "4K"
as = "m"
[[steps]]
read = "m"
expect = "sigbus"
"#;
    let sc = parse::parse("wrong.toml", text).unwrap();
    let mut world = run::build(&sc).unwrap();
    let rep = run::run(&sc, &mut world, |_| {}).unwrap();
    assert!(!rep.passed());
    let bad = rep.records.iter().find(|r| !r.pass).unwrap();
    assert_eq!(bad.line, 12);
    assert_eq!(bad.outcome, "0x0");
}

#[test]
fn a_step_naming_something_unknown_is_an_error_with_its_line() {
    let _vm = ADDRESS_SPACE_USERS.read().unwrap_or_else(|e| e.into_inner());
    let text = "[devices.d]\ncatalogue = \"edu-plus\"\n[[steps]]\nread = \"nowhere\"\n";
    let sc = parse::parse("unknown.toml", text).unwrap();
    let mut world = run::build(&sc).unwrap();
    let e = run::run(&sc, &mut world, |_| {}).unwrap_err();
    assert_eq!((e.file.as_str(), e.line), ("unknown.toml", 3), "{e}");
    assert!(e.msg.contains("no mapping named `nowhere`"), "{e}");
}

#[test]
fn a_client_step_that_does_not_do_what_it_expects_fails_and_names_its_process() {
    let _vm = ADDRESS_SPACE_USERS.read().unwrap_or_else(|e| e.into_inner());
    let text = r#"
[devices.d]
catalogue = "edu-plus"
[processes.c]
[[steps]]
open = "d"
as = "fd"
[[steps]]
export = "fd"
region = 1
ranges = [[0, "4K"]]
as = "buf"
[[steps]]
pass = "buf"
to = "c"
as = "b"
[[steps]]
process = "c"
mmap-buf = "b"
len = "4K"
as = "m"
[[steps]]
process = "c"
read = "m"
expect = "sigbus"
"#;
    let sc = parse::parse("client-wrong.toml", text).unwrap();
    let mut world = run::build(&sc).unwrap();
    let rep = run::run(&sc, &mut world, |_| {}).unwrap();
    let failed: Vec<_> = rep.records.iter().filter(|r| !r.pass).collect();
    assert_eq!(failed.len(), 1, "{:?}", rep.records);
    assert_eq!((failed[0].line, failed[0].outcome.as_str()), (22, "0x0"));
    assert_eq!(failed[0].process.as_deref(), Some("c"));
    assert_eq!(rep.records[2].process.as_deref(), Some("primary"));
}
