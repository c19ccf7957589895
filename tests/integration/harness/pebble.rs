//! ACME for tests: Debian's pebble and pebble-challtestsrv on leased ports.

use super::*;

/// A loopback port this test process has to itself until the lease is dropped, for
/// servers that must know each other's ports before they start (pebble and the gatehouse
/// whose listeners it validates). Leased ports lie below the ephemeral range, so no
/// `bind(…:0)` and no outgoing connection of another test can be given one, and each lease
/// holds an exclusive lock (`$TMPDIR/gatehouse-test-ports/PORT.lock`) that every other
/// test process honours, so two tests never lease the same port. Only a process outside
/// the test suite could still take one: starters retry the whole start then.
pub struct PortLease {
    pub port: u16,
    _lock: std::fs::File,
}

/// Ports that services on developer machines commonly hold; never leased.
const RESERVED_PORTS: [u16; 6] = [5432, 3306, 6379, 5672, 1883, 4222];

/// `N` distinct leased ports, each free on 127.0.0.1 for TCP and UDP when leased.
pub fn lease_ports<const N: usize>() -> [PortLease; N] {
    let dir = std::env::temp_dir().join("gatehouse-test-ports");
    std::fs::create_dir_all(&dir).expect("port lock directory");
    let mut seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
            ^ (u64::from(std::process::id()) << 32)
            | 1;
    let mut leases: Vec<PortLease> = Vec::new();
    for _ in 0..2000 {
        if leases.len() == N {
            break;
        }
        // xorshift64: no dependency needed for picking a port.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let port = 20_000 + (seed % 12_000) as u16;
        if RESERVED_PORTS.contains(&port) || leases.iter().any(|l| l.port == port) {
            continue;
        }
        let Ok(lock) =
            std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(dir.join(format!("{port}.lock")))
        else {
            continue;
        };
        if lock.try_lock().is_err() {
            continue;
        }
        let free = std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok();
        if free {
            leases.push(PortLease { port, _lock: lock });
        }
    }
    leases.try_into().unwrap_or_else(|l: Vec<PortLease>| panic!("only {} of {N} ports could be leased", l.len()))
}
/// Pebble (ACME server) with pebble-challtestsrv as its DNS: every name resolves to
/// 127.0.0.1 and TXT records can be set through `mgmt`.
pub struct Pebble {
    children: Vec<Child>,
    pub directory: String,
    /// The CA of pebble's own HTTPS listener, for `tls.acme.ca_root`.
    pub ca_pem: String,
    pub challtest_mgmt: u16,
    pub dir: tempfile::TempDir,
}

/// Lifetime of the certificates the test pebble issues: 45 days, so a `renew_before`
/// within the 365-day limit of durations can force a renewal, and fresh certificates are
/// not within the 30-day expiry warning.
pub const PEBBLE_CERT_DAYS: u64 = 45;

impl Pebble {
    /// `http_port` / `tls_port`: where pebble's validator connects (gatehouse's listeners,
    /// or a refusing port to rule a challenge type out). Pebble's own four ports are
    /// leased here (see [`PortLease`]); if one was taken anyway by a process outside the
    /// test suite, both servers start again on new ports.
    pub fn start(http_port: u16, tls_port: u16) -> Pebble {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let leases = lease_ports::<4>();
            let ports = leases.each_ref().map(|l| l.port);
            // Released just before pebble binds them: pebble's sockets hold them from then on.
            drop(leases);
            match Pebble::try_start(http_port, tls_port, ports) {
                Ok(p) => return p,
                Err(p) if attempt < 3 && p.log().contains("address already in use") => drop(p),
                Err(p) => panic!("pebble did not start: {}", p.log()),
            }
        }
    }

    fn try_start(http_port: u16, tls_port: u16, [acme, mgmt, dns, ct_mgmt]: [u16; 4]) -> Result<Pebble, Pebble> {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = TestCa::new();
        let cert = ca.issue(&["localhost", "127.0.0.1"]);
        std::fs::write(dir.path().join("cert.pem"), &cert.cert_pem).expect("write");
        std::fs::write(dir.path().join("key.pem"), &cert.key_pem).expect("write");
        let config = json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{acme}"),
            "managementListenAddress": format!("127.0.0.1:{mgmt}"),
            "certificate": dir.path().join("cert.pem"),
            "privateKey": dir.path().join("key.pem"),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
            "certificateValidityPeriod": PEBBLE_CERT_DAYS * 86_400
        }});
        std::fs::write(dir.path().join("pebble.json"), config.to_string()).expect("write");
        let log = |name: &str| std::fs::File::create(dir.path().join(name)).expect("log");
        let challtest = Command::new("pebble-challtestsrv")
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", "", "-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-dns01", &format!("127.0.0.1:{dns}"), "-management", &format!("127.0.0.1:{ct_mgmt}")])
            .stdout(log("challtestsrv.log"))
            .stderr(log("challtestsrv.err"))
            .spawn()
            .expect("pebble-challtestsrv (apt-get install pebble)");
        let pebble = Command::new("pebble")
            .args(["-config"])
            .arg(dir.path().join("pebble.json"))
            .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(log("pebble.log"))
            .stderr(log("pebble.err"))
            .spawn()
            .expect("pebble (apt-get install pebble)");
        let mut p = Pebble {
            children: vec![challtest, pebble],
            directory: format!("https://127.0.0.1:{acme}/dir"),
            ca_pem: ca.pem(),
            challtest_mgmt: ct_mgmt,
            dir,
        };
        // Ready when each of its servers answers as itself: the ACME directory over TLS
        // with pebble's certificate, challtestsrv's DNS with a DNS answer, and the two
        // management ports (pebble's too: a lost bind there makes pebble exit while its
        // ACME port may already have answered once).
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        let probe =
            |port: u16| TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), NET_TIMEOUT).is_ok();
        let ready = wait_until_blocking(Duration::from_secs(15), || {
            p.exited() || (probe(mgmt) && probe(ct_mgmt) && dns_answers(dns) && directory_answers(acme, &ca).is_ok())
        });
        if !ready || p.exited() || std::time::Instant::now() > deadline {
            p.stop();
            return Err(p);
        }
        Ok(p)
    }

    /// Pebble or challtestsrv has exited.
    fn exited(&mut self) -> bool {
        self.children.iter_mut().any(|c| matches!(c.try_wait(), Ok(Some(_))))
    }

    pub fn log(&self) -> String {
        ["pebble.log", "pebble.err", "challtestsrv.log", "challtestsrv.err"]
            .iter()
            .map(|f| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn stop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop();
    }
}

/// challtestsrv's DNS server answers a query for an A record on `port` (UDP).
fn dns_answers(port: u16) -> bool {
    let Ok(sock) = std::net::UdpSocket::bind("127.0.0.1:0") else { return false };
    let _ = sock.set_read_timeout(Some(Duration::from_millis(300)));
    // Header: id 0x4748, recursion desired, one question; then "probe.test." A IN.
    let mut q = vec![0x47, 0x48, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ["probe", "test"] {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    if sock.send_to(&q, ("127.0.0.1", port)).is_err() {
        return false;
    }
    let mut buf = [0u8; 512];
    matches!(sock.recv(&mut buf), Ok(n) if n >= 12 && buf[..2] == [0x47, 0x48] && buf[2] & 0x80 != 0)
}

/// Fetches pebble's ACME directory over TLS (trusting only `ca`) and checks it is one.
fn directory_answers(port: u16, ca: &TestCa) -> Result<(), String> {
    let roots = ca.roots();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name.to_owned()).map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), NET_TIMEOUT)
        .map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(format!("GET /dir HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    if text.starts_with("HTTP/1.1 200") && text.contains("newAccount") { Ok(()) } else { Err(text.into_owned()) }
}
