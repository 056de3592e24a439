//! A small workload written directly against [`DurableFs`], used to prove the harness and
//! the durable recipes before any engine exists: numbered data files of checksummed records
//! (created, appended, synced), a `CURRENT` pointer replaced atomically, and old files removed.
//!
//! Each step is acknowledged only after the calls that make it durable returned. With honest
//! directory syncs nothing acknowledged is ever lost; with
//! [`SimFs::set_lying_dir_sync`](super::SimFs::set_lying_dir_sync) created files vanish, `CURRENT` reverts and removed files
//! come back, and the oracle reports it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::Rng;
use super::harness::{BoxError, Verdict, Workload};
use crate::durable::{Access, DurableFs};

/// Record layout: `len: u32 LE | crc32(len bytes ++ payload): u32 LE | payload`.
const RECORD_HEADER: usize = 8;

/// What the workload acknowledges (plus the one issue that may be in flight at a crash).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FilesAck {
    /// File `file` durably holds its first `count` records.
    Records {
        /// File number.
        file: u32,
        /// Records acknowledged.
        count: u32,
    },
    /// `CURRENT` durably says `v{0}`.
    Current(u32),
    /// Removal of file `{0}` was issued (not yet acknowledged): it may or may not be gone.
    Removing(u32),
    /// File `{0}` is durably removed.
    Removed(u32),
}

/// What recovery reads back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FilesState {
    /// Each data file's valid records (up to the first damaged one).
    pub files: BTreeMap<u32, Vec<Vec<u8>>>,
    /// The content of `CURRENT`.
    pub current: Option<Vec<u8>>,
}

/// The workload; `steps` operations per seed.
#[derive(Clone, Debug)]
pub struct FilesWorkload {
    /// Operations per seed.
    pub steps: u32,
    /// The directory it works in.
    pub dir: PathBuf,
}

impl Default for FilesWorkload {
    fn default() -> Self {
        FilesWorkload {
            steps: 14,
            dir: super::sim_dir("files"),
        }
    }
}

fn payload(file: u32, rec: u32) -> Vec<u8> {
    format!("file {file} record {rec}").into_bytes()
}

fn encode(payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len())
        .unwrap_or(u32::MAX)
        .to_le_bytes();
    let mut h = crc32fast::Hasher::new();
    h.update(&len);
    h.update(payload);
    let mut out = Vec::with_capacity(RECORD_HEADER + payload.len());
    out.extend_from_slice(&len);
    out.extend_from_slice(&h.finalize().to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Decodes records until the end or the first damaged one.
fn decode_all(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let (Some(len), Some(crc)) = (bytes.first_chunk::<4>(), bytes.get(4..8)) {
        let n = u32::from_le_bytes(*len) as usize;
        let Some(p) = bytes.get(RECORD_HEADER..RECORD_HEADER + n) else {
            break;
        };
        let mut h = crc32fast::Hasher::new();
        h.update(len);
        h.update(p);
        if h.finalize().to_le_bytes() != crc {
            break;
        }
        out.push(p.to_vec());
        bytes = bytes.get(RECORD_HEADER + n..).unwrap_or_default();
    }
    out
}

impl FilesWorkload {
    fn data_path(&self, id: u32) -> PathBuf {
        self.dir.join(format!("data-{id:04}"))
    }
}

fn parse_id(name: &str) -> Option<u32> {
    name.strip_prefix("data-")?.parse().ok()
}

impl Workload for FilesWorkload {
    type Ack = FilesAck;
    type State = FilesState;

    fn name(&self) -> String {
        "durable-fs".to_owned()
    }

    fn prepare(&self, fs: &DurableFs) -> Result<(), BoxError> {
        fs.create_dir_all(&self.dir)?;
        Ok(())
    }

    fn run(&self, fs: &DurableFs, seed: u64, acks: &mut Vec<FilesAck>) -> Result<(), BoxError> {
        let mut rng = Rng::new(seed);
        let mut live: Vec<u32> = Vec::new(); // oldest first; the last is the one appended to
        let mut counts: BTreeMap<u32, u32> = BTreeMap::new();
        let mut next_file = 0u32;
        let mut next_current = 0u32;
        let mut current_file: Option<(u32, crate::File)> = None;
        for _ in 0..self.steps {
            let choice = if current_file.is_none() {
                4
            } else {
                rng.below(10)
            };
            match choice {
                0..=3 => {
                    let (id, file) = current_file.as_ref().ok_or("no current file")?;
                    let count = counts.entry(*id).or_insert(0);
                    for _ in 0..=rng.below(2) {
                        file.append(&encode(&payload(*id, *count)))?;
                        *count += 1;
                    }
                    file.sync_data()?;
                    acks.push(FilesAck::Records {
                        file: *id,
                        count: *count,
                    });
                }
                4 | 5 => {
                    let id = next_file;
                    next_file += 1;
                    let file = fs.create_new(&self.data_path(id))?;
                    let n = 1 + rng.below(3) as u32;
                    for r in 0..n {
                        file.append(&encode(&payload(id, r)))?;
                    }
                    file.sync_data()?;
                    counts.insert(id, n);
                    live.push(id);
                    current_file = Some((id, file));
                    acks.push(FilesAck::Records { file: id, count: n });
                }
                6 | 7 => {
                    let v = next_current;
                    next_current += 1;
                    fs.atomic_replace(&self.dir.join("CURRENT"), format!("v{v}").as_bytes())?;
                    acks.push(FilesAck::Current(v));
                }
                _ => {
                    if live.len() > 1 {
                        let id = live.remove(0);
                        acks.push(FilesAck::Removing(id));
                        fs.remove_file(&self.data_path(id))?;
                        acks.push(FilesAck::Removed(id));
                    }
                }
            }
        }
        Ok(())
    }

    fn recover(&self, fs: &DurableFs) -> Result<FilesState, BoxError> {
        let mut state = FilesState::default();
        if !fs.exists(&self.dir)? {
            return Ok(state);
        }
        for name in fs.list(&self.dir)? {
            let path = self.dir.join(&name);
            if let Some(id) = parse_id(&name) {
                let bytes = fs.open(&path, Access::Read)?.read_all()?;
                state.files.insert(id, decode_all(&bytes));
            } else if name == "CURRENT" {
                state.current = Some(fs.read(&path)?);
            }
        }
        Ok(state)
    }

    fn check(&self, _seed: u64, acks: &[FilesAck], state: &FilesState) -> Verdict {
        let mut v = Verdict::default();
        let mut expected: BTreeMap<u32, u32> = BTreeMap::new();
        let mut removed = BTreeSet::new();
        let mut removing = None;
        let mut current = None;
        for a in acks {
            match *a {
                FilesAck::Records { file, count } => {
                    expected.insert(file, count);
                }
                FilesAck::Removing(id) => removing = Some(id),
                FilesAck::Removed(id) => {
                    expected.remove(&id);
                    removed.insert(id);
                }
                FilesAck::Current(n) => current = Some(n),
            }
        }
        for (&file, &count) in &expected {
            v.acked_checked += u64::from(count);
            let Some(records) = state.files.get(&file) else {
                if removing == Some(file) {
                    continue; // its removal was in flight
                }
                v.lost += u64::from(count);
                v.problem(|| format!("data-{file:04} with {count} acknowledged records is gone"));
                continue;
            };
            for (j, rec) in records.iter().enumerate() {
                if *rec != payload(file, j as u32) {
                    v.wrong += 1;
                    v.problem(|| format!("data-{file:04} record {j} is {rec:?}"));
                }
            }
            let have = records.len() as u32;
            if have < count {
                v.lost += u64::from(count - have);
                v.problem(|| format!("data-{file:04} has {have} of {count} acknowledged records"));
            }
        }
        for &id in &removed {
            v.acked_checked += 1;
            if state.files.contains_key(&id) {
                v.resurrected += 1;
                v.problem(|| format!("removed data-{id:04} is back"));
            }
        }
        if let Some(n) = current {
            v.acked_checked += 1;
            // The acknowledged value, or the one replace that may have been in flight after it.
            let ok = [format!("v{n}"), format!("v{}", n + 1)];
            match &state.current {
                None => {
                    v.lost += 1;
                    v.problem(|| format!("CURRENT (acknowledged v{n}) is gone"));
                }
                Some(c) if ok.iter().any(|s| s.as_bytes() == c.as_slice()) => {}
                Some(c) => {
                    v.lost += 1;
                    v.problem(|| {
                        format!(
                            "CURRENT is {:?}, acknowledged v{n}",
                            String::from_utf8_lossy(c)
                        )
                    });
                }
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoder_stops_at_damage_and_never_panics() {
        let mut bytes = encode(b"one");
        bytes.extend(encode(b"two"));
        assert_eq!(decode_all(&bytes), vec![b"one".to_vec(), b"two".to_vec()]);
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(decode_all(&bytes), vec![b"one".to_vec()]);
        let mut rng = Rng::new(7);
        for len in 0..200 {
            let mut junk = vec![0u8; len];
            rng.fill(&mut junk);
            let _ = decode_all(&junk);
        }
    }

    #[test]
    fn parse_id_accepts_only_data_files() {
        assert_eq!(parse_id("data-0012"), Some(12));
        assert_eq!(parse_id("CURRENT"), None);
        assert_eq!(parse_id("data-x"), None);
    }
}
