//! `gatehouse check --diff [FILE]`: what the configuration would change, before a reload.
//! Against FILE (another configuration, loaded here), or, without it, against the running
//! instance, asked through its admin API (`GET /api/config/diff`, which reads its own
//! files as a reload would, and applies nothing).

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use gatehouse_config::{Config, EnvOverrides};

pub fn run(config: &Config, against: Option<&Path>) -> ExitCode {
    let lines = match against {
        Some(other) => match gatehouse_config::load(other, &EnvOverrides::from_env()) {
            Ok(old) => gatehouse_admin::diff::render(&gatehouse_admin::diff::diff(&old, config)),
            Err(errors) => {
                eprintln!("{errors}");
                eprintln!("{}: cannot compare with a configuration that does not load", other.display());
                return ExitCode::FAILURE;
            }
        },
        None => match ask_running(config) {
            Ok(lines) => lines,
            Err(e) => {
                eprintln!("gatehouse: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    if lines.is_empty() {
        println!("no changes");
    }
    for l in lines {
        println!("{l}");
    }
    ExitCode::SUCCESS
}

/// The running instance's answer to `GET /api/config/diff`, as lines.
fn ask_running(config: &Config) -> Result<Vec<String>, String> {
    let addr = config.admin_listen.ok_or(
        "admin.listen is off, so a running instance cannot be asked; give a FILE to compare with (`check --diff OTHER.yaml`)",
    )?;
    let target = if addr.ip().is_unspecified() {
        std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    };
    let mut s = std::net::TcpStream::connect_timeout(&target, Duration::from_secs(5))
        .map_err(|e| format!("no Gatehouse answers on its admin listener {target} ({e}); is it running?"))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let auth = config.admin_token.as_ref().map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let request = format!("GET /api/config/diff HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n");
    s.write_all(request.as_bytes()).map_err(|e| format!("admin API {target}: {e}"))?;
    let mut answer = Vec::new();
    s.take(16 << 20).read_to_end(&mut answer).map_err(|e| format!("admin API {target}: {e}"))?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("the admin API's answer has no body")?;
    let status = head.split_whitespace().nth(1).unwrap_or("");
    let json: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("the admin API's answer is not JSON: {e}"))?;
    match status {
        "200" => Ok(json["lines"]
            .as_array()
            .map(|a| a.iter().filter_map(|l| l.as_str().map(str::to_string)).collect())
            .unwrap_or_default()),
        "422" => {
            let errors: Vec<String> = json["errors"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| {
                    format!(
                        "{}:{} {}: {}",
                        e["file"].as_str().unwrap_or("?"),
                        e["line"],
                        e["field"].as_str().unwrap_or(""),
                        e["message"].as_str().unwrap_or("")
                    )
                })
                .collect();
            Err(format!("the running instance would refuse its files now:\n{}", errors.join("\n")))
        }
        "401" => Err("the admin API wants a token: set admin.token in this configuration".into()),
        other => Err(format!("the admin API answered {other}: {body}")),
    }
}
