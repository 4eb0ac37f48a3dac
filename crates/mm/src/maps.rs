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
    fn proc_maps_parser_reads_offset_and_path() {
        let l =
            parse_line("7f0000000000-7f0000001000 rw-s 10000004000 00:01 1234 /memfd:vfio0:0000:00:03.0/1 (deleted)")
                .unwrap();
        assert_eq!(l.offset, 0x100_0000_4000);
        assert_eq!(l.path, "/memfd:vfio0:0000:00:03.0/1 (deleted)");
        assert_eq!(l.perms, "rw-s");
    }
}
