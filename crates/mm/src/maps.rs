//! `/proc/<pid>/maps` lines: rendering ours the way Linux renders a shared
//! file VMA, and reading the real ones.

/// Formats one maps line: `start-end perms offset dev inode path`, where the
/// offset column is `vm_pgoff` in bytes (Linux prints `vm_pgoff << PAGE_SHIFT`
/// as `%08lx`) and `path` is printed as given (the mapping's creator names
/// its file, as an exporter names its anonymous inode).
pub fn format_line(start: u64, end: u64, writable: bool, vm_pgoff: u64, inode: u64, path: &str) -> String {
    let perms = if writable { "rw-s" } else { "r--s" };
    let offset = vm_pgoff.wrapping_mul(page::PAGE_SIZE);
    format!("{start:08x}-{end:08x} {perms} {offset:08x} 00:00 {inode:<10} {path}")
}

/// One parsed line of the real `/proc/self/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcMapsLine {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// Permissions, e.g. `rw-s`.
    pub perms: String,
    /// File offset column.
    pub offset: u64,
    /// Path column (may be empty).
    pub path: String,
    /// The line as the kernel printed it.
    pub raw: String,
}

/// Reads the real `/proc/self/maps` lines that intersect `[from, to)`.
///
/// # Errors
///
/// I/O errors reading procfs.
pub fn proc_self_maps(from: u64, to: u64) -> std::io::Result<Vec<ProcMapsLine>> {
    let text = std::fs::read_to_string("/proc/self/maps")?;
    Ok(text.lines().filter_map(parse_line).filter(|l| l.start < to && l.end > from).collect())
}

/// What `/proc/self/smaps` says of one kernel VMA (the fields we show).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmapsEntry {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// `Rss`, in bytes.
    pub rss: u64,
    /// `ShmemPmdMapped`, in bytes: how much of the VMA shmem (a memfd) maps
    /// with PMDs, 2 MiB each.
    pub shmem_pmd_mapped: u64,
}

/// Reads the `/proc/self/smaps` entries of the kernel VMAs that intersect
/// `[from, to)`.
///
/// # Errors
///
/// I/O errors reading procfs.
pub fn proc_self_smaps(from: u64, to: u64) -> std::io::Result<Vec<SmapsEntry>> {
    let text = std::fs::read_to_string("/proc/self/smaps")?;
    Ok(parse_smaps(&text).into_iter().filter(|e| e.start < to && e.end > from).collect())
}

/// Parses smaps text: a maps line opens each entry, `Name: value kB` lines
/// follow.
fn parse_smaps(text: &str) -> Vec<SmapsEntry> {
    let mut out: Vec<SmapsEntry> = Vec::new();
    for line in text.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((s, e)) = first.split_once('-') {
            if let (Ok(start), Ok(end)) = (u64::from_str_radix(s, 16), u64::from_str_radix(e, 16)) {
                out.push(SmapsEntry { start, end, rss: 0, shmem_pmd_mapped: 0 });
                continue;
            }
        }
        let (Some(entry), Some((name, value))) = (out.last_mut(), line.split_once(':')) else { continue };
        let kib = || value.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) << 10;
        match name {
            "Rss" => entry.rss = kib(),
            "ShmemPmdMapped" => entry.shmem_pmd_mapped = kib(),
            _ => {}
        }
    }
    out
}

fn parse_line(raw: &str) -> Option<ProcMapsLine> {
    let mut it = raw.split_whitespace();
    let range = it.next()?;
    let perms = it.next()?.to_owned();
    let offset = u64::from_str_radix(it.next()?, 16).ok()?;
    let _dev = it.next()?;
    let _inode = it.next()?;
    let path = it.collect::<Vec<_>>().join(" ");
    let (s, e) = range.split_once('-')?;
    Some(ProcMapsLine {
        start: u64::from_str_radix(s, 16).ok()?,
        end: u64::from_str_radix(e, 16).ok()?,
        perms,
        offset,
        path,
        raw: raw.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_line_shows_the_full_mmap_offset_and_the_path_as_given() {
        let line = format_line(0x7f00_0000_0000, 0x7f00_0000_1000, true, 0x1000_0004, 42, "/exporter:dev0/1");
        assert_eq!(line, "7f0000000000-7f0000001000 rw-s 10000004000 00:00 42         /exporter:dev0/1");
    }

    #[test]
    fn smaps_parser_reads_rss_and_pmd_mapped_per_vma() {
        let text = "7f0000000000-7f0000400000 rw-s 00000000 00:01 1234 /memfd:frame (deleted)\n\
                    Size:               4096 kB\nRss:                2052 kB\nShmemPmdMapped:     2048 kB\n\
                    VmFlags: rd wr sh mr mw me ms\n\
                    7f0000400000-7f0000401000 r--p 00000000 00:00 0\nRss:                   4 kB\n";
        let e = parse_smaps(text);
        assert_eq!(e.len(), 2);
        assert_eq!(
            (e[0].start, e[0].end, e[0].rss, e[0].shmem_pmd_mapped),
            (0x7f00_0000_0000, 0x7f00_0040_0000, 2052 << 10, 2 << 20)
        );
        assert_eq!((e[1].rss, e[1].shmem_pmd_mapped), (4 << 10, 0));
    }

    #[test]
    fn real_smaps_lists_this_process() {
        let all = proc_self_smaps(0, u64::MAX).unwrap();
        assert!(!all.is_empty());
        assert!(all.iter().all(|e| e.start < e.end));
    }

    #[test]
    fn proc_maps_parser_reads_offset_and_path() {
        let l =
            parse_line("7f0000000000-7f0000001000 rw-s 10000004000 00:01 1234 /memfd:vfio0:0000:00:03.0/1 (deleted)")
                .unwrap();
        assert_eq!(l.offset, 0x100_0000_4000);
        assert_eq!(l.path, "/memfd:vfio0:0000:00:03.0/1 (deleted)");
        assert_eq!(l.perms, "rw-s");
    }
}
