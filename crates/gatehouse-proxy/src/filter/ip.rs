//! A route's IP allow and deny lists (`options.ip`). The client is `Ctx::client`, the
//! address `trusted_proxies` made of the peer and its forwarding fields, so a spoofed
//! `X-Forwarded-For` from an untrusted peer changes nothing. `deny` is checked first; with
//! `allow`, only its addresses go on. Refusals are 403 with the request id.
//!
//! The lists arrive as sorted, merged ranges (`gatehouse_config::IpSet`, built once per
//! configuration load): a check is a binary search or two, however long the lists. Must not
//! read anything of the request but the client address.

use std::net::IpAddr;
use std::sync::Arc;

use gatehouse_config::IpRules;
use http::Request;

use super::{RequestFilter, Verdict};
use crate::body::Inbound;
use crate::pipeline::Ctx;

pub struct IpCheck {
    config: Arc<IpRules>,
}

/// What the lists say about an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// In `deny`.
    Denied,
    /// Not in `allow`.
    NotAllowed,
}

impl IpCheck {
    pub fn new(config: Arc<IpRules>) -> Self {
        IpCheck { config }
    }

    pub fn decide(&self, ip: IpAddr) -> Decision {
        if self.config.deny.contains(ip) {
            return Decision::Denied;
        }
        match &self.config.allow {
            Some(allow) if !allow.contains(ip) => Decision::NotAllowed,
            _ => Decision::Allow,
        }
    }
}

impl RequestFilter for IpCheck {
    fn name(&self) -> &'static str {
        "ip"
    }

    fn request(&self, cx: &Ctx<'_>, req: &mut Request<Inbound>, _path: &str) -> Verdict {
        let (rule, reason) = match self.decide(cx.client) {
            Decision::Allow => return Verdict::Continue,
            Decision::Denied => ("deny", format!("{} is in the route's ip.deny list", cx.client)),
            Decision::NotAllowed => ("allow", format!("{} is not in the route's ip.allow list", cx.client)),
        };
        super::forbid(cx, req.headers(), ("ip_denied", rule), reason, "Access from your address is not allowed.")
    }
}

#[cfg(test)]
mod tests {
    use gatehouse_config::IpSet;
    use ipnet::IpNet;

    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter()
            .map(|s| s.parse::<IpNet>().or_else(|_| s.parse::<IpAddr>().map(IpNet::from)).expect("net"))
            .collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn check(allow: Option<&[&str]>, deny: &[&str]) -> IpCheck {
        let allow = allow.map(|a| IpSet::new(&nets(a)));
        IpCheck::new(Arc::new(IpRules { allow, deny: IpSet::new(&nets(deny)) }))
    }

    #[test]
    fn deny_wins_and_allow_restricts() {
        let c = check(Some(&["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"][..]), &["10.1.0.0/16"]);
        assert_eq!(c.decide(ip("10.2.3.4")), Decision::Allow);
        assert_eq!(c.decide(ip("10.1.2.3")), Decision::Denied);
        assert_eq!(c.decide(ip("192.0.2.7")), Decision::Allow);
        assert_eq!(c.decide(ip("192.0.2.8")), Decision::NotAllowed);
        assert_eq!(c.decide(ip("2001:db8:1::1")), Decision::Allow);
        assert_eq!(c.decide(ip("2001:db9::1")), Decision::NotAllowed);
        let deny_only = check(None, &["203.0.113.0/24"]);
        assert_eq!(deny_only.decide(ip("203.0.113.9")), Decision::Denied);
        assert_eq!(deny_only.decide(ip("198.51.100.1")), Decision::Allow);
    }

    #[test]
    fn mapped_addresses_match_ipv4_rules() {
        let c = check(Some(&["10.0.0.0/8"][..]), &["10.1.0.0/16"]);
        assert_eq!(c.decide(ip("::ffff:10.2.3.4")), Decision::Allow);
        assert_eq!(c.decide(ip("::ffff:10.1.0.1")), Decision::Denied);
        assert_eq!(c.decide(ip("::ffff:11.0.0.1")), Decision::NotAllowed);
        // A rule written in the mapped form is an IPv4 rule.
        let c = check(None, &["::ffff:192.0.2.0/120"]);
        assert_eq!(c.decide(ip("192.0.2.55")), Decision::Denied);
        assert_eq!(c.decide(ip("192.0.3.1")), Decision::Allow);
    }

    #[test]
    fn edges_and_merging() {
        let set = IpSet::new(&nets(&["10.0.0.0/24", "10.0.1.0/24", "10.0.0.128/25", "0.0.0.0/32", "::/0"]));
        // The two /24s touch and the /25 is inside: one range, plus 0.0.0.0 and all of IPv6.
        assert_eq!(set.ranges(), 3);
        assert!(set.contains(ip("10.0.0.0")) && set.contains(ip("10.0.1.255")));
        assert!(!set.contains(ip("10.0.2.0")) && !set.contains(ip("9.255.255.255")));
        assert!(set.contains(ip("0.0.0.0")) && !set.contains(ip("0.0.0.1")));
        assert!(set.contains(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
        let all = IpSet::new(&nets(&["0.0.0.0/0"]));
        assert!(all.contains(ip("255.255.255.255")) && all.contains(ip("0.0.0.0")));
        assert!(!all.contains(ip("2001:db8::1")), "an IPv4 rule says nothing about IPv6");
        assert!(IpSet::default().is_empty() && !IpSet::default().contains(ip("10.0.0.1")));
    }

    #[test]
    fn long_lists_agree_with_a_linear_scan() {
        // A fixed pseudo-random sequence: the same list every run.
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let list: Vec<IpNet> = (0..5000)
            .map(|_| {
                let r = next();
                let prefix = 8 + (r % 25) as u8;
                let addr = std::net::Ipv4Addr::from((r >> 32) as u32);
                IpNet::V4(ipnet::Ipv4Net::new(addr, prefix).expect("prefix").trunc())
            })
            .collect();
        let set = IpSet::new(&list);
        for _ in 0..20_000 {
            let a = IpAddr::V4(std::net::Ipv4Addr::from(next() as u32));
            assert_eq!(set.contains(a), list.iter().any(|n| n.contains(&a)), "{a}");
        }
    }
}
