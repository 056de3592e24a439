//! The store's crash-torture workload: the key-value workload and oracle of
//! `bitcask::torture` (overwrites, deletes, batches, `Always`/`Never` sync, reopens), with
//! compactions in place of merges and 4 KiB segments so segments freeze, snapshot and merge
//! constantly. Crashes land inside freezes, compactions and manifest switches.

use std::path::{Path, PathBuf};

use bitcask::torture::{KvEvent, KvState, KvStore, check_kv, recover_kv, run_kv};
use durable_fs::DurableFs;
use durable_fs::sim::harness::{BoxError, Verdict, Workload};

use crate::{LsmHash, Options, SyncPolicy};

impl KvStore for LsmHash {
    fn open_store(fs: &DurableFs, dir: &Path, sync: SyncPolicy) -> Result<Self, BoxError> {
        let opts = Options::default()
            .with_fs(fs.clone())
            .with_max_segment_bytes(4096)
            .with_sync(sync)
            // Compaction is driven by the workload, so runs are deterministic.
            .with_compaction_min_segments(0);
        Ok(LsmHash::open(dir, opts)?)
    }

    fn apply(&self, batch: &[(Vec<u8>, Option<Vec<u8>>)]) -> Result<(), BoxError> {
        Ok(self.write(batch)?)
    }

    fn sync_all(&self) -> Result<(), BoxError> {
        Ok(self.sync()?)
    }

    fn get_value(&self, key: &[u8]) -> Result<Option<Vec<u8>>, BoxError> {
        Ok(self.get(key)?)
    }

    fn compact(&self) -> Result<(), BoxError> {
        self.compact_now()?;
        Ok(())
    }

    fn read_all(&self) -> Result<KvState, BoxError> {
        Ok(self.iter().collect::<Result<_, _>>()?)
    }

    fn close_store(self) -> Result<(), BoxError> {
        Ok(self.close()?)
    }
}

/// The workload: `steps` operations per seed in `dir`.
#[derive(Clone, Debug)]
pub struct LsmWorkload {
    /// Operations per seed.
    pub steps: u32,
    /// Store directory on the simulated disk.
    pub dir: PathBuf,
}

impl Default for LsmWorkload {
    fn default() -> Self {
        LsmWorkload {
            steps: 40,
            dir: durable_fs::sim::sim_dir("lsm-hash"),
        }
    }
}

impl Workload for LsmWorkload {
    type Ack = KvEvent;
    type State = KvState;

    fn name(&self) -> String {
        "lsm-hash".to_owned()
    }

    fn prepare(&self, fs: &DurableFs) -> Result<(), BoxError> {
        fs.create_dir_all(&self.dir)?;
        Ok(())
    }

    fn run(&self, fs: &DurableFs, seed: u64, ev: &mut Vec<KvEvent>) -> Result<(), BoxError> {
        run_kv::<LsmHash>(fs, &self.dir, self.steps, seed, ev)
    }

    fn recover(&self, fs: &DurableFs) -> Result<KvState, BoxError> {
        recover_kv::<LsmHash>(fs, &self.dir)
    }

    fn check(&self, _seed: u64, events: &[KvEvent], state: &KvState) -> Verdict {
        check_kv(events, state)
    }
}

/// The concurrent workload (`bitcask::torture_mt`) on lsm-hash: writer threads, a reader and
/// a compacting thread at once, 4 KiB segments.
pub fn concurrent() -> bitcask::torture_mt::ConcurrentKv<LsmHash> {
    bitcask::torture_mt::ConcurrentKv::new("lsm-hash-mt", durable_fs::sim::sim_dir("lsm-hash-mt"))
}
