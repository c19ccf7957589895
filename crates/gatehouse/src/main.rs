//! The `gatehouse` binary: command line, configuration loading, startup checks, wiring of
//! the proxy workers, the admin listener and the reload path, signals (reload, graceful
//! shutdown).
//!
//! Owns process lifecycle only; request handling lives in gatehouse-proxy, reloading in
//! `reload`.

mod access_file;
mod acme;
mod backups;
mod bans;
mod check_diff;
mod geoip;
mod import_nginx;
mod init;
mod jwks;
mod logs;
mod metrics;
mod oneliner;
#[cfg(feature = "otlp")]
mod otlp;
mod outbound;
mod registry;
mod reload;
mod stream_metrics;
mod systemd;
mod watch;
mod webhooks;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use gatehouse_config::{Config, EnvOverrides, LogFormat};
use gatehouse_proxy::{Server, tls};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

// One of the two `unsafe` blocks in Gatehouse (the workspace denies it everywhere else; the
// other adopts systemd's descriptors, in `systemd`): one call into the mimalloc library the
// allocator above links in (`mi_collect` in mimalloc.h).
#[allow(unsafe_code)]
unsafe extern "C" {
    fn mi_collect(force: bool);
}

/// Returns the calling thread's free memory to the system. mimalloc otherwise returns
/// freed pages only during later allocations, so a worker that goes quiet after a burst
/// (10,000 clients, one request each) would keep the burst's memory.
#[allow(unsafe_code)]
fn release_memory() {
    // SAFETY: `mi_collect` takes no pointers, touches only the allocator's own state, and
    // may be called from any thread at any time.
    unsafe { mi_collect(true) }
}

#[derive(Parser)]
#[command(name = "gatehouse", about = "Gatehouse: an edge reverse proxy for self-hosted services", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve with the given configuration.
    Run {
        /// Main configuration file. Default: $GATEHOUSE_CONFIG, ./gatehouse.yaml, /etc/gatehouse/gatehouse.yaml.
        #[arg(short, long, env = "GATEHOUSE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Validate the configuration (main file and every site file) without binding ports.
    Check {
        #[arg(short, long, env = "GATEHOUSE_CONFIG")]
        config: Option<PathBuf>,
        /// Also show what it changes: against FILE (another configuration), or without
        /// FILE against the running instance (asked through its admin API).
        #[arg(long, value_name = "FILE", num_args = 0..=1)]
        diff: Option<Option<PathBuf>>,
    },
    /// Back up, list, check or restore the database and the ACME state.
    Backup {
        #[arg(short, long, env = "GATEHOUSE_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: backups::Action,
    },
    /// Hash a password for basic auth (argon2id), or with --api-key the digest of an API
    /// key, for the configuration. Reads the secret from standard input (one line), never
    /// from the command line, where shells keep it.
    HashPassword {
        /// Print `sha256:HEX` of an API key instead.
        #[arg(long)]
        api_key: bool,
    },
    /// Write a commented main file and an example site file into DIR (default: the
    /// current directory). Never overwrites.
    Init { dir: Option<PathBuf> },
    /// Reverse proxy to one or more backends, with no configuration file:
    /// `gatehouse proxy --from example.com --to 127.0.0.1:3000 --email you@example.com`.
    Proxy(oneliner::ProxyArgs),
    /// Serve a directory's files, with no configuration file: `gatehouse serve ./public --browse`.
    Serve(oneliner::ServeArgs),
    /// Translate another server's configuration into Gatehouse site files.
    Import {
        #[command(subcommand)]
        from: Import,
    },
    /// Print shell completions (bash, zsh or fish) to standard output.
    Completions { shell: clap_complete::Shell },
    /// Print the manual page (roff) to standard output: `gatehouse man > gatehouse.1`.
    Man,
    /// Print the version.
    Version,
}

#[derive(Subcommand)]
enum Import {
    /// nginx `server {}` blocks (a site file each; `upstream {}` and `include` followed).
    /// What cannot be translated is listed with file:line and the reason.
    Nginx {
        /// nginx.conf, or files of sites-available/ and conf.d/.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Where the site files go (never overwritten).
        #[arg(long, value_name = "DIR", default_value = ".")]
        out: PathBuf,
    },
}

/// `gatehouse hash-password`: one line from standard input, hashed.
fn hash_password(api_key: bool) -> ExitCode {
    use std::io::BufRead;
    let mut line = String::new();
    if let Err(e) = std::io::stdin().lock().read_line(&mut line) {
        eprintln!("gatehouse: cannot read standard input: {e}");
        return ExitCode::FAILURE;
    }
    let secret = line.strip_suffix('\n').unwrap_or(&line);
    let secret = secret.strip_suffix('\r').unwrap_or(secret);
    if secret.is_empty() {
        eprintln!(
            "gatehouse: nothing to hash (give the secret on standard input, e.g. `gatehouse hash-password < file`)"
        );
        return ExitCode::FAILURE;
    }
    if api_key {
        println!("{}", gatehouse_proxy::security::password::api_key_digest(secret.as_bytes()));
        return ExitCode::SUCCESS;
    }
    match gatehouse_proxy::security::password::hash(secret.as_bytes()) {
        Ok(h) => {
            println!("{h}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gatehouse: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    // Release builds abort on panic (Cargo.toml). Debug builds would only end the panicking
    // thread and keep a crippled process running; abort there too, so every build — and
    // the integration tests, which run a debug build — sees a panic as the dead server it
    // is in production.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        std::process::abort();
    }));
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("gatehouse {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::HashPassword { api_key } => hash_password(api_key),
        Command::Init { dir } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from("."));
            match init::init(&dir) {
                Ok(written) => {
                    for p in written {
                        println!("wrote {}", p.display());
                    }
                    println!(
                        "next: edit them, then `gatehouse check -c {0}` and `gatehouse run -c {0}`",
                        dir.join("gatehouse.yaml").display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("gatehouse: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "gatehouse", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            match clap_mangen::Man::new(cmd).render(&mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("gatehouse: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Backup { config, action } => backups::cli(&config_path(config), action),
        Command::Check { config, diff } => {
            let path = config_path(config);
            match gatehouse_config::load(&path, &EnvOverrides::from_env()) {
                Ok(c) => {
                    if c.listen_https.is_some() {
                        let (store, mut problems) = load_certificates(&c);
                        let notes = store.notes().to_vec();
                        let uncovered = store.uncovered(&c.sites);
                        // Client CAs as the listener would use them.
                        let resolver = tls::Resolver::new(store, Arc::new(tls::Challenges::default()));
                        problems.extend(resolver.set_client_auth(&c.sites));
                        for p in &problems {
                            eprintln!("{p}");
                        }
                        for n in notes {
                            eprintln!("warning: certificate directory: {n}");
                        }
                        for host in uncovered {
                            eprintln!("warning: no certificate covers {host}; it gets the default certificate, if any");
                        }
                        if !problems.is_empty() {
                            eprintln!("{} error(s) in the TLS configuration", problems.len());
                            return ExitCode::FAILURE;
                        }
                    }
                    if let Some(db) = &c.geoip
                        && let Err(e) = gatehouse_proxy::security::geo::Geo::open(db)
                    {
                        eprintln!("{}: geoip.database: {e}", db.display());
                        return ExitCode::FAILURE;
                    }
                    let stream_problems = gatehouse_proxy::l4::check(&c);
                    for p in &stream_problems {
                        eprintln!("{p}");
                    }
                    if !stream_problems.is_empty() {
                        eprintln!("{} error(s) in the streams' TLS", stream_problems.len());
                        return ExitCode::FAILURE;
                    }
                    for n in &c.notes {
                        eprintln!("note: {n}");
                    }
                    let routes: usize = c.sites.iter().map(|s| s.routes.len()).sum();
                    let sites = c.sites.len();
                    let streams = match c.streams.len() {
                        0 => String::new(),
                        n => format!(", {n} streams"),
                    };
                    // What `run` and a reload build from it (backend TLS clients), so a
                    // configuration `check` passes is one they accept.
                    let checked = Arc::new(c);
                    match gatehouse_proxy::RuntimeState::build(checked.clone(), None, None, None) {
                        Err(errors) => {
                            eprintln!("{errors}");
                            eprintln!("{} error(s) in the configuration", errors.len());
                            return ExitCode::FAILURE;
                        }
                        Ok(state) => {
                            for name in state.unresolved() {
                                eprintln!(
                                    "warning: backend host {name} does not resolve now; requests to it fail (502) until it does"
                                );
                            }
                        }
                    }
                    println!("{}: configuration OK ({sites} sites, {routes} routes{streams})", path.display());
                    match diff {
                        Some(against) => check_diff::run(&checked, against.as_deref()),
                        None => ExitCode::SUCCESS,
                    }
                }
                Err(errors) => {
                    eprintln!("{errors}");
                    eprintln!("{} error(s) in the configuration", errors.len());
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run { config } => start(config_path(config), None),
        Command::Import { from: Import::Nginx { files, out } } => import_nginx::run(&files, &out),
        Command::Proxy(args) => one_liner(oneliner::proxy(args)),
        Command::Serve(args) => one_liner(oneliner::serve(args)),
    }
}

/// Loads the configuration at `path` and serves it until SIGTERM or SIGINT.
fn start(path: PathBuf, held: Option<(PathBuf, gatehouse_store::backup::DbLock)>) -> ExitCode {
    let config = match gatehouse_config::load(&path, &EnvOverrides::from_env()) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("gatehouse: not started: {} error(s) in the configuration", errors.len());
            return ExitCode::FAILURE;
        }
    };
    init_logging(&config);
    // A lock on the database the configuration names (a one-liner's) serves as run's own.
    let held = held.filter(|(db, _)| *db == config.storage_path).map(|(_, lock)| lock);
    match run(path, config, held) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gatehouse: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs what `gatehouse proxy` or `gatehouse serve` generated (or ends after printing it).
fn one_liner(generated: Result<Option<oneliner::Generated>, String>) -> ExitCode {
    match generated {
        Ok(Some(g)) => {
            eprintln!("{}", g.note);
            start(g.path, Some(g.db))
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gatehouse: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Loads the certificates the configuration names; problems come back as messages.
fn load_certificates(c: &Config) -> (tls::Store, Vec<String>) {
    tls::Store::load(&c.tls, &c.sites, None)
}

/// `--config`/`$GATEHOUSE_CONFIG`, then `./gatehouse.yaml`, then `/etc/gatehouse/gatehouse.yaml`.
fn config_path(given: Option<PathBuf>) -> PathBuf {
    if let Some(p) = given {
        return p;
    }
    let local = PathBuf::from("gatehouse.yaml");
    if local.exists() { local } else { PathBuf::from("/etc/gatehouse/gatehouse.yaml") }
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Pretty => builder.init(),
    }
}

/// Checks what the configuration loader cannot: that storage is writable.
fn startup_checks(config: &Config) -> Result<()> {
    let dir = config.storage_path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("storage directory {} cannot be created", dir.display()))?;
    let probe = dir.join(".gatehouse-write-test");
    std::fs::write(&probe, b"ok").with_context(|| format!("storage directory {} is not writable", dir.display()))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// Raises the soft descriptor limit to the hard one, as nginx's `worker_rlimit_nofile`
/// does: every client connection, backend connection and file is a descriptor, and the
/// usual soft limit (1024) would cap a busy proxy at a few hundred clients. Logs when the
/// configured connections cannot fit.
fn raise_descriptor_limit(config: &Config) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let current = getrlimit(Resource::Nofile);
    let mut limit = current.current;
    if current.current != current.maximum {
        match setrlimit(Resource::Nofile, Rlimit { current: current.maximum, maximum: current.maximum }) {
            Ok(()) => {
                limit = current.maximum;
                tracing::info!(
                    from = current.current.map_or("unlimited".to_string(), |n| n.to_string()),
                    to = current.maximum.map_or("unlimited".to_string(), |n| n.to_string()),
                    "raised the open-file limit to its hard limit"
                );
            }
            Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
        }
    }
    let wanted = config.server.max_connections as u64;
    if let Some(limit) = limit
        && wanted > 0
        && wanted > limit / 2
    {
        // A proxied connection needs two descriptors: the client's and the backend's.
        tracing::warn!(
            max_connections = config.server.max_connections,
            open_file_limit = limit,
            "server.max_connections needs up to {} descriptors (client and backend side); the open-file limit is {limit}: connections beyond it fail to be accepted (raise LimitNOFILE / ulimit -Hn)",
            wanted.saturating_mul(2)
        );
    }
}

fn run(path: PathBuf, config: Config, held: Option<gatehouse_store::backup::DbLock>) -> Result<()> {
    raise_descriptor_limit(&config);
    startup_checks(&config)?;
    let passed = systemd::take_listeners();
    if !passed.is_empty() {
        tracing::info!(sockets = ?passed, "listening sockets passed by systemd (socket activation)");
    }
    // One process per database: a second instance (or a restore) finds the lock taken.
    let _db_lock = match held {
        Some(lock) => lock,
        None => gatehouse_store::backup::DbLock::take(&config.storage_path)?.with_context(|| {
            format!(
                "the database {} is in use by another Gatehouse process (stop it, or give this one another storage.path)",
                config.storage_path.display()
            )
        })?,
    };
    let config = Arc::new(config);
    let admin_listener = match config.admin_listen {
        Some(addr) => {
            let l =
                std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen on admin address {addr}"))?;
            l.set_nonblocking(true)?;
            Some(l)
        }
        None => None,
    };
    let admin_addr = admin_listener.as_ref().map(|l| l.local_addr()).transpose()?;
    let registry_listener = match config.registry.listen {
        Some(addr) => {
            let l = std::net::TcpListener::bind(addr)
                .with_context(|| format!("cannot listen on registry address {addr}"))?;
            l.set_nonblocking(true)?;
            Some(l)
        }
        None => None,
    };
    let registry_addr = registry_listener.as_ref().map(|l| l.local_addr()).transpose()?;
    let challenges = Arc::new(tls::Challenges::default());
    let mut wanted = Vec::new();
    let resolver = if config.listen_https.is_some() {
        let (store, problems) = load_certificates(&config);
        if !problems.is_empty() {
            anyhow::bail!("certificates could not be loaded:\n  {}", problems.join("\n  "));
        }
        store.warn_notes();
        if let Some(acme) = &config.tls.acme {
            wanted = acme::wanted(&config, acme, &store);
        }
        for host in store.uncovered(&config.sites) {
            if !wanted.iter().any(|w: &gatehouse_acme::Wanted| w.hosts.contains(&host)) {
                tracing::warn!(host, "no certificate covers this host; it gets the default certificate, if any");
            }
        }
        tls::warn_expiry(&store);
        let resolver = tls::Resolver::new(store, challenges.clone());
        for p in resolver.set_client_auth(&config.sites) {
            tracing::error!(problem = %p, "client certificates not asked for");
        }
        Some(resolver)
    } else {
        None
    };
    // The control runtime: admin API, signals, DNS refresh, webhooks, OTLP export. Proxy workers have their own.
    let control = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("gatehouse-control")
        .enable_all()
        .build()?;
    let metrics = metrics::Metrics::new(config.workers);
    let (sink, data) = {
        let _runtime = control.enter();
        logs::start(&config, metrics.clone())?
    };
    let server =
        Server::start(config.clone(), resolver.clone(), Some(challenges.clone()), Some(release_memory), Some(sink))?;
    let registry = Arc::new(
        metrics::Exporter {
            metrics: metrics.clone(),
            connections: server.connections(),
            state: server.watcher(),
            certs: resolver.clone(),
            writer: data.clone(),
            streams: server.streams(),
        }
        .registry(),
    );
    let http_addr = server.http_addr();

    let ready = Arc::new(AtomicBool::new(false));
    let queue = reload::Queue::default();
    let admin = gatehouse_admin::Admin {
        state: server.watcher(),
        ready: ready.clone(),
        token: config.admin_token.as_deref().map(Arc::from),
        certs: resolver.clone(),
        header_read_timeout: config.server.header_read_timeout,
        reload: Some(queue.for_admin()),
        allowed_hosts: Arc::new(gatehouse_admin::guard::Allowed::new(
            config.admin_allowed_hosts.as_deref(),
            admin_addr.unwrap_or(http_addr),
        )),
        data: Some(gatehouse_admin::Data { path: config.storage_path.clone(), writer: data.clone() }),
        metrics: Some(Arc::new(move || metrics::Exporter::render(&registry))),
        stats: Some(metrics::live(metrics.clone(), server.connections(), data.clone())),
        registry_only: false,
        streams: Some(server.streams()),
    };
    let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let (stop_registry, registry_stopped) = tokio::sync::oneshot::channel::<()>();
    if let (Some(l), Some(addr)) = (registry_listener, registry_addr) {
        let mut only = admin.clone();
        only.registry_only = true;
        only.allowed_hosts =
            Arc::new(gatehouse_admin::guard::Allowed::new(config.admin_allowed_hosts.as_deref(), addr));
        control.spawn(serve_admin(l, only, registry_stopped, "registry"));
    }
    if let Some(l) = admin_listener {
        control.spawn(serve_admin(l, admin, admin_stopped, "admin"));
    }
    control.spawn(gatehouse_proxy::refresh_dns(server.watcher(), config.dns_refresh));
    control.spawn(logs::retention(data.clone(), server.watcher()));
    let notifier = {
        let _runtime = control.enter();
        webhooks::Notifier::start(server.watcher())
    };
    control.spawn(webhooks::watch_errors(notifier.clone(), metrics.clone()));
    control.spawn(webhooks::watch_spikes(notifier.clone(), metrics.clone()));
    control.spawn(backups::scheduled(server.watcher()));
    if let Some(resolver) = resolver.clone() {
        // Expiry warnings (and `cert_expiring` webhooks) for a long-running process, not
        // only at start and reload.
        let notifier = notifier.clone();
        logs::record_certificates(&data, &resolver.store());
        control.spawn(async move {
            notifier.check_expiry(&resolver.store());
            let mut daily = tokio::time::interval(std::time::Duration::from_secs(86_400));
            daily.tick().await;
            loop {
                daily.tick().await;
                tls::warn_expiry(&resolver.store());
                notifier.check_expiry(&resolver.store());
            }
        });
    }
    // Watchers, ACME and every reload from here on. The watchers and the signal handlers
    // are in place before the startup line: a change made right after it is not missed.
    let mut reloading = reload::Reloading::new(
        path,
        server.reloader(),
        server.listeners(),
        resolver.clone(),
        challenges.clone(),
        queue.clone(),
        reload::Reporting { audit: Some(data.clone()), metrics: metrics.clone(), notifier: Some(notifier.clone()) },
    );
    let signals = {
        let _runtime = control.enter();
        reloading.follow();
        Signals::new()?
    };
    control.spawn(reloading.run());
    // What the database saved to come back at start: registry instances, bans.
    let saved = match gatehouse_store::Reader::open(&config.storage_path) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(error = %e, "saved registry instances and bans not read");
            None
        }
    };
    registry::start(&server.watcher(), &queue, saved.as_ref());
    bans::start(&server.watcher(), &data, notifier.clone(), saved.as_ref());
    drop(saved);
    control.spawn(bans::expire(server.watcher()));
    control.spawn(jwks::run(server.watcher()));
    let geoip_read = geoip::load_now(&server.watcher());
    control.spawn(geoip::follow(server.watcher(), geoip_read));
    control.spawn(registry::expire(server.watcher(), data.clone()));
    control.spawn(gatehouse_proxy::health::Checks::sample(server.watcher()));

    for addr in gatehouse_proxy::listener::unused_inherited() {
        tracing::warn!(%addr, "systemd passed a listening socket for an address the configuration does not listen on; its connections wait unserved: make gatehouse.socket's ListenStream= match listen.http and listen.https");
    }
    ready.store(true, Ordering::Release);
    let admin_part = admin_addr.map(|a| a.to_string()).unwrap_or_else(|| "off".into());
    tracing::info!(http = %http_addr, admin = %admin_part, workers = config.workers, "gatehouse started");
    // One stable line on stdout so scripts and tests can find the bound ports.
    let mut registry_part = registry_addr.map(|a| format!(" registry={a}")).unwrap_or_default();
    // Each stream as `stream.NAME=ADDR`, in name order.
    let mut streams: Vec<_> = server.streams().addrs().into_iter().collect();
    streams.sort();
    for (name, addr) in streams {
        registry_part.push_str(&format!(" stream.{name}={addr}"));
    }
    match server.https_addr() {
        Some(https) => println!("gatehouse listening http={http_addr} https={https} admin={admin_part}{registry_part}"),
        None => println!("gatehouse listening http={http_addr} admin={admin_part}{registry_part}"),
    }

    systemd::notify("READY=1");
    control.block_on(signals.wait(&queue));
    systemd::notify("STOPPING=1");
    ready.store(false, Ordering::Release);
    tracing::info!(timeout = ?config.shutdown_timeout, "shutting down: finishing in-flight requests");
    let _ = stop_admin.send(());
    let _ = stop_registry.send(());
    server.shutdown();
    control.shutdown_timeout(std::time::Duration::from_secs(1));
    // Changes queued just before the stop (a ban, a registration, an audit entry) are
    // written before the process ends, whatever still holds a handle to the writer.
    if !data.sync(std::time::Duration::from_secs(5)) {
        tracing::warn!("the database writer did not finish its queue within 5 s");
    }
    // The database writer stores what is queued, then ends, once its last handle is gone
    // (the workers' sink went with the server).
    drop(data);
    tracing::info!("gatehouse stopped");
    Ok(())
}

/// Serves the admin API (or, for `registry.listen`, the registry alone) on `listener`
/// until `stopped` fires; `what` names it in the log.
async fn serve_admin(
    listener: std::net::TcpListener,
    admin: gatehouse_admin::Admin,
    stopped: tokio::sync::oneshot::Receiver<()>,
    what: &'static str,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, listener = what, "listener failed");
            return;
        }
    };
    if let Err(e) = gatehouse_admin::serve(listener, admin, async move {
        let _ = stopped.await;
    })
    .await
    {
        tracing::error!(error = %e, listener = what, "admin API stopped");
    }
}

/// The signals `run` obeys.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers; needs the runtime's context.
    fn new() -> Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Returns on SIGTERM or SIGINT; a SIGHUP asks for a reload, which runs beside this
    /// wait (`reload::Reloading`), so SIGTERM is obeyed even while a reload reads files.
    async fn wait(mut self, queue: &reload::Queue) {
        loop {
            tokio::select! {
                _ = self.term.recv() => return,
                _ = self.int.recv() => return,
                _ = self.hup.recv() => queue.config("sighup"),
            }
        }
    }
}
