//! Options as they layer: defaults <- site <- route (timeouts, limits, pool, upstream TLS,
//! load balancing, header rules and presets).

use super::*;

/// Options accumulated through defaults <- site <- route.
#[derive(Clone, Default)]
pub(super) struct Layered {
    pub(super) opts: RouteOptions,
    pub(super) pool: PoolSettings,
    pub(super) balance: Option<Balance>,
    /// A site's `health_check` and `circuit_breaker` (the proxy-manager's layout), for its
    /// upstreams without their own.
    pub(super) health: Option<HealthCheck>,
    pub(super) breaker: Option<CircuitBreaker>,
    /// Directory that relative file paths in options resolve against.
    pub(super) base: PathBuf,
    /// The main file names a GeoIP database (`geo` rules need one).
    pub(super) geoip: bool,
}

impl Layered {
    /// Applies `o`, found at `at` (`options`, `defaults`, …; empty for keys written at the
    /// top of a site file).
    pub(super) fn apply(&mut self, cx: &mut Ctx<'_>, o: &raw::Options, at: &str) {
        let (named, at) = (at, if at.is_empty() { String::new() } else { format!("{at}.") });
        if let Some(t) = &o.timeouts {
            let d = &mut self.opts;
            d.connect_timeout = cx.timeout(t.connect.as_ref(), &format!("{at}timeouts.connect"), d.connect_timeout);
            d.read_timeout = cx.timeout(t.read.as_ref(), &format!("{at}timeouts.read"), d.read_timeout);
            d.write_timeout = cx.timeout(t.write.as_ref(), &format!("{at}timeouts.write"), d.write_timeout);
            self.pool.idle_timeout =
                cx.duration(t.idle.as_ref(), &format!("{at}timeouts.idle"), self.pool.idle_timeout);
        }
        if let Some(r) = &o.rate_limit {
            self.opts.rate_limit =
                super::security::rate_limit(cx, r, &format!("{at}rate_limit")).map(std::sync::Arc::new);
        }
        if let Some(w) = &o.waf {
            self.opts.waf = super::security::waf(cx, w, &format!("{at}waf")).map(std::sync::Arc::new);
        }
        if let Some(a) = &o.auth {
            let base = self.base.clone();
            self.opts.auth = super::auth::auth(cx, &base, a, &format!("{at}auth")).map(std::sync::Arc::new);
        }
        if let Some(c) = &o.cors {
            self.opts.cors = super::access::cors(cx, c, &format!("{at}cors")).map(std::sync::Arc::new);
        }
        if let Some(r) = &o.ip {
            self.opts.ip = super::access::ip(cx, r, &format!("{at}ip")).map(std::sync::Arc::new);
        }
        if let Some(r) = &o.user_agent {
            self.opts.user_agent =
                super::access::user_agent(cx, r, &format!("{at}user_agent")).map(std::sync::Arc::new);
        }
        if let Some(r) = &o.referer {
            self.opts.referer = super::access::referer(cx, r, &format!("{at}referer")).map(std::sync::Arc::new);
        }
        if let Some(g) = &o.geo {
            self.opts.geo = super::access::geo(cx, g, &format!("{at}geo"), self.geoip).map(std::sync::Arc::new);
        }
        if let Some(c) = &o.csrf {
            self.opts.csrf = super::access::csrf(cx, c, &format!("{at}csrf")).map(std::sync::Arc::new);
        }
        if let Some(f) = &o.failed_logins {
            self.opts.failed_logins =
                super::auth::failed_logins(cx, f, &format!("{at}failed_logins")).map(std::sync::Arc::new);
        }
        if let Some(slow) = &o.slow_request {
            let d = &mut self.opts;
            if slow.warning.is_some() {
                d.slow_warning =
                    Some(cx.timeout(slow.warning.as_ref(), &format!("{at}slow_request.warning"), Duration::ZERO));
            }
            if slow.critical.is_some() {
                d.slow_critical =
                    Some(cx.timeout(slow.critical.as_ref(), &format!("{at}slow_request.critical"), Duration::ZERO));
            }
            if let (Some(w), Some(c), Some(v)) = (d.slow_warning, d.slow_critical, &slow.critical)
                && c < w
            {
                cx.err_at(v, format!("{at}slow_request.critical"), "must not be shorter than slow_request.warning");
            }
        }
        if let Some(l) = &o.limits {
            let d = &mut self.opts;
            if l.request_body.is_some() {
                d.max_request_body =
                    cx.optional_size(l.request_body.as_ref(), &format!("{at}limits.request_body"), d.max_request_body);
            }
            if l.response_body.is_some() {
                d.max_response_body = cx.optional_size(
                    l.response_body.as_ref(),
                    &format!("{at}limits.response_body"),
                    d.max_response_body,
                );
            }
            d.max_request_headers = cx.size_in(
                l.request_headers.as_ref(),
                &format!("{at}limits.request_headers"),
                d.max_request_headers,
                MAX_REQUEST_HEADERS,
            );
            d.max_request_header_count = cx.count(
                l.request_header_count.as_ref(),
                &format!("{at}limits.request_header_count"),
                d.max_request_header_count,
                MAX_HEADER_COUNT,
            );
            if let Some(v) = &l.request_header_count
                && d.max_request_header_count == 0
            {
                cx.err_at(
                    v,
                    format!("{at}limits.request_header_count"),
                    "0 would refuse every request (431); at least 1",
                );
                d.max_request_header_count = 1;
            }
            d.max_uri_length = cx.size_in(
                l.uri_length.as_ref(),
                &format!("{at}limits.uri_length"),
                d.max_uri_length as u64,
                MAX_URI_LENGTH,
            ) as usize;
        }
        if let Some(p) = &o.pool {
            self.pool.max_idle_per_host = cx.count(
                p.max_idle_per_host.as_ref(),
                &format!("{at}pool.max_idle_per_host"),
                self.pool.max_idle_per_host,
                MAX_CONNECTIONS,
            );
            self.pool.max_connections_per_host = cx.count(
                p.max_connections_per_host.as_ref(),
                &format!("{at}pool.max_connections_per_host"),
                self.pool.max_connections_per_host,
                MAX_CONNECTIONS,
            );
        }
        if let Some(t) = &o.upstream_tls {
            let mut tls = self.pool.tls.clone();
            if let Some(ca) = &t.ca {
                let p = self.base.join(&ca.value);
                match crate::file::check_regular(&p) {
                    Ok(_) => tls.ca = Some(p),
                    Err(e) => {
                        cx.err_at(ca, format!("{at}upstream_tls.ca"), format!("cannot read {}: {e}", p.display()))
                    }
                }
            }
            if t.cert.is_some() || t.key.is_some() {
                tls.client =
                    cert_pair(cx, &self.base, t.cert.as_ref(), t.key.as_ref(), &format!("{at}upstream_tls"), named);
            }
            if let Some(n) = &t.server_name {
                tls.server_name = Some(n.value.trim().to_string());
            }
            self.pool.tls = tls;
        }
        if let Some(b) = &o.load_balancing {
            let base = self
                .balance
                .clone()
                .unwrap_or(Balance { algorithm: Algorithm::RoundRobin, hash_key: HashKey::ClientIp });
            self.balance = Some(parse_balance(cx, b, &format!("{at}load_balancing"), base));
        }
        if let Some(h) = &o.headers {
            if let Some(p) = &h.preset {
                match preset(&p.value) {
                    Some(rules) => {
                        for (name, value) in rules {
                            set_header(&mut self.opts.response_headers, name, value);
                        }
                    }
                    None => {
                        let hint = nearest(&p.value, PRESETS.iter().copied())
                            .map(|n| format!(" (did you mean `{n}`?)"))
                            .unwrap_or_default();
                        cx.err_at(
                            p,
                            format!("{at}headers.preset"),
                            format!("unknown preset {:?}{hint}; expected one of {}", p.value, PRESETS.join(", ")),
                        );
                    }
                }
            }
            if let Some(ops) = &h.request {
                apply_header_ops(cx, &mut self.opts.request_headers, ops, &format!("{at}headers.request"));
            }
            if let Some(ops) = &h.response {
                apply_header_ops(cx, &mut self.opts.response_headers, ops, &format!("{at}headers.response"));
            }
        }
    }

    pub(super) fn balance(&self) -> Balance {
        self.balance.clone().unwrap_or(Balance { algorithm: Algorithm::RoundRobin, hash_key: HashKey::ClientIp })
    }
}

pub(super) fn parse_balance(cx: &mut Ctx<'_>, b: &raw::Balance, at: &str, mut out: Balance) -> Balance {
    if let Some(a) = &b.algorithm {
        out.algorithm = match a.value.as_str() {
            "round_robin" => Algorithm::RoundRobin,
            "weighted_round_robin" | "weighted" => Algorithm::WeightedRoundRobin,
            "least_conn" | "least_connections" => Algorithm::LeastConn,
            "consistent_hash" | "ip_hash" | "hash" => Algorithm::ConsistentHash,
            "random" => Algorithm::Random,
            other => {
                let hint = nearest(other, Algorithm::NAMES.iter().copied())
                    .map(|n| format!(" (did you mean `{n}`?)"))
                    .unwrap_or_default();
                cx.err_at(
                    a,
                    format!("{at}.algorithm"),
                    format!("unknown algorithm {other:?}{hint}; expected one of {}", Algorithm::NAMES.join(", ")),
                );
                out.algorithm
            }
        };
    }
    if let Some(k) = &b.hash_key {
        let v = k.value.trim();
        out.hash_key = if v == "client_ip" {
            HashKey::ClientIp
        } else if let Some(h) = v.strip_prefix("header:") {
            match HeaderName::from_str(h.trim()) {
                Ok(name) => HashKey::Header(name),
                Err(_) => {
                    cx.err_at(k, format!("{at}.hash_key"), format!("invalid header name {h:?}"));
                    out.hash_key
                }
            }
        } else if let Some(c) = v.strip_prefix("cookie:") {
            HashKey::Cookie(c.trim().to_string())
        } else {
            cx.err_at(
                k,
                format!("{at}.hash_key"),
                format!("expected client_ip, header:NAME or cookie:NAME, got {v:?}"),
            );
            out.hash_key
        };
    }
    out
}

pub(super) const PRESETS: &[&str] = &["security-basic", "security-strict"];

pub(super) fn preset(name: &str) -> Option<Vec<(HeaderName, HeaderValue)>> {
    let pairs: &[(&str, &str)] = match name {
        "security-basic" => &[
            ("strict-transport-security", "max-age=31536000"),
            ("x-content-type-options", "nosniff"),
            ("x-frame-options", "SAMEORIGIN"),
            ("referrer-policy", "strict-origin-when-cross-origin"),
        ],
        "security-strict" => &[
            ("strict-transport-security", "max-age=63072000; includeSubDomains"),
            ("x-content-type-options", "nosniff"),
            ("x-frame-options", "DENY"),
            ("referrer-policy", "no-referrer"),
            ("permissions-policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()"),
            (
                "content-security-policy",
                "default-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'",
            ),
            ("cross-origin-opener-policy", "same-origin"),
        ],
        _ => return None,
    };
    Some(pairs.iter().map(|(n, v)| (HeaderName::from_static(n), HeaderValue::from_static(v))).collect())
}

/// `set` replaces any earlier rule for the same header, so a site can override a preset.
pub(super) fn set_header(rules: &mut HeaderRules, name: HeaderName, value: HeaderValue) {
    rules.set.retain(|(n, _)| *n != name);
    rules.add.retain(|(n, _)| *n != name);
    rules.set.push((name, value));
}

pub(super) fn apply_header_ops(cx: &mut Ctx<'_>, rules: &mut HeaderRules, ops: &raw::HeaderOps, at: &str) {
    for (i, name) in ops.remove.iter().flatten().enumerate() {
        match HeaderName::from_str(&name.value) {
            Ok(n) => {
                rules.set.retain(|(x, _)| *x != n);
                rules.add.retain(|(x, _)| *x != n);
                rules.remove.push(n);
            }
            Err(_) => cx.err_at(name, format!("{at}.remove[{i}]"), format!("invalid header name {:?}", name.value)),
        }
    }
    for (kind, map) in [("set", &ops.set), ("add", &ops.add)] {
        let Some(map) = map else { continue };
        for (k, v) in &map.value {
            let parsed = (HeaderName::from_str(k), HeaderValue::from_str(v));
            match parsed {
                (Ok(n), Ok(val)) => {
                    if kind == "set" {
                        set_header(rules, n, val);
                    } else {
                        rules.add.push((n, val));
                    }
                }
                (Err(_), _) => cx.err_at(map, format!("{at}.{kind}.{k}"), format!("invalid header name {k:?}")),
                (_, Err(_)) => cx.err_at(map, format!("{at}.{kind}.{k}"), format!("invalid header value {v:?}")),
            }
        }
    }
}
