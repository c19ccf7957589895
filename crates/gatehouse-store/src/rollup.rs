//! Hourly rollups: per site, route and hour, the requests, errors, bytes and time, and
//! counts by status code, user-agent class, country and latency bucket. The writer adds
//! each batch's rows to them in the same transaction as the rows, so rollups and rows
//! always agree; rollups outlive the rows (retention deletes rows after days, rollups
//! after a year), and analytics read them.

use std::collections::HashMap;

use rusqlite::Transaction;

use crate::row::RequestRow;

/// Upper bounds of the latency buckets, in milliseconds (the last bucket is `+Inf`).
pub const LATENCY_MS: [u64; 14] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 30_000];

/// What kind of client a user agent names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentClass {
    Browser,
    Mobile,
    Bot,
    ApiClient,
    Unknown,
}

impl AgentClass {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentClass::Browser => "browser",
            AgentClass::Mobile => "mobile",
            AgentClass::Bot => "bot",
            AgentClass::ApiClient => "api_client",
            AgentClass::Unknown => "unknown",
        }
    }

    /// Classifies a user agent by well-known markers (case-insensitive substrings; no
    /// regex, linear in the agent's length). Bots first: crawlers often claim to be a
    /// browser too.
    pub fn of(agent: Option<&str>) -> AgentClass {
        let Some(agent) = agent.filter(|a| !a.trim().is_empty()) else { return AgentClass::Unknown };
        let has =
            |needle: &str| agent.as_bytes().windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle.as_bytes()));
        const BOTS: [&str; 9] =
            ["bot", "crawl", "spider", "slurp", "scanner", "facebookexternalhit", "monitor", "preview", "lighthouse"];
        const CLIENTS: [&str; 14] = [
            "curl/",
            "wget/",
            "python-requests",
            "python-urllib",
            "aiohttp",
            "go-http-client",
            "okhttp",
            "axios/",
            "node-fetch",
            "postmanruntime",
            "httpie",
            "java/",
            "libwww-perl",
            "insomnia",
        ];
        const MOBILE: [&str; 5] = ["mobile", "android", "iphone", "ipad", "ipod"];
        if BOTS.iter().any(|b| has(b)) {
            AgentClass::Bot
        } else if CLIENTS.iter().any(|c| has(c)) {
            AgentClass::ApiClient
        } else if MOBILE.iter().any(|m| has(m)) {
            AgentClass::Mobile
        } else if has("mozilla/") || has("opera") {
            AgentClass::Browser
        } else {
            AgentClass::Unknown
        }
    }
}

/// The agent classes, in `AgentClass` order (their index in `Hour::agents`).
const AGENTS: [AgentClass; 5] =
    [AgentClass::Browser, AgentClass::Mobile, AgentClass::Bot, AgentClass::ApiClient, AgentClass::Unknown];

/// One hour of one route, as a batch adds to it. Counted in arrays and small maps (no
/// string per row); turned into `hourly_counts` rows once per batch.
#[derive(Debug, Default)]
struct Hour<'a> {
    requests: u64,
    client_errors: u64,
    server_errors: u64,
    bytes_in: u64,
    bytes_out: u64,
    duration_us: u64,
    status: HashMap<u16, u64>,
    agents: [u64; AGENTS.len()],
    countries: HashMap<&'a str, u64>,
    /// By `LATENCY_MS` bucket, the last one past every bound.
    latency: [u64; LATENCY_MS.len() + 1],
}

/// A batch's contribution to the rollups.
#[derive(Debug, Default)]
pub(crate) struct Rollup<'a> {
    hours: HashMap<(i64, &'a str, &'a str), Hour<'a>>,
}

/// The start of the hour (Unix seconds) of a time in microseconds.
pub fn hour_of(time_us: i64) -> i64 {
    time_us.div_euclid(3_600_000_000) * 3600
}

impl<'a> Rollup<'a> {
    pub(crate) fn add(&mut self, r: &RequestRow<'a>, agent: AgentClass) {
        let key = (hour_of(r.time_us), r.site.unwrap_or(""), r.route.unwrap_or(""));
        let h = self.hours.entry(key).or_default();
        h.requests += 1;
        match r.status {
            400..=499 => h.client_errors += 1,
            500..=599 => h.server_errors += 1,
            _ => {}
        }
        h.bytes_in += r.bytes_in;
        h.bytes_out += r.bytes_out;
        h.duration_us += r.duration_us;
        *h.status.entry(r.status).or_default() += 1;
        h.agents[AGENTS.iter().position(|a| *a == agent).unwrap_or(AGENTS.len() - 1)] += 1;
        *h.countries.entry(r.country.unwrap_or("")).or_default() += 1;
        let ms = r.duration_us.div_ceil(1000);
        h.latency[LATENCY_MS.iter().position(|b| ms <= *b).unwrap_or(LATENCY_MS.len())] += 1;
    }

    /// Adds the batch's counts to the stored rollups.
    pub(crate) fn store(&self, tx: &Transaction<'_>) -> rusqlite::Result<()> {
        let mut hourly = tx.prepare_cached(
            "INSERT INTO hourly (hour, site, route, requests, client_errors, server_errors, bytes_in, bytes_out, duration_us)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (hour, site, route) DO UPDATE SET
               requests = requests + excluded.requests,
               client_errors = client_errors + excluded.client_errors,
               server_errors = server_errors + excluded.server_errors,
               bytes_in = bytes_in + excluded.bytes_in,
               bytes_out = bytes_out + excluded.bytes_out,
               duration_us = duration_us + excluded.duration_us",
        )?;
        let mut counts = tx.prepare_cached(
            "INSERT INTO hourly_counts (hour, site, route, dimension, value, count) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (hour, site, route, dimension, value) DO UPDATE SET count = count + excluded.count",
        )?;
        let big = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        for ((hour, site, route), h) in &self.hours {
            hourly.execute(rusqlite::params![
                hour,
                site,
                route,
                big(h.requests),
                big(h.client_errors),
                big(h.server_errors),
                big(h.bytes_in),
                big(h.bytes_out),
                big(h.duration_us)
            ])?;
            let mut put = |dimension: &str, value: &str, n: u64| -> rusqlite::Result<()> {
                if n > 0 {
                    counts.execute(rusqlite::params![hour, site, route, dimension, value, big(n)])?;
                }
                Ok(())
            };
            for (status, n) in &h.status {
                put("status", &status.to_string(), *n)?;
            }
            for (agent, n) in AGENTS.iter().zip(h.agents) {
                put("agent", agent.as_str(), n)?;
            }
            for (country, n) in &h.countries {
                put("country", country, *n)?;
            }
            for (i, n) in h.latency.iter().enumerate() {
                let bound = LATENCY_MS.get(i).map_or("+Inf".to_string(), u64::to_string);
                put("latency_ms", &bound, *n)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::AgentClass::{self, *};

    #[test]
    fn user_agents_are_classified() {
        for (agent, class) in [
            ("Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0", Browser),
            ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148", Mobile),
            ("Mozilla/5.0 (Linux; Android 15; Pixel 9) AppleWebKit/537.36 Chrome/131.0 Mobile Safari/537.36", Mobile),
            ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", Bot),
            ("curl/8.11.1", ApiClient),
            ("python-requests/2.32.3", ApiClient),
            ("Go-http-client/2.0", ApiClient),
            ("", Unknown),
            ("something", Unknown),
        ] {
            assert_eq!(AgentClass::of(Some(agent)), class, "{agent}");
        }
        assert_eq!(AgentClass::of(None), Unknown);
    }
}
