//! openraft's own storage test suite (`openraft::testing::Suite::test_all`), on the real
//! filesystem and on the simulated one.

use durable_fs::sim::{SimFs, sim_dir};
use durable_raft::log::LogOptions;
use durable_raft::sm::SmOptions;
use durable_raft::{LogStore, StateMachine, StorageError, TypeConfig};
use openraft::StorageIOError;
use openraft::testing::{StoreBuilder, Suite};
use tempfile::TempDir;

fn io(e: durable_raft::Error) -> StorageError {
    StorageIOError::write(&e).into()
}

struct RealFs;

impl StoreBuilder<TypeConfig, LogStore<TypeConfig>, StateMachine, TempDir> for RealFs {
    async fn build(&self) -> Result<(TempDir, LogStore<TypeConfig>, StateMachine), StorageError> {
        let tmp = tempfile::tempdir().expect("tempdir");
        let log = LogStore::open(tmp.path().join("log")).map_err(io)?;
        let sm = StateMachine::open(tmp.path().join("sm")).map_err(io)?;
        Ok((tmp, log, sm))
    }
}

struct Simulated;

impl StoreBuilder<TypeConfig, LogStore<TypeConfig>, StateMachine, SimFs> for Simulated {
    async fn build(&self) -> Result<(SimFs, LogStore<TypeConfig>, StateMachine), StorageError> {
        let sim = SimFs::new();
        let fs = sim.durable();
        let dir = sim_dir("raft");
        let log = LogStore::open_with(dir.join("log"), LogOptions::default().with_fs(fs.clone()))
            .map_err(io)?;
        let sm = StateMachine::open_with(dir.join("sm"), SmOptions::default().with_fs(fs))
            .map_err(io)?;
        Ok((sim, log, sm))
    }
}

#[test]
fn openraft_suite_on_the_real_filesystem() -> Result<(), Box<StorageError>> {
    Suite::test_all(RealFs).map_err(Box::new)
}

#[test]
fn openraft_suite_on_the_simulated_filesystem() -> Result<(), Box<StorageError>> {
    Suite::test_all(Simulated).map_err(Box::new)
}
