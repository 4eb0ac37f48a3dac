//! The live state as the seed mail draws it by hand: each BAR, each buffer's
//! window and ranges with its status, each VMA and the BAR bytes it shows;
//! as text art, or as JSON for tools.

use std::fmt::Write as _;

use dmabuf::DmaBuf;
use mm::maps::SmapsEntry;
use serde_json::{json, Value};
use vfio::VfioDmaBuf;

use crate::scenario::run::{status_text, World};

const COLUMNS: u64 = 64;

/// A row of `COLUMNS` cells: `#` where one of `spans` (BAR offsets) lies.
fn bar_row(bar_len: u64, spans: &[(u64, u64)]) -> String {
    (0..COLUMNS)
        .map(|c| {
            let (lo, hi) = (c * bar_len / COLUMNS, (c + 1) * bar_len / COLUMNS);
            if spans.iter().any(|(s, e)| *s < hi.max(lo + 1) && *e > lo) {
                '#'
            } else {
                '.'
            }
        })
        .collect()
}

/// Every buffer the world can see: each device's list plus the scenario's
/// buffer fds (an explicit buffer leaves its device's list at close).
fn buffers(w: &World) -> Vec<std::sync::Arc<DmaBuf>> {
    let mut v: Vec<_> = w.devices.values().flat_map(|d| d.dmabufs()).collect();
    for b in w.bufs.values() {
        v.push(b.buffer().clone());
    }
    v.sort_by_key(|b| b.id());
    v.dedup_by_key(|b| b.id());
    v
}

fn fd_names(w: &World, buf: &DmaBuf) -> Vec<String> {
    w.bufs.iter().filter(|(_, f)| f.buffer().id() == buf.id()).map(|(n, f)| format!("{n}=fd {}", f.raw_fd())).collect()
}

/// What the kernel maps with PMDs (`ShmemPmdMapped` of `/proc/self/smaps`)
/// inside `[start, end)`: each kernel VMA there with any, as its range and
/// bytes. Empty where procfs cannot be read.
fn pmd_ranges(pmd: &[SmapsEntry], start: u64, end: u64) -> Vec<(u64, u64, u64)> {
    pmd.iter().filter(|e| e.start < end && start < e.end).map(|e| (e.start, e.end, e.shmem_pmd_mapped)).collect()
}

/// Draws the live state as text.
pub fn draw(w: &World) -> String {
    let mut out = String::new();
    let vmas = w.aspace.vmas();
    let pmd = w.aspace.pmd_mapped().unwrap_or_default();
    let bufs = buffers(w);
    for (id, vdev) in &w.devices {
        let _ = writeln!(
            out,
            "device {id}: {} at {}  open files {}  memory {}  {}{}",
            vdev.cdev_name(),
            vdev.bdf(),
            vdev.open_count(),
            if vdev.memory_enabled() { "enabled" } else { "DISABLED" },
            vdev.power_state(),
            if vdev.low_power() { "  LOW POWER" } else { "" }
        );
        for index in 0..6u32 {
            let Some(len) = vdev.bar_len(index) else { continue };
            let kind = if vdev.bar_is_ram(index) { "RAM" } else { "registers" };
            let _ = writeln!(
                out,
                "  BAR{index} {:>8} {kind:<9} 0x0 {} {len:#x}",
                mm::budget::format_bytes(len),
                "-".repeat(COLUMNS as usize - 8)
            );
            let base = vfio::bar_start(index).0;
            for b in bufs.iter().filter(|b| {
                VfioDmaBuf::of(b).is_some_and(|p| {
                    p.region_index() == index && p.vdev().is_none_or(|v| std::sync::Arc::ptr_eq(&v, vdev))
                }) && b.ranges().first().is_some_and(|r| vfio::offset_to_index(r.paddr.0) == u64::from(index))
            }) {
                let p = VfioDmaBuf::of(b).expect("filtered");
                let spans: Vec<(u64, u64)> =
                    b.ranges().iter().map(|r| (r.paddr.0 - base, r.paddr.0 - base + r.len)).collect();
                let kind = if p.is_mmap_buffer() {
                    "per-mapping".to_owned()
                } else {
                    format!("explicit {}", fd_names(w, b).join(" "))
                };
                let _ = writeln!(
                    out,
                    "    buffer {} {:<24} {:<12} {kind}{}",
                    b.id(),
                    b.name().unwrap_or_else(|| "(unnamed)".into()),
                    status_text(b.status()),
                    if p.vdev().is_none() { "  (device closed)" } else { "" }
                );
                let _ = writeln!(out, "      |{}|", bar_row(len, &spans));
                let ranges: Vec<String> = spans.iter().map(|(s, e)| format!("[{s:#x}, {e:#x})")).collect();
                let _ = writeln!(
                    out,
                    "      ranges {}  size {:#x}  vma_pgoff_adjust {:#x}  memattr {}  importers {} ({} mapped)",
                    ranges.join(" "),
                    b.size(),
                    p.vma_pgoff_adjust(),
                    if p.memattr() == 1 { "WC" } else { "NC" },
                    b.attachments(),
                    b.importer_mappings()
                );
                for v in vmas.iter().filter(|v| v.inode == b.id()) {
                    let name = w
                        .maps
                        .iter()
                        .find(|(_, m)| m.va <= v.vm_start && v.vm_start < m.va + m.len)
                        .map_or("", |(n, _)| n.as_str());
                    let _ = writeln!(out, "      VMA {name:<6} {}", v.maps_line());
                    for (s, e, bytes) in pmd_ranges(&pmd, v.vm_start, v.vm_end) {
                        let _ = writeln!(out, "        PMD-mapped {} MiB in {s:08x}-{e:08x}", bytes >> 20);
                    }
                }
            }
        }
    }
    let s = w.aspace.fault_stats();
    let _ = writeln!(
        out,
        "faults: {} of 4 KiB, {} of 2 MiB, {} fallbacks, {} SIGBUS; 2 MiB pieces mapped by a PMD {}, by PTEs {}",
        s.order0,
        s.order9,
        s.fallback,
        s.sigbus,
        s.pmd_mapped,
        s.pmd_fallback.total()
    );
    out
}

/// The same state as JSON.
pub fn json(w: &World) -> Value {
    let vmas = w.aspace.vmas();
    let devices: Vec<Value> = w
        .devices
        .iter()
        .map(|(id, d)| {
            let bars: Vec<Value> = (0..6u32)
                .filter_map(|i| d.bar_len(i).map(|len| json!({"index": i, "size": len, "ram": d.bar_is_ram(i)})))
                .collect();
            json!({
                "id": id, "cdev": d.cdev_name(), "bdf": d.bdf().to_string(), "open_count": d.open_count(),
                "memory_enabled": d.memory_enabled(), "power_state": d.power_state().to_string(),
                "low_power": d.low_power(), "bars": bars,
            })
        })
        .collect();
    let bufs: Vec<Value> = buffers(w)
        .iter()
        .map(|b| {
            let p = VfioDmaBuf::of(b);
            json!({
                "id": b.id(), "name": b.name(), "status": status_text(b.status()), "size": b.size(),
                "ranges": b.ranges().iter().map(|r| json!({"paddr": r.paddr.0, "len": r.len})).collect::<Vec<_>>(),
                "region_index": p.map(VfioDmaBuf::region_index),
                "per_mapping": p.map(VfioDmaBuf::is_mmap_buffer),
                "vma_pgoff_adjust": p.map(|p| p.vma_pgoff_adjust().0),
                "memattr": p.map(|p| if p.memattr() == 1 { "wc" } else { "nc" }),
                "device_closed": p.map(|p| p.vdev().is_none()),
                "attachments": b.attachments(), "importer_mappings": b.importer_mappings(),
                "fds": fd_names(w, b),
            })
        })
        .collect();
    let pmd = w.aspace.pmd_mapped().unwrap_or_default();
    let vmas: Vec<Value> = vmas
        .iter()
        .map(|v| {
            let ranges: Vec<Value> = pmd_ranges(&pmd, v.vm_start, v.vm_end)
                .into_iter()
                .map(|(s, e, bytes)| json!({"start": s, "end": e, "bytes": bytes}))
                .collect();
            json!({"start": v.vm_start, "end": v.vm_end, "vm_pgoff": v.vm_pgoff, "buffer": v.inode,
                   "maps_line": v.maps_line(), "pmd_mapped": ranges})
        })
        .collect();
    let s = w.aspace.fault_stats();
    let f = s.pmd_fallback;
    json!({
        "devices": devices, "buffers": bufs, "vmas": vmas,
        "faults": {"order0": s.order0, "order9": s.order9, "fallback": s.fallback, "sigbus": s.sigbus,
                   "pmd_mapped": s.pmd_mapped,
                   "pmd_fallback": {"unaligned": f.unaligned, "invalid": f.invalid, "busy": f.busy,
                                    "no_memory": f.no_memory, "empty": f.empty, "other": f.other}},
    })
}
