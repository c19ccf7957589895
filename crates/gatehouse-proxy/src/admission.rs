//! Connection admission, before anything is read from a connection (before TLS too):
//! `server.max_connections` for the whole process, and `server.max_connections_per_ip`.
//!
//! At the process-wide limit the workers stop accepting until a connection ends: new
//! connections wait in the kernel's accept queue instead of being accepted and dropped in a
//! busy loop. Beyond the per-address limit a new connection is closed unanswered (one
//! address must not take every slot). Shared by all workers; touched once per connection,
//! never per request.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use gatehouse_config::ServerConfig;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The limits and what is counted against them.
pub struct Admission {
    total: Option<Arc<Semaphore>>,
    per_ip: usize,
    by_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection; it counts until dropped.
pub struct Ticket {
    _slot: Option<OwnedSemaphorePermit>,
    ip: Option<(Arc<Admission>, IpAddr)>,
}

impl Admission {
    pub fn new(server: &ServerConfig) -> Arc<Self> {
        Arc::new(Admission {
            total: (server.max_connections > 0).then(|| Arc::new(Semaphore::new(server.max_connections))),
            per_ip: server.max_connections_per_ip,
            by_ip: Mutex::new(HashMap::new()),
        })
    }

    /// Limits of their own (a stream's `max_connections` and `max_connections_per_ip`;
    /// 0 = none).
    pub fn with_limits(total: usize, per_ip: usize) -> Arc<Self> {
        Arc::new(Admission {
            total: (total > 0).then(|| Arc::new(Semaphore::new(total))),
            per_ip,
            by_ip: Mutex::new(HashMap::new()),
        })
    }

    /// A place under the total limit now, without waiting: `None` when there is none
    /// (`Some(None)` when there is no total limit).
    pub fn try_room(&self) -> Option<Option<OwnedSemaphorePermit>> {
        match &self.total {
            Some(sem) => sem.clone().try_acquire_owned().ok().map(Some),
            None => Some(None),
        }
    }

    /// Waits until the process could hold one more connection, without taking the place:
    /// the accept loop calls this before accepting. (Holding a place while waiting in
    /// accept would let a worker whose socket gets no connections keep the last place
    /// from the others: each worker has a socket of its own.)
    pub async fn wait_for_room(&self) {
        if let Some(sem) = &self.total {
            let _ = sem.acquire().await;
        }
    }

    /// Takes a place for an accepted connection, waiting when another worker took the
    /// last one first (then at most one accepted connection per worker waits).
    pub async fn room(&self) -> Option<OwnedSemaphorePermit> {
        match &self.total {
            Some(sem) => sem.clone().acquire_owned().await.ok(),
            None => None,
        }
    }

    /// Admits a connection from `ip` holding `slot`, or `None` when that address already
    /// has `max_connections_per_ip` connections.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, slot: Option<OwnedSemaphorePermit>) -> Option<Ticket> {
        if self.per_ip == 0 {
            return Some(Ticket { _slot: slot, ip: None });
        }
        // An IPv4 client seen as `::ffff:a.b.c.d` (a PROXY header may say so) counts as itself.
        let ip = ip.to_canonical();
        let mut by_ip = self.by_ip.lock().ok()?;
        let n = by_ip.entry(ip).or_insert(0);
        if *n >= self.per_ip {
            return None;
        }
        *n += 1;
        Some(Ticket { _slot: slot, ip: Some((self.clone(), ip)) })
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some((admission, ip)) = &self.ip
            && let Ok(mut by_ip) = admission.by_ip.lock()
            && let Some(n) = by_ip.get_mut(ip)
        {
            *n -= 1;
            if *n == 0 {
                // Entries go with their last connection: the map holds only addresses with
                // connections open, however many addresses a flood comes from.
                by_ip.remove(ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(total: usize, per_ip: usize) -> ServerConfig {
        ServerConfig {
            header_read_timeout: std::time::Duration::from_secs(1),
            keepalive_timeout: std::time::Duration::from_secs(1),
            h2_ping_interval: None,
            send_timeout: std::time::Duration::from_secs(1),
            max_connections: total,
            max_connections_per_ip: per_ip,
            request_body_min_rate: None,
            proxy_protocol: Vec::new(),
            close_banned: false,
        }
    }

    #[test]
    fn one_address_gets_its_share_and_entries_go_with_their_connections() {
        let a = Admission::new(&server(0, 2));
        let ip: IpAddr = [192, 0, 2, 1].into();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().expect("ip");
        let held = [a.admit(ip, None).expect("first"), a.admit(mapped, None).expect("second")];
        assert!(a.admit(ip, None).is_none(), "a third from the same address (also when mapped)");
        assert!(a.admit([192, 0, 2, 2].into(), None).is_some(), "another address is not affected");
        drop(held);
        assert!(a.by_ip.lock().expect("lock").is_empty());
        assert!(a.admit(ip, None).is_some());
    }

    #[tokio::test]
    async fn the_process_limit_waits_for_a_connection_to_end() {
        let a = Admission::new(&server(1, 0));
        let first = a.admit([192, 0, 2, 1].into(), a.room().await).expect("admitted");
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), a.room()).await;
        assert!(waiting.is_err(), "a second connection was let in at the limit");
        drop(first);
        let next = tokio::time::timeout(std::time::Duration::from_secs(5), a.room()).await.expect("room again");
        assert!(next.is_some());
    }
}
