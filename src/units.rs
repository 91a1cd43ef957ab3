//! The one grammar for sizes and durations, for every flag and harness.
//!
//! A size is a whole number and an optional unit, in any case: `K`, `M`,
//! `G`, `T`, each with or without `iB` (`4G`, `4GiB`, `4gib`), powers of
//! 1024; a bare number (or `B`) is bytes, unless the caller reads it in a
//! unit of its own ([`parse_size_in`]: `--memory 256` is MiB).
//! A duration is a whole number and an optional unit: `s`, `m`, `h`, `d`,
//! `w`, in any case; a bare number is seconds (`--timeout 30`, `30s`).
//! Fractions, signs, spaces and SI units (`4GB`) are refused, saying so.

use std::time::Duration;

/// What a size may look like, for every error about one.
pub const SIZE_GRAMMAR: &str = "write a whole number of bytes, or one with a unit \
     K, M, G or T (KiB, MiB, GiB, TiB, any case): 512M, 4G, 4GiB, 262144K";
/// What a duration may look like, for every error about one.
pub const DURATION_GRAMMAR: &str = "write a whole number of seconds, or one with a unit \
     s, m, h, d or w: 90, 90s, 30m, 12h, 7d, 2w";

const SIZE_UNITS: [(&str, u32); 4] = [("K", 10), ("M", 20), ("G", 30), ("T", 40)];
const DURATION_UNITS: [(&str, u64); 5] = [
    ("w", 7 * 86_400),
    ("d", 86_400),
    ("h", 3600),
    ("m", 60),
    ("s", 1),
];

/// A size or duration that does not follow the grammar; it says what does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UnitsError(String);

/// A size in bytes: `4096`, `512K`, `512m`, `4GiB`, `1T`.
pub fn parse_size(s: &str) -> Result<u64, UnitsError> {
    parse_size_in(s, 1)
}

/// A size in bytes, a bare number counting `bare` bytes each (`1 << 20`
/// for a flag in MiB).
pub fn parse_size_in(s: &str, bare: u64) -> Result<u64, UnitsError> {
    let bad = |why: String| UnitsError(format!("{why}; {SIZE_GRAMMAR}"));
    let (number, unit) = split(s).ok_or_else(|| bad(format!("invalid size `{s}`")))?;
    let lower = unit.to_ascii_lowercase();
    let scale = match lower.as_str() {
        "" => bare,
        "b" => 1,
        _ => {
            let found = SIZE_UNITS.iter().find(|(u, _)| {
                let u = u.to_ascii_lowercase();
                lower == u || lower == format!("{u}ib")
            });
            match found {
                Some((_, shift)) => 1 << shift,
                None if lower.len() == 2
                    && lower.ends_with('b')
                    && SIZE_UNITS
                        .iter()
                        .any(|(u, _)| lower.starts_with(&u.to_ascii_lowercase())) =>
                {
                    return Err(bad(format!(
                        "invalid size `{s}`: `{unit}` would be ambiguous, as units here are \
                         powers of 1024 (write {number}{} or {number}{}iB)",
                        unit[..1].to_ascii_uppercase(),
                        unit[..1].to_ascii_uppercase()
                    )));
                }
                None => return Err(bad(format!("invalid size `{s}`: unknown unit `{unit}`"))),
            }
        }
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| bad(format!("size `{s}` is too large")))
}

/// A duration: `90`, `90s`, `30m`, `12h`, `7d`, `2w`.
pub fn parse_duration(s: &str) -> Result<Duration, UnitsError> {
    let bad = |why: String| UnitsError(format!("{why}; {DURATION_GRAMMAR}"));
    let (number, unit) = split(s).ok_or_else(|| bad(format!("invalid duration `{s}`")))?;
    let scale = match unit {
        "" => 1,
        _ => DURATION_UNITS
            .iter()
            .find(|(u, _)| u.eq_ignore_ascii_case(unit))
            .map(|(_, scale)| *scale)
            .ok_or_else(|| bad(format!("invalid duration `{s}`: unknown unit `{unit}`")))?,
    };
    let secs = number
        .checked_mul(scale)
        .ok_or_else(|| bad(format!("duration `{s}` is too long")))?;
    Ok(Duration::from_secs(secs))
}

/// `bytes` in the largest unit that writes it exactly (`256M`, `1536K`,
/// `4097`); [`parse_size`] reads it back.
pub fn format_size(bytes: u64) -> String {
    let exact =
        (SIZE_UNITS.iter().rev()).find(|(_, shift)| bytes != 0 && bytes % (1 << shift) == 0);
    match exact {
        Some((unit, shift)) => format!("{}{unit}", bytes >> shift),
        None => bytes.to_string(),
    }
}

/// Whole seconds of `d` in the largest unit that writes them exactly
/// (`2w`, `90m`, `61s`); [`parse_duration`] reads it back.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let exact = DURATION_UNITS.iter().find(|(_, scale)| secs % scale == 0);
    match exact {
        Some((unit, scale)) if secs != 0 => format!("{}{unit}", secs / scale),
        _ => format!("{secs}s"),
    }
}

/// The leading decimal number and the unit after it; `None` without digits.
fn split(s: &str) -> Option<(u64, &str)> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(end);
    Some((digits.parse().ok()?, unit))
}

/// Seconds from `t` to now; `0` for a time in the future (a skewed clock).
pub fn secs_since(t: std::time::SystemTime) -> u64 {
    std::time::SystemTime::now()
        .duration_since(t)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn durations_take_a_unit_or_are_seconds() {
        let secs = |s| parse_duration(s).map(|d| d.as_secs());
        assert_eq!(secs("0"), Ok(0));
        assert_eq!(secs("90"), Ok(90));
        assert_eq!(secs("90s"), Ok(90));
        assert_eq!(secs("10S"), Ok(10));
        assert_eq!(secs("30m"), Ok(1800));
        assert_eq!(secs("5M"), Ok(300));
        assert_eq!(secs("12h"), Ok(43_200));
        assert_eq!(secs("7d"), Ok(604_800));
        assert_eq!(secs("2w"), Ok(1_209_600));
        for bad in [
            "",
            "d",
            "7x",
            "7ms",
            "-1d",
            "1.5h",
            "7 d",
            " 7",
            "99999999999999999999",
            "99999999999999999w",
        ] {
            let err = parse_duration(bad).unwrap_err().to_string();
            assert!(err.contains("90s, 30m, 12h, 7d, 2w"), "{bad}: {err}");
            assert!(err.contains(&format!("`{bad}`")), "{bad}: {err}");
        }
    }

    #[test]
    fn sizes_are_powers_of_1024_in_any_case() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4096B"), Ok(4096));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("262144K"), Ok(256 << 20));
        assert_eq!(parse_size("256m"), Ok(256 << 20));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("512mib"), Ok(512 << 20));
        assert_eq!(parse_size("4G"), Ok(4 << 30));
        assert_eq!(parse_size("4g"), Ok(4 << 30));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        assert_eq!(parse_size("1TiB"), Ok(1 << 40));
        assert_eq!(parse_size("10T"), Ok(10 << 40));
        for bad in [
            "",
            "G",
            "1.5G",
            "-1",
            "4 G",
            "4Gi",
            "4X",
            "4XB",
            "99999999999T",
        ] {
            let err = parse_size(bad).unwrap_err().to_string();
            assert!(err.contains("512M, 4G, 4GiB"), "{bad}: {err}");
        }
        let err = parse_size("4GB").unwrap_err().to_string();
        assert!(err.contains("write 4G or 4GiB"), "{err}");
    }

    #[test]
    fn a_bare_number_may_count_the_callers_unit() {
        assert_eq!(parse_size_in("256", 1 << 20), Ok(256 << 20));
        assert_eq!(parse_size_in("256M", 1 << 20), Ok(256 << 20));
        assert_eq!(parse_size_in("1G", 1 << 20), Ok(1 << 30));
        assert_eq!(parse_size_in("4096B", 1 << 20), Ok(4096));
    }

    #[test]
    fn written_forms_use_the_largest_exact_unit() {
        assert_eq!(format_size(0), "0");
        assert_eq!(format_size(4097), "4097");
        assert_eq!(format_size(256 << 20), "256M");
        assert_eq!(format_size(1536 << 10), "1536K");
        assert_eq!(format_size(16 << 40), "16T");
        assert_eq!(format_duration(Duration::from_secs(0)), "0s");
        assert_eq!(format_duration(Duration::from_secs(61)), "61s");
        assert_eq!(format_duration(Duration::from_secs(5400)), "90m");
        assert_eq!(format_duration(Duration::from_secs(1_209_600)), "2w");
    }

    proptest! {
        #[test]
        fn every_written_size_reads_back(n in 0u64..1 << 24, shift in 0u32..41) {
            let bytes = n << shift;
            prop_assert_eq!(parse_size(&format_size(bytes)), Ok(bytes));
            prop_assert_eq!(parse_size(&format_size(bytes).to_lowercase()), Ok(bytes));
        }

        #[test]
        fn every_written_duration_reads_back(secs in any::<u64>(), scale in 0usize..5) {
            let secs = secs / DURATION_UNITS[scale].1 * DURATION_UNITS[scale].1;
            let d = Duration::from_secs(secs);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }

        #[test]
        fn a_number_and_unit_is_the_number_times_the_unit(n in 0u64..1 << 20, unit in 0usize..9) {
            let (suffix, shift) = [
                ("", 0), ("b", 0), ("K", 10), ("kib", 10), ("M", 20), ("MiB", 20),
                ("g", 30), ("GIB", 30), ("T", 40),
            ][unit];
            prop_assert_eq!(parse_size(&format!("{n}{suffix}")), Ok(n << shift));
        }
    }
}
