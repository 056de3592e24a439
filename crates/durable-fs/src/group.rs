//! [`GroupCommit`]: leader/follower fsync sharing, used by every engine's `SyncPolicy::Always`.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use parking_lot::{Condvar, Mutex};

/// How many times a leader yields, at most, for writers about to join its fsync.
const GATHER_YIELDS: usize = 4;

/// Shares one fsync among concurrent writers (leader/follower group commit).
///
/// Writers number their writes with increasing sequence numbers and call
/// [`GroupCommit::wait`] with theirs. The first caller that finds no sync running becomes the
/// leader and runs the engine's sync closure, which makes everything written so far durable
/// and returns the highest sequence number it covered; the others wait and are released when
/// a sync covers them. Writers that arrive while a sync runs are covered by the next one, so
/// under load one fsync serves many writers.
///
/// **Fail-stop.** If a sync fails, the leader and every waiter, now and later, get (a clone
/// of) its error: nothing is acknowledged after a failed fsync. `E` is the engine's shared
/// error, typically an `Arc` of its error type. A sync closure that panics poisons the group
/// the same way (with the error `on_panic` builds from the panic message) instead of leaving
/// every later writer waiting for a sync that will never finish.
///
/// ```
/// use durable_fs::GroupCommit;
/// let gc: GroupCommit<String> = GroupCommit::new(0, |panic| format!("sync panicked: {panic}"));
/// let _writer = gc.writer(); // counts this writer as in flight (helps the leader gather)
/// // ... write record 1 ...
/// gc.wait(1, || Ok(1)).unwrap(); // the sync covered up to 1
/// assert_eq!(gc.durable(), 1);
/// ```
#[derive(Debug)]
pub struct GroupCommit<E> {
    state: Mutex<State<E>>,
    synced: Condvar,
    /// Writers between [`GroupCommit::writer`] and the end of their wait, and how many of
    /// those are already waiting: while the first exceeds the second, someone is about to
    /// join, and the leader yields briefly to let them.
    inflight: AtomicUsize,
    waiting: AtomicUsize,
    /// Copies of `State::durable` and "`State::failed` is set", written under the state lock,
    /// so the per-write reads (`durable`, `failure` when healthy) take no lock.
    durable_now: AtomicU64,
    failed_now: AtomicBool,
    /// Builds the poison error from the message of a panicking sync closure.
    on_panic: fn(String) -> E,
}

#[derive(Debug)]
struct State<E> {
    durable: u64,
    in_progress: bool,
    failed: Option<E>,
}

/// Marks a writer in flight; see [`GroupCommit::writer`].
#[derive(Debug)]
pub struct WriterGuard<'a>(&'a AtomicUsize);

impl Drop for WriterGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<E: Clone> GroupCommit<E> {
    /// Everything up to `durable` is already durable. `on_panic` turns the message of a
    /// sync closure that panicked into the error that poisons the group.
    pub fn new(durable: u64, on_panic: fn(String) -> E) -> Self {
        GroupCommit {
            state: Mutex::new(State {
                durable,
                in_progress: false,
                failed: None,
            }),
            synced: Condvar::new(),
            inflight: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            durable_now: AtomicU64::new(durable),
            failed_now: AtomicBool::new(false),
            on_panic,
        }
    }

    /// Sets the durable mark (under the state lock) and its lock-free copy.
    fn set_durable(&self, s: &mut State<E>, seq: u64) {
        s.durable = seq;
        self.durable_now.store(seq, Ordering::Release);
    }

    /// Records the first failure (under the state lock); returns it.
    fn set_failed(&self, s: &mut State<E>, error: E) -> E {
        let first = s.failed.get_or_insert(error).clone();
        self.failed_now.store(true, Ordering::Release);
        first
    }

    /// Declares a writer in flight until the guard drops; call it before writing, keep it
    /// through [`GroupCommit::wait`]. Optional: it only helps leaders gather more writers.
    pub fn writer(&self) -> WriterGuard<'_> {
        self.inflight.fetch_add(1, Ordering::AcqRel);
        WriterGuard(&self.inflight)
    }

    /// The highest sequence number known durable.
    pub fn durable(&self) -> u64 {
        self.durable_now.load(Ordering::Acquire)
    }

    /// The first failure, if a sync (or [`GroupCommit::poison`]) failed.
    pub fn failure(&self) -> Option<E> {
        if !self.failed_now.load(Ordering::Acquire) {
            return None;
        }
        self.state.lock().failed.clone()
    }

    /// `Err` with the first failure once the group is poisoned: the fail-stop check an engine
    /// makes before every write (and after every read, whose value a failure makes suspect).
    pub fn check(&self) -> Result<(), E> {
        self.failure().map_or(Ok(()), Err)
    }

    /// Records that everything up to `seq` became durable by other means (for example a
    /// sync at file rotation). Never moves backwards.
    pub fn advance(&self, seq: u64) {
        let mut s = self.state.lock();
        if seq > s.durable {
            self.set_durable(&mut s, seq);
        }
        drop(s);
        self.synced.notify_all();
    }

    /// Lowers the durable mark to `seq` (records above it were removed on purpose).
    pub fn lower_to(&self, seq: u64) {
        let mut s = self.state.lock();
        let lowered = s.durable.min(seq);
        self.set_durable(&mut s, lowered);
    }

    /// Marks the group failed (the engine saw a write or sync fail elsewhere) and wakes
    /// every waiter, who then gets the first failure: `error`, or the one recorded before
    /// it. Returns that first failure.
    pub fn poison(&self, error: E) -> E {
        let mut s = self.state.lock();
        let first = self.set_failed(&mut s, error);
        drop(s);
        self.synced.notify_all();
        first
    }

    /// Returns once `seq` is durable. `sync` is run when this caller becomes the leader: it
    /// must make everything written so far durable and return the highest sequence number
    /// that covers (normally at least `seq`; if not, the leader syncs again).
    pub fn wait(&self, seq: u64, sync: impl FnMut() -> Result<u64, E>) -> Result<(), E> {
        self.waiting.fetch_add(1, Ordering::AcqRel);
        let r = self.wait_inner(seq, sync);
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        r
    }

    fn wait_inner(&self, seq: u64, mut sync: impl FnMut() -> Result<u64, E>) -> Result<(), E> {
        let mut s = self.state.lock();
        loop {
            if let Some(e) = &s.failed {
                return Err(e.clone());
            }
            if s.durable >= seq {
                return Ok(());
            }
            if s.in_progress {
                self.synced.wait(&mut s);
                continue;
            }
            s.in_progress = true;
            drop(s);
            for _ in 0..GATHER_YIELDS {
                if self.inflight.load(Ordering::Acquire) <= self.waiting.load(Ordering::Acquire) {
                    break;
                }
                std::thread::yield_now();
            }
            // A panicking closure must not leave `in_progress` set (every later writer would
            // wait forever): it poisons the group like a failed sync.
            let result = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(&mut sync)) {
                Ok(r) => r,
                Err(payload) => Err((self.on_panic)(panic_message(payload.as_ref()))),
            };
            s = self.state.lock();
            s.in_progress = false;
            match result {
                Ok(covered) => {
                    if covered > s.durable {
                        self.set_durable(&mut s, covered);
                    }
                    drop(s);
                    self.synced.notify_all();
                    s = self.state.lock();
                }
                Err(e) => {
                    let first = self.set_failed(&mut s, e);
                    drop(s);
                    self.synced.notify_all();
                    return Err(first);
                }
            }
        }
    }
}

/// The text of a panic payload (`panic!` with a literal or a formatted message).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a sync closure panicked".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn concurrent_waiters_share_syncs_and_all_get_released() {
        let gc: Arc<GroupCommit<()>> = Arc::new(GroupCommit::new(0, |_| ()));
        let next = Arc::new(AtomicU64::new(0));
        let syncs = Arc::new(AtomicU64::new(0));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (gc, next, syncs) = (Arc::clone(&gc), Arc::clone(&next), Arc::clone(&syncs));
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        let _w = gc.writer();
                        let seq = next.fetch_add(1, Ordering::SeqCst) + 1;
                        gc.wait(seq, || {
                            syncs.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_micros(200));
                            Ok(next.load(Ordering::SeqCst))
                        })
                        .unwrap();
                        assert!(gc.durable() >= seq);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(gc.durable(), 800);
        assert!(syncs.load(Ordering::SeqCst) < 800, "fsyncs were shared");
    }

    #[test]
    fn a_failed_sync_poisons_every_later_wait() {
        let gc: GroupCommit<&str> = GroupCommit::new(5, |_| "panicked");
        gc.wait(5, || unreachable!("already durable")).unwrap();
        assert_eq!(gc.wait(6, || Err("EIO")), Err("EIO"));
        assert_eq!(
            gc.wait(7, || Ok(7)),
            Err("EIO"),
            "the first error, never a retry"
        );
        assert_eq!(gc.failure(), Some("EIO"));
        assert_eq!(gc.durable(), 5);
    }

    #[test]
    fn a_panicking_sync_poisons_instead_of_hanging() {
        let gc: Arc<GroupCommit<String>> = Arc::new(GroupCommit::new(0, |m| format!("panic: {m}")));
        let r = gc.wait(1, || panic!("disk on fire"));
        assert_eq!(r, Err("panic: disk on fire".to_owned()));
        // A later writer gets the same error at once instead of waiting forever.
        let gc2 = Arc::clone(&gc);
        let later = std::thread::spawn(move || gc2.wait(2, || Ok(2)));
        assert_eq!(later.join().unwrap(), Err("panic: disk on fire".to_owned()));
        assert_eq!(gc.durable(), 0);
        assert_eq!(
            gc.poison("another".to_owned()),
            "panic: disk on fire",
            "first error kept"
        );
    }
}
