//! [`RecordingFs`]: a wrapper that logs every primitive operation, so tests can check the
//! order of syscalls a recipe issues (for example, that `create_new` syncs the parent
//! directory before it returns).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::fs::{EntryKind, Fs, LockToken, OpenMode, RawFile};

/// One primitive operation seen by [`RecordingFs`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// [`Fs::open_file`].
    Open(PathBuf, OpenMode),
    /// [`Fs::rename_entry`].
    Rename(PathBuf, PathBuf),
    /// [`Fs::remove_entry`].
    Remove(PathBuf),
    /// [`Fs::create_dir_entry`].
    CreateDir(PathBuf),
    /// [`Fs::remove_dir_entry`].
    RemoveDir(PathBuf),
    /// [`Fs::sync_dir`].
    SyncDir(PathBuf),
    /// [`Fs::try_lock`].
    Lock(PathBuf),
    /// [`RawFile::write_all_at`]: path, offset, length.
    Write(PathBuf, u64, u64),
    /// [`RawFile::sync_data`].
    SyncData(PathBuf),
    /// [`RawFile::sync_all`].
    SyncAll(PathBuf),
    /// [`RawFile::set_len`].
    SetLen(PathBuf, u64),
}

/// Logs every mutating or syncing call, then forwards it to the wrapped [`Fs`].
///
/// ```
/// use std::sync::Arc;
/// use durable_fs::{DurableFs, Event, RecordingFs, StdFs};
///
/// # let tmp = tempfile::tempdir().unwrap();
/// let rec = RecordingFs::new(Arc::new(StdFs));
/// let fs = DurableFs::new(Arc::new(rec.clone()));
/// let path = tmp.path().join("a");
/// fs.create_new(&path).unwrap();
/// assert_eq!(rec.events().last(), Some(&Event::SyncDir(tmp.path().to_path_buf())));
/// ```
#[derive(Clone, Debug)]
pub struct RecordingFs {
    inner: Arc<dyn Fs>,
    log: Arc<Mutex<Vec<Event>>>,
}

impl RecordingFs {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Fs>) -> Self {
        RecordingFs {
            inner,
            log: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Everything logged so far, oldest first.
    pub fn events(&self) -> Vec<Event> {
        self.log.lock().clone()
    }

    /// Empties the log.
    pub fn clear(&self) {
        self.log.lock().clear();
    }

    fn push(&self, e: Event) {
        self.log.lock().push(e);
    }
}

#[derive(Debug)]
struct RecordingFile {
    inner: Box<dyn RawFile>,
    path: PathBuf,
    log: Arc<Mutex<Vec<Event>>>,
}

impl Fs for RecordingFs {
    fn open_file(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn RawFile>> {
        self.push(Event::Open(path.to_path_buf(), mode));
        let inner = self.inner.open_file(path, mode)?;
        Ok(Box::new(RecordingFile {
            inner,
            path: path.to_path_buf(),
            log: Arc::clone(&self.log),
        }))
    }

    fn rename_entry(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.push(Event::Rename(from.to_path_buf(), to.to_path_buf()));
        self.inner.rename_entry(from, to)
    }

    fn remove_entry(&self, path: &Path) -> io::Result<()> {
        self.push(Event::Remove(path.to_path_buf()));
        self.inner.remove_entry(path)
    }

    fn create_dir_entry(&self, path: &Path) -> io::Result<()> {
        self.push(Event::CreateDir(path.to_path_buf()));
        self.inner.create_dir_entry(path)
    }

    fn remove_dir_entry(&self, path: &Path) -> io::Result<()> {
        self.push(Event::RemoveDir(path.to_path_buf()));
        self.inner.remove_dir_entry(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.push(Event::SyncDir(path.to_path_buf()));
        self.inner.sync_dir(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.inner.list_dir(path)
    }

    fn entry_kind(&self, path: &Path) -> io::Result<Option<EntryKind>> {
        self.inner.entry_kind(path)
    }

    fn canonical(&self, path: &Path) -> io::Result<std::path::PathBuf> {
        self.inner.canonical(path)
    }

    fn try_lock(&self, path: &Path) -> io::Result<Box<dyn LockToken>> {
        self.push(Event::Lock(path.to_path_buf()));
        self.inner.try_lock(path)
    }
}

impl RawFile for RecordingFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.log
            .lock()
            .push(Event::Write(self.path.clone(), offset, buf.len() as u64));
        self.inner.write_all_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.log.lock().push(Event::SyncData(self.path.clone()));
        self.inner.sync_data()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.log.lock().push(Event::SyncAll(self.path.clone()));
        self.inner.sync_all()
    }

    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.log.lock().push(Event::SetLen(self.path.clone(), len));
        self.inner.set_len(len)
    }
}
