//! The seed mail's example, run for real: two slices of BAR1 mapped through
//! the device fd, their lines in the real `/proc/self/maps` beside the
//! kernel-style lines of our maps view, a write seen through the other
//! mapping, then COMMAND.MEMORY cleared → SIGBUS → re-enabled → data back.
//!
//! Run: `cargo run -p vfio --example seed`

use mm::{probe, AddressSpace};
use vfio::{MmapArgs, VfioPciDevice};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let aspace = AddressSpace::new()?;
    let vdev = VfioPciDevice::from_catalogue(0, "0000:00:03.0".parse()?, "edu-plus")?;
    let fd = vdev.open();
    let bar1 = fd.region_info(1)?;
    println!(
        "-i- device {} at {}: BAR1 is {} MiB at region offset {:#x}",
        vdev.cdev_name(),
        vdev.bdf(),
        bar1.size >> 20,
        bar1.offset
    );

    let a = fd.mmap(&aspace, MmapArgs::shared(bar1.offset, 0x1000))?;
    let b = fd.mmap(&aspace, MmapArgs::shared(bar1.offset + 0x4000, 0x1000))?;
    println!("-i- vm_a = mmap(0, 0x1000, ..., device_fd, bar_region.offset + 0)      = {a:#x}");
    println!("-i- vm_b = mmap(0, 0x1000, ..., device_fd, bar_region.offset + 0x4000) = {b:#x}");
    println!("-i- the real /proc/self/maps (the offset column is vm_pgoff exactly as passed):");
    for va in [a, b] {
        for l in mm::maps::proc_self_maps(va, va + 0x1000)? {
            println!("      {}", l.raw);
        }
    }
    println!("-i- as Linux prints them after the series (each mapping is its own DMA-buffer):");
    for l in aspace.maps() {
        println!("      {l}");
    }

    let c = fd.mmap(&aspace, MmapArgs::shared(bar1.offset, 0x8000))?;
    probe::write_u64(b, 0xca77_face)?;
    println!(
        "-i- wrote 0xca77face through vm_b; read through a third mapping of BAR1+0: {:#x}",
        probe::read_u64(c + 0x4000)?
    );

    println!("-i- clearing COMMAND.MEMORY: every mapping of the BAR is revoked");
    fd.set_memory_enable(false)?;
    match probe::read_u64(b) {
        Err(fault) => println!("-i- reading vm_b now raises {fault}"),
        Ok(v) => return Err(format!("read {v:#x} through a revoked mapping").into()),
    }
    println!("-i- setting COMMAND.MEMORY again: the buffers are un-revoked, the next touch faults the page back in");
    fd.set_memory_enable(true)?;
    let v = probe::read_u64(b)?;
    println!("-i- reading vm_b: {v:#x} (the data survived the revoke)");
    let s = aspace.fault_stats();
    println!("-i- faults served: {} of 4 KiB, {} of 2 MiB, {} SIGBUS", s.order0, s.order9, s.sigbus);
    if v != 0xca77_face {
        return Err("data lost across a temporary revoke".into());
    }
    Ok(())
}
