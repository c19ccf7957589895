//! nginx `upstream` blocks as Gatehouse upstreams: servers with their weights as
//! backends, the balancing method as `load_balancing`, `max_fails`/`fail_timeout` as a
//! passive check. What Gatehouse has no equivalent for (`backup` servers, `max_conns`) is
//! reported; servers marked `down` or `backup` are left out.

use super::parse::Directive;
use super::reasons;
use super::site::Upstream;
use super::translate::Cx;
use super::values::{duration, nginx_time_ms};

/// An nginx upstream block as a Gatehouse upstream whose backends speak `scheme`.
pub(super) fn upstream(cx: &mut Cx, d: &Directive, scheme: &str, name: &str, notes: &mut Vec<String>) -> Upstream {
    let mut up = Upstream { name: name.to_string(), ..Upstream::default() };
    let mut weighted = false;
    // Each server's max_fails and fail_timeout, nginx's defaults filled in.
    let mut fails: Vec<(u32, u64)> = Vec::new();
    for c in d.children() {
        match c.name.as_str() {
            "server" => {
                let Some(addr) = c.arg(0) else { continue };
                let (mut weight, mut max_fails, mut fail_timeout) = (1u32, 1u32, 10_000u64);
                let mut left_out = None;
                for p in c.args.iter().skip(1) {
                    let (key, value) = p.split_once('=').unwrap_or((p.as_str(), ""));
                    match key {
                        "weight" => weight = value.parse().ok().filter(|w| *w >= 1).unwrap_or(1),
                        "max_fails" => max_fails = value.parse().unwrap_or(1),
                        "fail_timeout" => fail_timeout = nginx_time_ms(value).unwrap_or(10_000),
                        "down" => left_out = Some("not needed: a server marked down gets no requests; left out"),
                        "backup" => {
                            left_out = Some(
                                "Gatehouse has no backup servers (a failed connect moves on to the next backend, \
                                 but every backend takes its share of requests); left out",
                            )
                        }
                        "max_conns" => {
                            cx.skip(c, "max_conns: see pool.max_connections_per_host (options); not translated")
                        }
                        _ => cx.skip(c, format!("{p}: no equivalent in Gatehouse; not translated")),
                    }
                }
                if let Some(why) = left_out {
                    cx.skip(c, why);
                    continue;
                }
                let Some(url) = backend(scheme, addr) else {
                    cx.skip(c, format!("{addr} cannot be a Gatehouse {scheme} backend; left out"));
                    continue;
                };
                weighted |= weight != 1;
                up.backends.push(if weight == 1 { url } else { format!("{url} weight={weight}") });
                fails.push((max_fails, fail_timeout));
            }
            "least_conn" => up.algorithm = Some("least_conn".into()),
            "ip_hash" => {
                up.algorithm = Some("consistent_hash".into());
                notes.push(format!(
                    "upstream {name}: ip_hash hashes the whole client address in Gatehouse (nginx: a /24)"
                ));
            }
            "hash" => {
                let key = c.arg(0).unwrap_or("");
                let hash_key = if matches!(key, "$remote_addr" | "$binary_remote_addr") {
                    Some(None)
                } else if let Some(h) = key.strip_prefix("$http_") {
                    Some(Some(format!("header:{}", h.replace('_', "-"))))
                } else {
                    key.strip_prefix("$cookie_").map(|cookie| Some(format!("cookie:{cookie}")))
                };
                match hash_key {
                    Some(k) => {
                        up.algorithm = Some("consistent_hash".into());
                        up.hash_key = k;
                    }
                    None => cx.skip(c, "Gatehouse hashes the client address, a header or a cookie; not translated"),
                }
            }
            "random" => {
                up.algorithm = Some("random".into());
                if !c.args.is_empty() {
                    cx.skip(c, "random two: Gatehouse's random picks one backend by weight");
                }
            }
            "keepalive" | "keepalive_timeout" | "keepalive_requests" | "keepalive_time" => {
                cx.skip(
                    c,
                    "not needed: Gatehouse keeps idle connections to backends (pool.max_idle_per_host, timeouts.idle)",
                );
            }
            "zone" => cx.skip(c, "not needed: Gatehouse shares balancer state between its workers itself"),
            _ => cx.skip(c, reasons::reason(c)),
        }
    }
    if up.algorithm.is_none() && weighted {
        // nginx's default balancing is weighted; Gatehouse's round_robin ignores weights.
        up.algorithm = Some("weighted_round_robin".into());
    }
    // nginx leaves a server out for fail_timeout after max_fails failures (1 in 10s by
    // default): Gatehouse's passive checks, per upstream.
    if up.backends.len() > 1
        && let Some(&(max_fails, fail_timeout)) = fails.first()
    {
        if fails.iter().any(|f| *f != (max_fails, fail_timeout)) {
            cx.skip(d, "max_fails/fail_timeout differ between servers: Gatehouse's passive checks are per upstream; not translated");
        } else if max_fails > 0 && fail_timeout > 0 {
            up.passive = Some((max_fails, duration(fail_timeout)));
        }
    }
    if up.backends.is_empty() {
        notes.push(format!("upstream {name} has no backend left: `gatehouse check` will say so; add one"));
    }
    up
}

/// An upstream `server` address as a backend: `unix:/path`, or `scheme://host:port` (nginx
/// takes port 80 when none is written, whatever the scheme).
fn backend(scheme: &str, addr: &str) -> Option<String> {
    if let Some(path) = addr.strip_prefix("unix:") {
        return (scheme == "http" && path.starts_with('/')).then(|| format!("unix:{path}"));
    }
    if addr.is_empty() || addr.contains(['/', '$']) {
        return None;
    }
    let has_port = match addr.strip_prefix('[') {
        Some(rest) => rest.split_once(']').is_some_and(|(_, after)| after.starts_with(':')),
        None => addr.rsplit_once(':').is_some_and(|(_, p)| p.bytes().all(|b| b.is_ascii_digit())),
    };
    Some(if has_port { format!("{scheme}://{addr}") } else { format!("{scheme}://{addr}:80") })
}
