//! One Gatehouse site as the importer builds it, and its YAML text.
//!
//! Only keys that docs/configuration.md documents are written. Every string value goes
//! out as a JSON string literal, which is a valid YAML double-quoted scalar, so no value
//! (a path with `#`, a header value with `: `, a host called `on`) can be read back as
//! anything else. Numbers and booleans are written bare only where they are ours (a
//! redirect code, a `respond` status, a priority, `strip_prefix: true`, `browse: true`).

use std::collections::BTreeMap;

/// An option value: one string, or a list of strings (header names, IP ranges).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Val {
    Str(String),
    List(Vec<String>),
}

/// Options by key path (`["timeouts", "read"]` → `timeouts: {read: …}`).
pub(super) type Opts = BTreeMap<Vec<String>, Val>;

/// Sets the option at `path`.
pub(super) fn set(opts: &mut Opts, path: &[&str], val: Val) {
    opts.insert(path.iter().map(|s| s.to_string()).collect(), val);
}

/// How a route matches the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Match {
    Prefix,
    Exact,
    Regex,
}

/// What a route does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Action {
    Backend(String),
    Upstream(String),
    Static(String),
    Redirect {
        to: String,
        code: u16,
    },
    /// `respond: {status, body}`: a fixed answer (no `body` key when empty).
    Respond {
        status: u16,
        body: String,
    },
}

/// One entry of `routes`.
#[derive(Debug, Clone)]
pub(super) struct Route {
    /// Comment lines written above the route (where it comes from, what differs).
    pub notes: Vec<String>,
    pub path: String,
    pub kind: Match,
    pub priority: i64,
    pub methods: Option<Vec<String>>,
    pub action: Action,
    pub index: Option<Vec<String>>,
    /// A static route's `fallback` file (`/index.html`).
    pub fallback: Option<String>,
    /// A static route's `browse: true` (directory listings).
    pub browse: bool,
    pub strip_prefix: bool,
    /// `rewrite: {pattern, replace}`.
    pub rewrite: Option<(String, String)>,
    pub options: Opts,
}

impl Route {
    pub fn new(path: &str, kind: Match, priority: i64, action: Action) -> Route {
        Route {
            notes: Vec::new(),
            path: path.to_string(),
            kind,
            priority,
            methods: None,
            action,
            index: None,
            fallback: None,
            browse: false,
            strip_prefix: false,
            rewrite: None,
            options: Opts::new(),
        }
    }
}

/// One entry of `upstreams`.
#[derive(Debug, Clone, Default)]
pub(super) struct Upstream {
    pub name: String,
    /// Backends as Gatehouse writes them: `http://10.0.0.1:80 weight=3`.
    pub backends: Vec<String>,
    pub algorithm: Option<String>,
    pub hash_key: Option<String>,
    /// `passive_check`: failures in a row, and how long the backend is then left out.
    pub passive: Option<(u32, String)>,
}

/// One site file.
#[derive(Debug, Default)]
pub(super) struct Site {
    /// `FILE:LINE` of the server block.
    pub source: String,
    /// The file name without `.yaml`.
    pub stem: String,
    pub hosts: Vec<String>,
    /// Comment lines for the top of the file.
    pub notes: Vec<String>,
    /// The directives of this server block that were not translated, as printed.
    pub skipped: Vec<String>,
    pub https_redirect: Option<bool>,
    /// `tls: {cert, key}`.
    pub tls: Option<(String, String)>,
    /// The short form `redirect: {to, code}` (the whole site redirects).
    pub redirect: Option<(String, u16)>,
    pub options: Opts,
    pub error_pages: Vec<(u16, String)>,
    pub upstreams: Vec<Upstream>,
    pub routes: Vec<Route>,
}

impl Site {
    /// Moves the options that every route has, with the same value, up to the site's
    /// `options`, so a file reads like a hand-written one. The `ip` and `auth` blocks stay
    /// on the routes: Gatehouse takes those whole from one layer, so splitting one between
    /// the site and a route would change it.
    pub fn hoist_options(&mut self) {
        let Some(first) = self.routes.first() else { return };
        let common: Vec<(Vec<String>, Val)> = first
            .options
            .iter()
            .filter(|(k, _)| !matches!(k.first().map(String::as_str), Some("ip" | "auth")))
            .filter(|(k, v)| self.routes.iter().all(|r| r.options.get(*k) == Some(*v)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (k, v) in common {
            for r in &mut self.routes {
                r.options.remove(&k);
            }
            self.options.insert(k, v);
        }
    }

    /// The site file's text.
    pub fn to_yaml(&self) -> String {
        let mut out = String::new();
        comment(
            &mut out,
            "",
            &format!("Imported by `gatehouse import nginx` from the server block at {}.", self.source),
        );
        comment(&mut out, "", "Review it, then run `gatehouse check`.");
        if !self.notes.is_empty() {
            comment(&mut out, "", "");
            comment(&mut out, "", "Notes:");
            for n in &self.notes {
                comment(&mut out, "", &format!("- {n}"));
            }
        }
        if !self.skipped.is_empty() {
            comment(&mut out, "", "");
            comment(&mut out, "", "Not translated (also printed by the import):");
            for s in &self.skipped {
                comment(&mut out, "", &format!("  {s}"));
            }
        }
        out.push('\n');
        let mut top: Vec<(String, Node)> =
            vec![("hosts".into(), Node::Flow(self.hosts.iter().map(|h| q(h)).collect()))];
        if let Some(on) = self.https_redirect {
            top.push(("https_redirect".into(), Node::Scalar(on.to_string())));
        }
        if let Some((cert, key)) = &self.tls {
            top.push(("tls".into(), map([("cert", Node::Scalar(q(cert))), ("key", Node::Scalar(q(key)))])));
        }
        if let Some((to, code)) = &self.redirect {
            top.push(("redirect".into(), redirect(to, *code)));
        }
        if !self.options.is_empty() {
            top.push(("options".into(), options(&self.options)));
        }
        if !self.error_pages.is_empty() {
            let pages = self.error_pages.iter().map(|(code, file)| (code.to_string(), Node::Scalar(q(file)))).collect();
            top.push(("error_pages".into(), Node::Map(pages)));
        }
        if !self.upstreams.is_empty() {
            let ups = self.upstreams.iter().map(|u| (u.name.clone(), upstream(u))).collect();
            top.push(("upstreams".into(), Node::Map(ups)));
        }
        if !self.routes.is_empty() {
            let routes = self.routes.iter().map(|r| (r.notes.clone(), route(r))).collect();
            top.push(("routes".into(), Node::List(routes)));
        }
        render_map(&top, 0, &mut out);
        out
    }
}

// ---------------------------------------------------------------------------------------
// The YAML tree and its writer

/// A YAML value. Scalars are already written out (quoted or bare).
enum Node {
    Scalar(String),
    /// A list of scalars on one line: `[a, b]`.
    Flow(Vec<String>),
    Map(Vec<(String, Node)>),
    /// A block list; each item has comment lines written above it.
    List(Vec<(Vec<String>, Node)>),
}

fn map<const N: usize>(entries: [(&str, Node); N]) -> Node {
    Node::Map(entries.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

fn redirect(to: &str, code: u16) -> Node {
    map([("to", Node::Scalar(q(to))), ("code", Node::Scalar(code.to_string()))])
}

fn upstream(u: &Upstream) -> Node {
    let mut entries = vec![(
        "backends".to_string(),
        Node::List(u.backends.iter().map(|b| (Vec::new(), Node::Scalar(q(b)))).collect()),
    )];
    let mut balance = Vec::new();
    if let Some(a) = &u.algorithm {
        balance.push(("algorithm".to_string(), Node::Scalar(q(a))));
    }
    if let Some(k) = &u.hash_key {
        balance.push(("hash_key".to_string(), Node::Scalar(q(k))));
    }
    if !balance.is_empty() {
        entries.push(("load_balancing".into(), Node::Map(balance)));
    }
    if let Some((failures, ejection)) = &u.passive {
        // max_ejection = ejection: nginx leaves a failed server out for fail_timeout each
        // time, without doubling.
        entries.push((
            "passive_check".into(),
            map([
                ("failures", Node::Scalar(failures.to_string())),
                ("ejection", Node::Scalar(q(ejection))),
                ("max_ejection", Node::Scalar(q(ejection))),
            ]),
        ));
    }
    Node::Map(entries)
}

fn route(r: &Route) -> Node {
    let mut e: Vec<(String, Node)> = vec![("path".into(), Node::Scalar(q(&r.path)))];
    match r.kind {
        Match::Prefix => {}
        Match::Exact => e.push(("match".into(), Node::Scalar("exact".into()))),
        Match::Regex => e.push(("match".into(), Node::Scalar("regex".into()))),
    }
    if r.priority != 0 {
        e.push(("priority".into(), Node::Scalar(r.priority.to_string())));
    }
    if let Some(m) = &r.methods {
        e.push(("methods".into(), Node::Flow(m.iter().map(|m| q(m)).collect())));
    }
    e.push(match &r.action {
        Action::Backend(b) => ("backend".into(), Node::Scalar(q(b))),
        Action::Upstream(u) => ("upstream".into(), Node::Scalar(q(u))),
        Action::Static(dir) => ("static".into(), Node::Scalar(q(dir))),
        Action::Redirect { to, code } => ("redirect".into(), redirect(to, *code)),
        Action::Respond { status, body } => {
            let mut fields = vec![("status".to_string(), Node::Scalar(status.to_string()))];
            if !body.is_empty() {
                fields.push(("body".into(), Node::Scalar(q(body))));
            }
            ("respond".into(), Node::Map(fields))
        }
    });
    if let Some(index) = &r.index {
        e.push(("index".into(), Node::Flow(index.iter().map(|i| q(i)).collect())));
    }
    if let Some(file) = &r.fallback {
        e.push(("fallback".into(), Node::Scalar(q(file))));
    }
    if r.browse {
        e.push(("browse".into(), Node::Scalar("true".into())));
    }
    if r.strip_prefix {
        e.push(("strip_prefix".into(), Node::Scalar("true".into())));
    }
    if let Some((pattern, replace)) = &r.rewrite {
        e.push(("rewrite".into(), map([("pattern", Node::Scalar(q(pattern))), ("replace", Node::Scalar(q(replace)))])));
    }
    if !r.options.is_empty() {
        e.push(("options".into(), options(&r.options)));
    }
    Node::Map(e)
}

/// The options as nested maps: `["headers", "response", "add", "X-A"]` becomes
/// `headers: {response: {add: {X-A: …}}}`.
fn options(opts: &Opts) -> Node {
    let entries: Vec<Entry<'_>> = opts.iter().map(|(k, v)| (k.as_slice(), v)).collect();
    Node::Map(group(entries))
}

/// An option's key path (or what is left of it) and its value.
type Entry<'a> = (&'a [String], &'a Val);

/// Entries sorted by path, grouped by their first segment (the map keeps them sorted).
fn group(entries: Vec<Entry<'_>>) -> Vec<(String, Node)> {
    let mut groups: Vec<(String, Vec<Entry<'_>>)> = Vec::new();
    for (path, val) in entries {
        let Some((first, rest)) = path.split_first() else { continue };
        match groups.last_mut() {
            Some((name, items)) if name == first => items.push((rest, val)),
            _ => groups.push((first.clone(), vec![(rest, val)])),
        }
    }
    groups
        .into_iter()
        .map(|(name, items)| {
            let leaf = items.iter().find(|(rest, _)| rest.is_empty()).map(|(_, v)| *v);
            let node = match leaf {
                Some(Val::Str(s)) => Node::Scalar(q(s)),
                Some(Val::List(l)) => Node::Flow(l.iter().map(|s| q(s)).collect()),
                None => Node::Map(group(items)),
            };
            (name, node)
        })
        .collect()
}

fn render_map(entries: &[(String, Node)], indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    for (k, v) in entries {
        let k = key(k);
        match v {
            Node::Scalar(s) => out.push_str(&format!("{pad}{k}: {s}\n")),
            Node::Flow(items) => out.push_str(&format!("{pad}{k}: [{}]\n", items.join(", "))),
            Node::Map(m) if m.is_empty() => out.push_str(&format!("{pad}{k}: {{}}\n")),
            Node::Map(m) => {
                out.push_str(&format!("{pad}{k}:\n"));
                render_map(m, indent + 2, out);
            }
            Node::List(items) if items.is_empty() => out.push_str(&format!("{pad}{k}: []\n")),
            Node::List(items) => {
                out.push_str(&format!("{pad}{k}:\n"));
                render_list(items, indent + 2, out);
            }
        }
    }
}

fn render_list(items: &[(Vec<String>, Node)], indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    for (notes, node) in items {
        for n in notes {
            comment(out, &pad, n);
        }
        match node {
            Node::Map(m) => {
                // Written as a map two columns in, whose first line then gets the dash.
                let mut inner = String::new();
                render_map(m, indent + 2, &mut inner);
                out.push_str(&pad);
                out.push_str("- ");
                out.push_str(inner.get(indent + 2..).unwrap_or(""));
            }
            Node::Scalar(s) => out.push_str(&format!("{pad}- {s}\n")),
            Node::Flow(f) => out.push_str(&format!("{pad}- [{}]\n", f.join(", "))),
            Node::List(_) => out.push_str(&format!("{pad}- []\n")),
        }
    }
}

/// A comment line; control characters become spaces so it stays one line.
fn comment(out: &mut String, pad: &str, text: &str) {
    let text: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let line = if text.is_empty() { format!("{pad}#") } else { format!("{pad}# {text}") };
    out.push_str(line.trim_end());
    out.push('\n');
}

/// A string as a YAML scalar.
pub(super) use crate::init::yaml_quote as q;

/// A map key: bare when it is a plain word YAML cannot read as anything else, else quoted.
fn key(k: &str) -> String {
    let plain = k.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !matches!(
            k.to_ascii_lowercase().as_str(),
            "y" | "n" | "yes" | "no" | "on" | "off" | "true" | "false" | "null"
        );
    if plain { k.to_string() } else { q(k) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_site_is_written_as_yaml_with_every_string_quoted() {
        let mut r = Route::new("/api/", Match::Prefix, 0, Action::Upstream("app".into()));
        r.notes.push("location /api/ (a.conf:3)".into());
        r.strip_prefix = true;
        set(&mut r.options, &["headers", "response", "add", "X-A"], Val::Str("a: #b".into()));
        set(&mut r.options, &["timeouts", "read"], Val::Str("30s".into()));
        let mut exact = Route::new("/gone", Match::Exact, 2, Action::Redirect { to: "/new".into(), code: 308 });
        set(&mut exact.options, &["timeouts", "read"], Val::Str("30s".into()));
        set(&mut exact.options, &["ip", "deny"], Val::List(vec!["0.0.0.0/0".into(), "::/0".into()]));
        let mut health = Route::new("/health", Match::Exact, 2, Action::Respond { status: 200, body: "ok\n".into() });
        set(&mut health.options, &["timeouts", "read"], Val::Str("30s".into()));
        let mut refuse = Route::new("/x", Match::Prefix, 0, Action::Respond { status: 403, body: String::new() });
        set(&mut refuse.options, &["timeouts", "read"], Val::Str("30s".into()));
        let mut files = Route::new("/", Match::Prefix, 0, Action::Static("/srv/www".into()));
        files.fallback = Some("/index.html".into());
        files.browse = true;
        set(&mut files.options, &["timeouts", "read"], Val::Str("30s".into()));
        let mut site = Site {
            source: "a.conf:1".into(),
            hosts: vec!["example.com".into(), "*.example.com".into()],
            skipped: vec!["a.conf:2: gzip on: not built".into()],
            upstreams: vec![Upstream {
                name: "on".into(),
                backends: vec!["http://127.0.0.1:1 weight=3".into()],
                algorithm: Some("least_conn".into()),
                ..Upstream::default()
            }],
            routes: vec![r, exact, health, refuse, files],
            ..Site::default()
        };
        site.hoist_options();
        let yaml = site.to_yaml();
        let want = r#"# Imported by `gatehouse import nginx` from the server block at a.conf:1.
# Review it, then run `gatehouse check`.
#
# Not translated (also printed by the import):
#   a.conf:2: gzip on: not built

hosts: ["example.com", "*.example.com"]
options:
  timeouts:
    read: "30s"
upstreams:
  "on":
    backends:
      - "http://127.0.0.1:1 weight=3"
    load_balancing:
      algorithm: "least_conn"
routes:
  # location /api/ (a.conf:3)
  - path: "/api/"
    upstream: "app"
    strip_prefix: true
    options:
      headers:
        response:
          add:
            X-A: "a: #b"
  - path: "/gone"
    match: exact
    priority: 2
    redirect:
      to: "/new"
      code: 308
    options:
      ip:
        deny: ["0.0.0.0/0", "::/0"]
  - path: "/health"
    match: exact
    priority: 2
    respond:
      status: 200
      body: "ok\n"
  - path: "/x"
    respond:
      status: 403
  - path: "/"
    static: "/srv/www"
    fallback: "/index.html"
    browse: true
"#;
        assert_eq!(yaml, want);
    }
}
