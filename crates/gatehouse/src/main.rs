//! The `gatehouse` binary: command line, configuration loading, startup checks, wiring of
//! the proxy workers and the admin listener, signals (reload, graceful shutdown).
//!
//! Owns process lifecycle only; request handling lives in gatehouse-proxy.

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
    },
    /// Print the version.
    Version,
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
        Command::Check { config } => {
            let path = config_path(config);
            match gatehouse_config::load(&path, &EnvOverrides::from_env()) {
                Ok(c) => {
                    if c.listen_https.is_some() {
                        let (store, problems) = load_certificates(&c);
                        for p in &problems {
                            eprintln!("{p}");
                        }
                        for n in store.notes() {
                            eprintln!("warning: certificate directory: {n}");
                        }
                        for host in store.uncovered(&c.sites) {
                            eprintln!("warning: no certificate covers {host}; it gets the default certificate, if any");
                        }
                        if !problems.is_empty() {
                            eprintln!("{} error(s) in the TLS configuration", problems.len());
                            return ExitCode::FAILURE;
                        }
                    }
                    let routes: usize = c.sites.iter().map(|s| s.routes.len()).sum();
                    println!("{}: configuration OK ({} sites, {routes} routes)", path.display(), c.sites.len());
                    ExitCode::SUCCESS
                }
                Err(errors) => {
                    eprintln!("{errors}");
                    eprintln!("{} error(s) in the configuration", errors.len());
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run { config } => {
            let path = config_path(config);
            let config = match gatehouse_config::load(&path, &EnvOverrides::from_env()) {
                Ok(c) => c,
                Err(errors) => {
                    eprintln!("{errors}");
                    eprintln!("gatehouse: not started: {} error(s) in the configuration", errors.len());
                    return ExitCode::FAILURE;
                }
            };
            init_logging(&config);
            match run(path, config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("gatehouse: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Sites' host names that need a certificate from ACME: exact names (wildcards only with
/// DNS-01) that are not local and not covered by a certificate of another source.
fn acme_wanted(
    config: &Config,
    acme: &gatehouse_config::AcmeConfig,
    store: &tls::Store,
) -> Vec<gatehouse_acme::Wanted> {
    use gatehouse_config::{AcmeChallenge, HostPattern};
    let mut out = Vec::new();
    for site in &config.sites {
        let hosts: Vec<String> = site
            .hosts
            .iter()
            .filter_map(|h| match h {
                HostPattern::Exact(n) if !tls::is_local(n) => Some(n.clone()),
                HostPattern::Wildcard(_) if matches!(acme.challenge, AcmeChallenge::Dns01 { .. }) => {
                    Some(h.to_string())
                }
                _ => None,
            })
            .filter(|n| match store.lookup(n) {
                None => true,
                // Our own earlier issuance does not count as "covered elsewhere".
                Some(c) => {
                    config.tls.acme_dir.as_ref().is_some_and(|d| c.info.path.as_ref().is_some_and(|p| p.starts_with(d)))
                }
            })
            .collect();
        if !hosts.is_empty() {
            out.push(gatehouse_acme::Wanted { site: site.name.clone(), hosts });
        }
    }
    out
}

/// ACME challenge answers go to the proxy's listeners.
struct Responder(Arc<tls::Challenges>);

impl gatehouse_acme::Responder for Responder {
    fn http01_set(&self, token: &str, key_authorization: &str) {
        if let Ok(mut m) = self.0.http01.write() {
            m.insert(token.to_string(), key_authorization.to_string());
        }
    }
    fn http01_clear(&self, token: &str) {
        if let Ok(mut m) = self.0.http01.write() {
            m.remove(token);
        }
    }
    fn tls_alpn01_set(&self, domain: &str, cert_der: Vec<u8>, key_der: Vec<u8>) {
        if let Err(e) = self.0.set_tls_alpn(domain, cert_der, key_der) {
            tracing::error!(domain, error = %e, "cannot install the TLS-ALPN-01 certificate");
        }
    }
    fn tls_alpn01_clear(&self, domain: &str) {
        if let Ok(mut m) = self.0.tls_alpn.write() {
            m.remove(domain);
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

fn run(path: PathBuf, config: Config) -> Result<()> {
    startup_checks(&config)?;
    let config = Arc::new(config);
    let admin_listener = std::net::TcpListener::bind(config.admin_listen)
        .with_context(|| format!("cannot listen on admin address {}", config.admin_listen))?;
    admin_listener.set_nonblocking(true)?;
    let admin_addr = admin_listener.local_addr()?;
    let challenges = Arc::new(tls::Challenges::default());
    let mut wanted = Vec::new();
    let resolver = if config.listen_https.is_some() {
        let (store, problems) = load_certificates(&config);
        if !problems.is_empty() {
            anyhow::bail!("certificates could not be loaded:\n  {}", problems.join("\n  "));
        }
        store.warn_notes();
        if let Some(acme) = &config.tls.acme {
            wanted = acme_wanted(&config, acme, &store);
        }
        for host in store.uncovered(&config.sites) {
            if !wanted.iter().any(|w: &gatehouse_acme::Wanted| w.hosts.contains(&host)) {
                tracing::warn!(host, "no certificate covers this host; it gets the default certificate, if any");
            }
        }
        tls::warn_expiry(&store);
        Some(Arc::new(tls::Resolver::new(store, challenges.clone())))
    } else {
        None
    };
    let server = Server::start(config.clone(), resolver.clone(), Some(challenges.clone()))?;
    let http_addr = server.http_addr();
    // Keeps watching the certificate directory while it lives.
    let _cert_watch = match &resolver {
        Some(r) => tls::watch(r.clone(), config.tls.clone(), config.sites.clone()).map_err(anyhow::Error::msg)?,
        None => None,
    };

    // The control runtime: admin API, signals, DNS refresh. Proxy workers have their own.
    let control = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("gatehouse-control")
        .enable_all()
        .build()?;
    let ready = Arc::new(AtomicBool::new(false));
    let admin = gatehouse_admin::Admin {
        state: server.watcher(),
        ready: ready.clone(),
        token: config.admin_token.as_deref().map(Arc::from),
        certs: resolver.clone(),
        header_read_timeout: config.server.header_read_timeout,
    };
    let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    control.spawn(async move {
        let listener = match tokio::net::TcpListener::from_std(admin_listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "admin listener failed");
                return;
            }
        };
        if let Err(e) = gatehouse_admin::serve(listener, admin, async move {
            let _ = admin_stopped.await;
        })
        .await
        {
            tracing::error!(error = %e, "admin API stopped");
        }
    });
    control.spawn(gatehouse_proxy::refresh_dns(server.watcher(), config.dns_refresh));
    if let Some(resolver) = resolver.clone() {
        // Expiry warnings for a long-running process, not only at start and reload.
        control.spawn(async move {
            let mut daily = tokio::time::interval(std::time::Duration::from_secs(86_400));
            daily.tick().await;
            loop {
                daily.tick().await;
                tls::warn_expiry(&resolver.store());
            }
        });
    }
    if let (Some(acme), Some(resolver)) = (config.tls.acme.clone(), resolver.clone())
        && !wanted.is_empty()
    {
        let reload_config = config.clone();
        let issued = Arc::new(move || {
            let (store, problems) = tls::Store::load(&reload_config.tls, &reload_config.sites, Some(&resolver.store()));
            for p in &problems {
                tracing::error!(problem = %p, "certificate not loaded");
            }
            resolver.replace(store);
        });
        control.spawn(gatehouse_acme::maintain(acme, wanted, Arc::new(Responder(challenges.clone())), issued));
    }

    ready.store(true, Ordering::Release);
    tracing::info!(http = %http_addr, admin = %admin_addr, workers = config.workers, "gatehouse started");
    // One stable line on stdout so scripts and tests can find the bound ports.
    match server.https_addr() {
        Some(https) => println!("gatehouse listening http={http_addr} https={https} admin={admin_addr}"),
        None => println!("gatehouse listening http={http_addr} admin={admin_addr}"),
    }

    control.block_on(signals(&server, &path, resolver.as_ref()))?;
    ready.store(false, Ordering::Release);
    tracing::info!(timeout = ?config.shutdown_timeout, "shutting down: finishing in-flight requests");
    let _ = stop_admin.send(());
    server.shutdown();
    control.shutdown_timeout(std::time::Duration::from_secs(1));
    tracing::info!("gatehouse stopped");
    Ok(())
}

/// Waits for SIGTERM/SIGINT (returns) and handles SIGHUP (reload) meanwhile. A reload runs
/// beside the signal wait, not in place of it, so SIGTERM is honoured even while a reload
/// reads files; a SIGHUP during a reload queues one more reload after it.
async fn signals(server: &Server, path: &Path, certs: Option<&Arc<tls::Resolver>>) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    type Reload<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + 'a>>;
    let start = || -> Reload<'_> { Box::pin(reload(server, path, certs)) };
    let mut running: Option<Reload<'_>> = None;
    let mut again = false;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            _ = hup.recv() => {
                if running.is_some() {
                    again = true;
                } else {
                    running = Some(start());
                }
            }
            _ = async { if let Some(r) = running.as_mut() { r.await } }, if running.is_some() => {
                running = again.then(start);
                again = false;
            }
        }
    }
}

/// parse -> validate -> build -> swap; on any error the running configuration stays. Files
/// (configuration and certificates) are read and the new state is built (DNS lookups) on a
/// blocking thread; only the swap happens here.
async fn reload(server: &Server, path: &Path, certs: Option<&Arc<tls::Resolver>>) {
    let path = path.to_path_buf();
    let resolver = certs.cloned();
    let reloader = server.reloader();
    let loaded = tokio::task::spawn_blocking(move || {
        let config = Arc::new(gatehouse_config::load(&path, &EnvOverrides::from_env())?);
        let store = resolver.map(|r| tls::Store::load(&config.tls, &config.sites, Some(&r.store())));
        let state = reloader.build(config.clone());
        Ok::<_, gatehouse_config::Errors>((config, store, state))
    })
    .await;
    match loaded {
        Ok(Ok((config, store, state))) => {
            let current = server.state();
            if config.listen_http != current.config.listen_http || config.workers != current.config.workers {
                tracing::warn!(
                    "listen, admin, log, server, shutdown_timeout, dns_refresh and workers change only on restart; sites and defaults apply now"
                );
            }
            if let (Some(resolver), Some((store, problems))) = (certs, store) {
                for p in &problems {
                    tracing::error!(problem = %p, "certificate not loaded on reload");
                }
                store.warn_notes();
                resolver.replace(store);
            }
            server.reloader().swap(state);
            tracing::info!("configuration reloaded");
        }
        Ok(Err(errors)) => {
            for e in errors.iter() {
                tracing::error!(error = %e, "reload rejected; the running configuration stays");
            }
        }
        Err(e) => tracing::error!(error = %e, "reload task failed"),
    }
}
