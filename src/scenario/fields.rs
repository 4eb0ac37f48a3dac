//! The keys of one scenario table, read one by one, and the number syntax.
//!
//! Every numeric key goes through [`Fields::int`]: it parses the number and
//! checks it against the [`Bounds`] of its field before converting it to the
//! field's type, so a value is either exactly what the file says or an error
//! at the file's line naming the key and its range. Nothing is truncated.

use std::ops::RangeInclusive;

use toml::{Table, Value};

use super::parse::ScenarioError;

/// The file being parsed, for line numbers.
pub(super) struct Ctx<'a> {
    pub(super) file: &'a str,
    pub(super) text: &'a str,
}

impl Ctx<'_> {
    pub(super) fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())].bytes().filter(|b| *b == b'\n').count() + 1
    }

    pub(super) fn err(&self, line: usize, msg: impl Into<String>) -> ScenarioError {
        ScenarioError { file: self.file.to_owned(), line, msg: msg.into() }
    }
}

/// The values a numeric key accepts, and how messages write them: keys
/// that hold register values, flags or indices in hex, counts in decimal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Bounds {
    min: u64,
    max: u64,
    hex: bool,
}

impl Bounds {
    /// Any 64-bit value (offsets, lengths, addresses, counts).
    pub(super) const U64: Self = Self::hex(0, u64::MAX);
    /// Any 32-bit value (UAPI `__u32` fields).
    pub(super) const U32: Self = Self::hex(0, 0xffff_ffff);
    /// Any 16-bit value (PCI IDs).
    pub(super) const U16: Self = Self::hex(0, 0xffff);

    /// `min..=max`, written in hex.
    pub(super) const fn hex(min: u64, max: u64) -> Self {
        Self { min, max, hex: true }
    }

    /// `min..=max`, written in decimal.
    pub(super) const fn dec(min: u64, max: u64) -> Self {
        Self { min, max, hex: false }
    }

    /// Every value a register `bits` wide holds (bits: 8, 16, 32 or 64).
    pub(super) fn bits(bits: u32) -> Self {
        Self::hex(0, u64::MAX.checked_shr(64u32.saturating_sub(bits)).unwrap_or(0))
    }

    fn show(&self, n: u64) -> String {
        if self.hex && n != 0 {
            format!("{n:#x}")
        } else {
            n.to_string()
        }
    }

    /// The range as messages write it: `0..=0xffffffff`.
    pub(super) fn range(&self) -> String {
        format!("{}..={}", self.show(self.min), self.show(self.max))
    }

    /// `n` as a `T`, if it lies in these bounds (which must lie within `T`).
    ///
    /// # Errors
    ///
    /// `"<n> is out of range (<min>..=<max>)"`.
    pub(super) fn check<T: TryFrom<u64>>(&self, n: u64) -> Result<T, String> {
        let out = || format!("{} is out of range ({})", self.show(n), self.range());
        if !RangeInclusive::new(self.min, self.max).contains(&n) {
            return Err(out());
        }
        // Only a bound wider than its type fails here; still no truncation.
        T::try_from(n).map_err(|_| out())
    }
}

/// The fields of one table, consumed one by one so leftovers are reported.
pub(super) struct Fields<'a> {
    pub(super) cx: &'a Ctx<'a>,
    pub(super) line: usize,
    pub(super) what: String,
    pub(super) t: Table,
}

impl Fields<'_> {
    pub(super) fn err(&self, msg: impl Into<String>) -> ScenarioError {
        self.cx.err(self.line, format!("{}: {}", self.what, msg.into()))
    }

    pub(super) fn take(&mut self, key: &str) -> Option<Value> {
        self.t.remove(key)
    }

    pub(super) fn str(&mut self, key: &str) -> Result<String, ScenarioError> {
        self.opt_str(key)?.ok_or_else(|| self.err(format!("needs `{key}`")))
    }

    pub(super) fn opt_str(&mut self, key: &str) -> Result<Option<String>, ScenarioError> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.err(format!("`{key}` must be a string, not {}", v.type_str()))),
        }
    }

    /// The number under `key`, if present, checked against `bounds` and
    /// converted to the field's type. The one reader of numeric keys.
    pub(super) fn int<T: TryFrom<u64>>(&mut self, key: &str, bounds: Bounds) -> Result<Option<T>, ScenarioError> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => self.value_in(key, "", &v, bounds).map(Some),
        }
    }

    /// An already taken `v` as the number of `key` (for keys that also
    /// accept names, like `attr = "wc"`; `hint` lists those in messages).
    pub(super) fn value_in<T: TryFrom<u64>>(
        &self,
        key: &str,
        hint: &str,
        v: &Value,
        bounds: Bounds,
    ) -> Result<T, ScenarioError> {
        number(v).and_then(|n| bounds.check(n)).map_err(|m| self.err(format!("`{key}`{hint}: {m}")))
    }

    /// A required numeric key.
    pub(super) fn int_req<T: TryFrom<u64>>(&mut self, key: &str, bounds: Bounds) -> Result<T, ScenarioError> {
        self.int(key, bounds)?.ok_or_else(|| self.err(format!("needs `{key}`")))
    }

    /// A numeric key with a default.
    pub(super) fn int_or<T: TryFrom<u64>>(
        &mut self,
        key: &str,
        bounds: Bounds,
        default: T,
    ) -> Result<T, ScenarioError> {
        Ok(self.int(key, bounds)?.unwrap_or(default))
    }

    /// A required 64-bit key (any value).
    pub(super) fn num(&mut self, key: &str) -> Result<u64, ScenarioError> {
        self.int_req(key, Bounds::U64)
    }

    /// An optional 64-bit key (any value).
    pub(super) fn opt_num(&mut self, key: &str) -> Result<Option<u64>, ScenarioError> {
        self.int(key, Bounds::U64)
    }

    /// A 64-bit key (any value) with a default.
    /// `frame-size`: a power of two and a multiple of the page size.
    pub(super) fn frame_size(&mut self) -> Result<Option<u64>, ScenarioError> {
        let Some(n) = self.opt_num("frame-size")? else { return Ok(None) };
        if !n.is_power_of_two() || n % page::PAGE_SIZE != 0 {
            return Err(self.err(format!(
                "`frame-size` {n:#x} must be a power of two and a multiple of the page size ({:#x})",
                page::PAGE_SIZE
            )));
        }
        Ok(Some(n))
    }

    pub(super) fn num_or(&mut self, key: &str, default: u64) -> Result<u64, ScenarioError> {
        self.int_or(key, Bounds::U64, default)
    }

    pub(super) fn bool_or(&mut self, key: &str, default: bool) -> Result<bool, ScenarioError> {
        match self.take(key) {
            None => Ok(default),
            Some(Value::Boolean(b)) => Ok(b),
            Some(v) => Err(self.err(format!("`{key}` must be true or false, not {}", v.type_str()))),
        }
    }

    /// An access width in bits.
    pub(super) fn width(&mut self, default: u32) -> Result<u32, ScenarioError> {
        match self.num_or("width", u64::from(default))? {
            8 => Ok(8),
            16 => Ok(16),
            32 => Ok(32),
            64 => Ok(64),
            w => Err(self.err(format!("`width` must be 8, 16, 32 or 64 (bits), not {w}"))),
        }
    }

    /// The `value` of an access `width` bits wide: wider values are refused,
    /// not cut to the width.
    pub(super) fn value(&mut self, width: u32) -> Result<u64, ScenarioError> {
        self.int_req("value", Bounds::bits(width))
    }

    pub(super) fn finish(self) -> Result<(), ScenarioError> {
        match self.t.keys().next() {
            None => Ok(()),
            Some(k) => Err(self.err(format!("unknown key `{k}`"))),
        }
    }
}

/// An integer, or a string holding one: decimal, `0x` hex, or a size with a
/// `K`/`M`/`G` suffix (binary units), e.g. `"64K"`, `"0x30000"`, `"2M"`.
pub(super) fn number(v: &Value) -> Result<u64, String> {
    match v {
        Value::Integer(i) => u64::try_from(*i).map_err(|_| format!("{i} is negative")),
        Value::String(s) => parse_number(s),
        other => Err(format!("expected a number, not {}", other.type_str())),
    }
}

/// The string half of the number syntax: decimal, `0x` hex, or a `K`/`M`/`G` size.
///
/// # Errors
///
/// A message saying why `s` is not a number, or that it overflows 64 bits.
pub fn parse_number(s: &str) -> Result<u64, String> {
    let t = s.trim().replace('_', "");
    let bad = || format!("{s:?} is not a number (use 4096, 0x1000, 4K, 2M or 1G)");
    if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return u64::from_str_radix(hex, 16).map_err(|_| bad());
    }
    let (digits, shift) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 10),
        Some('M' | 'm') => (&t[..t.len() - 1], 20),
        Some('G' | 'g') => (&t[..t.len() - 1], 30),
        _ => (&t[..], 0),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    n.checked_mul(1 << shift).ok_or_else(|| format!("{s:?} overflows 64 bits"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_accept_hex_sizes_and_decimals() {
        assert_eq!(parse_number("0x30000"), Ok(0x30000));
        assert_eq!(parse_number("64K"), Ok(64 << 10));
        assert_eq!(parse_number("2M"), Ok(2 << 20));
        assert_eq!(parse_number("4096"), Ok(4096));
        assert!(parse_number("4Q").is_err());
        assert!(parse_number("99999999999G").is_err());
    }

    #[test]
    fn bounds_refuse_what_lies_outside_and_name_the_range() {
        assert_eq!(Bounds::U32.check::<u32>(0xffff_ffff), Ok(0xffff_ffff));
        assert_eq!(
            Bounds::U32.check::<u32>(0x1_0000_0001),
            Err("0x100000001 is out of range (0..=0xffffffff)".to_owned())
        );
        assert_eq!(Bounds::dec(0, 60_000).check::<u64>(60_001), Err("60001 is out of range (0..=60000)".to_owned()));
        assert_eq!(Bounds::dec(1, 5).check::<usize>(0), Err("0 is out of range (1..=5)".to_owned()));
    }

    #[test]
    fn a_bound_wider_than_its_type_still_refuses_instead_of_truncating() {
        assert!(Bounds::U32.check::<u16>(0x1_0000).is_err());
        assert!(Bounds::U64.check::<i32>(0x8000_0000).is_err());
    }

    #[test]
    fn register_widths_bound_values() {
        assert_eq!(Bounds::bits(8).range(), "0..=0xff");
        assert_eq!(Bounds::bits(16).range(), "0..=0xffff");
        assert_eq!(Bounds::bits(32).range(), "0..=0xffffffff");
        assert_eq!(Bounds::bits(64).range(), "0..=0xffffffffffffffff");
    }
}
