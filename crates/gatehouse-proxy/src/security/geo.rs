//! Countries of client addresses, from a MaxMind DB file (`geoip.database`): the binary
//! loads it (again when the file changes) and publishes it here; the request path looks
//! addresses up for the `geo` filter and the request log. Without a database every lookup
//! is `None` at the cost of one atomic load.

use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwapOption;

/// The current database, if one is loaded.
#[derive(Default)]
pub struct Geo {
    reader: ArcSwapOption<maxminddb::Reader<Vec<u8>>>,
}

/// What a country lookup reads of a record (GeoLite2-Country and -City, GeoIP2, and
/// databases written in their layout).
#[derive(serde::Deserialize)]
struct Record<'a> {
    #[serde(borrow, default)]
    country: Option<Country<'a>>,
    #[serde(borrow, default)]
    registered_country: Option<Country<'a>>,
}

#[derive(serde::Deserialize)]
struct Country<'a> {
    iso_code: Option<&'a str>,
}

impl Geo {
    /// Reads a database file: the reader to `install`, or why not.
    pub fn open(path: &std::path::Path) -> Result<Arc<maxminddb::Reader<Vec<u8>>>, String> {
        maxminddb::Reader::open_readfile(path).map(Arc::new).map_err(|e| e.to_string())
    }

    pub fn install(&self, reader: Option<Arc<maxminddb::Reader<Vec<u8>>>>) {
        self.reader.store(reader);
    }

    pub fn loaded(&self) -> bool {
        self.reader.load().is_some()
    }

    /// The ISO 3166-1 alpha-2 code of `ip`'s country (upper case), if the database has it.
    pub fn country(&self, ip: IpAddr) -> Option<[u8; 2]> {
        let guard = self.reader.load();
        let reader = guard.as_ref()?;
        let ip = ip.to_canonical();
        let found = reader.lookup(ip).ok()?;
        let record: Record<'_> = found.decode().ok()??;
        let code =
            record.country.and_then(|c| c.iso_code).or_else(|| record.registered_country.and_then(|c| c.iso_code))?;
        match code.as_bytes() {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                Some([a.to_ascii_uppercase(), b.to_ascii_uppercase()])
            }
            _ => None,
        }
    }
}
