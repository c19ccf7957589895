//! Authentication through the real binary: basic users with hashes from
//! `gatehouse hash-password`, hashed API keys, the JWT matrix (valid, expired, not yet
//! valid, wrong algorithm, wrong key, wrong issuer or audience, claims forwarded), headers
//! a client cannot forge, and failed logins that ban.

use std::process::Stdio;

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::json;

use crate::harness::*;

/// `gatehouse hash-password`, the way an administrator makes a hash.
pub(crate) fn hash_password(secret: &str, api_key: bool) -> String {
    use std::io::Write;
    let mut cmd = std::process::Command::new(BIN);
    cmd.arg("hash-password");
    if api_key {
        cmd.arg("--api-key");
    }
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    child.stdin.take().expect("stdin").write_all(format!("{secret}\n").as_bytes()).expect("write");
    let out = child.wait_with_output().expect("hash-password");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8").trim().to_string()
}

fn basic(user: &str, password: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = format!("{user}:{password}").into_bytes();
    let mut out = String::from("Basic ");
    for c in b.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_users_and_api_keys_pass_and_forged_identity_headers_are_dropped() {
    let b = Backend::start("b").await;
    let alice = hash_password("correct horse", false);
    assert!(alice.starts_with("$argon2id$"), "{alice}");
    let key = hash_password("k-123456", true);
    assert!(key.starts_with("sha256:") && key.len() == 71, "{key}");
    let site = format!(
        "host: vault.test\nroutes:\n  - path: /\n    backend: {}\n    options:\n      auth:\n        realm: Vault\n        basic:\n          users: {{alice: '{alice}'}}\n        api_key:\n          keys: {{ci: '{key}'}}\n",
        b.url()
    );
    let gh = Gatehouse::start("", &[("vault", &site)]);
    let r = get_with(gh.http, "vault.test", "/", &[("x-auth-user", "admin")]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"Vault\", charset=\"UTF-8\""));
    assert_eq!(b.count(), 0);
    for _ in 0..2 {
        // The second time from the cache of verified credentials.
        let r = get_with(
            gh.http,
            "vault.test",
            "/",
            &[("authorization", &basic("alice", "correct horse")), ("x-auth-user", "admin"), ("x_auth_user", "admin")],
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["headers"]["x-auth-user"], "alice", "the proxy's word, not the client's");
        assert!(r.json()["headers"].get("x_auth_user").is_none(), "an underscore spelling is dropped too");
    }
    let r = get_with(gh.http, "vault.test", "/", &[("authorization", &basic("alice", "wrong"))]).await;
    assert_eq!(r.status, 401);
    // Two credentials: which would the backend read? Refused, even when one is right.
    let r = get_with(
        gh.http,
        "vault.test",
        "/",
        &[("authorization", &basic("alice", "correct horse")), ("authorization", &basic("mallory", "x"))],
    )
    .await;
    assert_eq!(r.status, 401);
    let r = get_with(gh.http, "vault.test", "/", &[("x-api-key", "k-123456")]).await;
    assert_eq!((r.status.as_u16(), r.json()["headers"]["x-auth-user"].as_str()), (200, Some("ci")));
    assert_eq!(get_with(gh.http, "vault.test", "/", &[("x-api-key", "k-1234567")]).await.status, 401);
    let metrics = metrics_with(
        gh.admin,
        &[
            "kind=\"auth_failed\",rule=\"basic\"} 1",
            "kind=\"auth_failed\",rule=\"repeated\"} 1",
            "kind=\"auth_failed\",rule=\"api_key\"} 1",
        ],
    )
    .await;
    assert!(metrics.contains("kind=\"auth_failed\",rule=\"basic\"} 1"), "{metrics}");
    assert!(metrics.contains("kind=\"auth_failed\",rule=\"repeated\"} 1"), "{metrics}");
    assert!(metrics.contains("kind=\"auth_failed\",rule=\"api_key\"} 1"), "{metrics}");
    // The configuration holds hashes, never passwords; the log never holds either.
    assert!(!gh.log().contains("correct horse") && !gh.log().contains("k-123456"), "{}", gh.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jwt_matrix() {
    let b = Backend::start("b").await;
    let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("ec key");
    let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("ed key");
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("other key");
    let secret = "0123456789abcdef0123456789abcdef-hs";
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("ec.pem"), ec.public_key_pem()).expect("write");
    let indent = |pem: String| pem.lines().map(|l| format!("                {l}")).collect::<Vec<_>>().join("\n");
    let site = format!(
        "host: api.test\nroutes:\n  - path: /\n    backend: {}\n    options:\n      auth:\n        jwt:\n          issuer: https://idp.test\n          audience: shop\n          leeway: 5s\n          claims: {{email: X-Email, roles: X-Roles}}\n          keys:\n            - {{alg: ES256, kid: ec1, file: {}}}\n            - {{alg: HS256, kid: hs1, secret: '{secret}'}}\n            - alg: EdDSA\n              kid: ed1\n              pem: |\n{}\n",
        b.url(),
        dir.path().join("ec.pem").display(),
        indent(ed.public_key_pem()),
    );
    let gh = Gatehouse::start("", &[("api", &site)]);
    let claims = |exp: i64, extra: serde_json::Value| {
        let mut c = json!({"sub": "u-42", "iss": "https://idp.test", "aud": "shop", "exp": now() as i64 + exp, "email": "a@example.com", "roles": ["admin", "dev"]});
        if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        c
    };
    let token = |alg: Algorithm, kid: &str, key: &EncodingKey, c: &serde_json::Value| {
        let mut h = Header::new(alg);
        h.kid = Some(kid.to_string());
        encode(&h, c, key).expect("sign")
    };
    let ec_key = EncodingKey::from_ec_pem(ec.serialize_pem().as_bytes()).expect("ec");
    let ed_key = EncodingKey::from_ed_pem(ed.serialize_pem().as_bytes()).expect("ed");
    let hs_key = EncodingKey::from_secret(secret.as_bytes()).expect("hs");
    let other_key = EncodingKey::from_ec_pem(other.serialize_pem().as_bytes()).expect("other");
    let call = |t: String| async move {
        get_with(gh.http, "api.test", "/", &[("authorization", &format!("Bearer {t}")), ("x-email", "forged@x")]).await
    };

    let good = call(token(Algorithm::ES256, "ec1", &ec_key, &claims(60, json!({})))).await;
    assert_eq!(good.status, 200, "{}", good.text());
    let h = &good.json()["headers"];
    assert_eq!(
        (h["x-auth-user"].as_str(), h["x-email"].as_str(), h["x-roles"].as_str()),
        (Some("u-42"), Some("a@example.com"), Some("admin,dev"))
    );
    assert_eq!(call(token(Algorithm::EdDSA, "ed1", &ed_key, &claims(60, json!({})))).await.status, 200, "EdDSA");
    assert_eq!(call(token(Algorithm::HS256, "hs1", &hs_key, &claims(60, json!({})))).await.status, 200, "HS256");
    for (what, t) in [
        ("expired", token(Algorithm::ES256, "ec1", &ec_key, &claims(-60, json!({})))),
        ("not yet valid", token(Algorithm::ES256, "ec1", &ec_key, &claims(600, json!({"nbf": now() + 300})))),
        ("wrong key", token(Algorithm::ES256, "ec1", &other_key, &claims(60, json!({})))),
        ("key of another algorithm", token(Algorithm::HS256, "ec1", &hs_key, &claims(60, json!({})))),
        ("wrong issuer", token(Algorithm::ES256, "ec1", &ec_key, &claims(60, json!({"iss": "https://evil.test"})))),
        ("wrong audience", token(Algorithm::ES256, "ec1", &ec_key, &claims(60, json!({"aud": "blog"})))),
        (
            "no expiry",
            token(Algorithm::HS256, "hs1", &hs_key, &json!({"sub": "x", "iss": "https://idp.test", "aud": "shop"})),
        ),
        ("garbage", "not.a.token".to_string()),
    ] {
        let r = call(t).await;
        assert_eq!(r.status, 401, "{what}");
        assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"gatehouse\", error=\"invalid_token\""), "{what}");
    }
    // Within the leeway, an expired token still passes.
    assert_eq!(call(token(Algorithm::ES256, "ec1", &ec_key, &claims(-2, json!({})))).await.status, 200, "leeway");
    assert_eq!(b.count(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_ban_at_the_proxy_and_from_the_applications_own_answers() {
    let b = Backend::start("b").await;
    let alice = hash_password("pw", false);
    let site = format!(
        "host: vault.test\nroutes:\n  - path: /admin\n    backend: {0}\n    options:\n      auth:\n        basic: {{users: {{alice: '{alice}'}}}}\n        ban_after: 3\n        ban_for: 1h\n  - path: /\n    backend: {0}\n",
        b.url()
    );
    let gh = Gatehouse::start("", &[("vault", &site)]);
    let wrong = basic("alice", "guess");
    assert_eq!(get(gh.http, "vault.test", "/admin").await.status, 401, "no credentials: not a failed login");
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(get_with(gh.http, "vault.test", "/admin", &[("authorization", &wrong)]).await.status.as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 403], "the third failure bans");
    let bans = get(gh.admin, "localhost", "/api/bans").await.json();
    assert!(bans["bans"][0]["reason"].as_str().is_some_and(|r| r.contains("3 failed logins")), "{bans}");
    assert_eq!(get(gh.http, "vault.test", "/").await.status, 403, "everywhere");
}

/// The application's own 401s on its login path count too (`failed_logins`), and only
/// those: other statuses and paths do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_applications_refusals_on_its_login_path_ban() {
    let b = Backend::start("b").await;
    let site = format!(
        "host: app.test\nroutes:\n  - path: /\n    backend: {}\n    options:\n      failed_logins: {{paths: [/status/401], ban_after: 2, ban_for: 10m}}\n",
        b.url()
    );
    let gh = Gatehouse::start("", &[("app", &site)]);
    assert_eq!(get(gh.http, "app.test", "/status/403").await.status, 403, "not a login path");
    assert_eq!(get(gh.http, "app.test", "/status/200").await.status, 200);
    assert_eq!(get(gh.http, "app.test", "/status/401").await.status, 401);
    assert_eq!(get(gh.http, "app.test", "/").await.status, 200, "one failure is not a ban");
    // The path as routed: `/status/./401` is `/status/401`.
    assert_eq!(get(gh.http, "app.test", "/status/./401").await.status, 401);
    let r = get(gh.http, "app.test", "/").await;
    assert_eq!(r.status, 403, "the second failure banned: {}", r.text());
    let bans = get(gh.admin, "localhost", "/api/bans").await.json();
    assert!(bans["bans"][0]["reason"].as_str().is_some_and(|r| r.contains("2 failed logins on app#0")), "{bans}");
}

fn b64url(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..=c.len() {
            out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// A P-256 key's JWK (its raw public key is the uncompressed point 04 || x || y).
fn ec_jwk(key: &rcgen::KeyPair, kid: &str) -> serde_json::Value {
    let raw = key.public_key_raw();
    json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "x": b64url(&raw[1..33]), "y": b64url(&raw[33..65])})
}

/// Keys come from the JWKS URL, and a rotation there (new key in, old key out) is
/// followed without a reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_keys_are_fetched_and_rotation_is_followed() {
    use std::sync::{Arc, Mutex};
    let b = Backend::start("b").await;
    let (a, new) = (
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key a"),
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key b"),
    );
    let served = Arc::new(Mutex::new(json!({"keys": [ec_jwk(&a, "a")]}).to_string()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let jwks_addr = listener.local_addr().expect("addr");
    let body = served.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| {
                    let text = body.lock().expect("lock").clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                            bytes::Bytes::from(text),
                        )))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    let site = format!(
        "host: api.test\nroutes:\n  - path: /\n    backend: {}\n    options:\n      auth:\n        jwt: {{jwks_url: 'http://{jwks_addr}/jwks', jwks_refresh: 1s}}\n",
        b.url()
    );
    let gh = Gatehouse::start("", &[("api", &site)]);
    let token = |key: &rcgen::KeyPair, kid: &str| {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(kid.to_string());
        let k = EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).expect("key");
        encode(&h, &json!({"sub": "u", "exp": now() + 600}), &k).expect("sign")
    };
    let (ta, tb) = (token(&a, "a"), token(&new, "b"));
    let status = |t: String| async move {
        get_with(gh.http, "api.test", "/", &[("authorization", &format!("Bearer {t}"))]).await.status.as_u16()
    };
    assert!(
        wait_until_async(NET_TIMEOUT, || {
            let t = ta.clone();
            async move { status(t).await == 200 }
        })
        .await,
        "key a never fetched: {}",
        gh.log()
    );
    assert_eq!(status(tb.clone()).await, 401, "key b is not in the set yet");
    *served.lock().expect("lock") = json!({"keys": [ec_jwk(&new, "b")]}).to_string();
    assert!(
        wait_until_async(NET_TIMEOUT, || {
            let t = tb.clone();
            async move { status(t).await == 200 }
        })
        .await,
        "rotation not followed: {}",
        gh.log()
    );
    assert_eq!(status(ta).await, 401, "key a left the set");
}

/// A forward-auth service (as Authelia is used): it sees where the request was going and
/// the client's cookie; its 2xx lets the request through with `Remote-User`, its redirect
/// goes to the client, and a service that is down is a 502, never a pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_auth_asks_the_service_and_passes_its_answer_on() {
    let b = Backend::start("b").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let auth_addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    let h = req.headers();
                    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                    let mut r = http::Response::new(http_body_util::Full::new(bytes::Bytes::from("go to login\n")));
                    if get("cookie").contains("session=good")
                        && get("x-forwarded-method") == "POST"
                        && get("x-forwarded-uri") == "/app/save?x=1"
                    {
                        r.headers_mut().insert("remote-user", "alice".parse().expect("v"));
                        r.headers_mut().insert("remote-groups", "admins,dev".parse().expect("v"));
                    } else {
                        *r.status_mut() = http::StatusCode::FOUND;
                        let to = format!("https://auth.test/?rd={}", get("x-original-url"));
                        r.headers_mut().insert("location", to.parse().expect("v"));
                        r.headers_mut().insert("set-cookie", "flow=1; Path=/".parse().expect("v"));
                    }
                    Ok::<_, std::convert::Infallible>(r)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    let site = format!(
        "host: app.test\nroutes:\n  - path: /app\n    backend: {0}\n    options:\n      auth:\n        forward:\n          url: http://{auth_addr}/api/authz/forward-auth\n          copy_headers: [Remote-User, Remote-Groups]\n  - path: /down\n    backend: {0}\n    options:\n      auth:\n        forward: {{url: 'http://127.0.0.1:9/verify', timeout: 2s}}\n",
        b.url()
    );
    let gh = Gatehouse::start("", &[("app", &site)]);
    let post = |cookie: &'static str| {
        http::Request::post("/app/save?x=1")
            .header("host", "app.test")
            .header("cookie", cookie)
            .header("remote-user", "mallory")
            .body(http_body_util::Full::new(bytes::Bytes::from("data")))
            .expect("request")
    };
    let r = send(gh.http, post("session=good")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = r.json();
    assert_eq!(
        (seen["headers"]["remote-user"].as_str(), seen["headers"]["remote-groups"].as_str()),
        (Some("alice"), Some("admins,dev"))
    );
    assert_eq!(seen["body_len"], 4, "the body goes on untouched");
    // The service judges the path as routed, which is what the backend gets.
    let dotted = http::Request::post("/app/./save?x=1")
        .header("host", "app.test")
        .header("cookie", "session=good")
        .body(http_body_util::Full::new(bytes::Bytes::from("data")))
        .expect("request");
    assert_eq!(send(gh.http, dotted).await.status, 200, "normalised for the service");
    let r = send(gh.http, post("session=none")).await;
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some("https://auth.test/?rd=http://app.test/app/save?x=1"));
    assert_eq!(r.header("set-cookie"), Some("flow=1; Path=/"));
    assert_eq!(b.count(), 2, "only the authenticated requests reached the backend");
    let r = get(gh.http, "app.test", "/down/x").await;
    assert_eq!(r.status, 502, "{}", r.text());
}

/// `rate_limit.key: {user: true}`: each authenticated user (here a JWT's subject) has its
/// own quota, counted after `auth`, whatever address they come from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_by_user_count_each_jwt_subject_apart() {
    let b = Backend::start("b").await;
    let secret = "0123456789abcdef0123456789abcdef-hs";
    let site = format!(
        "host: api.test\nroutes:\n  - path: /\n    backend: {}\n    options:\n      auth:\n        jwt:\n          keys: [{{alg: HS256, secret: '{secret}'}}]\n      rate_limit: {{per_ip: 2/min, key: {{user: true}}}}\n",
        b.url()
    );
    let gh = Gatehouse::start("", &[("api", &site)]);
    let key = EncodingKey::from_secret(secret.as_bytes()).expect("key");
    let token = |sub: &str| {
        encode(&Header::new(Algorithm::HS256), &json!({"sub": sub, "exp": now() + 600}), &key).expect("sign")
    };
    let (alice, bob) = (token("alice"), token("bob"));
    let call = |t: String| async move {
        get_with(gh.http, "api.test", "/", &[("authorization", &format!("Bearer {t}")), ("x-auth-user", "bob")])
            .await
            .status
            .as_u16()
    };
    assert_eq!([call(alice.clone()).await, call(alice.clone()).await, call(alice.clone()).await], [200, 200, 429]);
    assert_eq!(call(bob.clone()).await, 200, "bob has his own quota (a forged x-auth-user changes nothing)");
    assert_eq!(get(gh.http, "api.test", "/").await.status, 401, "no token: auth answers first");
}
