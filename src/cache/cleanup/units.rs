//! The values a budget is written in: durations (`90s`, `7d`, `2w`) and
//! sizes (`512M`, `4G`, `4GiB`, `1T`, bytes).

use std::time::Duration;

const DURATION_ACCEPTED: &str =
    "write it as a whole number and a unit: s, m, h, d or w (90s, 30m, 12h, 7d, 2w)";
const SIZE_ACCEPTED: &str = "write it as a whole number of bytes, or with K, M, G or T (KiB, MiB, GiB, TiB): 512M, 4G, 4GiB";

/// `90s`, `30m`, `12h`, `7d`, `2w`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (number, unit) =
        split(s).ok_or_else(|| format!("invalid duration `{s}`: {DURATION_ACCEPTED}"))?;
    let scale: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        "" => return Err(format!("duration `{s}` has no unit: {DURATION_ACCEPTED}")),
        _ => {
            return Err(format!(
                "invalid duration `{s}`: unknown unit `{unit}`; {DURATION_ACCEPTED}"
            ));
        }
    };
    let secs = number
        .checked_mul(scale)
        .ok_or_else(|| format!("duration `{s}` is too long: {DURATION_ACCEPTED}"))?;
    Ok(Duration::from_secs(secs))
}

/// `4096`, `512K`, `512M`, `4G`, `4GiB`, `1T`, in powers of 1024.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let (number, unit) = split(s).ok_or_else(|| format!("invalid size `{s}`: {SIZE_ACCEPTED}"))?;
    let shift = match unit {
        "" | "B" => 0,
        "K" | "KiB" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        "T" | "TiB" => 40,
        _ => {
            return Err(format!(
                "invalid size `{s}`: unknown unit `{unit}`; {SIZE_ACCEPTED}"
            ));
        }
    };
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("size `{s}` is too large: {SIZE_ACCEPTED}"))
}

/// The leading decimal number and the unit after it; `None` without digits.
fn split(s: &str) -> Option<(u64, &str)> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(end);
    Some((digits.parse().ok()?, unit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn durations_read_like_the_issue() {
        let secs = |s| parse_duration(s).map(|d| d.as_secs());
        assert_eq!(secs("90s"), Ok(90));
        assert_eq!(secs("30m"), Ok(1800));
        assert_eq!(secs("12h"), Ok(43_200));
        assert_eq!(secs("7d"), Ok(604_800));
        assert_eq!(secs("2w"), Ok(1_209_600));
        for bad in [
            "",
            "7",
            "d",
            "7x",
            "-1d",
            "1.5h",
            "7 d",
            "99999999999999999999w",
        ] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.contains("90s, 30m, 12h, 7d, 2w"), "{bad}: {err}");
        }
    }

    #[test]
    fn sizes_are_powers_of_1024() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("4G"), Ok(4 << 30));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        for bad in ["", "G", "4g", "4GB", "1.5G", "-1", "99999999999T"] {
            let err = parse_size(bad).unwrap_err();
            assert!(err.contains("512M, 4G, 4GiB"), "{bad}: {err}");
        }
    }

    proptest! {
        #[test]
        fn every_written_size_reads_back(n in 0u64..1 << 20, unit in 0usize..5) {
            let (suffix, shift) = [("", 0), ("K", 10), ("M", 20), ("G", 30), ("T", 40)][unit];
            prop_assert_eq!(parse_size(&format!("{n}{suffix}")), Ok(n << shift));
        }
    }
}
