//! The seed mail's example, through real mappings.

use mm::{probe, AddressSpace};
use vfio::{MmapArgs, VfioPciDevice};

#[test]
fn seed_two_slices_of_bar1_show_the_mmap_offsets_in_proc_maps() {
    let aspace = AddressSpace::new().unwrap();
    let vdev = VfioPciDevice::from_catalogue(0, "0000:00:03.0".parse().unwrap(), "edu-plus").unwrap();
    let fd = vdev.open();
    let bar1 = fd.region_info(1).unwrap();
    assert_eq!(bar1.offset, 1 << 40);
    let a = fd.mmap(&aspace, MmapArgs::shared(bar1.offset, 0x1000)).unwrap();
    let b = fd.mmap(&aspace, MmapArgs::shared(bar1.offset + 0x4000, 0x1000)).unwrap();
    let la = mm::maps::proc_self_maps(a, a + 0x1000).unwrap();
    let lb = mm::maps::proc_self_maps(b, b + 0x1000).unwrap();
    assert_eq!(la[0].offset, 0x100_0000_0000, "{}", la[0].raw);
    assert_eq!(lb[0].offset, 0x100_0000_4000, "{}", lb[0].raw);
    let ours = aspace.maps();
    assert!(
        ours.iter().any(|l| l.contains(" 10000004000 ") && l.ends_with("/dmabuf:vfio0:0000:00:03.0/1")),
        "{ours:?}"
    );
    // Write through b, read through a third mapping and through region read.
    probe::write_u64(b + 8, 0xca77_face).unwrap();
    let c = fd.mmap(&aspace, MmapArgs::shared(bar1.offset, 0x8000)).unwrap();
    assert_eq!(probe::read_u64(c + 0x4008).unwrap(), 0xca77_face);
    let mut buf = [0u8; 8];
    fd.read(bar1.offset + 0x4008, &mut buf).unwrap();
    assert_eq!(u64::from_ne_bytes(buf), 0xca77_face);
    // Memory disable revokes; re-enable restores, data intact.
    fd.set_memory_enable(false).unwrap();
    let e = probe::read_u64(a).unwrap_err();
    assert!(e.is_sigbus(), "{e}");
    assert_eq!(e.code, libc::BUS_ADRERR);
    fd.set_memory_enable(true).unwrap();
    assert_eq!(probe::read_u64(c + 0x4008).unwrap(), 0xca77_face);
}
