//! Per-worker free lists of the buffers a client connection needs only while a request is
//! in progress: the read buffer, the response-head buffer and the parsed-field list. An
//! idle keep-alive connection gives them back and holds none (as nginx frees its buffers
//! between requests), so ten thousand idle connections cost ten thousand small futures,
//! not ten thousand sets of buffers; a busy connection takes them from its worker's list
//! instead of the allocator.
//!
//! Thread-local (each worker runs one current-thread runtime): taking and giving never
//! touch another thread. Must not keep buffers that grew large (one request with a big
//! head must not pin that memory for good).

use std::cell::{Cell, RefCell};
use std::thread::LocalKey;

use bytes::BytesMut;

/// Buffers kept per worker, of each kind.
const KEEP: usize = 256;
/// A read buffer's usual size, and the largest one kept.
pub(crate) const READ: usize = 4096;
const READ_KEEP: usize = 16 * 1024;
/// A response-head buffer's usual size, and the largest one kept.
const WRITE: usize = 1024;
const WRITE_KEEP: usize = 16 * 1024;
/// The most fields a kept field list may have room for.
const FIELDS_KEEP: usize = 64;

thread_local! {
    static ACTIVITY: Cell<u64> = const { Cell::new(0) };
    static LINGERING: Cell<usize> = const { Cell::new(0) };
    static READS: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
    static WRITES: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    static FIELDS: RefCell<Vec<Vec<super::server::Field>>> = const { RefCell::new(Vec::new()) };
}

fn take<T>(list: &'static LocalKey<RefCell<Vec<T>>>) -> Option<T> {
    list.with(|l| l.borrow_mut().pop())
}

fn give<T>(list: &'static LocalKey<RefCell<Vec<T>>>, item: T) {
    list.with(|l| {
        let mut l = l.borrow_mut();
        if l.len() < KEEP {
            l.push(item);
        }
    });
}

/// An empty read buffer with room for at least `READ` bytes.
pub(crate) fn read_buffer() -> BytesMut {
    take(&READS).unwrap_or_else(|| BytesMut::with_capacity(READ))
}

/// Gives back an empty read buffer. (One that still shares its memory with a request's
/// bytes is fine: `reserve` reclaims or replaces it when it is taken again.)
pub(crate) fn give_read_buffer(buf: BytesMut) {
    if buf.is_empty() && buf.capacity() > 0 && buf.capacity() <= READ_KEEP {
        give(&READS, buf);
    }
}

pub(crate) fn write_buffer() -> Vec<u8> {
    take(&WRITES).unwrap_or_else(|| Vec::with_capacity(WRITE))
}

pub(crate) fn give_write_buffer(mut out: Vec<u8>) {
    if out.capacity() > 0 && out.capacity() <= WRITE_KEEP {
        out.clear();
        give(&WRITES, out);
    }
}

pub(crate) fn field_list() -> Vec<super::server::Field> {
    take(&FIELDS).unwrap_or_default()
}

pub(crate) fn give_field_list(fields: Vec<super::server::Field>) {
    if fields.is_empty() && fields.capacity() > 0 && fields.capacity() <= FIELDS_KEEP {
        give(&FIELDS, fields);
    }
}

/// A connection of this worker keeping its request state while it waits for its next
/// request (`server::LINGER`). At most `KEEP` at a time per worker: beyond that, a
/// connection whose next request is not already there gives its state back at once, so a
/// burst over many connections (10,000 clients sending one request each) does not leave
/// 10,000 request states allocated for the linger time.
pub(crate) struct Linger(());

/// A place to linger, if one is free.
pub(crate) fn linger() -> Option<Linger> {
    LINGERING.with(|n| {
        (n.get() < KEEP).then(|| {
            n.set(n.get() + 1);
            Linger(())
        })
    })
}

impl Drop for Linger {
    fn drop(&mut self) {
        LINGERING.with(|n| n.set(n.get() - 1));
    }
}

/// Notes work taken on by this worker (a connection accepted or ended, a request loop
/// started).
pub(crate) fn touch() {
    ACTIVITY.with(|a| a.set(a.get().wrapping_add(1)));
}

/// Changes while the worker takes on work; the memory release waits for it to settle.
pub(crate) fn activity() -> u64 {
    ACTIVITY.with(Cell::get)
}

/// Once this thread has taken on no work for a second after some, hands the memory its
/// connections freed back to the system (`release`, the allocator's collect): mimalloc
/// otherwise returns pages only on later allocations, which a quiet thread does not make.
/// Runs on the thread's runtime until dropped.
pub(crate) async fn release_when_quiet(release: fn()) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    let (mut seen, mut dirty) = (activity(), false);
    loop {
        tick.tick().await;
        let now = activity();
        if now != seen {
            (seen, dirty) = (now, true);
        } else if dirty {
            release();
            dirty = false;
        }
    }
}

/// Notes the end of a connection when dropped (its memory is free from then on).
pub(crate) struct Ends;

impl Drop for Ends {
    fn drop(&mut self) {
        touch();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn lingering_is_bounded_per_worker() {
        let places: Vec<_> = std::iter::from_fn(super::linger).take(super::KEEP + 1).collect();
        assert_eq!(places.len(), super::KEEP, "more connections lingered than the bound");
        drop(places);
        assert!(super::linger().is_some(), "a place given back is free again");
    }
}
