//! Edge security state and inspection shared by the filters: rate-limit tables, bans and
//! the WAF's engine. The filters that use them are in `filter/` (`ratelimit`, `ban`,
//! `waf`).

pub mod ban;
pub mod geo;
pub mod limit;
pub mod password;
pub mod waf;
