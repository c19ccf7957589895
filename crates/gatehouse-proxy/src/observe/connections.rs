//! Client connections counted per worker: each worker adds to its own slot (its own cache
//! line, so workers never write a shared one on the hot path); a scrape sums the slots.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// One worker's counts, alone on its cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Slot {
    opened: AtomicU64,
    closed: AtomicU64,
}

impl Slot {
    /// A connection was accepted; the returned guard counts it closed when dropped.
    pub fn open(self: &Arc<Slot>) -> Open {
        self.opened.fetch_add(1, Ordering::Relaxed);
        Open(self.clone())
    }
}

/// Counts its connection closed when dropped.
pub struct Open(Arc<Slot>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.closed.fetch_add(1, Ordering::Relaxed);
    }
}

/// Every worker's slot.
#[derive(Debug)]
pub struct Connections {
    slots: Box<[Arc<Slot>]>,
}

impl Connections {
    pub fn new(workers: usize) -> Arc<Connections> {
        Arc::new(Connections { slots: (0..workers.max(1)).map(|_| Arc::default()).collect() })
    }

    /// Worker `i`'s slot.
    pub fn slot(&self, i: usize) -> Arc<Slot> {
        self.slots[i % self.slots.len()].clone()
    }

    /// Connections accepted since start.
    pub fn accepted(&self) -> u64 {
        self.slots.iter().map(|s| s.opened.load(Ordering::Relaxed)).sum()
    }

    /// Connections open now.
    pub fn active(&self) -> u64 {
        // Closed read first: a connection counted closed is always counted opened.
        let closed: u64 = self.slots.iter().map(|s| s.closed.load(Ordering::Relaxed)).sum();
        self.accepted().saturating_sub(closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_connections_are_summed_over_workers() {
        let c = Connections::new(2);
        let (a, b) = (c.slot(0), c.slot(1));
        let first = a.open();
        let second = b.open();
        let third = b.open();
        assert_eq!((c.accepted(), c.active()), (3, 3));
        drop(second);
        drop(first);
        assert_eq!((c.accepted(), c.active()), (3, 1));
        drop(third);
        assert_eq!(c.active(), 0);
    }
}
