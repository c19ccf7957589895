//! The one writer thread. Rows arrive through a bounded queue; the thread takes what is
//! waiting (up to `BATCH`) and writes it in one transaction, then rests `PAUSE` before the
//! next unless the batch was full. Rows so share commits (a commit's WAL write and file
//! locks cost more than its rows), and the senders rarely find the thread waiting, so a
//! send seldom has to wake it. A row waits at most about `PAUSE` to be written. A full
//! queue drops the row and counts it: the request path never waits on the disk.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};

use crate::{RequestRow, Store, StoreError};

/// Rows written in one transaction at most.
const BATCH: usize = 8192;
/// Rest between transactions that were not full.
const PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

/// Counters of the writer, readable from any thread.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Rows committed to the database.
    pub written: AtomicU64,
    /// Rows dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Rows lost because their transaction failed (disk full, database locked too long).
    pub failed: AtomicU64,
}

/// The sending side: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Writer {
    tx: SyncSender<RequestRow>,
    stats: Arc<WriterStats>,
}

impl Writer {
    /// Starts the writer thread over `store`, with room for `queue` rows waiting.
    pub fn start<S: Store + 'static>(store: S, queue: usize) -> Result<Writer, StoreError> {
        let (tx, rx) = sync_channel(queue.max(1));
        let stats = Arc::new(WriterStats::default());
        let counted = stats.clone();
        std::thread::Builder::new()
            .name("gatehouse-store".into())
            .spawn(move || run(store, rx, &counted))
            .map_err(StoreError::Thread)?;
        Ok(Writer { tx, stats })
    }

    /// Queues a row; false (and counted) when the queue is full or the writer has stopped.
    pub fn log(&self, row: RequestRow) -> bool {
        match self.tx.try_send(row) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }
}

fn run<S: Store>(mut store: S, rx: Receiver<RequestRow>, stats: &WriterStats) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut told_dropped = 0;
    // Ends when every sender is gone (the process is shutting down), after the last batch.
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(row) => batch.push(row),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        match store.insert_requests(&batch) {
            Ok(()) => {
                stats.written.fetch_add(batch.len() as u64, Ordering::Relaxed);
            }
            Err(e) => {
                stats.failed.fetch_add(batch.len() as u64, Ordering::Relaxed);
                tracing::warn!(error = %e, rows = batch.len(), "request log rows not written");
            }
        }
        let full = batch.len() == BATCH;
        batch.clear();
        if !full {
            std::thread::sleep(PAUSE);
        }
        let dropped = stats.dropped.load(Ordering::Relaxed);
        if dropped != told_dropped {
            tracing::warn!(
                dropped = dropped - told_dropped,
                "request log rows dropped: the database could not keep up"
            );
            told_dropped = dropped;
        }
    }
}
