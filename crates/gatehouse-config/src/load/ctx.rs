//! The error sink of one file and the checked readers of scalar values (durations, sizes,
//! counts, flags, secrets) every part of the loader uses.

use super::*;

/// A scalar value together with where it came from, so errors can point at it.
pub(super) struct Value {
    pub(super) text: String,
    pub(super) line: Option<u64>,
    /// Set when an environment variable supplied the value.
    pub(super) env: Option<&'static str>,
}

/// Error sink for one file.
pub(super) struct Ctx<'a> {
    pub(super) file: &'a Path,
    pub(super) errors: &'a mut Errors,
}

impl Ctx<'_> {
    pub(super) fn err(&mut self, line: Option<u64>, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(Error::new(self.file, line, path, message));
    }

    pub(super) fn err_at<T>(&mut self, at: &S<T>, path: impl Into<String>, message: impl Into<String>) {
        self.err(Some(at.referenced.line()), path, message);
    }

    pub(super) fn value_err(&mut self, v: &Value, path: &str, message: impl Into<String>) {
        match v.env {
            Some(var) => self.errors.push(Error::new(Path::new("environment"), None, var, message)),
            None => self.err(v.line, path, message),
        }
    }

    pub(super) fn duration(&mut self, v: Option<&S<String>>, path: &str, default: Duration) -> Duration {
        match v {
            None => default,
            Some(s) => parse_duration(&s.value).unwrap_or_else(|e| {
                self.err_at(s, path, e);
                default
            }),
        }
    }

    /// A secret given in place, as `env:NAME` (the variable's value), or in a file (`FILE`
    /// relative to `base`; a trailing newline is not part of it): exactly one of `value`
    /// and `file`. `None`, with the error reported, when it cannot be had; `None` without
    /// an error when neither is given.
    pub(super) fn secret(
        &mut self,
        base: &Path,
        value: Option<&S<String>>,
        file: Option<&S<String>>,
        at: &str,
    ) -> Option<String> {
        let got = match (value, file) {
            (None, None) => return None,
            (Some(v), Some(_)) => {
                self.err_at(v, at, format!("give {at} or {at}_file, not both"));
                return None;
            }
            (Some(v), None) => match v.value.strip_prefix("env:") {
                None => Ok(v.value.clone()),
                Some(name) => std::env::var(name.trim())
                    .map_err(|_| (v, format!("the environment variable {} is not set", name.trim()))),
            },
            (None, Some(f)) => {
                let path = base.join(f.value.trim());
                crate::file::read_regular_text(&path)
                    .map(|t| t.trim_end_matches(['\n', '\r']).to_string())
                    .map_err(|e| (f, format!("cannot read {}: {e}", path.display())))
            }
        };
        match got {
            Ok(s) if s.is_empty() => {
                let at_value = value.or(file).map(|v| v.referenced.line());
                self.err(at_value, at, "the secret is empty");
                None
            }
            Ok(s) => Some(s),
            Err((v, why)) => {
                self.err_at(v, at, why);
                None
            }
        }
    }

    /// A duration that must be more than zero (a zero timeout fails every request).
    pub(super) fn timeout(&mut self, v: Option<&S<String>>, path: &str, default: Duration) -> Duration {
        let d = self.duration(v, path, default);
        if let Some(s) = v
            && d.is_zero()
        {
            self.err_at(s, path, "a timeout of 0 would fail every request; give a duration such as \"30s\"");
            return default;
        }
        d
    }

    /// A share written `10%` or `0.1`, within `min` (exclusive when `above`) and 1.
    pub(super) fn share(&mut self, v: Option<&S<String>>, path: &str, default: f64, above: bool) -> f64 {
        let Some(v) = v else { return default };
        let text = v.value.trim();
        let parsed = match text.strip_suffix('%') {
            Some(p) => p.trim().parse::<f64>().ok().map(|p| p / 100.0),
            None => text.parse::<f64>().ok(),
        };
        match parsed {
            Some(r) if r <= 1.0 && (r > 0.0 || (!above && r == 0.0)) => r,
            _ => {
                let low = if above { "above 0" } else { "from 0" };
                self.err_at(v, path, format!("expected a share {low} and at most 100% (\"10%\" or 0.1), got {text:?}"));
                default
            }
        }
    }

    pub(super) fn flag(&mut self, v: Option<&S<String>>, path: &str, default: bool) -> bool {
        match v.map(|s| (s, s.value.trim())) {
            None => default,
            Some((_, "true")) => true,
            Some((_, "false")) => false,
            Some((s, other)) => {
                self.err_at(s, path, format!("expected true or false, got {other:?}"));
                default
            }
        }
    }

    /// A whole number from 0 to `max`. The bound keeps every count usable as it is (a
    /// semaphore of 2^64 permits panics; a limit past any real machine is a typo).
    pub(super) fn count(&mut self, v: Option<&S<String>>, path: &str, default: usize, max: usize) -> usize {
        match v {
            None => default,
            Some(s) => match s.value.trim().parse::<usize>() {
                Ok(n) if n <= max => n,
                Ok(_) => {
                    self.err_at(s, path, format!("{} is too large: at most {max}", s.value.trim()));
                    default
                }
                Err(_) => {
                    self.err_at(s, path, format!("expected a whole number, got {:?}", s.value));
                    default
                }
            },
        }
    }

    /// A size from `min` to `max` bytes.
    pub(super) fn size_in(&mut self, v: Option<&S<String>>, path: &str, default: u64, (min, max): (u64, u64)) -> u64 {
        let n = self.size(v, path, default);
        if let Some(s) = v
            && !(min..=max).contains(&n)
        {
            self.err_at(s, path, format!("{:?} is out of range: from {} to {} bytes", s.value, min, max));
            return default;
        }
        n
    }

    /// A size where `0`, `unlimited` and `none` mean no limit.
    pub(super) fn optional_size(&mut self, v: Option<&S<String>>, path: &str, default: Option<u64>) -> Option<u64> {
        let s = v?;
        if matches!(s.value.trim(), "0" | "unlimited" | "none") {
            return None;
        }
        match parse_size(&s.value) {
            Ok(n) => Some(n),
            Err(e) => {
                self.err_at(s, path, e);
                default
            }
        }
    }

    pub(super) fn size(&mut self, v: Option<&S<String>>, path: &str, default: u64) -> u64 {
        match v {
            None => default,
            Some(s) => parse_size(&s.value).unwrap_or_else(|e| {
                self.err_at(s, path, e);
                default
            }),
        }
    }
}
