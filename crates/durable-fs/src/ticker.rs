//! [`Ticker`]: an engine's background threads (interval syncs, merges, compactions).

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

#[derive(Debug, Default)]
struct Flags {
    stop: bool,
    kicked: bool,
}

#[derive(Debug, Default)]
struct Shared {
    flags: Mutex<Flags>,
    wake: Condvar,
}

/// Background threads that each run a `tick` every interval, or sooner when kicked, until
/// the ticker stops (explicitly or on drop), which wakes and joins them all.
///
/// A tick returns `false` to end its thread (for example once the engine is poisoned: a
/// fail-stopped engine does no more background work).
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// let ticks = Arc::new(AtomicU32::new(0));
/// let mut ticker = durable_fs::Ticker::new();
/// let t = Arc::clone(&ticks);
/// ticker
///     .spawn("example", Duration::from_secs(3600), move || {
///         t.fetch_add(1, Ordering::SeqCst);
///         true
///     })
///     .unwrap();
/// ticker.waker().kick(); // runs a tick now rather than in an hour
/// while ticks.load(Ordering::SeqCst) == 0 {
///     std::thread::yield_now();
/// }
/// ticker.stop(); // wakes and joins the thread
/// ```
#[derive(Debug, Default)]
pub struct Ticker {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

/// Wakes a [`Ticker`]'s threads early; cheap to clone and keep in an engine's state.
#[derive(Clone, Debug)]
pub struct Waker(Arc<Shared>);

impl Waker {
    /// Wakes every thread of the ticker now (a tick runs even if the interval has not passed).
    pub fn kick(&self) {
        self.0.flags.lock().kicked = true;
        self.0.wake.notify_all();
    }
}

impl Ticker {
    /// A ticker with no thread yet.
    pub fn new() -> Ticker {
        Ticker::default()
    }

    /// Starts a thread named `name` that runs `tick` every `every` (or when kicked) until the
    /// ticker stops or `tick` returns `false`.
    pub fn spawn(
        &mut self,
        name: &str,
        every: Duration,
        mut tick: impl FnMut() -> bool + Send + 'static,
    ) -> std::io::Result<()> {
        let shared = Arc::clone(&self.shared);
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                loop {
                    {
                        let mut f = shared.flags.lock();
                        if !f.stop && !f.kicked {
                            let _ = shared.wake.wait_for(&mut f, every);
                        }
                        f.kicked = false;
                        if f.stop {
                            return;
                        }
                    }
                    if !tick() {
                        return;
                    }
                }
            })?;
        self.threads.push(handle);
        Ok(())
    }

    /// A handle that kicks this ticker's threads.
    pub fn waker(&self) -> Waker {
        Waker(Arc::clone(&self.shared))
    }

    /// Stops every thread (a running tick finishes first) and joins them. Idempotent.
    pub fn stop(&mut self) {
        self.shared.flags.lock().stop = true;
        self.shared.wake.notify_all();
        for h in self.threads.drain(..) {
            // A tick that panicked has nothing left to clean up: the engine's own state
            // (its group commit) records a failed sync.
            let _ = h.join();
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[test]
    fn ticks_on_interval_stops_on_false_and_joins_on_stop() {
        let n = Arc::new(AtomicU32::new(0));
        let mut t = Ticker::new();
        let c = Arc::clone(&n);
        t.spawn("t", Duration::from_millis(1), move || {
            c.fetch_add(1, Ordering::SeqCst) < 4
        })
        .unwrap();
        while n.load(Ordering::SeqCst) < 5 {
            std::thread::yield_now();
        }
        t.stop();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(
            n.load(Ordering::SeqCst),
            5,
            "the thread ended when its tick said false"
        );
    }
}
