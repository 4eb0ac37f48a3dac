//! Device creation: what the machine cannot hold is refused before anything
//! is allocated (`ENOMEM`, like a failed allocation in probe).

use vfio::VfioPciDevice;

/// The memfds of this process whose names start with `prefix`.
fn memfds_named(prefix: &str) -> usize {
    let links = std::fs::read_dir("/proc/self/fd").unwrap().flatten().filter_map(|e| std::fs::read_link(e.path()).ok());
    links
        .filter(|target| target.to_str().and_then(|t| t.strip_prefix("/memfd:")).is_some_and(|n| n.starts_with(prefix)))
        .count()
}

#[test]
fn a_device_whose_ram_bars_cannot_fit_together_is_refused_as_a_whole_before_any_bar_exists() {
    assert!(
        mm::budget::memory_budget().is_some(),
        "unset {} to run this test: without the check it would allocate a terabyte",
        mm::budget::ALLOW_OVERCOMMIT_ENV
    );
    // Two 1 TiB BARs: the device as a whole is refused (2 TiB), not one BAR
    // after the other was allocated; nothing is left, and the error is
    // ENOMEM naming the override.
    let mut spec = pci::catalogue::by_name("edu-plus").unwrap();
    spec.bars = Default::default();
    spec.bars[0] = Some(pci::BarSpec::ram(1 << 40).with_64bit());
    spec.bars[2] = Some(pci::BarSpec::ram(1 << 40).with_64bit());
    let bdf: pci::Bdf = "0000:00:1f.0".parse().unwrap();
    let err = VfioPciDevice::new(4343, bdf, spec).unwrap_err();
    assert_eq!(err.errno(), rustix::io::Errno::NOMEM, "{err}");
    assert!(err.to_string().contains(mm::budget::ALLOW_OVERCOMMIT_ENV), "{err}");
    assert!(err.to_string().contains("need 2 TiB"), "{err}");
    assert_eq!(memfds_named("vfio4343:"), 0);
}
