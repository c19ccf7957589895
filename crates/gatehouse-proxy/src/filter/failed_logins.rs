//! The application's own refusals on its login paths as failed logins
//! (`options.failed_logins`): what fail2ban does from an application's log, done from its
//! answers, for logins the proxy never sees (the application checks the password). Enough
//! of them from one client within the window ban its address on every site.
//!
//! A response filter: it reads the status and the request's path, and edits nothing.

use std::sync::Arc;

use gatehouse_config::FailedLogins as Config;
use http::Response;

use super::ResponseFilter;
use crate::body::Outgoing;
use crate::pipeline::Ctx;

pub struct FailedLogins {
    config: Arc<Config>,
}

impl FailedLogins {
    pub fn new(config: Arc<Config>) -> Self {
        FailedLogins { config }
    }

    fn counts(&self, path: &str, status: u16) -> bool {
        self.config.statuses.contains(&status)
            && (self.config.paths.is_empty() || self.config.paths.iter().any(|p| crate::route::under(path, p)))
    }
}

impl ResponseFilter for FailedLogins {
    fn name(&self) -> &'static str {
        "failed_logins"
    }

    fn response(&self, cx: &Ctx<'_>, resp: &mut Response<Outgoing>) {
        // The proxy's own refusals (auth counts its failures itself) are not the
        // application's.
        // The path as routed (`//login`, `/./login` and `/%6Cogin` are `/login`).
        let path = crate::route::normalise_path(cx.uri.path());
        if !self.counts(&path, resp.status().as_u16()) || cx.answered.borrow().as_ref().is_some_and(|a| a.refused) {
            return;
        }
        let route = cx.route.map_or("", |r| r.route.id.as_str());
        tracing::info!(target: "gatehouse::auth", client = %cx.client, route, status = resp.status().as_u16(), "the application refused a login");
        cx.flagged("failed_login", "application", format!("the application answered {}", resp.status().as_u16()));
        let shared = &cx.state.shared;
        shared.failed_logins.count(&shared.bans, cx.client, &self.config.ban, route);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_config::BanRule;
    use std::time::Duration;

    #[test]
    fn only_the_configured_statuses_on_login_paths_count() {
        let ban = BanRule { after: 3, window: Duration::from_secs(60), duration: Duration::from_secs(60) };
        let f = FailedLogins::new(Arc::new(Config { paths: vec!["/login".into()], statuses: vec![401, 403], ban }));
        assert!(f.counts("/login", 401) && f.counts("/login/sso", 403));
        assert!(!f.counts("/login", 200) && !f.counts("/api", 401) && !f.counts("/login", 500));
    }
}
