//! NATS: the server speaks first, with an `INFO {json}` line. The backend's INFO goes to
//! the client rewritten to say `tls_required: true` (and the client's real address in
//! `client_ip`), so the client starts TLS right after it, as it does with a NATS server
//! that requires TLS; Gatehouse terminates that TLS and the session goes on to the backend,
//! which already sent its INFO. A client that goes on without TLS gets the server's own
//! error line and is closed.
//!
//! With `backend_tls` the backend's INFO must offer TLS; Gatehouse then starts TLS to it.
//! (The `handshake_first` mode of recent clients, TLS before INFO, is not supported.)

use bytes::BytesMut;
use tokio::io::AsyncReadExt;

use super::conn::Session;
use super::io::{BoxIo, Prefixed, line};
use super::pipe::write_all;
use super::stats::Outcome;

/// An INFO line is a few hundred bytes; cluster URLs can make it longer.
const MAX_INFO: usize = 64 * 1024;

/// The INFO line for the client: `tls_required` set, the client's address filled in.
/// `None` when the line is not an INFO with a JSON object.
fn rewrite(info: &[u8], client: std::net::IpAddr) -> Option<(Vec<u8>, bool)> {
    let text = std::str::from_utf8(info).ok()?;
    let json = text.strip_prefix("INFO")?.trim();
    let mut fields: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json).ok()?;
    let backend_tls = fields.get("tls_required").and_then(serde_json::Value::as_bool).unwrap_or(false)
        || fields.get("tls_available").and_then(serde_json::Value::as_bool).unwrap_or(false);
    fields.insert("tls_required".into(), true.into());
    fields.remove("tls_available");
    fields.insert("client_ip".into(), client.to_string().into());
    // Cluster members' own addresses would let the client reconnect around Gatehouse.
    fields.remove("connect_urls");
    fields.remove("ws_connect_urls");
    let out = format!("INFO {}\r\n", serde_json::Value::Object(fields));
    Some((out.into_bytes(), backend_tls))
}

pub(super) async fn run(s: &mut Session<'_>, client: BoxIo) -> Outcome {
    session(s, client).await.unwrap_or_else(|o| o)
}

async fn session(s: &mut Session<'_>, mut client: BoxIo) -> Result<Outcome, Outcome> {
    let live = s.live;
    let target = live.default.as_ref().ok_or(Outcome::NoRoute)?;
    let unreachable = b"-ERR 'Gatehouse could not reach the server'\r\n";
    let (mut backend, _active) = s.dial_or_tell(target, &mut client, unreachable).await?;
    let mut from_backend = BytesMut::with_capacity(1024);
    let info = s.backend_step("the backend's INFO", line(&mut backend, &mut from_backend, MAX_INFO)).await?;
    let Some((info, backend_offers_tls)) = rewrite(&info, s.client.ip()) else {
        s.detail = "the backend's first line was not an INFO".into();
        return Err(Outcome::Backend);
    };
    if target.tls.is_some() && !backend_offers_tls {
        s.detail = "backend_tls is set but the backend's INFO offers no TLS".into();
        return Err(Outcome::Backend);
    }
    // The client's next byte must start a TLS handshake.
    let mut first = [0u8; 1];
    s.client_step("the client's TLS handshake", async {
        write_all(&mut client, &info).await?;
        client.read_exact(&mut first).await
    })
    .await?;
    if first[0] != 0x16 {
        let _ = write_all(&mut client, b"-ERR 'Secure Connection - TLS Required'\r\n").await;
        s.detail = "the client went on without TLS".into();
        return Err(Outcome::TlsRequired);
    }
    let client = s.handshake(Box::new(Prefixed::new(bytes::Bytes::copy_from_slice(&first), client))).await?;
    let backend: BoxIo = if target.tls.is_some() {
        s.backend_tls(target, backend).await?
    } else {
        Box::new(Prefixed::new(from_backend.freeze(), backend))
    };
    Ok(s.pipe(client, backend).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_is_rewritten_to_require_tls() {
        let info = br#"INFO {"server_id":"x","port":4222,"tls_available":true,"client_ip":"127.0.0.1","connect_urls":["10.0.0.2:4222"]} "#;
        let (out, offers) = rewrite(info, "203.0.113.5".parse().expect("ip")).expect("an INFO");
        let text = String::from_utf8(out).expect("text");
        assert!(offers);
        assert!(text.starts_with("INFO {") && text.ends_with("}\r\n"), "{text}");
        assert!(text.contains(r#""tls_required":true"#) && !text.contains("tls_available"), "{text}");
        assert!(text.contains(r#""client_ip":"203.0.113.5""#) && !text.contains("connect_urls"), "{text}");
        assert!(rewrite(b"-ERR 'nope'", "127.0.0.1".parse().expect("ip")).is_none());
        assert!(rewrite(b"INFO [1,2]", "127.0.0.1".parse().expect("ip")).is_none());
    }
}
