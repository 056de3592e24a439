//! [`StdFs`]: the real filesystem, through `std::fs`. The only module in the workspace that
//! calls `std::fs`.
#![expect(
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "this module is the door: the one place allowed to call std::fs"
)]

use std::fs;
use std::io;
use std::path::Path;

use crate::fs::{EntryKind, Fs, LockToken, OpenMode, RawFile};

#[cfg(not(unix))]
compile_error!("durable-fs supports Unix (Linux first, macOS); Windows support is not written yet");

/// The real filesystem. Linux first; macOS works (`sync_all` is `F_FULLFSYNC`).
#[derive(Clone, Copy, Debug, Default)]
pub struct StdFs;

#[derive(Debug)]
struct StdFile(fs::File);

#[derive(Debug)]
struct StdLock(
    #[expect(dead_code, reason = "held for its Drop: closing releases the lock")] fs::File,
);

impl LockToken for StdLock {}

impl Fs for StdFs {
    fn open_file(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn RawFile>> {
        let mut opts = fs::OpenOptions::new();
        match mode {
            OpenMode::Read => opts.read(true),
            OpenMode::ReadWrite => opts.read(true).write(true),
            OpenMode::CreateNew => opts.read(true).write(true).create_new(true),
        };
        Ok(Box::new(StdFile(opts.open(path)?)))
    }

    fn rename_entry(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove_entry(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn create_dir_entry(&self, path: &Path) -> io::Result<()> {
        fs::create_dir(path)
    }

    fn remove_dir_entry(&self, path: &Path) -> io::Result<()> {
        fs::remove_dir(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        // Opening a directory read-only and fsyncing it is how Linux and macOS make entry
        // changes durable (what PostgreSQL's fsync_fname and LevelDB's SyncDirIfManifest do).
        fs::File::open(path)?.sync_all()
    }

    fn canonical(&self, path: &Path) -> io::Result<std::path::PathBuf> {
        fs::canonicalize(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(path)? {
            let name = entry?.file_name();
            match name.into_string() {
                Ok(s) => names.push(s),
                Err(raw) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("file name {raw:?} is not UTF-8"),
                    ));
                }
            }
        }
        names.sort();
        Ok(names)
    }

    fn entry_kind(&self, path: &Path) -> io::Result<Option<EntryKind>> {
        match fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => Ok(Some(EntryKind::Dir)),
            Ok(_) => Ok(Some(EntryKind::File)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn try_lock(&self, path: &Path) -> io::Result<Box<dyn LockToken>> {
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Box::new(StdLock(file))),
            Err(fs::TryLockError::WouldBlock) => Err(io::ErrorKind::WouldBlock.into()),
            Err(fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

impl RawFile for StdFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(&self.0, buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(&self.0, buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.0.sync_all()
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
}
