//! Edge security state shared by the filters: rate-limit tables and bans. The filters that
//! use them are in `filter/` (`ratelimit`, `ban`).

pub mod ban;
pub mod limit;
