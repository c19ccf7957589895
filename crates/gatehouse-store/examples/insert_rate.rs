//! The writer's sustained insert rate: rows like the proxy's, encoded into batches as the
//! workers do and written in the writer's transactions into a fresh database, on this
//! thread. Prints rows per second and microseconds per row (encoding included).
//!
//!   cargo run --release -p gatehouse-store --example insert_rate [ROWS]
use std::time::Instant;

use gatehouse_store::{Batch, MaskIp, RequestRow, Sqlite, Store};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rows: usize = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(1_000_000);
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("bench.db");
    let mut db = Sqlite::open(&file)?;
    let paths: Vec<String> = (0..1000).map(|i| format!("/items/{i}")).collect();
    let ids: Vec<String> = (0..8192).map(|i| format!("{:032x}", i * 7919)).collect();
    let batch_rows = 8192;
    let mut batch = Batch::new();
    let start = Instant::now();
    let mut done = 0;
    while done < rows {
        let n = batch_rows.min(rows - done);
        for i in done..done + n {
            batch.push(&RequestRow {
                time_us: 1_800_000_000_000_000 + i as i64 * 100,
                site: Some("example"),
                route: Some("example#0"),
                backend: Some("http://127.0.0.1:8080"),
                method: Some("GET"),
                host: "example.test",
                path: &paths[i % paths.len()],
                status: 200,
                duration_us: 850,
                bytes_in: 0,
                bytes_out: 1234,
                // A few clients, as behind a busy NAT, and a few browsers.
                client: std::net::IpAddr::from([192, 0, 2, (i % 7) as u8]),
                mask: MaskIp::LastOctet,
                user_agent: Some(if i % 3 == 0 {
                    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
                } else {
                    "curl/8.11.1"
                }),
                country: None,
                request_id: Some(&ids[i % ids.len()]),
                trace: Some(([(i % 251) as u8; 16], [(i % 13) as u8 + 1; 8])),
                retries: 0,
                error: None,
            });
        }
        db.insert_requests(&batch)?;
        batch.clear();
        done += n;
    }
    let secs = start.elapsed().as_secs_f64();
    let size = std::fs::metadata(&file)?.len();
    println!(
        "{rows} rows in {secs:.2} s: {:.0} rows/s, {:.2} us/row (encoding included), {} bytes/row in the file",
        rows as f64 / secs,
        secs * 1e6 / rows as f64,
        size / rows as u64
    );
    Ok(())
}
