//! Hostile scenario files: random bytes, TOML built from the real verbs and
//! keys with random values (wrong types, huge numbers, missing, unknown and
//! duplicate keys), and mutations of the shipped scenarios (truncated, a
//! line deleted or duplicated, values swapped or replaced).
//!
//! Parsing never panics, and every error names the file and a line inside
//! the text. A scenario that parses is then run: running may fail, but must
//! not panic. The runner trusts a scenario's addresses (a `write` stores
//! wherever `at` points), so before running, this suite drops the steps
//! that could store outside the scenario's own mappings, and skips
//! scenarios whose memory is large (over 64 MiB) or whose loops are long.
//!
//! What this suite found is pinned by the regression tests in
//! [`fixed_issues`], one per problem, each saying what went wrong.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{TestCaseError, TestRunner};

use vfio_dmabuf::scenario::parse::{self, Scenario, Step, VERBS};
use vfio_dmabuf::scenario::run;

/// Memory a scenario may ask for before this suite declines to run it.
const MAX_BYTES: u64 = 64 << 20;
/// Stores or loads a `fill`/`check` may make before this suite drops it.
const MAX_LOOP: u64 = 1 << 14;
/// Runs `test` on `n` values of `strategy`; on failure, panics with the
/// shrunk input.
fn check<S: Strategy>(n: u32, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>) {
    // No regression files: this suite must not write into the source tree.
    let config = ProptestConfig { cases: n, failure_persistence: None, ..ProptestConfig::default() };
    if let Err(e) = TestRunner::new(config).run(&strategy, test) {
        panic!("{e}");
    }
}

fn shipped() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap()))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no scenarios in {}", dir.display());
    files
}

// ---------------------------------------------------------------------------
// Parse, run, judge
// ---------------------------------------------------------------------------

/// Parses `text`: no panic, and an error
/// names `file` and a line between 1 and one past the last.
fn parse_checked(file: &str, text: &str) -> Result<Option<Scenario>, TestCaseError> {
    let r = catch_unwind(|| parse::parse(file, text));
    match r {
        Err(_) => Err(TestCaseError::fail(format!("parse panicked on:\n{text}"))),
        Ok(Err(e)) => {
            prop_assert_eq!(&e.file, file);
            let lines = text.lines().count();
            prop_assert!((1..=lines + 1).contains(&e.line), "{} is not a line of a {}-line text", e, lines);
            Ok(None)
        }
        Ok(Ok(sc)) => Ok(Some(sc)),
    }
}

/// Runs a parsed scenario made safe to run here: no panic; an error names
/// the file and a line of the text.
fn run_checked(mut sc: Scenario, text: &str) -> Result<(), TestCaseError> {
    if !make_runnable(&mut sc) {
        return Ok(());
    }
    let file = sc.file.clone();
    let r = catch_unwind(AssertUnwindSafe(|| {
        let mut world = run::build(&sc)?;
        run::run(&sc, &mut world, |_| {})
    }));
    match r {
        Err(_) => Err(TestCaseError::fail(format!("running panicked on:\n{text}"))),
        Ok(Err(e)) => {
            prop_assert_eq!(&e.file, &file);
            prop_assert!((1..=text.lines().count() + 1).contains(&e.line), "{}", e);
            Ok(())
        }
        Ok(Ok(_)) => Ok(()),
    }
}

fn parse_and_run(file: &str, text: &str) -> Result<(), TestCaseError> {
    match parse_checked(file, text)? {
        Some(sc) => run_checked(sc, text),
        None => Ok(()),
    }
}

/// Drops the steps that could store outside the scenario's own mappings or
/// loop for long, bounds importer holds, and says whether the rest is
/// small enough to run here.
fn make_runnable(sc: &mut Scenario) -> bool {
    let bars: Vec<u64> = sc.devices.iter().flat_map(|d| d.spec.bars().map(|(_, b)| b.size)).collect();
    if sc.devices.len() > 4 || bars.iter().any(|&size| size > MAX_BYTES) {
        return false;
    }
    // The smallest length each mapping name is ever given: whichever of its
    // mmap steps succeeded, the name maps at least this much.
    let mut map_len: BTreeMap<String, u64> = BTreeMap::new();
    for st in &sc.steps {
        if let Step::Mmap { len, as_, .. } | Step::MmapBuf { len, as_, .. } = &st.step {
            if *len > MAX_BYTES {
                return false;
            }
            let len = len.div_ceil(4096) * 4096;
            map_len.entry(as_.clone()).and_modify(|l| *l = (*l).min(len)).or_insert(len);
        }
    }
    let mut unmapped = false;
    sc.steps.retain_mut(|st| {
        let bound = |map: &str| map_len.get(map).copied().unwrap_or(0);
        match &mut st.step {
            Step::Attach { hold_ms, .. } => {
                *hold_ms = (*hold_ms).min(5);
                true
            }
            Step::Munmap { .. } => {
                unmapped = true;
                true
            }
            // A store must land inside its mapping, and the mapping must
            // still be there: after any munmap the hole may hold anything.
            Step::Write { map, at, width, .. } => {
                !unmapped && at.checked_add(u64::from(*width / 8)).is_some_and(|end| end <= bound(map))
            }
            Step::Fill { map, from, len, stride, .. } => {
                !unmapped
                    && bound(map) > 0
                    && loop_in_bounds(*from, *len, *stride)
                    && *from % 8 == 0
                    && *stride % 8 == 0
            }
            Step::Check { map, from, len, stride, xor, .. } => {
                let end = len.map_or(Some(bound(map)), |l| from.checked_add(l));
                end.is_some_and(|e| xor.is_none_or(|x| x.checked_add(e).is_some()))
                    && loop_in_bounds(*from, *len, *stride)
            }
            _ => true,
        }
    });
    // Fills also store xor-base + offset; keep the arithmetic in range.
    sc.steps.retain(|st| match &st.step {
        Step::Fill { from, len, xor, .. } => {
            len.is_none_or(|l| from.checked_add(l).is_some()) && xor.is_none_or(|x| x < u64::MAX - MAX_BYTES)
        }
        _ => true,
    });
    true
}

/// A `fill`/`check` loop over `[from, from + len)` (or to the end of its
/// mapping, at most [`MAX_BYTES`]) in steps of `stride` is short, and its
/// arithmetic cannot overflow.
fn loop_in_bounds(from: u64, len: Option<u64>, stride: u64) -> bool {
    let Some(end) = len.map_or(Some(MAX_BYTES), |l| from.checked_add(l)) else { return false };
    let span = end.min(MAX_BYTES).saturating_sub(from);
    stride > 0 && span / stride < MAX_LOOP && end.min(MAX_BYTES).checked_add(stride).is_some()
}

// ---------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------

/// Every key a step or a device can have, plus a few that none has.
const KEYS: &[&str] = &[
    "as",
    "region",
    "at",
    "width",
    "value",
    "reg",
    "enable",
    "state",
    "file-offset",
    "offset",
    "len",
    "prot",
    "flags",
    "addr",
    "from",
    "stride",
    "xor",
    "ranges",
    "open-flags",
    "buf",
    "raw-fd",
    "attr",
    "feature",
    "get",
    "p2p",
    "revocable",
    "hold-ms",
    "proc",
    "expect",
    "say",
    "colour",
    "",
    "as ",
];
const DEVICE_KEYS: &[&str] =
    &["catalogue", "bars", "bdf", "cdev", "vendor", "device", "index", "size", "kind", "bits", "prefetchable", "x"];
const NAMES: &[&str] = &["d", "fd", "fd2", "m", "m2", "b", "b2", "i", "nope"];

/// `s` as a TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out += "\\\"",
            '\\' => out += "\\\\",
            c if c.is_control() => out += &format!("\\u{:04x}", c as u32),
            c => out.push(c),
        }
    }
    out + "\""
}

fn quoted(options: &[&'static str]) -> BoxedStrategy<String> {
    prop::sample::select(options.to_vec()).prop_map(toml_string).boxed()
}

fn literal(options: &[&'static str]) -> BoxedStrategy<String> {
    prop::sample::select(options.to_vec()).prop_map(str::to_owned).boxed()
}

/// A TOML value of any type: numbers of every size and sign, number-like
/// strings, names, booleans, floats, arrays and inline tables.
fn value() -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        3 => prop_oneof![0i64..16, 0i64..0x10000, Just(-1i64), Just(i64::MAX), Just(i64::MIN)].prop_map(|i| i.to_string()),
        2 => quoted(&[
            "4K", "64K", "2M", "64M", "1G", "0x1000", "0x30000", "0xffffffffffffffff", "0xfffffffffffff000",
            "99999999999G", "18446744073709551615", "-1", "1_0", "4Q", "", "0x", ">=1", ">= 99999999999999999999",
        ]),
        2 => quoted(NAMES),
        1 => quoted(&[
            "edu-plus", "multi-bar", "edu", "tiny-odd", "D3hot", "D0", "d3cold", "rw", "r", "private", "shared",
            "rdonly", "wronly", "nc", "wc", "dma-buf", "dma-buf-revoke", "sigbus", "segv", "EINVAL", "ENOPE",
            "temp-revoked", "perm-revoked", "ok", "COMMAND", "PMCSR", "DEVCTL", "0000:00:03.0", "ffff:ff:1f.7",
            "0000:00:20.0",
        ]),
        1 => prop::bool::ANY.prop_map(|b| b.to_string()),
        1 => Just("1.5".to_owned()),
        1 => ".{0,12}".prop_map(|s| toml_string(&s)),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::vec((prop::sample::select(vec!["order0", "order9", "sigbus", "x"]), inner), 0..3)
                .prop_map(|kv| {
                    let body: Vec<String> = kv.iter().map(|(k, v)| format!("{k} = {v}")).collect();
                    format!("{{ {} }}", body.join(", "))
                }),
        ]
    })
    .boxed()
}

/// A value that makes sense for `key`, or (when `noisy`, sometimes)
/// anything.
fn value_for(key: &'static str, noisy: bool) -> BoxedStrategy<String> {
    let pages = |n: u64| (0..n).prop_map(|p| (p * 4096).to_string()).boxed();
    let plausible: BoxedStrategy<String> = match key {
        "as" if noisy => quoted(NAMES),
        "buf" => quoted(&["b", "b", "b", "b2"]),
        "as" if !noisy => quoted(&["fd", "m", "b", "i", "fd2", "m2", "b2"]),
        "region" => prop_oneof![3 => Just("1".to_owned()), 1 => (0u32..10).prop_map(|r| r.to_string())].boxed(),
        "at" | "from" | "offset" | "file-offset" => prop_oneof![
            4 => pages(16),
            1 => (0u64..64).prop_map(|b| b.to_string()),
            1 => quoted(&["2M", "0x10000000000", "0x10000001000", "0xffffffffffffff00"]),
        ]
        .boxed(),
        "len" => {
            prop_oneof![4 => (1u64..16).prop_map(|p| (p * 4096).to_string()), 1 => quoted(&["2M", "4M", "64M", "1G"])]
                .boxed()
        }
        "width" => literal(&["8", "16", "32", "64"]),
        "value" | "xor" => {
            prop_oneof![(0u64..0x1_0000).prop_map(|v| v.to_string()), Just("0xca77face".to_owned())].boxed()
        }
        "reg" => {
            prop_oneof![quoted(&["COMMAND", "PMCSR", "DEVCTL", "VENDOR_ID"]), (0u64..0x120).prop_map(|r| r.to_string())]
                .boxed()
        }
        "enable" | "get" | "p2p" | "revocable" | "proc" => literal(&["true", "false"]),
        "state" => quoted(&["D0", "D3hot", "D1"]),
        "prot" => quoted(&["rw", "r"]),
        "flags" => quoted(&["shared", "private"]),
        "addr" => literal(&["0x610000000000", "0x610000001000", "4096", "0x7fffffffe000"]),
        "stride" => prop_oneof![literal(&["4096", "8", "1"]), quoted(&["2M"])].boxed(),
        "ranges" => prop::collection::vec((0u64..64, 0u64..8), 0..3)
            .prop_map(|r| {
                let v: Vec<String> = r.iter().map(|(o, l)| format!("[{}, {}]", o * 4096, l * 4096)).collect();
                format!("[{}]", v.join(", "))
            })
            .boxed(),
        "open-flags" => quoted(&["rdwr", "rdonly", "wronly"]),
        "raw-fd" => literal(&["1", "-1", "99999", "0"]),
        "attr" => prop_oneof![quoted(&["nc", "wc"]), literal(&["0", "1", "2"])].boxed(),
        "feature" => {
            prop_oneof![quoted(&["dma-buf", "dma-buf-revoke", "dma-buf-memattr"]), literal(&["1", "11", "13", "14"])]
                .boxed()
        }
        "hold-ms" => (0u64..6).prop_map(|v| v.to_string()).boxed(),
        "expect" => prop_oneof![
            quoted(&["ok", "sigbus", "segv", "EINVAL", "ENODEV", "EBADFD", "temp-revoked", "64M"]),
            (0u64..4).prop_map(|v| v.to_string())
        ]
        .boxed(),
        "say" => ".{0,16}".prop_map(|s| toml_string(&s)).boxed(),
        _ => value(),
    };
    if noisy {
        prop_oneof![6 => plausible, 1 => value()].boxed()
    } else {
        plausible
    }
}

/// The keys each verb reads (spec of the format: docs/scenarios.md).
fn verb_keys(verb: &str) -> &'static [&'static str] {
    match verb {
        "open" | "dup" | "attach" => &["as"],
        "region-info" => &["region"],
        "region-read" => &["region", "at", "width"],
        "region-write" => &["region", "at", "width", "value"],
        "config-read" => &["reg", "width"],
        "config-write" => &["reg", "width", "value"],
        "memory" => &["enable"],
        "power" => &["state"],
        "mmap" => &["region", "offset", "len", "prot", "flags", "as"],
        "mmap-buf" => &["offset", "len", "prot", "flags", "as"],
        "munmap" => &["at", "len"],
        "read" => &["at", "width"],
        "write" => &["at", "width", "value"],
        "fill" | "check" => &["from", "len", "stride", "width", "value", "xor"],
        "export" => &["region", "ranges", "open-flags", "as"],
        "revoke" => &["buf"],
        "memattr" => &["buf", "attr"],
        "probe" => &["feature", "get"],
        "maps" => &["proc"],
        _ => &[],
    }
}

/// The target of `verb = ...`: a name of the right kind, usually.
fn target_for(verb: &'static str, noisy: bool) -> BoxedStrategy<String> {
    let plausible = match verb {
        "open" => quoted(&["d", "e"]),
        "hot-reset" => literal(&["[\"fd\"]", "[\"fd\", \"fd2\"]", "[\"fd\", \"fd\"]", "[]"]),
        "faults" => literal(&["{ order0 = \">=0\" }", "{ sigbus = 0 }", "{ order9 = \">=1\" }"]),
        "maps" => quoted(&["dmabuf", "/dmabuf:vfio0", "10000000000"]),
        // Names nobody made only in noisy documents, so that clean ones
        // mostly run to the end.
        "mmap-buf" | "attach" | "status" | "revoke" | "memattr" if noisy => quoted(&["b", "b", "b", "b2"]),
        "mmap-buf" | "attach" | "status" | "revoke" | "memattr" => quoted(&["b"]),
        "munmap" | "madvise-hugepage" | "read" | "write" | "fill" | "check" if noisy => quoted(&["m", "m", "m", "m2"]),
        "munmap" | "madvise-hugepage" | "read" | "write" | "fill" | "check" => quoted(&["m"]),
        "importer-map" | "importer-unmap" | "detach" | "invalidations" => quoted(&["i"]),
        "inspect" => literal(&["true", "\"now\""]),
        "say" => quoted(&["now"]),
        _ if noisy => quoted(&["fd", "fd", "fd", "fd2"]),
        _ => quoted(&["fd"]),
    };
    if noisy {
        prop_oneof![8 => plausible, 1 => value()].boxed()
    } else {
        plausible
    }
}

/// `Some` value of `s` with probability `p` (0 and 1 included).
fn sometimes<S: Strategy + 'static>(p: f64, s: S) -> BoxedStrategy<Option<S::Value>>
where
    S::Value: Clone,
{
    if p <= 0.0 {
        Just(None).boxed()
    } else if p >= 1.0 {
        s.prop_map(Some).boxed()
    } else {
        prop::option::weighted(p, s).boxed()
    }
}

/// One `[[steps]]` table: a verb with its keys. When `noisy`, a key may
/// be missing, duplicated or foreign, a value of the wrong kind, and now
/// and then the verb missing or doubled.
fn step(noisy: bool) -> impl Strategy<Value = String> {
    prop::sample::select(VERBS.to_vec())
        .prop_flat_map(move |verb| {
            let keys: Vec<BoxedStrategy<Option<(&'static str, String)>>> = verb_keys(verb)
                .iter()
                .map(|&k| sometimes(if noisy { 0.85 } else { 1.0 }, value_for(k, noisy).prop_map(move |v| (k, v))))
                .collect();
            let extra = prop::collection::vec(
                prop::sample::select(KEYS.to_vec())
                    .prop_flat_map(move |k| value_for(k, noisy).prop_map(move |v| (k, v))),
                0..2,
            );
            let noise = |p: f64| if noisy { p } else { 0.0 };
            let expect = sometimes(0.2, value_for("expect", noisy));
            let say = sometimes(if verb == "say" { 0.0 } else { 0.1 }, value_for("say", noisy));
            let doubled = sometimes(noise(0.03), prop::sample::select(VERBS.to_vec()));
            let verbless = sometimes(noise(0.03), Just(()));
            (Just(verb), verbless, target_for(verb, noisy), keys, sometimes(noise(0.15), extra), expect, say, doubled)
        })
        .prop_map(|(verb, verbless, target, keys, extra, expect, say, doubled)| {
            let mut t = String::from("[[steps]]\n");
            let mut line = |k: &str, v: &str| {
                let key = if k.is_empty() || k.contains(' ') { toml_string(k) } else { k.to_owned() };
                t += &format!("{key} = {v}\n");
            };
            if let Some(s) = say {
                line("say", &s);
            }
            if verbless.is_none() {
                line(verb, &target);
            }
            for (k, v) in keys.into_iter().flatten().chain(extra.into_iter().flatten()) {
                line(k, &v);
            }
            if let Some(e) = expect {
                line("expect", &e);
            }
            if let Some(v) = doubled {
                line(v, "\"fd\"");
            }
            t
        })
}

/// One `[devices.<id>]` table: a catalogue device, RAM BARs, or nonsense.
fn device() -> impl Strategy<Value = String> {
    let id = prop::sample::select(vec!["d", "e", "f"]);
    let catalogue = prop::sample::select(vec!["edu-plus", "multi-bar", "edu", "tiny-odd", "nope"]);
    let bar = (0u64..8, prop::sample::select(vec![0u64, 4096, 12288, 16384, 1 << 20, 1 << 21, 1 << 40]), any::<bool>())
        .prop_map(|(i, size, b64)| format!("{{ index = {i}, size = {size}{} }}", if b64 { ", bits = 64" } else { "" }));
    let body = prop_oneof![
        8 => catalogue.prop_map(|c| format!("catalogue = {}\n", toml_string(c))),
        3 => prop::collection::vec(bar, 0..3).prop_map(|b| format!("bars = [{}]\n", b.join(", "))),
        1 => prop::collection::vec((prop::sample::select(DEVICE_KEYS.to_vec()), value()), 0..4)
            .prop_map(|kv| kv.iter().map(|(k, v)| format!("{k} = {v}\n")).collect::<String>()),
    ];
    let extra = prop::option::weighted(0.15, (prop::sample::select(DEVICE_KEYS.to_vec()), value()));
    (id, body, extra).prop_map(|(id, body, extra)| {
        let extra = extra.map(|(k, v)| format!("{k} = {v}\n")).unwrap_or_default();
        format!("[devices.{id}]\n{body}{extra}")
    })
}

/// A document: a name, devices, then steps that mostly open a device
/// first; a third of the documents are noisy (see [`step`]), with junk
/// lines now and then.
fn document() -> impl Strategy<Value = String> {
    prop::bool::weighted(0.35).prop_flat_map(noisy_document)
}

fn noisy_document(noisy: bool) -> impl Strategy<Value = String> {
    let head = prop::option::weighted(0.5, prop_oneof![4 => ".{0,10}".prop_map(|s| toml_string(&s)), 1 => value()])
        .prop_map(|v| v.map(|v| format!("name = {v}\n")).unwrap_or_default());
    let junk = sometimes(
        if noisy { 0.3 } else { 0.0 },
        prop_oneof![
            Just("[[steps]]\n".to_owned()),
            Just("[devices]\n".to_owned()),
            Just("steps = 1\n".to_owned()),
            ".{0,20}".prop_map(|s| s + "\n"),
        ],
    );
    // Most documents first make what the steps name: fd, m, b and i.
    let prelude = prop_oneof![
        1 => Just(String::new()),
        1 => Just("[[steps]]\nopen = \"d\"\nas = \"fd\"\n".to_owned()),
        4 => Just(
            "[[steps]]\nopen = \"d\"\nas = \"fd\"\n\
             [[steps]]\nmmap = \"fd\"\nregion = 1\nlen = 4096\nas = \"m\"\n\
             [[steps]]\nexport = \"fd\"\nregion = 1\nranges = [[0, 4096]]\nas = \"b\"\n\
             [[steps]]\nattach = \"b\"\nas = \"i\"\n"
                .to_owned()
        ),
    ];
    let devices = prop_oneof![
        4 => Just("[devices.d]\ncatalogue = \"edu-plus\"\n".to_owned()),
        2 => Just("[devices.d]\ncatalogue = \"multi-bar\"\n[devices.e]\ncatalogue = \"edu-plus\"\n".to_owned()),
        2 => prop::collection::vec(device(), 0..3).prop_map(|d| d.concat()),
    ];
    (head, devices, prelude, prop::collection::vec(step(noisy), 0..16), junk).prop_map(
        |(head, devices, prelude, steps, junk)| {
            let mut t = head + &devices;
            t += &prelude;
            t += &steps.concat();
            t += &junk.unwrap_or_default();
            t
        },
    )
}

/// One edit of a shipped file.
#[derive(Debug, Clone)]
enum Mutation {
    Truncate(Index),
    DeleteLine(Index),
    DuplicateLine(Index),
    SwapValues(Index, Index),
    ReplaceValue(Index, String),
    InsertLine(Index, String),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        1 => any::<Index>().prop_map(Mutation::Truncate),
        2 => any::<Index>().prop_map(Mutation::DeleteLine),
        1 => any::<Index>().prop_map(Mutation::DuplicateLine),
        3 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::SwapValues(a, b)),
        3 => (any::<Index>(), value()).prop_map(|(a, v)| Mutation::ReplaceValue(a, v)),
        1 => (any::<Index>(), prop::sample::select(KEYS.to_vec()).prop_flat_map(|k| (Just(k), value_for(k, true))))
            .prop_map(|(a, (k, v))| Mutation::InsertLine(a, format!("{k} = {v}"))),
    ]
}

/// Applies `m` to `text`; values are what follows `=` on a `key = value` line.
fn mutate(text: &str, m: &Mutation) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    if lines.is_empty() {
        return String::new();
    }
    let assignments: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].contains(" = ")).collect();
    let value_of = |l: &str| l.split_once(" = ").map(|(_, v)| v.to_owned()).unwrap_or_default();
    let with_value = |l: &str, v: &str| l.split_once(" = ").map(|(k, _)| format!("{k} = {v}")).unwrap_or_default();
    match m {
        Mutation::Truncate(at) => {
            let mut cut = at.index(text.len() + 1);
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            return text[..cut].to_owned();
        }
        Mutation::DeleteLine(i) => {
            lines.remove(i.index(lines.len()));
        }
        Mutation::DuplicateLine(i) => {
            let i = i.index(lines.len());
            lines.insert(i, lines[i].clone());
        }
        Mutation::SwapValues(a, b) if !assignments.is_empty() => {
            let (a, b) = (assignments[a.index(assignments.len())], assignments[b.index(assignments.len())]);
            let (va, vb) = (value_of(&lines[a]), value_of(&lines[b]));
            lines[a] = with_value(&lines[a], &vb);
            lines[b] = with_value(&lines[b], &va);
        }
        Mutation::ReplaceValue(a, v) if !assignments.is_empty() => {
            let a = assignments[a.index(assignments.len())];
            lines[a] = with_value(&lines[a], v);
        }
        Mutation::InsertLine(i, l) => lines.insert(i.index(lines.len() + 1), l.clone()),
        _ => {}
    }
    lines.join("\n") + "\n"
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

/// Arbitrary bytes (as text, lossily) and arbitrary strings never make the
/// parser panic; errors name the file and a line of the text.
#[test]
fn random_bytes_are_refused_with_a_file_and_line() {
    let text = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        any::<String>(),
        "[\\[\\]a-z=\"0-9 \n.{}-]{0,200}",
    ];
    check(1024, text, |text| parse_and_run("random.toml", &text));
}

/// Text made of the real verbs and keys, with values of every type, huge
/// numbers, and missing, unknown and duplicate keys: parsing never panics,
/// errors point into the text, and what parses runs without panicking.
#[test]
fn scenario_shaped_text_parses_or_is_refused_and_runs_without_panicking() {
    check(384, document(), |text| parse_and_run("shaped.toml", &text));
}

/// The shipped scenarios, truncated, with lines deleted, duplicated or
/// inserted, and values swapped or replaced: as above.
#[test]
fn mutated_shipped_scenarios_parse_or_are_refused_and_run_without_panicking() {
    let files = shipped();
    let case = (
        any::<Index>(),
        prop_oneof![3 => prop::collection::vec(mutation(), 1..2), 1 => prop::collection::vec(mutation(), 2..5)],
    );
    check(256, case, |(file, mutations)| {
        let (name, text) = &files[file.index(files.len())];
        let text = mutations.iter().fold(text.clone(), |t, m| mutate(&t, m));
        parse_and_run(name, &text)
    });
}

// ---------------------------------------------------------------------------
// Fixed issues: regressions of what this suite found
// ---------------------------------------------------------------------------

/// Each of these failed once and was fixed; they stay as regressions.
mod fixed_issues {
    use super::*;

    fn runs(text: &str) -> Result<(), String> {
        let sc = parse::parse("issue.toml", text).map_err(|e| e.to_string())?;
        let mut world = run::build(&sc).map_err(|e| e.to_string())?;
        run::run(&sc, &mut world, |_| {}).map(|_| ()).map_err(|e| e.to_string())
    }

    const OPEN_AND_MAP: &str = "[devices.d]\ncatalogue = \"edu-plus\"\n\n[[steps]]\nopen = \"d\"\nas = \"fd\"\n\n\
                                [[steps]]\nmmap = \"fd\"\nregion = 1\nlen = 4096\nas = \"m\"\n";

    /// Issue 1. `parse_step()` ("mmap") computes `index_to_offset(region) +
    /// offset` unchecked: an `offset` near `u64::MAX` panics ("attempt to
    /// add with overflow") instead of failing with the step's line. Fix:
    /// `checked_add`, and a "`offset` is past the end of the offset space"
    /// error.
    #[test]
    fn an_mmap_offset_that_overflows_is_refused_with_its_line() {
        let text = "[[steps]]\nmmap = \"fd\"\nregion = 1\noffset = \"0xffffffffffffffff\"\nlen = 4096\nas = \"m\"\n";
        let r = catch_unwind(|| parse::parse("issue.toml", text));
        let e = r.expect("parse panicked").unwrap_err();
        assert_eq!(e.line, 1, "{e}");
    }

    /// Issue 2. `parse_device()` computes the default BDF's device number
    /// as `3 + index as u8`: the 254th device without a `bdf` panics (and
    /// the 257th would wrap to 00:03.0 again). Fix: compute in `u32` and
    /// refuse a device number past 31 by name, as `Bdf::new` already does.
    #[test]
    fn a_default_bdf_past_the_last_slot_is_refused_with_its_line() {
        let mut text = String::new();
        for i in 0..253 {
            text += &format!("[devices.d{i:03}]\ncatalogue = \"multi-bar\"\nbdf = \"0000:00:01.0\"\n");
        }
        text += "[devices.zzz]\ncatalogue = \"multi-bar\"\n";
        let r = catch_unwind(|| parse::parse("issue.toml", &text));
        let e = r.expect("parse panicked").unwrap_err();
        assert_eq!(e.line, 253 * 3 + 1, "{e}");
    }

    /// Issue 3. `run::exec()` adds step offsets to addresses unchecked:
    /// `read`/`write`/`munmap` at `m.va + at`, `region-read`/`region-write`
    /// at `index_to_offset(region) + at`, and `fill`/`check` (`from + len`,
    /// `xor + off`, `off += stride`). An `at` near `u64::MAX` panics. Fix:
    /// `checked_add`, reporting the step as failed (or as SIGSEGV, for an
    /// address that is not mapped).
    #[test]
    fn step_offsets_that_overflow_fail_the_step_instead_of_panicking() {
        for step in [
            "[[steps]]\nread = \"m\"\nat = \"0xffffffffffffff00\"\n",
            "[[steps]]\nmunmap = \"m\"\nat = \"0xffffffffffffff00\"\n",
            "[[steps]]\nregion-read = \"fd\"\nregion = 1\nat = \"0xffffffffffffff00\"\n",
            "[[steps]]\ncheck = \"m\"\nfrom = 8\nlen = \"0xffffffffffffffff\"\nvalue = 0\n",
        ] {
            let text = format!("{OPEN_AND_MAP}\n{step}");
            let r = catch_unwind(|| runs(&text));
            assert!(r.is_ok(), "running panicked on:\n{step}");
        }
    }

    /// Issue 4. The runner stores wherever a step points: `write` at any
    /// `at`, and `fill` up to 7 bytes past the end of its mapping (its last
    /// store starts inside the mapping but is `width` wide), so a scenario
    /// can overwrite another mapping, or the runner's own memory. Fix:
    /// refuse a store that does not lie wholly inside the named mapping.
    #[test]
    fn a_store_past_the_end_of_its_mapping_is_refused() {
        let text =
            format!("{OPEN_AND_MAP}\n[[steps]]\nmmap = \"fd\"\nregion = 1\noffset = 0x10000\nlen = 4096\nas = \"v\"\n");
        let sc = parse::parse("issue.toml", &text).unwrap();
        let mut world = run::build(&sc).unwrap();
        run::run(&sc, &mut world, |_| {}).unwrap();
        // Store through the lower mapping, at the distance of the upper one.
        let (m, v) = (world.maps["m"].va, world.maps["v"].va);
        let (low, high) = if m < v { ("m", v) } else { ("v", m) };
        mm::probe::write_u64(high, 0x5afe).unwrap();
        let at = high - world.maps[low].va;
        let step = format!("[[steps]]\nwrite = \"{low}\"\nat = {at:#x}\nvalue = 0xbad\n");
        let sc = parse::parse("issue.toml", &step).unwrap();
        run::run(&sc, &mut world, |_| {}).unwrap();
        assert_eq!(mm::probe::read_u64(high).unwrap(), 0x5afe, "a store through `{low}` landed in another mapping");
    }
}
