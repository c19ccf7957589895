//! The security keys: rate limits and bans.

use super::*;

/// `N/period`: `5/min`, `100/s`, `10/10s`, `1000/hour`. A bare number is per minute (the
/// proxy-manager's `per_ip: 100`).
pub(super) fn parse_rate(text: &str) -> Result<Rate, String> {
    let bad = || format!("expected a rate such as 5/min, 100/s or 10/30s, got {text:?}");
    let (count, period) = match text.trim().split_once('/') {
        Some((n, p)) => (n.trim(), p.trim()),
        None => (text.trim(), "min"),
    };
    let count: u32 = count.parse().map_err(|_| bad())?;
    let period = match period {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        "d" | "day" => Duration::from_secs(86_400),
        other => crate::units::parse_duration(other).map_err(|_| bad())?,
    };
    if count == 0 || count > 1_000_000_000 {
        return Err(format!("{text:?}: the count must be from 1 to 1000000000"));
    }
    if period < Duration::from_millis(1) {
        return Err(format!("{text:?}: the period must be at least 1ms"));
    }
    Ok(Rate { count, period })
}

/// `rate_limit` under `options` (or `defaults`).
pub(super) fn rate_limit(cx: &mut Ctx<'_>, r: &raw::RateLimit, at: &str) -> Option<RateLimit> {
    if r.ban_after.is_none() {
        for (key, v) in [("ban_for", &r.ban_for), ("ban_window", &r.ban_window)] {
            if let Some(v) = v {
                cx.err_at(v, format!("{at}.{key}"), "needs ban_after (the violations that ban)");
            }
        }
    }
    let mut rate = |v: Option<&S<String>>, key: &str| {
        let v = v?;
        parse_rate(&v.value).map_err(|e| cx.err_at(v, format!("{at}.{key}"), e)).ok()
    };
    let per_client = rate(r.per_ip.as_ref(), "per_ip");
    let global = rate(r.global.as_ref(), "global");
    if per_client.is_none() && global.is_none() {
        if r.per_ip.is_none() && r.global.is_none() {
            cx.err(None, at.to_string(), "a rate limit needs per_ip or global (e.g. per_ip: 5/min)");
        }
        return None;
    }
    let burst = cx.count(r.burst.as_ref(), &format!("{at}.burst"), 0, 1_000_000) as u32;
    let mut by_user = false;
    let key = match &r.key {
        None => None,
        Some(k) => {
            by_user = cx.flag(k.user.as_ref(), &format!("{at}.key.user"), false);
            match (&k.header, by_user) {
                (Some(h), false) => match HeaderName::from_str(h.value.trim()) {
                    Ok(h) => Some(h),
                    Err(_) => {
                        cx.err_at(h, format!("{at}.key.header"), format!("invalid header name {:?}", h.value));
                        None
                    }
                },
                (None, true) => None,
                _ => {
                    cx.err(
                        None,
                        format!("{at}.key"),
                        "expected one of header (`{header: X-Api-Key}`) or `{user: true}`",
                    );
                    None
                }
            }
        }
    };
    let ban = match &r.ban_after {
        None => None,
        Some(v) => {
            let after = cx.count(Some(v), &format!("{at}.ban_after"), 1, 1_000_000).max(1) as u32;
            let Some(per) = per_client else {
                cx.err_at(v, format!("{at}.ban_after"), "bans count a client's violations: needs per_ip");
                return None;
            };
            let window = cx.timeout(r.ban_window.as_ref(), &format!("{at}.ban_window"), per.period);
            let duration = cx.timeout(r.ban_for.as_ref(), &format!("{at}.ban_for"), Duration::from_secs(3600));
            Some(BanRule { after, window, duration })
        }
    };
    Some(RateLimit { per_client, global, burst, key, by_user, ban })
}

/// The proxy-manager's site-level `rate_limit`: its own limit for every path, and one per
/// `paths` entry, each as a `rate_limit` of its own (so the same checks and errors).
pub(super) fn site_rate_limit(cx: &mut Ctx<'_>, r: &raw::SiteRateLimit) -> Vec<SiteLimit> {
    let mut out = Vec::new();
    let as_options = |global: &Option<S<String>>,
                      per_ip: &Option<S<String>>,
                      burst: &Option<S<String>>,
                      ban_after: &Option<S<String>>,
                      ban_duration: &Option<S<String>>| raw::RateLimit {
        per_ip: per_ip.clone(),
        global: global.clone(),
        burst: burst.clone(),
        key: None,
        ban_after: ban_after.clone(),
        ban_for: ban_duration.clone(),
        ban_window: None,
    };
    if r.global.is_some() || r.per_ip.is_some() {
        let o = as_options(&r.global, &r.per_ip, &r.burst, &r.ban_after, &r.ban_duration);
        if let Some(limit) = rate_limit(cx, &o, "rate_limit") {
            out.push(SiteLimit { prefix: None, limit: std::sync::Arc::new(limit) });
        }
    }
    for (i, p) in r.paths.iter().flatten().enumerate() {
        let at = format!("rate_limit.paths[{i}]");
        let path = p.path.value.trim();
        if !path.starts_with('/') {
            cx.err_at(
                &p.path,
                format!("{at}.path"),
                "expected a path starting with / (`/auth/*` for everything under /auth/)",
            );
            continue;
        }
        let prefix = path.strip_suffix('*').unwrap_or(path).to_string();
        let o = as_options(&p.global, &p.per_ip, &p.burst, &p.ban_after, &p.ban_duration);
        if let Some(limit) = rate_limit(cx, &o, &at) {
            out.push(SiteLimit { prefix: Some(prefix), limit: std::sync::Arc::new(limit) });
        }
    }
    out
}

/// Default bytes of a request body the WAF reads.
const WAF_BODY_LIMIT: u64 = 64 * 1024;

/// `waf` under `options` (or at the top of a site file). `None` when it is turned off
/// (`enabled: false`) or has errors.
pub(super) fn waf(cx: &mut Ctx<'_>, w: &raw::Waf, at: &str) -> Option<Waf> {
    if !cx.flag(w.enabled.as_ref(), &format!("{at}.enabled"), true) {
        return None;
    }
    let mode = match w.mode.as_ref().map(|m| (m, m.value.trim())) {
        None | Some((_, "block")) => WafMode::Block,
        Some((_, "log")) => WafMode::Log,
        Some((m, other)) => {
            cx.err_at(m, format!("{at}.mode"), format!("expected block or log, got {other:?}"));
            WafMode::Block
        }
    };
    let mut groups = WafGroups::all();
    for (name, on) in w.rules.iter().flatten() {
        let path = format!("{at}.rules.{name}");
        let value = cx.flag(Some(on), &path, true);
        match groups.get_mut(name) {
            Some(g) => *g = value,
            None => cx.err_at(
                on,
                path,
                match nearest(name, WafGroups::NAMES) {
                    Some(n) => format!("unknown rule group {name:?}; did you mean {n}?"),
                    None => format!("unknown rule group {name:?}; the groups are {}", WafGroups::NAMES.join(", ")),
                },
            ),
        }
    }
    let mut custom = Vec::new();
    let mut ids = std::collections::HashSet::new();
    for (i, r) in w.custom.iter().flatten().enumerate() {
        let path = format!("{at}.custom[{i}]");
        let id = r.id.value.trim().to_string();
        if id.is_empty() || !id.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.')) {
            cx.err_at(&r.id, format!("{path}.id"), "expected an id of letters, digits, `-`, `_` or `.`");
            continue;
        }
        if !ids.insert(id.clone()) {
            cx.err_at(&r.id, format!("{path}.id"), format!("the id {id:?} is used twice"));
        }
        let target = match r.target.value.trim() {
            "path" => WafTarget::Path,
            "query" => WafTarget::Query,
            "body" => WafTarget::Body,
            "cookie" => WafTarget::Cookie,
            "any" => WafTarget::Any,
            t => match t.strip_prefix("header:").map(|h| HeaderName::from_str(h.trim())) {
                Some(Ok(h)) => WafTarget::Header(h),
                _ => {
                    cx.err_at(
                        &r.target,
                        format!("{path}.in"),
                        format!("expected path, query, body, cookie, any or header:NAME, got {t:?}"),
                    );
                    continue;
                }
            },
        };
        // The regex crate matches in linear time: no pattern can make a request slow.
        let pattern =
            match regex::RegexBuilder::new(&r.pattern.value).case_insensitive(true).size_limit(1 << 20).build() {
                Ok(p) => p,
                Err(e) => {
                    cx.err_at(&r.pattern, format!("{path}.pattern"), format!("invalid pattern: {e}"));
                    continue;
                }
            };
        let message = r.message.as_ref().map_or_else(|| format!("custom rule {id}"), |m| m.value.clone());
        custom.push(WafRule { id, message, target, pattern });
    }
    let mut exclusions = Vec::new();
    for (i, e) in w.exclude.iter().flatten().enumerate() {
        let path = format!("{at}.exclude[{i}]");
        let rule = e.rule.value.trim().to_string();
        if rule.is_empty() {
            cx.err_at(&e.rule, format!("{path}.rule"), "expected a rule id or a group name");
            continue;
        }
        let prefix = match &e.path {
            Some(p) if !p.value.starts_with('/') => {
                cx.err_at(p, format!("{path}.path"), "expected a path starting with /");
                continue;
            }
            Some(p) => Some(p.value.trim_end_matches('*').to_string()),
            None => None,
        };
        let field = e.field.as_ref().map(|f| f.value.trim().to_ascii_lowercase());
        exclusions.push(WafExclusion { rule, path: prefix, field });
    }
    let body_limit = cx.size_in(w.body_limit.as_ref(), &format!("{at}.body_limit"), WAF_BODY_LIMIT, (0, 1 << 20));
    Some(Waf { mode, groups, custom, exclusions, body_limit: body_limit as usize })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_in_their_forms() {
        let r = |t| parse_rate(t).map(|r| (r.count, r.period.as_millis()));
        assert_eq!(r("5/min"), Ok((5, 60_000)));
        assert_eq!(r("100/s"), Ok((100, 1000)));
        assert_eq!(r("10/30s"), Ok((10, 30_000)));
        assert_eq!(r("1000 / hour"), Ok((1000, 3_600_000)));
        assert_eq!(r("100"), Ok((100, 60_000)), "a bare number is per minute");
        for bad in ["0/min", "x/min", "5/fortnight", "5/0s", "-1/s", ""] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }
}
