//! The Raft type configuration of the replicated key-value store, and its commands.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

openraft::declare_raft_types!(
    /// openraft's type configuration for the replicated key-value store: node ids are `u64`,
    /// nodes carry an address ([`openraft::BasicNode`]), commands are [`Request`]s,
    /// answers [`Response`]s, and a snapshot travels as bytes in memory.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A node id.
pub type NodeId = u64;
/// A log id of this configuration.
pub type LogId = openraft::LogId<NodeId>;
/// A vote of this configuration.
pub type Vote = openraft::Vote<NodeId>;
/// A log entry of this configuration.
pub type Entry = openraft::Entry<TypeConfig>;
/// Snapshot metadata of this configuration.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
/// A membership with the log id that set it.
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
/// openraft's storage error for this configuration.
pub type StorageError = openraft::StorageError<NodeId>;

/// A command of the replicated key-value store: what a client proposes and every node
/// applies, in log order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Set `key` to `value`.
    Put {
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
    },
    /// Remove `key` (also when it is absent).
    Delete {
        /// The key.
        key: Vec<u8>,
    },
}

/// What applying a [`Request`] answered.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// For a delete: whether the key was there. `false` for a put and for other entries.
    pub existed: bool,
    /// Why the request was applied as a no-op: a key or value over the state machine's
    /// limits (every replica refuses it the same way, so they stay identical).
    pub refused: Option<String>,
}
