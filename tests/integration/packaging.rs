//! The Debian package and what systemd gives the service: the package builds, lists the
//! files it promises, installs with `dpkg -i` (its account, permissions and conffiles),
//! `systemd-analyze` accepts its units; listening sockets passed by a service manager
//! keep connection attempts waiting across a restart; `Type=notify` readiness.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::{BIN, Backend, Gatehouse, output_within, write_config};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// Runs a command (within 120 s) and returns (success, stdout + stderr); a missing tool
/// fails the test naming how to install it.
fn run(cmd: &mut Command, install: &str) -> (bool, String) {
    let what = format!("{cmd:?}");
    let out =
        output_within(cmd, Duration::from_secs(120)).unwrap_or_else(|e| panic!("{what}: {e}; install it: {install}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// Removes the package whatever happens in the test, so the machine is as it was.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = output_within(Command::new("dpkg").args(["--purge", "gatehouse"]), Duration::from_secs(120));
    }
}

#[test]
fn the_debian_package_builds_installs_and_its_units_verify() {
    assert!(rustix::process::geteuid().is_root(), "dpkg -i needs root: run the tests as root, as .ci/run does");
    // The test installs and purges the package for real: never on a machine that has it
    // (purging would delete its state), nor where systemd runs (installing starts the
    // service there). CI's machines and containers have neither.
    let (installed, _) = run(Command::new("dpkg").args(["-s", "gatehouse"]), "apt-get install dpkg");
    assert!(!installed, "a gatehouse package is installed here; this test would purge it: run it in a container");
    assert!(
        !Path::new("/run/systemd/system").exists(),
        "systemd runs here, and installing the package would start the service: run this test in a container"
    );
    let out = tempfile::tempdir().expect("dir");
    let (ok, text) = run(
        Command::new("sh")
            .arg(Path::new(ROOT).join("packaging/deb/build.sh"))
            .args(["--binary", BIN, "--compress", "none", "--out"])
            .arg(out.path()),
        "apt-get install dpkg binutils",
    );
    assert!(ok, "{text}");
    let deb = text.lines().last().expect("the package's path").trim().to_string();

    let (ok, listing) = run(Command::new("dpkg-deb").args(["-c", &deb]), "apt-get install dpkg");
    assert!(ok, "{listing}");
    for file in [
        "./usr/bin/gatehouse",
        "./etc/gatehouse/gatehouse.yaml",
        "./etc/gatehouse/sites/example.yaml",
        "./lib/systemd/system/gatehouse.service",
        "./lib/systemd/system/gatehouse.socket",
        "./usr/lib/sysusers.d/gatehouse.conf",
        "./usr/share/man/man1/gatehouse.1.gz",
        "./usr/share/bash-completion/completions/gatehouse",
        "./usr/share/zsh/vendor-completions/_gatehouse",
        "./usr/share/fish/vendor_completions.d/gatehouse.fish",
    ] {
        assert!(listing.lines().any(|l| l.ends_with(file)), "{file} missing:\n{listing}");
    }
    let (_, conffiles) = run(Command::new("dpkg-deb").args(["-I", &deb, "conffiles"]), "apt-get install dpkg");
    assert_eq!(conffiles.trim(), "/etc/gatehouse/gatehouse.yaml\n/etc/gatehouse/sites/example.yaml");

    let _installed = Installed;
    let (ok, text) = run(Command::new("dpkg").args(["-i", &deb]), "apt-get install dpkg");
    assert!(ok, "dpkg -i: {text}");
    // The service is enabled; socket activation is the administrator's choice.
    assert!(Path::new("/etc/systemd/system/multi-user.target.wants/gatehouse.service").exists());
    assert!(!Path::new("/etc/systemd/system/sockets.target.wants/gatehouse.socket").exists());
    // Under the unit, state goes to its StateDirectory, and the shell's commands
    // (`gatehouse backup`) find it there too.
    let main = std::fs::read_to_string("/etc/gatehouse/gatehouse.yaml").expect("read");
    assert!(main.contains("\nstorage:\n  path: /var/lib/gatehouse/gatehouse.db\n"), "{main}");
    let (ok, text) = run(Command::new("getent").args(["passwd", "gatehouse"]), "apt-get install libc-bin");
    assert!(ok && text.contains("/var/lib/gatehouse"), "no gatehouse account: {text}");
    // The configuration may hold secrets: the service's group reads it, others do not.
    let (_, mode) = run(Command::new("stat").args(["-c", "%a %G", "/etc/gatehouse/gatehouse.yaml"]), "coreutils");
    assert_eq!(mode.trim(), "640 gatehouse");
    // The installed binary, as the service's account, accepts the installed configuration.
    let (ok, text) = run(
        Command::new("runuser")
            .args(["-u", "gatehouse", "--", "/usr/bin/gatehouse", "check", "-c"])
            .arg("/etc/gatehouse/gatehouse.yaml"),
        "apt-get install util-linux",
    );
    assert!(ok && text.contains("configuration OK"), "{text}");

    let units = ["/lib/systemd/system/gatehouse.socket", "/lib/systemd/system/gatehouse.service"];
    let (ok, text) =
        run(Command::new("systemd-analyze").args(["verify", "--man=no"]).args(units), "apt-get install systemd");
    assert!(ok && text.trim().is_empty(), "systemd-analyze verify: {text}");
    let (ok, text) =
        run(Command::new("systemd-analyze").args(["security", "--offline=yes", units[1]]), "apt-get install systemd");
    let exposure: f64 = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for gatehouse.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    assert!(ok && exposure < 2.0, "exposure {exposure} (systemd calls below 2.0 OK, lower is safer):\n{text}");

    // An upgrade (the same package again) keeps an edited conffile.
    let edited = std::fs::read_to_string("/etc/gatehouse/gatehouse.yaml").expect("read") + "# mine\n";
    std::fs::write("/etc/gatehouse/gatehouse.yaml", &edited).expect("edit");
    let (ok, text) = run(Command::new("dpkg").args(["--force-confold", "-i", &deb]), "apt-get install dpkg");
    assert!(ok, "reinstall: {text}");
    assert_eq!(std::fs::read_to_string("/etc/gatehouse/gatehouse.yaml").expect("read"), edited);

    let (ok, text) = run(Command::new("dpkg").args(["--purge", "gatehouse"]), "apt-get install dpkg");
    assert!(ok, "purge: {text}");
    assert!(!Path::new("/usr/bin/gatehouse").exists() && !Path::new("/etc/gatehouse").exists());
    assert!(!Path::new("/etc/systemd/system/multi-user.target.wants/gatehouse.service").exists());
}

/// A service manager in a few lines of Python, as systemd does it for `gatehouse.socket`:
/// it holds the listening socket and passes it as descriptor 3 (LISTEN_PID, LISTEN_FDS) to
/// each process it starts. Commands on stdin: `restart` stops the running process and
/// reports `gap` (nothing serves then), `go` starts the next one, `stop` ends.
const MANAGER: &str = r#"
import os, signal, socket, subprocess, sys
binary, config, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(128)
if s.fileno() != 3:
    os.dup2(s.fileno(), 3)
def activated():
    os.environ["LISTEN_PID"] = str(os.getpid())
    os.environ["LISTEN_FDS"] = "1"
def start():
    p = subprocess.Popen([binary, "run", "--config", config], pass_fds=(3,), preexec_fn=activated,
                         stdout=subprocess.PIPE, stderr=open(config + ".log", "a"), text=True)
    print(p.stdout.readline().strip(), flush=True)
    return p
p = start()
for line in sys.stdin:
    if line.strip() == "restart":
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)
        print("gap", flush=True)
    elif line.strip() == "go":
        p = start()
    elif line.strip() == "stop":
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)
        break
# The test ended (or failed): no process outlives it.
if p.poll() is None:
    p.kill()
"#;

#[tokio::test]
async fn passed_listening_sockets_keep_connection_attempts_waiting_across_a_restart() {
    let backend = Backend::start("app").await;
    let dir = tempfile::tempdir().expect("dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    write_config(
        dir.path(),
        &format!("listen: {{http: 127.0.0.1:{port}}}\n"),
        &[("app", &format!("host: \"*\"\nbackend: {}\n", backend.url()))],
    );
    let config = dir.path().join("gatehouse.yaml");
    let mut manager = Command::new("python3")
        .args(["-c", MANAGER, BIN])
        .arg(&config)
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 (apt-get install python3)");
    let mut commands = manager.stdin.take().expect("stdin");
    let (tx, lines) = std::sync::mpsc::channel();
    let stdout = manager.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let log = || std::fs::read_to_string(dir.path().join("gatehouse.yaml.log")).unwrap_or_default();
    let next = |what: &str| {
        lines.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| panic!("no {what} line; log:\n{}", log()))
    };
    let first = next("startup");
    assert!(first.contains(&format!("http=127.0.0.1:{port}")), "{first}\n{}", log());
    // Binding the port itself would have failed: the manager holds it (without
    // SO_REUSEPORT). So this process listens on the socket it was given.
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    assert_eq!(crate::harness::get(addr, "a.test", "/before").await.status, 200);

    // No process serves now; a client connects all the same and sends its request.
    writeln!(commands, "restart").expect("restart");
    assert_eq!(next("gap"), "gap");
    let mut client = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .expect("a connection attempt during the restart is not refused");
    client.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    client.write_all(b"GET /during HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n").expect("request");

    // The next process takes the same socket and answers it.
    writeln!(commands, "go").expect("go");
    let second = next("second startup");
    assert!(second.contains(&format!("http=127.0.0.1:{port}")), "{second}\n{}", log());
    // Read off the runtime: the backend answers on this test's runtime.
    let answer = tokio::task::spawn_blocking(move || {
        let mut answer = String::new();
        client.read_to_string(&mut answer).map(|_| answer)
    })
    .await
    .expect("reader")
    .expect("the answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}\n{}", log());
    assert!(answer.contains("/during"), "{answer}");

    writeln!(commands, "stop").expect("stop");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while manager.try_wait().expect("wait").is_none() {
        assert!(std::time::Instant::now() < deadline, "the manager did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn readiness_and_stopping_are_reported_to_systemd() {
    let dir = tempfile::tempdir().expect("dir");
    write_config(dir.path(), "", &[]);
    let socket_path = dir.path().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&socket_path).expect("bind");
    notify.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "--config"]).arg(dir.path().join("gatehouse.yaml")).env("NOTIFY_SOCKET", &socket_path);
    let mut gh = Gatehouse::spawn(tempfile::tempdir().expect("log dir"), cmd)
        .unwrap_or_else(|f| panic!("did not start:\n{}", f.log));
    let mut buf = [0u8; 256];
    let n = notify.recv(&mut buf).expect("READY=1 within 20 s");
    assert_eq!(&buf[..n], b"READY=1");
    gh.signal("TERM");
    let n = notify.recv(&mut buf).expect("STOPPING=1 within 20 s");
    assert_eq!(&buf[..n], b"STOPPING=1");
    assert_eq!(gh.wait_exit(Duration::from_secs(20)), Some(0), "{}", gh.log());
}
