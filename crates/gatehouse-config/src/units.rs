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
