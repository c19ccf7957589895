//! Human units in configuration: durations (`"30s"`, `"1m30s"`, `"250ms"`) and sizes
//! (`"10MB"`, `"512KiB"`, plain byte counts).

use std::time::Duration;

/// Parses `"250ms"`, `"30s"`, `"5m"`, `"1h"`, and sums such as `"1m30s"`. A bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
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
        total += Duration::from_secs_f64(secs);
    }
    Ok(total)
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
    Ok((value * mult as f64) as u64)
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
