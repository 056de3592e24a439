#![doc = include_str!("../README.md")]

mod chain;
mod error;
pub mod format;
mod options;
mod reader;
mod recovery;
#[cfg(feature = "sim")]
pub mod torture;
#[cfg(feature = "sim")]
pub mod torture_mt;
mod verify;
mod wal;

pub use error::{CorruptionKind, Error, Result};
pub use format::{Lsn, STORE_KIND};
pub use options::{Options, RecoveryMode, SyncPolicy};
pub use reader::Iter;
pub use recovery::{Damage, RecoveryReport};
pub use verify::{VerifyReport, read_only_iter, read_only_open, verify};
pub use wal::{Wal, WalStats};

// The handles are shared across threads (`Arc<Wal>`): checked at compile time.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Wal>();
    send_sync::<Iter>();
};
