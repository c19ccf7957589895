//! The one writer thread. Workers encode rows into shards (one per worker thread, each a
//! `Batch` behind its own lock, so workers never contend); the thread takes every shard's
//! rows, writes them in one transaction, then rests `PAUSE` before looking again unless
//! the batch was large. Rows so share commits (a commit's WAL write and file locks cost
//! more than its rows), and a worker's hand-off is an uncontended lock and a copy into a
//! buffer: no allocation, no wake-up, nothing freed on another thread. A row waits at most
//! about `PAUSE` to be written. A full shard drops the row and counts it: the request path
//! never waits on the disk.
//!
//! Everything else that writes (audit entries, retention, erasure) runs on this thread
//! too, as jobs between batches: SQLite has one writer at a time, and the ids the writer
//! remembers stay true.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::Thread;
use std::time::Duration;

use crate::row::{Batch, RequestRow};
use crate::{Store, StoreError};

/// Rows past which the writer goes on at once instead of resting.
const LARGE: usize = 8192;
/// Rest between transactions that were not large.
const PAUSE: Duration = Duration::from_millis(50);
/// Average encoded row size assumed when turning a row budget into a byte budget.
const ROW_BYTES: usize = 256;

/// Work run on the writer thread with the store.
pub type Job = Box<dyn FnOnce(&mut dyn Store) + Send>;

/// Counters of the writer, readable from any thread.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Rows committed to the database.
    pub written: AtomicU64,
    /// Rows dropped because their shard was full.
    pub dropped: AtomicU64,
    /// Rows lost because their transaction failed (disk full, database locked too long).
    pub failed: AtomicU64,
}

struct Shared {
    shards: Box<[Mutex<Batch>]>,
    /// Bytes a shard may hold before rows are dropped.
    shard_bytes: usize,
    jobs: Mutex<VecDeque<Job>>,
    /// The thread is parked, waiting for rows or jobs.
    idle: AtomicBool,
    /// Set when the last `Writer` is gone: write what is left and end.
    closing: AtomicBool,
    thread: Thread,
    stats: WriterStats,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a shard cannot leave a half-written row (push does not
    // panic), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn wake(&self) {
        if self.idle.load(Ordering::SeqCst) && self.idle.swap(false, Ordering::SeqCst) {
            self.thread.unpark();
        }
    }
}

/// The sending side: cheap to clone, never blocks on the disk.
#[derive(Clone)]
pub struct Writer {
    shared: Arc<Shared>,
    _owner: Arc<Closer>,
}

/// Tells the thread to finish once every `Writer` clone is gone.
struct Closer(Arc<Shared>, Mutex<Option<std::thread::JoinHandle<()>>>);

impl Drop for Closer {
    fn drop(&mut self) {
        self.0.closing.store(true, Ordering::SeqCst);
        self.0.thread.unpark();
        if let Some(handle) = lock(&self.1).take() {
            let _ = handle.join();
        }
    }
}

thread_local! {
    /// This thread's shard number (assigned on first use, round robin).
    static SHARD: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed)
    };
}

impl Writer {
    /// Starts the writer thread over `store`, with room for about `queue` rows waiting,
    /// split over `shards` shards (one per worker thread is best).
    pub fn start<S: Store + 'static>(store: S, queue: usize, shards: usize) -> Result<Writer, StoreError> {
        let shards = shards.max(1);
        let (tx, rx) = std::sync::mpsc::channel::<Arc<Shared>>();
        let handle = std::thread::Builder::new()
            .name("gatehouse-store".into())
            .spawn(move || {
                lower_priority();
                if let Ok(shared) = rx.recv() {
                    run(store, &shared);
                }
            })
            .map_err(StoreError::Thread)?;
        let shared = Arc::new(Shared {
            shards: (0..shards).map(|_| Mutex::new(Batch::new())).collect(),
            shard_bytes: (queue.max(1) * ROW_BYTES).div_ceil(shards),
            jobs: Mutex::new(VecDeque::new()),
            idle: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            thread: handle.thread().clone(),
            stats: WriterStats::default(),
        });
        let _ = tx.send(shared.clone());
        let closer = Arc::new(Closer(shared.clone(), Mutex::new(Some(handle))));
        Ok(Writer { shared, _owner: closer })
    }

    /// Queues a row; false (and counted) when its shard is full.
    pub fn log(&self, row: &RequestRow<'_>) -> bool {
        let shared = &*self.shared;
        let shard = &shared.shards[SHARD.with(|n| *n) % shared.shards.len()];
        {
            let mut batch = lock(shard);
            if batch.bytes() >= shared.shard_bytes {
                drop(batch);
                shared.stats.dropped.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            batch.push(row);
        }
        shared.wake();
        true
    }

    /// Runs `job` on the writer thread, after the rows already queued.
    pub fn run(&self, job: impl FnOnce(&mut dyn Store) + Send + 'static) {
        lock(&self.shared.jobs).push_back(Box::new(job));
        self.shared.wake();
        // A thread resting between batches sees the job when it next looks.
    }

    /// Waits (up to `limit`) until every job queued before this call has run: a stop must
    /// not lose the last changes (a ban, a registration) while other handles keep the
    /// writer alive. `false` when the limit passed first.
    pub fn sync(&self, limit: std::time::Duration) -> bool {
        let (tx, rx) = std::sync::mpsc::channel();
        self.run(move |_| {
            let _ = tx.send(());
        });
        rx.recv_timeout(limit).is_ok()
    }

    pub fn stats(&self) -> &WriterStats {
        &self.shared.stats
    }
}

/// Niceness of the writer thread. Storing rows is background work: on a machine whose
/// cores are busy, the scheduler should run the workers first, and give the writer the
/// rest. Nice 10 still gets about a tenth of a contended core, several times what the
/// writer needs at full load; rows it cannot take are dropped and counted, never waited on.
const NICE: i32 = 10;

fn lower_priority() {
    // On Linux a "process" priority set with a thread id applies to that thread alone.
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), NICE) {
        tracing::debug!(error = %e, "cannot lower the database writer's priority");
    }
}

fn run<S: Store>(mut store: S, shared: &Shared) {
    let mut taken = Batch::new();
    let mut told_dropped = 0;
    loop {
        let closing = shared.closing.load(Ordering::SeqCst);
        let mut rows = 0;
        for shard in shared.shards.iter() {
            {
                let mut batch = lock(shard);
                if batch.is_empty() {
                    continue;
                }
                std::mem::swap(&mut *batch, &mut taken);
            }
            rows += taken.len();
            match store.insert_requests(&taken) {
                Ok(()) => {
                    shared.stats.written.fetch_add(taken.len() as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    shared.stats.failed.fetch_add(taken.len() as u64, Ordering::Relaxed);
                    tracing::warn!(error = %e, rows = taken.len(), "request log rows not written");
                }
            }
            taken.clear();
        }
        let jobs: Vec<Job> = lock(&shared.jobs).drain(..).collect();
        let worked = rows > 0 || !jobs.is_empty();
        for job in jobs {
            job(&mut store);
        }
        let dropped = shared.stats.dropped.load(Ordering::Relaxed);
        if dropped != told_dropped {
            tracing::warn!(
                dropped = dropped - told_dropped,
                "request log rows dropped: the database could not keep up"
            );
            told_dropped = dropped;
        }
        if closing && !worked {
            return;
        }
        if !worked {
            // Nothing came: sleep until a row or job wakes us. Rows pushed after `idle` is
            // set find it set and wake us; rows pushed before are seen by the look below.
            shared.idle.store(true, Ordering::SeqCst);
            let waiting = shared.shards.iter().any(|s| !lock(s).is_empty()) || !lock(&shared.jobs).is_empty();
            if !waiting && !shared.closing.load(Ordering::SeqCst) {
                std::thread::park();
            }
            shared.idle.store(false, Ordering::SeqCst);
        } else if rows < LARGE && !closing {
            std::thread::sleep(PAUSE);
        }
    }
}
