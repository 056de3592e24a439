//! openraft 0.9's storage traits over the synchronous cores: the one module a port to
//! openraft 0.10 rewrites. Calls that fsync run on tokio's blocking pool, never on a runtime
//! worker; `append` only writes (its fsync runs on the log's flusher thread).

use std::fmt::Debug;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    EntryPayload, OptionalSend, RaftLogReader, RaftSnapshotBuilder, RaftTypeConfig, StorageIOError,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::log::{LogCore, LogOptions, LogReaderCore};
use crate::sm::{SmCore, SmOptions, SnapshotView};
use crate::types::{
    Entry, LogId, Response, SnapshotMeta, StorageError, StoredMembership, TypeConfig, Vote,
};

fn range_of<RB: RangeBounds<u64>>(range: &RB) -> std::ops::Range<u64> {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.saturating_add(1),
        Bound::Excluded(&e) => e,
        Bound::Unbounded => u64::MAX,
    };
    start..end
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("storage task failed: {e}")))?
}

/// openraft's log storage: [`LogCore`] (entries in a WAL, vote and last purged id in
/// `RAFT-META`) behind openraft's [`RaftLogStorage`].
///
/// ```no_run
/// use durable_raft::{LogStore, StateMachine, TypeConfig};
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let log = LogStore::<TypeConfig>::open("node-1/log")?;
/// let sm = StateMachine::open("node-1/sm")?;
/// // openraft::Raft::new(1, config, network, log, sm).await?
/// # Ok(()) }
/// ```
pub struct LogStore<C: RaftTypeConfig> {
    core: Arc<LogCore<C>>,
}

impl<C: RaftTypeConfig> Clone for LogStore<C> {
    fn clone(&self) -> Self {
        LogStore {
            core: Arc::clone(&self.core),
        }
    }
}

impl<C> LogStore<C>
where
    C: RaftTypeConfig<NodeId = u64, Entry = openraft::Entry<C>>,
    EntryPayload<C>: Serialize + DeserializeOwned,
{
    /// Opens (or creates) the log in `dir` on the real filesystem.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(dir, LogOptions::default())
    }

    /// Opens (or creates) the log in `dir` with `opts`.
    pub fn open_with(dir: impl AsRef<Path>, opts: LogOptions) -> Result<Self> {
        Ok(LogStore {
            core: Arc::new(LogCore::open(dir, opts)?),
        })
    }

    /// The synchronous core.
    pub fn core(&self) -> &LogCore<C> {
        &self.core
    }
}

/// openraft's log reader over a [`LogStore`].
pub struct LogReader<C: RaftTypeConfig> {
    core: LogReaderCore<C>,
}

impl<C: RaftTypeConfig> Clone for LogReader<C> {
    fn clone(&self) -> Self {
        LogReader {
            core: self.core.clone(),
        }
    }
}

fn read_err(e: Error) -> StorageError {
    StorageIOError::read_logs(&e).into()
}

fn write_err(e: Error) -> StorageError {
    StorageIOError::write_logs(&e).into()
}

impl<C> RaftLogReader<C> for LogStore<C>
where
    C: RaftTypeConfig<NodeId = u64, Entry = openraft::Entry<C>>,
    EntryPayload<C>: Serialize + DeserializeOwned,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> std::result::Result<Vec<C::Entry>, StorageError> {
        self.core.entries(range_of(&range)).map_err(read_err)
    }
}

impl<C> RaftLogReader<C> for LogReader<C>
where
    C: RaftTypeConfig<NodeId = u64, Entry = openraft::Entry<C>>,
    EntryPayload<C>: Serialize + DeserializeOwned,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> std::result::Result<Vec<C::Entry>, StorageError> {
        self.core.entries(range_of(&range)).map_err(read_err)
    }
}

impl<C> RaftLogStorage<C> for LogStore<C>
where
    C: RaftTypeConfig<NodeId = u64, Entry = openraft::Entry<C>>,
    EntryPayload<C>: Serialize + DeserializeOwned,
{
    type LogReader = LogReader<C>;

    async fn get_log_state(&mut self) -> std::result::Result<LogState<C>, StorageError> {
        let (last_purged_log_id, last_log_id) = self.core.log_state().map_err(read_err)?;
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        LogReader {
            core: self.core.reader(),
        }
    }

    async fn save_vote(&mut self, vote: &Vote) -> std::result::Result<(), StorageError> {
        let core = Arc::clone(&self.core);
        let vote = *vote;
        blocking(move || core.save_vote(&vote))
            .await
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> std::result::Result<Option<Vote>, StorageError> {
        self.core
            .vote()
            .map_err(|e| StorageIOError::read_vote(&e).into())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<C>,
    ) -> std::result::Result<(), StorageError>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<C::Entry> = entries.into_iter().collect();
        // Off the runtime: a write can rotate a segment (a file create and a directory
        // fsync). The fsync of the entries themselves runs on the flusher thread.
        let core = Arc::clone(&self.core);
        blocking(move || core.append(entries, Box::new(move |r| callback.log_io_completed(r))))
            .await
            .map_err(write_err)
    }

    async fn truncate(&mut self, log_id: LogId) -> std::result::Result<(), StorageError> {
        let core = Arc::clone(&self.core);
        blocking(move || core.truncate(log_id.index))
            .await
            .map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId) -> std::result::Result<(), StorageError> {
        let core = Arc::clone(&self.core);
        blocking(move || core.purge(log_id))
            .await
            .map_err(write_err)
    }
}

/// openraft's state machine: [`SmCore`] (a bitcask store, a `MANIFEST`, the current
/// snapshot) behind openraft's [`RaftStateMachine`].
#[derive(Clone, Debug)]
pub struct StateMachine {
    core: SmCore,
}

impl StateMachine {
    /// Opens (or creates) the state machine in `dir` on the real filesystem.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(dir, SmOptions::default())
    }

    /// Opens (or creates) the state machine in `dir` with `opts`.
    pub fn open_with(dir: impl AsRef<Path>, opts: SmOptions) -> Result<Self> {
        Ok(StateMachine {
            core: SmCore::open(dir, opts)?,
        })
    }

    /// The synchronous core (reads: [`SmCore::get`]).
    pub fn core(&self) -> &SmCore {
        &self.core
    }
}

fn sm_write_err(e: Error) -> StorageError {
    StorageIOError::write_state_machine(&e).into()
}

fn sm_read_err(e: Error) -> StorageError {
    StorageIOError::read_state_machine(&e).into()
}

/// Builds a snapshot from the view taken when it was made; see [`SmCore::view`].
pub struct SnapshotBuilder {
    core: SmCore,
    view: std::result::Result<Option<SnapshotView>, Arc<Error>>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> std::result::Result<Snapshot<TypeConfig>, StorageError> {
        let view = match std::mem::replace(&mut self.view, Ok(None)) {
            Ok(Some(v)) => v,
            // openraft 0.9 builds once per builder. A second build would take its view
            // here, outside the state machine's task, beside applies: refused.
            Ok(None) => {
                return Err(sm_read_err(Error::Invalid(
                    "a snapshot builder builds once".to_owned(),
                )));
            }
            Err(e) => return Err(StorageIOError::read_state_machine(&*e).into()),
        };
        let core = self.core.clone();
        let (meta, bytes) = blocking(move || core.build(view))
            .await
            .map_err(|e| StorageError::from(StorageIOError::write_snapshot(None, &e)))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> std::result::Result<(Option<LogId>, StoredMembership), StorageError> {
        self.core.applied_state().map_err(sm_read_err)
    }

    async fn apply<I>(&mut self, entries: I) -> std::result::Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let core = self.core.clone();
        blocking(move || core.apply(entries))
            .await
            .map_err(sm_write_err)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // The view is taken here, while no apply runs (openraft calls this from the state
        // machine's own task); the build itself runs later, beside applies.
        // The view may wait for a merge to finish: off the runtime.
        let core = self.core.clone();
        let view = blocking(move || core.view()).await;
        SnapshotBuilder {
            core: self.core.clone(),
            view: view.map(Some).map_err(Arc::new),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> std::result::Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> std::result::Result<(), StorageError> {
        let core = self.core.clone();
        let meta2 = meta.clone();
        blocking(move || core.install(&meta2, snapshot.get_ref()))
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e).into())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> std::result::Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let core = self.core.clone();
        let current = blocking(move || core.current_snapshot())
            .await
            .map_err(|e| StorageError::from(StorageIOError::read_snapshot(None, &e)))?;
        Ok(current.map(|(meta, bytes)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}
