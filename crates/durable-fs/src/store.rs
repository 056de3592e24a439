//! Store identity: which engine a directory belongs to, checked before anything is changed.
//!
//! Every store holds a small text file, [`IDENTITY_FILE`], written atomically when a
//! read-write open creates the store (before any other file of it), and checked at every
//! open, read-only ones included:
//!
//! ```text
//! durable-store 1\n
//! engine bitcask\n
//! format 2\n
//! crc 89abcdef\n
//! ```
//!
//! `crc` is the CRC-32 (IEEE, as `crc32fast`) of every byte before it, in eight lowercase hex
//! digits. `format` is the newest on-disk format the store's files may use (a read-write open
//! of newer code raises it; older code refuses a format it does not know).
//!
//! A store written before identity files existed has none: it is recognised by its file
//! names and magic numbers ([`StoreKind`]), and only a read-write open adds the file. A
//! directory holding anything its engine does not own ([`StoreKind::owns`], plus `LOCK`,
//! `IDENTITY`, its temporary, `quarantine/` and a filesystem's `lost+found/`) is refused
//! as [`StoreError::ForeignFile`], so an engine never writes into, or removes files from, a
//! directory that is not its store.

use std::path::{Path, PathBuf};

use crate::durable::{Access, DirLock, DurableFs, LOCK_FILE_NAME, QUARANTINE_DIR, TEMP_SUFFIX};
use crate::error::Result;
use crate::fs::EntryKind;

/// The identity file's name.
pub const IDENTITY_FILE: &str = "IDENTITY";

/// The longest identity file read; anything longer is not one.
pub const IDENTITY_MAX_LEN: u64 = 256;

/// The first line of every identity file.
const IDENTITY_MAGIC: &str = "durable-store 1";

/// What an engine tells the identity check about its stores.
#[derive(Clone, Copy, Debug)]
pub struct StoreKind {
    /// The engine's name, as the identity file and the command line spell it.
    pub engine: &'static str,
    /// The newest on-disk format the engine writes.
    pub format: u32,
    /// True for the names of the engine's own files (data, index, hint, manifest, marker and
    /// their temporaries); the common names (`LOCK`, `IDENTITY`, `quarantine/`) are not asked.
    pub owns: fn(&str) -> bool,
    /// The magic number a file of this name starts with, if its kind has one: how a store
    /// without an identity file is recognised.
    pub magic: fn(&str) -> Option<&'static [u8]>,
}

/// A store's identity, as its [`IDENTITY_FILE`] records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The engine that owns the store.
    pub engine: String,
    /// The newest on-disk format its files may use.
    pub format: u32,
}

impl Identity {
    /// The file's bytes (see the module docs).
    ///
    /// ```
    /// use durable_fs::Identity;
    /// let id = Identity { engine: "wal".into(), format: 2 };
    /// let bytes = id.encode();
    /// assert!(bytes.starts_with(b"durable-store 1\nengine wal\nformat 2\ncrc "));
    /// assert_eq!(Identity::decode(&bytes), Some(id));
    /// ```
    pub fn encode(&self) -> Vec<u8> {
        let body = format!(
            "{IDENTITY_MAGIC}\nengine {}\nformat {}\n",
            self.engine, self.format
        );
        let crc = crc32fast::hash(body.as_bytes());
        format!("{body}crc {crc:08x}\n").into_bytes()
    }

    /// Parses the file's bytes; `None` for anything [`encode`](Self::encode) would not write.
    pub fn decode(b: &[u8]) -> Option<Identity> {
        let text = std::str::from_utf8(b).ok()?;
        let at = text.rfind("crc ")?;
        let (body, tail) = text.split_at(at);
        let crc = tail.strip_prefix("crc ")?.strip_suffix('\n')?;
        if crc.len() != 8 || u32::from_str_radix(crc, 16).ok()? != crc32fast::hash(body.as_bytes())
        {
            return None;
        }
        let mut lines = body.strip_suffix('\n')?.split('\n');
        if lines.next()? != IDENTITY_MAGIC {
            return None;
        }
        let engine = lines.next()?.strip_prefix("engine ")?;
        let format = lines.next()?.strip_prefix("format ")?;
        let valid = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        };
        if lines.next().is_some() || !valid(engine) || !format.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let id = Identity {
            engine: engine.to_owned(),
            format: format.parse().ok()?,
        };
        // The one canonical spelling (no leading zeros, no `+`).
        (id.encode() == b).then_some(id)
    }
}

/// Why a directory is not a store of the engine asked for. Nothing was changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The directory does not exist (a read-only open creates nothing).
    #[error("{}: no such directory", dir.display())]
    NoSuchDir {
        /// The directory.
        dir: PathBuf,
    },
    /// The directory exists but holds no store (a read-only open creates nothing).
    #[error("{}: not a store (it holds no {engine} files)", dir.display())]
    NotAStore {
        /// The directory.
        dir: PathBuf,
        /// The engine that was asked for.
        engine: &'static str,
    },
    /// The identity file names another engine.
    #[error("{}: a {found} store, not a {expected} store", dir.display())]
    WrongEngine {
        /// The directory.
        dir: PathBuf,
        /// The engine the store belongs to.
        found: String,
        /// The engine that was asked for.
        expected: &'static str,
    },
    /// A file the engine does not own: the directory is not (only) its store.
    #[error(
        "{}: not a file of a {engine} store; refusing a directory that holds other files \
         (nothing was changed)",
        path.display()
    )]
    ForeignFile {
        /// The file (or directory).
        path: PathBuf,
        /// The engine that was asked for.
        engine: &'static str,
    },
    /// The identity file is damaged (or not one).
    #[error("{}: damaged identity file", path.display())]
    BadIdentity {
        /// The identity file.
        path: PathBuf,
    },
    /// The store uses a format this code does not know.
    #[error("{}: format {found}, newer than this code's {supported}", path.display())]
    NewerFormat {
        /// The identity file.
        path: PathBuf,
        /// The store's format.
        found: u32,
        /// The newest format this code reads.
        supported: u32,
    },
}

/// What [`DurableFs::inspect_store`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Found {
    /// No directory there.
    Missing,
    /// A directory with no store in it (nothing, or only a lock file or quarantine).
    Empty,
    /// A store of the engine, with its identity (`None`: written before identity files).
    Store(Option<Identity>),
}

/// Names every store may hold whatever its engine.
fn common(name: &str) -> bool {
    name == LOCK_FILE_NAME
        || name == IDENTITY_FILE
        || name.strip_suffix(TEMP_SUFFIX) == Some(IDENTITY_FILE)
}

/// Directories every store may hold: its quarantine, and a filesystem's `lost+found` when
/// the store is a mount point's root.
fn common_dir(name: &str) -> bool {
    name == QUARANTINE_DIR || name == "lost+found"
}

impl DurableFs {
    /// What `dir` is for an engine of `kind`, without changing anything: missing, an empty
    /// directory, or a store of that engine; a typed [`StoreError`] when it is another
    /// engine's store, holds files the engine does not own, or its identity file is damaged
    /// or newer than `kind.format`.
    ///
    /// ```
    /// use durable_fs::{DurableFs, Found, StoreError, StoreKind};
    /// # fn main() -> Result<(), durable_fs::Error> {
    /// # let tmp = tempfile::tempdir().unwrap();
    /// let kind = StoreKind {
    ///     engine: "demo",
    ///     format: 1,
    ///     owns: |name| name.ends_with(".log"),
    ///     magic: |_| None,
    /// };
    /// let fs = DurableFs::real();
    /// let dir = tmp.path().join("db");
    /// assert_eq!(fs.inspect_store(&dir, &kind)?, Ok(Found::Missing));
    /// fs.create_dir_all(&dir)?;
    /// fs.claim_store(&dir, &kind)?; // a read-write open, once it holds the lock
    /// assert!(matches!(fs.inspect_store(&dir, &kind)?, Ok(Found::Store(Some(_)))));
    /// fs.atomic_replace(&dir.join("notes.txt"), b"mine")?;
    /// assert!(matches!(
    ///     fs.inspect_store(&dir, &kind)?,
    ///     Err(StoreError::ForeignFile { .. })
    /// ));
    /// # Ok(()) }
    /// ```
    pub fn inspect_store(
        &self,
        dir: &Path,
        kind: &StoreKind,
    ) -> Result<std::result::Result<Found, StoreError>> {
        match self.kind(dir)? {
            Some(EntryKind::Dir) => {}
            _ => return Ok(Ok(Found::Missing)),
        }
        let names = self.list(dir)?;
        let identity = if names.iter().any(|n| n == IDENTITY_FILE) {
            match self.read_identity(dir, kind)? {
                Ok(id) => Some(id),
                Err(e) => return Ok(Err(e)),
            }
        } else {
            None
        };
        let mut own = 0usize;
        // Without an identity file, its files' magic numbers say whose store it is: files
        // carrying the engine's magic vote for it; one starting with other non-zero bytes
        // votes against (a file too short to hold a magic, or zeros, was cut by a crash
        // during its creation and says nothing). Refused only when nothing votes for it.
        let (mut votes_for, mut against) = (0usize, None);
        for n in &names {
            let path = dir.join(n);
            let is_dir = self.kind(&path)? == Some(EntryKind::Dir);
            if (common(n) && !is_dir) || (common_dir(n) && is_dir) {
                continue;
            }
            if is_dir || !(kind.owns)(n) {
                return Ok(Err(StoreError::ForeignFile {
                    path,
                    engine: kind.engine,
                }));
            }
            if identity.is_none()
                && let Some(magic) = (kind.magic)(n)
            {
                let file = self.open(&path, Access::Read)?;
                let mut head = vec![0u8; magic.len()];
                if file.len()? >= magic.len() as u64 {
                    file.read_exact_at(&mut head, 0)?;
                    if head == magic {
                        votes_for += 1;
                    } else if head.iter().any(|&b| b != 0) {
                        against.get_or_insert(path);
                    }
                }
            }
            own += 1;
        }
        if let (None, 0, Some(path)) = (&identity, votes_for, against) {
            return Ok(Err(StoreError::ForeignFile {
                path,
                engine: kind.engine,
            }));
        }
        Ok(Ok(match identity {
            Some(id) => Found::Store(Some(id)),
            None if own == 0 => Found::Empty,
            None => Found::Store(None),
        }))
    }

    /// For a read-only open: [`inspect_store`](Self::inspect_store), with a missing or empty
    /// directory an error too ([`StoreError::NoSuchDir`], [`StoreError::NotAStore`]): a
    /// reader creates nothing. Returns the store's identity (`None` for a store written before
    /// identity files).
    pub fn require_store(
        &self,
        dir: &Path,
        kind: &StoreKind,
    ) -> Result<std::result::Result<Option<Identity>, StoreError>> {
        Ok(match self.inspect_store(dir, kind)? {
            Ok(Found::Store(id)) => Ok(id),
            Ok(Found::Missing) => Err(StoreError::NoSuchDir {
                dir: dir.to_path_buf(),
            }),
            Ok(Found::Empty) => Err(StoreError::NotAStore {
                dir: dir.to_path_buf(),
                engine: kind.engine,
            }),
            Err(e) => Err(e),
        })
    }

    /// For a read-write open, before it creates anything: [`inspect_store`](Self::inspect_store)
    /// then, when `dir` may be used, creates it if missing, takes its lock and
    /// [`claims`](Self::claim_store) it. A refusal changes nothing.
    pub fn open_store(
        &self,
        dir: &Path,
        kind: &StoreKind,
    ) -> Result<std::result::Result<DirLock, StoreError>> {
        if let Err(e) = self.inspect_store(dir, kind)? {
            return Ok(Err(e));
        }
        self.create_dir_all(dir)?;
        let lock = self.lock_dir(dir)?;
        // Checked again under the lock: what a writer that held it may have changed.
        Ok(self.claim_store(dir, kind)?.map(|()| lock))
    }

    /// Reads and checks `dir`'s identity file against `kind`.
    fn read_identity(
        &self,
        dir: &Path,
        kind: &StoreKind,
    ) -> Result<std::result::Result<Identity, StoreError>> {
        let path = dir.join(IDENTITY_FILE);
        let file = self.open(&path, Access::Read)?;
        let bad = || StoreError::BadIdentity { path: path.clone() };
        if file.len()? > IDENTITY_MAX_LEN {
            return Ok(Err(bad()));
        }
        let Some(id) = Identity::decode(&file.read_all()?) else {
            return Ok(Err(bad()));
        };
        if id.engine != kind.engine {
            return Ok(Err(StoreError::WrongEngine {
                dir: dir.to_path_buf(),
                found: id.engine,
                expected: kind.engine,
            }));
        }
        if id.format > kind.format {
            return Ok(Err(StoreError::NewerFormat {
                path,
                found: id.format,
                supported: kind.format,
            }));
        }
        Ok(Ok(id))
    }

    /// For a read-write open holding the directory's lock: checks `dir` as
    /// [`inspect_store`](Self::inspect_store) does, then writes its identity file (atomically,
    /// directory synced) if it has none or records an older format. Call it before the store
    /// creates any other file, so a new store's first file is its identity.
    pub fn claim_store(
        &self,
        dir: &Path,
        kind: &StoreKind,
    ) -> Result<std::result::Result<(), StoreError>> {
        let found = match self.inspect_store(dir, kind)? {
            Ok(found) => found,
            Err(e) => return Ok(Err(e)),
        };
        let current = match found {
            Found::Store(Some(id)) => id.format >= kind.format,
            Found::Missing | Found::Empty | Found::Store(None) => false,
        };
        if !current {
            let id = Identity {
                engine: kind.engine.to_owned(),
                format: kind.format,
            };
            self.atomic_replace(&dir.join(IDENTITY_FILE), &id.encode())?;
        }
        Ok(Ok(()))
    }

    /// Which of `kinds` owns the store in `dir`: the one its identity file names, or (a store
    /// without one) the only one that recognises every file. `Ok(Err(..))` when the directory
    /// is missing, holds no store, or no engine owns it (the error of the engine that owns
    /// the most of its files, naming a file it does not own).
    pub fn detect_store<'k>(
        &self,
        dir: &Path,
        kinds: &[&'k StoreKind],
    ) -> Result<std::result::Result<&'k StoreKind, StoreError>> {
        let names = self.list(dir).unwrap_or_default();
        let mut best: Option<(usize, StoreError)> = None;
        for &k in kinds {
            match self.inspect_store(dir, k)? {
                Ok(Found::Store(_)) => return Ok(Ok(k)),
                Ok(Found::Missing) => {
                    return Ok(Err(StoreError::NoSuchDir {
                        dir: dir.to_path_buf(),
                    }));
                }
                Ok(Found::Empty) => {
                    return Ok(Err(StoreError::NotAStore {
                        dir: dir.to_path_buf(),
                        engine: "store",
                    }));
                }
                Err(StoreError::WrongEngine { found, .. })
                    if kinds.iter().any(|k| k.engine == found) => {}
                Err(e) => {
                    // The error of the engine owning the most files names what is foreign.
                    let owned = names.iter().filter(|n| (k.owns)(n)).count();
                    if best.as_ref().is_none_or(|(most, _)| owned > *most) {
                        best = Some((owned, e));
                    }
                }
            }
        }
        Ok(Err(best.map_or_else(
            || StoreError::NotAStore {
                dir: dir.to_path_buf(),
                engine: "store",
            },
            |(_, e)| e,
        )))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    const DEMO: StoreKind = StoreKind {
        engine: "demo",
        format: 2,
        owns: |n| n.ends_with(".log"),
        magic: |_| Some(b"DEMO"),
    };
    const OTHER: StoreKind = StoreKind {
        engine: "other",
        format: 1,
        owns: |n| n.ends_with(".dat"),
        magic: |_| None,
    };

    #[test]
    fn identity_round_trips_and_refuses_every_flip_and_cut() {
        let id = Identity {
            engine: "lsm-hash".into(),
            format: 2,
        };
        let b = id.encode();
        assert_eq!(Identity::decode(&b), Some(id));
        for i in 0..b.len() {
            for bit in 0..8 {
                let mut d = b.clone();
                d[i] ^= 1 << bit;
                assert_eq!(Identity::decode(&d), None, "flip at {i} bit {bit}");
            }
            assert_eq!(Identity::decode(&b[..i]), None, "cut at {i}");
        }
        let mut longer = b.clone();
        longer.push(b'\n');
        assert_eq!(Identity::decode(&longer), None);
    }

    #[test]
    fn inspect_classifies_and_never_writes() {
        let tmp = tempfile::tempdir().unwrap();
        let fs = DurableFs::real();
        let dir = tmp.path().join("s");
        assert_eq!(fs.inspect_store(&dir, &DEMO).unwrap(), Ok(Found::Missing));
        assert!(!fs.exists(&dir).unwrap());
        fs.create_dir_all(&dir).unwrap();
        assert_eq!(fs.inspect_store(&dir, &DEMO).unwrap(), Ok(Found::Empty));
        fs.create_dir_all(&dir.join(QUARANTINE_DIR)).unwrap();
        fs.atomic_replace(&dir.join(LOCK_FILE_NAME), b"").unwrap();
        assert_eq!(fs.inspect_store(&dir, &DEMO).unwrap(), Ok(Found::Empty));
        // A legacy store: recognised by names and magic.
        fs.atomic_replace(&dir.join("1.log"), b"DEMO....").unwrap();
        assert_eq!(
            fs.inspect_store(&dir, &DEMO).unwrap(),
            Ok(Found::Store(None))
        );
        // Another engine's legacy store is foreign to this one, and detected as its own.
        assert!(matches!(
            fs.inspect_store(&dir, &OTHER).unwrap(),
            Err(StoreError::ForeignFile { .. })
        ));
        assert_eq!(
            fs.detect_store(&dir, &[&OTHER, &DEMO])
                .unwrap()
                .unwrap()
                .engine,
            "demo"
        );
        // A file named like ours with another magic, beside one of ours: the engine's own
        // recovery judges it (a torn creation, or damage naming it).
        fs.atomic_replace(&dir.join("2.log"), b"XXXX....").unwrap();
        assert_eq!(
            fs.inspect_store(&dir, &DEMO).unwrap(),
            Ok(Found::Store(None))
        );
        // Only files named like ours, none with our magic: not ours.
        let lone = tmp.path().join("lone");
        fs.create_dir_all(&lone).unwrap();
        fs.atomic_replace(&lone.join("2.log"), b"XXXX....").unwrap();
        assert!(matches!(
            fs.inspect_store(&lone, &DEMO).unwrap(),
            Err(StoreError::ForeignFile { path, .. }) if path.ends_with("2.log")
        ));
        // A zero-filled one (a creation cut by a crash) says nothing against it.
        fs.atomic_replace(&lone.join("2.log"), &[0u8; 8]).unwrap();
        assert_eq!(
            fs.inspect_store(&lone, &DEMO).unwrap(),
            Ok(Found::Store(None))
        );
        fs.remove_file(&dir.join("2.log")).unwrap();
        // A short file (a creation cut by a crash) is accepted.
        fs.atomic_replace(&dir.join("3.log"), b"DE").unwrap();
        assert_eq!(
            fs.inspect_store(&dir, &DEMO).unwrap(),
            Ok(Found::Store(None))
        );
        let names = fs.list(&dir).unwrap();
        // Claim writes the identity; then the other engine is told whose store it is.
        fs.claim_store(&dir, &DEMO).unwrap().unwrap();
        let mut after = fs.list(&dir).unwrap();
        after.retain(|n| n != IDENTITY_FILE);
        assert_eq!(after, names);
        assert_eq!(
            fs.inspect_store(&dir, &OTHER).unwrap(),
            Err(StoreError::WrongEngine {
                dir: dir.clone(),
                found: "demo".into(),
                expected: "other"
            })
        );
        // A foreign file, a foreign directory.
        fs.atomic_replace(&dir.join("draft.tmp"), b"mine").unwrap();
        assert!(matches!(
            fs.inspect_store(&dir, &DEMO).unwrap(),
            Err(StoreError::ForeignFile { .. })
        ));
        fs.remove_file(&dir.join("draft.tmp")).unwrap();
        fs.create_dir_all(&dir.join("sub.log")).unwrap();
        assert!(matches!(
            fs.inspect_store(&dir, &DEMO).unwrap(),
            Err(StoreError::ForeignFile { .. })
        ));
        fs.remove_dir(&dir.join("sub.log")).unwrap();
        // Damaged or newer identity.
        let newer = Identity {
            engine: "demo".into(),
            format: 3,
        };
        fs.atomic_replace(&dir.join(IDENTITY_FILE), &newer.encode())
            .unwrap();
        assert!(matches!(
            fs.inspect_store(&dir, &DEMO).unwrap(),
            Err(StoreError::NewerFormat { found: 3, .. })
        ));
        fs.atomic_replace(&dir.join(IDENTITY_FILE), b"durable-store 1\n")
            .unwrap();
        assert!(matches!(
            fs.inspect_store(&dir, &DEMO).unwrap(),
            Err(StoreError::BadIdentity { .. })
        ));
    }

    #[test]
    fn claim_raises_an_older_format_and_keeps_a_current_one() {
        let tmp = tempfile::tempdir().unwrap();
        let fs = DurableFs::real();
        let dir = tmp.path();
        let old = Identity {
            engine: "demo".into(),
            format: 1,
        };
        fs.atomic_replace(&dir.join(IDENTITY_FILE), &old.encode())
            .unwrap();
        fs.claim_store(dir, &DEMO).unwrap().unwrap();
        let now = Identity::decode(&fs.read(&dir.join(IDENTITY_FILE)).unwrap()).unwrap();
        assert_eq!(now.format, 2);
        // Refused claims write nothing.
        assert!(fs.claim_store(dir, &OTHER).unwrap().is_err());
        let mut names = fs.list(dir).unwrap();
        names.sort();
        assert_eq!(names, vec![IDENTITY_FILE.to_owned()]);
    }
}
