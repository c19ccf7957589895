//! Human units in configuration: durations (`"30s"`, `"1m30s"`, `"250ms"`) and sizes
//! (`"10MB"`, `"512KiB"`, plain byte counts).

use std::time::Duration;

/// The longest duration any setting accepts. Deadlines are worked out as "now + duration"
/// on every request; with this bound no sum can reach the clock's limits, and no timeout,
/// interval or renewal window needs more.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);

/// The largest size any setting accepts (1 TiB). Sizes become buffer caps and counters;
/// the bound keeps every conversion and sum exact.
pub const MAX_SIZE: u64 = 1 << 40;

/// Parses `"250ms"`, `"30s"`, `"5m"`, `"1h"`, and sums such as `"1m30s"`. A bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let too_long = || format!("duration {s:?} is too long: at most 365d");
    if let Ok(secs) = s.parse::<u64>() {
        let d = Duration::from_secs(secs);
        return if d <= MAX_DURATION { Ok(d) } else { Err(too_long()) };
    }
    // Summed in f64 seconds and checked before any conversion: `Duration::from_secs_f64`
    // panics on values it cannot hold, and a configuration file must never reach it.
    let mut total = 0.0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("invalid duration {s:?}: expected a number, e.g. \"30s\""));
        }
        let value: f64 = rest[..digits].parse().map_err(|_| format!("invalid duration {s:?}: bad number"))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = rest[..unit_len].trim();
        rest = &rest[unit_len..];
        let secs = match unit {
            "ms" => value / 1000.0,
            "s" => value,
            "m" => value * 60.0,
            "h" => value * 3600.0,
            "d" => value * 86400.0,
            "" => {
                return Err(format!("invalid duration {s:?}: missing unit (ms, s, m, h, d)"));
            }
            other => {
                return Err(format!("invalid duration {s:?}: unknown unit {other:?} (use ms, s, m, h, d)"));
            }
        };
        total += secs;
        if !total.is_finite() || total > MAX_DURATION.as_secs_f64() {
            return Err(too_long());
        }
    }
    Ok(Duration::from_secs_f64(total))
}

/// Parses `"10MB"`, `"64KB"`, `"1GiB"`, `"512"` (bytes). KB/MB/GB are powers of 1000,
/// KiB/MiB/GiB powers of 1024, as their names say.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| format!("invalid size {s:?}: expected e.g. \"10MB\""))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1024,
        "m" | "mb" => 1000 * 1000,
        "mib" => 1024 * 1024,
        "g" | "gb" => 1000 * 1000 * 1000,
        "gib" => 1024 * 1024 * 1024,
        other => {
            return Err(format!("invalid size {s:?}: unknown unit {other:?} (use B, KB, MB, GB, KiB, MiB, GiB)"));
        }
    };
    let bytes = value * mult as f64;
    if !bytes.is_finite() || bytes > MAX_SIZE as f64 {
        return Err(format!("size {s:?} is too large: at most 1TiB"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("30 parsecs").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("1.5").is_err());
        assert_eq!(parse_duration("5 s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("365d"), Ok(MAX_DURATION));
        assert_eq!(parse_duration("0.5ms"), Ok(Duration::from_micros(500)));
    }

    #[test]
    fn durations_past_the_bound_are_errors_not_panics() {
        // Each of these once panicked in `Duration::from_secs_f64` or later when added to
        // `Instant::now()`.
        for s in [
            "213503982334602d",
            "213503982334600d",
            "18446744073709551615s",
            "18446744073709551615",
            "99999999999999999999999999999999999999999h",
            "366d",
            "364d25h",
            "31536001",
        ] {
            let e = parse_duration(s).expect_err(s);
            assert!(e.contains("too long"), "{s}: {e}");
        }
        assert!(parse_duration(&"1d".repeat(400)).expect_err("400 days").contains("too long"));
        assert!(parse_duration("1.2.3s").is_err());
    }

    #[test]
    fn sizes_past_the_bound_are_errors() {
        assert_eq!(parse_size("1024GiB"), Ok(MAX_SIZE));
        assert_eq!(parse_size("1099511627776"), Ok(MAX_SIZE));
        for s in ["1099511627777", "18446744073709551616", "99999999999999999999999GB", "2000GB"] {
            assert!(parse_size(s).expect_err(s).contains("too large"), "{s}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("1KiB"), Ok(1024));
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("1.5kb"), Ok(1500));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("5XB").is_err());
    }
}

/// Parses an RFC 3339 time (`2026-12-24T22:00:00Z`, `2026-12-24T23:00:00+01:00`; fractions
/// of a second are allowed and ignored).
pub fn parse_time(s: &str) -> Result<std::time::SystemTime, String> {
    let bad = || format!("invalid time {s:?}: expected RFC 3339, such as 2026-12-24T22:00:00Z");
    let t = s.trim();
    let b = t.as_bytes();
    // Byte positions below index the text: only ASCII has one character per byte.
    if !t.is_ascii()
        || b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
    {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| t.get(r).and_then(|x| x.parse::<i64>().ok()).ok_or_else(bad);
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b[16] != b':'
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(bad());
    }
    let mut rest = &t[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        rest = frac.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    let offset = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && &o[3..4] == ":" => {
            let h: i64 = o[1..3].parse().map_err(|_| bad())?;
            let m: i64 = o[4..6].parse().map_err(|_| bad())?;
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (h * 3600 + m * 60)
        }
        _ => return Err(bad()),
    };
    // Days since 1970-01-01 in the proleptic Gregorian calendar.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    u64::try_from(secs)
        .map(|s| std::time::UNIX_EPOCH + Duration::from_secs(s))
        .map_err(|_| format!("time {s:?} is before 1970"))
}

#[cfg(test)]
mod time_tests {
    use super::*;

    #[test]
    fn rfc3339_times_parse_to_the_right_instant() {
        let at = |s| parse_time(s).map(|t| t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).ok());
        assert_eq!(at("1970-01-01T00:00:00Z"), Ok(Some(0)));
        assert_eq!(at("2026-12-24T22:00:00Z"), Ok(Some(1_798_149_600)));
        assert_eq!(at("2026-12-24T23:00:00.250+01:00"), Ok(Some(1_798_149_600)));
        assert_eq!(at("2000-02-29T12:00:00-00:30"), Ok(Some(951_827_400)));
        for bad in [
            "2026-12-24",
            "2026-13-01T00:00:00Z",
            "2026-12-24T22:00:00",
            "tomorrow",
            "2026-12-24T22:00:00+1",
            "2026-12-24T22:00:00+0é00",
            "2026-12-24T22:00:00.é",
            "2026-12-24T22:00:00Zé",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }
}
