//! The EDID a bochs-display presents at BAR2 offset 0: an EDID 1.4 base block and one CTA-861
//! extension block, 256 bytes, with the facts QEMU's generator is known for (vendor `RHT`,
//! monitor name `QEMU Monitor`, preferred mode 1280x800). The remaining fields are this model's
//! own choices; every block carries a valid checksum, so a driver's EDID parser accepts it.

/// Length of the EDID blob: base block plus one extension.
pub const EDID_LEN: usize = 256;
/// Length of one EDID block.
const BLOCK_LEN: usize = 128;
/// Width of the preferred mode, in pixels.
pub const EDID_PREFERRED_WIDTH: u16 = 1280;
/// Height of the preferred mode, in pixels.
pub const EDID_PREFERRED_HEIGHT: u16 = 800;
/// The monitor name descriptor's text.
pub const EDID_MONITOR_NAME: &str = "QEMU Monitor";

/// The fixed 8-byte pattern every EDID base block starts with.
const HEADER: [u8; 8] = [0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00];

/// A detailed timing: the preferred mode's CVT reduced-blanking timing at 60 Hz.
struct Timing {
    /// Pixel clock in units of 10 kHz.
    clock_10khz: u16,
    h_active: u16,
    h_blank: u16,
    h_front: u16,
    h_sync: u16,
    v_active: u16,
    v_blank: u16,
    v_front: u16,
    v_sync: u16,
}

const PREFERRED: Timing = Timing {
    clock_10khz: 7100,
    h_active: EDID_PREFERRED_WIDTH,
    h_blank: 160,
    h_front: 48,
    h_sync: 32,
    v_active: EDID_PREFERRED_HEIGHT,
    v_blank: 23,
    v_front: 3,
    v_sync: 6,
};

/// Physical size in millimetres at 100 dots per inch.
const WIDTH_MM: u16 = 325;
const HEIGHT_MM: u16 = 203;

/// Low byte and the high bits of a 12-bit field.
fn lo(value: u16) -> u8 {
    (value & 0xff) as u8
}

fn hi(value: u16) -> u8 {
    ((value >> 8) & 0x0f) as u8
}

/// An 18-byte detailed timing descriptor for `timing`.
fn detailed_timing(timing: &Timing) -> [u8; 18] {
    let mut d = [0; 18];
    d[0..2].copy_from_slice(&timing.clock_10khz.to_le_bytes());
    d[2] = lo(timing.h_active);
    d[3] = lo(timing.h_blank);
    d[4] = (hi(timing.h_active) << 4) | hi(timing.h_blank);
    d[5] = lo(timing.v_active);
    d[6] = lo(timing.v_blank);
    d[7] = (hi(timing.v_active) << 4) | hi(timing.v_blank);
    d[8] = lo(timing.h_front);
    d[9] = lo(timing.h_sync);
    d[10] = ((timing.v_front as u8 & 0x0f) << 4) | (timing.v_sync as u8 & 0x0f);
    d[11] = (((timing.h_front >> 8) as u8 & 3) << 6)
        | (((timing.h_sync >> 8) as u8 & 3) << 4)
        | (((timing.v_front >> 4) as u8 & 3) << 2)
        | ((timing.v_sync >> 4) as u8 & 3);
    d[12] = lo(WIDTH_MM);
    d[13] = lo(HEIGHT_MM);
    d[14] = (hi(WIDTH_MM) << 4) | hi(HEIGHT_MM);
    // Digital separate sync, horizontal sync positive, vertical negative (reduced blanking).
    d[17] = 0x18 | 0x02;
    d
}

/// A display descriptor (not a timing) of type `tag` carrying `payload`.
fn display_descriptor(tag: u8, payload: &[u8; 13]) -> [u8; 18] {
    let mut d = [0; 18];
    d[3] = tag;
    d[5..].copy_from_slice(payload);
    d
}

/// The monitor name: at most 13 bytes, ended by a line feed and padded with spaces.
fn monitor_name() -> [u8; 13] {
    let mut payload = [b' '; 13];
    let name = EDID_MONITOR_NAME.as_bytes();
    payload[..name.len()].copy_from_slice(name);
    payload[name.len()] = b'\n';
    payload
}

/// Range limits: 50-125 Hz vertical, 30-160 kHz horizontal, 200 MHz pixel clock, no formula.
fn range_limits() -> [u8; 13] {
    [50, 125, 30, 160, 20, 0x01, b'\n', b' ', b' ', b' ', b' ', b' ', b' ']
}

/// A CIE coordinate in ten-thousandths as the 10-bit fraction EDID stores, rounded.
fn chroma(ten_thousandths: u32) -> u16 {
    ((ten_thousandths * 1024 + 5000) / 10_000) as u16
}

/// The ten chromaticity bytes for sRGB primaries and a D65 white point.
fn chromaticity() -> [u8; 10] {
    let [rx, ry, gx, gy, bx, by, wx, wy] = [6400, 3300, 3000, 6000, 1500, 600, 3127, 3290].map(chroma);
    let low = |a: u16, b: u16, c: u16, d: u16| (((a & 3) << 6) | ((b & 3) << 4) | ((c & 3) << 2) | (d & 3)) as u8;
    let high = |v: u16| (v >> 2) as u8;
    [
        low(rx, ry, gx, gy),
        low(bx, by, wx, wy),
        high(rx),
        high(ry),
        high(gx),
        high(gy),
        high(bx),
        high(by),
        high(wx),
        high(wy),
    ]
}

/// Sets the last byte of `block` so the block's bytes sum to 0 modulo 256.
fn seal(block: &mut [u8]) {
    let (body, last) = block.split_at_mut(BLOCK_LEN - 1);
    let sum = body.iter().fold(0_u8, |acc, b| acc.wrapping_add(*b));
    last[0] = sum.wrapping_neg();
}

/// Builds the 256-byte EDID.
pub fn generate() -> [u8; EDID_LEN] {
    let mut edid = [0; EDID_LEN];
    let base = &mut edid[..BLOCK_LEN];
    base[0..8].copy_from_slice(&HEADER);
    // Manufacturer "RHT": three 5-bit letters ('A' = 1), big-endian.
    let [r, h, t] = [b'R', b'H', b'T'].map(|c| u16::from(c - b'A' + 1));
    base[8..10].copy_from_slice(&((r << 10) | (h << 5) | t).to_be_bytes());
    base[10..12].copy_from_slice(&0x1234_u16.to_le_bytes());
    // Serial 0, week 0, year 2024 (stored as years since 1990); EDID 1.4.
    base[17] = 34;
    base[18] = 1;
    base[19] = 4;
    // Digital input, 8 bits per colour, DisplayPort.
    base[20] = 0xa5;
    base[21] = (WIDTH_MM / 10) as u8;
    base[22] = (HEIGHT_MM / 10) as u8;
    // Gamma 2.2, stored as (gamma - 1) * 100.
    base[23] = 120;
    // sRGB default colour space; the preferred timing is the native mode.
    base[24] = 0x06;
    base[25..35].copy_from_slice(&chromaticity());
    // Established timings: 640x480@60, 800x600@60, 1024x768@60.
    base[35] = 0x21;
    base[36] = 0x08;
    // Standard timings: all eight unused.
    base[38..54].fill(0x01);
    base[54..72].copy_from_slice(&detailed_timing(&PREFERRED));
    base[72..90].copy_from_slice(&display_descriptor(0xfd, &range_limits()));
    base[90..108].copy_from_slice(&display_descriptor(0xfc, &monitor_name()));
    base[108..126].copy_from_slice(&display_descriptor(0x10, &[0; 13]));
    // One extension block follows.
    base[126] = 1;
    seal(base);

    let ext = &mut edid[BLOCK_LEN..];
    // CTA-861 extension, revision 3, no data blocks and no timings of its own.
    ext[0] = 0x02;
    ext[1] = 0x03;
    ext[2] = 4;
    seal(ext);
    edid
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_block_sums_to_zero_and_the_base_block_starts_with_the_header() {
        let edid = generate();
        assert_eq!(edid[..8], HEADER);
        for block in edid.chunks(BLOCK_LEN) {
            assert_eq!(block.iter().fold(0_u8, |acc, b| acc.wrapping_add(*b)), 0);
        }
        assert_eq!((edid[18], edid[19]), (1, 4));
        assert_eq!(edid[126], 1, "one extension block");
        assert_eq!(edid[BLOCK_LEN], 0x02, "a CTA-861 extension");
    }

    #[test]
    fn the_vendor_decodes_to_rht() {
        let edid = generate();
        let id = u16::from_be_bytes([edid[8], edid[9]]);
        let letters: String =
            [10, 5, 0].iter().map(|shift| char::from(b'A' - 1 + ((id >> shift) & 0x1f) as u8)).collect();
        assert_eq!(letters, "RHT");
    }

    #[test]
    fn the_preferred_detailed_timing_is_1280x800_at_60_hz() {
        let edid = generate();
        let d = &edid[54..72];
        let h_active = u16::from(d[2]) | (u16::from(d[4] >> 4) << 8);
        let h_blank = u16::from(d[3]) | (u16::from(d[4] & 0xf) << 8);
        let v_active = u16::from(d[5]) | (u16::from(d[7] >> 4) << 8);
        let v_blank = u16::from(d[6]) | (u16::from(d[7] & 0xf) << 8);
        assert_eq!((h_active, v_active), (1280, 800));
        let clock_hz = u64::from(u16::from_le_bytes([d[0], d[1]])) * 10_000;
        let total = u64::from(h_active + h_blank) * u64::from(v_active + v_blank);
        let refresh_millihz = clock_hz * 1000 / total;
        assert!((59_500..60_500).contains(&refresh_millihz), "{refresh_millihz}");
    }

    #[test]
    fn the_monitor_name_descriptor_says_qemu_monitor() {
        let edid = generate();
        let descriptor = edid[54..126].chunks(18).find(|d| d[..4] == [0, 0, 0, 0xfc]).unwrap();
        let text = std::str::from_utf8(&descriptor[5..]).unwrap();
        assert_eq!(text.split('\n').next(), Some("QEMU Monitor"));
    }

    #[test]
    fn chromaticity_encodes_srgb_primaries() {
        // The widely published sRGB encoding of these ten bytes.
        assert_eq!(chromaticity(), [0xee, 0x91, 0xa3, 0x54, 0x4c, 0x99, 0x26, 0x0f, 0x50, 0x54]);
    }
}
