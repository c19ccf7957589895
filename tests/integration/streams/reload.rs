//! Streams change through the one reload path: a new stream starts, a changed one takes
//! its new backends for new connections, a removed one stops accepting while its open
//! connections go on, and an address that cannot be bound refuses the whole reload.

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use super::read_until;
use crate::harness::{Gatehouse, NET_TIMEOUT, admin_reload, lease_ports, wait_until_async, within, write_config};

/// A backend that says its name on each connection, then echoes.
async fn named(name: &'static str) -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let _ = s.write_all(format!("{name}\n").as_bytes()).await;
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

fn streams(list: &[(&str, u16, std::net::SocketAddr)]) -> String {
    let mut out = "streams:\n".to_string();
    for (name, port, backend) in list {
        out.push_str(&format!("  - {{name: {name}, listen: 127.0.0.1:{port}, backends: [{backend}]}}\n"));
    }
    out
}

async fn greeting(port: u16) -> Option<(TcpStream, String)> {
    let mut s = tokio::time::timeout(NET_TIMEOUT, TcpStream::connect(("127.0.0.1", port))).await.ok()?.ok()?;
    let hello = read_until(&mut s, "\n").await;
    Some((s, hello))
}

#[tokio::test]
async fn streams_are_added_changed_and_removed_by_a_reload() {
    let (one, two) = (named("one").await, named("two").await);
    let [pa, pb, taken] = lease_ports::<3>();
    let (pa, pb, taken) = (pa.port, pb.port, taken);
    let gh = Gatehouse::start(&streams(&[("a", pa, one)]), &[]);
    let (mut open, hello) = greeting(pa).await.expect("stream a");
    assert_eq!(hello, "one\n");

    // a moves to backend two; b is new.
    write_config(gh.dir.path(), &streams(&[("a", pa, two), ("b", pb, one)]), &[]);
    assert_eq!(admin_reload(&gh).await.status, 200);
    assert_eq!(greeting(pa).await.expect("a").1, "two\n");
    assert_eq!(greeting(pb).await.expect("b").1, "one\n");
    // The connection opened before keeps its backend.
    open.write_all(b"still here\n").await.expect("write");
    assert_eq!(read_until(&mut open, "still here").await, "still here\n");

    // An address another process holds: the reload is refused and nothing changes.
    let holder = std::net::TcpListener::bind(("127.0.0.1", taken.port)).expect("hold the port");
    drop(taken);
    write_config(
        gh.dir.path(),
        &streams(&[("a", pa, one), ("c", holder.local_addr().expect("addr").port(), one)]),
        &[],
    );
    let refused = admin_reload(&gh).await;
    assert_ne!(refused.status, 200, "{}", refused.text());
    assert!(refused.text().contains("cannot listen on"), "{}", refused.text());
    assert_eq!(greeting(pa).await.expect("a").1, "two\n", "a refused reload changed stream a");

    // a goes: its port closes, its open connection drains.
    write_config(gh.dir.path(), &streams(&[("b", pb, one)]), &[]);
    assert_eq!(admin_reload(&gh).await.status, 200);
    let closed =
        wait_until_async(NET_TIMEOUT, || async move { TcpStream::connect(("127.0.0.1", pa)).await.is_err() }).await;
    assert!(closed, "the removed stream's port still accepts");
    open.write_all(b"draining\n").await.expect("write");
    assert_eq!(within("drain", async { read_until(&mut open, "draining").await }).await, "draining\n");
    assert_eq!(greeting(pb).await.expect("b").1, "one\n");
}
