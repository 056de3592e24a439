//! Opening a store: finish or abandon an interrupted merge, load the keydir from hint files
//! or CRC-checked scans, repair a torn tail, start a new active file. [`recover`] returns
//! what it found as a [`Recovered`] value, from which [`Bitcask::open`](crate::Bitcask::open)
//! builds the store.
//!
//! Only the newest file written by the writer can have a torn tail: a data file is synced
//! completely before the next one is created, and merge outputs are synced before the merge
//! commits. Damage anywhere else is corruption, refused with file and offset unless
//! [`RecoveryMode::SkipCorrupt`](kv_core::RecoveryMode::SkipCorrupt) asks to skip it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use durable_fs::{Access, DirLock, DurableFs, Source};
use kv_core::format::{
    FILE_HEADER_LEN, FileHeader, FileKind, HintCheck, HintEntry, HintRef, TOMBSTONE, VERSION,
    VERSION_1, check_hint, encode_hint, for_each_hint_entry, is_own_temp, parse_name,
};
use kv_core::scan::scan_file;
use kv_core::{Appender, CorruptionKind, Damage, DataFile, Error, RecoveryMode, Result, offset32};

use crate::commit::{FILES, MERGE_MARKER, MergeMarker, encode_files, read_files, roll_forward};
use crate::format::{
    DATA_MAGIC, HINT_MAGIC, STORE_KIND, data_name, file_id32, hint_name, merge_name,
};
use crate::image::{self, Covered, Found, IMAGE};
use crate::keydir::{KeyMap, Keydir, Loc};
use crate::options::Options;
use kv_core::key_index::Upsert;

/// What [`Bitcask::open`](crate::Bitcask::open) found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// Data files loaded.
    pub files: usize,
    /// Files whose entries came from a valid hint file.
    pub from_hints: usize,
    /// Files scanned record by record (no hint, or a damaged one).
    pub scanned: usize,
    /// Live keys.
    pub keys: u64,
    /// A torn tail of the newest file, if there was one: cut (a read-only open only
    /// leaves it out in memory; the bytes stay on disk).
    pub truncated_tail: Option<Damage>,
    /// Damaged ranges skipped (only with
    /// [`RecoveryMode::SkipCorrupt`](kv_core::RecoveryMode::SkipCorrupt)).
    pub skipped: Vec<Damage>,
    /// An interrupted merge that had committed was finished (by a read-only open: in memory
    /// only, its outputs read where they are and its inputs left out; nothing on disk
    /// changes).
    pub merge_completed: bool,
    /// Output files of an interrupted, uncommitted merge that were removed.
    pub merge_abandoned_files: usize,
    /// Files whose creation was torn (at most a header long, and that header missing, cut
    /// short or garbage: they cannot hold a record): removed (left on disk by a read-only
    /// open). Under `RecoveryMode::Strict` such a file is an error instead.
    pub removed_torn_files: Vec<PathBuf>,
    /// Where the bytes of a cut torn tail were kept (`quarantine/<file>.<offset>.<crc32>`) before the
    /// cut: recovery never destroys what it cannot prove is garbage. Empty when only zeros
    /// were cut, and for a read-only open (which cuts nothing).
    pub quarantined: Vec<PathBuf>,
    /// Crash leftovers a read-only open (and [`Bitcask::verify`](crate::Bitcask::verify))
    /// leaves alone and does not read: outputs of an uncommitted merge, inputs of a committed
    /// one, hints without a data file. A read-write open removes them.
    pub not_read: Vec<PathBuf>,
    /// Hint files checked against a scan of their data file and found to match (only
    /// [`Bitcask::verify`](crate::Bitcask::verify) checks them; opens use or skip them).
    pub hints_checked: usize,
    /// Intact hint files describing another file or length (crash leftovers opens never
    /// use), found by [`Bitcask::verify`](crate::Bitcask::verify).
    pub stale_hints: Vec<PathBuf>,
    /// The keydir came from the keydir image (`KEYDIR`) written at the last close, for the
    /// files it covers; [`RecoveryReport::files`] minus those were loaded from hints or
    /// scans and applied on top.
    pub from_image: bool,
    /// [`Bitcask::verify`](crate::Bitcask::verify) found the keydir image intact and equal
    /// to the keydir rebuilt from the data files it covers.
    pub image_checked: bool,
    /// An intact keydir image that no longer describes the store's files (a merge or a
    /// crash since it was written): opens do not use it, a read-write open removes it.
    pub stale_image: Option<PathBuf>,
}

/// What recovery hands to the store.
pub(crate) struct Recovered {
    pub keydir: Keydir,
    /// Live data file ids, the new active one included.
    pub files: BTreeSet<u64>,
    /// The next unused file id.
    pub next_id: u64,
    /// The highest seq on disk.
    pub max_seq: u64,
    /// The new active file (`None` read-only).
    pub writer: Option<Appender>,
    pub report: RecoveryReport,
    pub lock: Option<DirLock>,
    /// Merge outputs a read-only open reads under their staged names (see [`Plan`]).
    pub staged: BTreeSet<u64>,
    /// The files of the keydir image the keydir was loaded from.
    pub image_files: Option<Vec<Covered>>,
}

/// How [`load_file`] loads a data file.
#[derive(Clone, Copy)]
struct How {
    /// The newest file the writer wrote: it may have a torn tail.
    newest: bool,
    /// It has a hint file.
    hinted: bool,
    /// For `verify`: scan it even with a hint, and check the hint against the scan.
    verify: bool,
}

/// What one data file contributed.
#[derive(Clone)]
struct Loaded {
    id: u32,
    /// Where its entries came from (the hint, or the data file), for errors.
    path: PathBuf,
    /// From a scan.
    entries: Vec<HintEntry>,
    /// Or from a hint: its bytes, already checked (`for_each_hint_entry` accepts them with
    /// `about`); the entries are read out of them as they are applied, so no key is copied
    /// but into the keydir.
    hint: Option<(Vec<u8>, (u32, u64, u64))>,
    /// Bytes of valid records.
    record_bytes: u64,
}

impl Loaded {
    /// Visits every entry, from the scan or the hint.
    fn for_each<'a>(&'a self, mut f: impl FnMut(HintRef<'a>)) {
        match &self.hint {
            Some((bytes, about)) => {
                for_each_hint_entry(bytes, &HINT_MAGIC, *about, f);
            }
            None => {
                for e in &self.entries {
                    f(HintRef {
                        seq: e.seq,
                        offset: e.offset,
                        value_len: e.value_len,
                        flags: e.flags,
                        key: &e.key,
                    });
                }
            }
        }
    }

    /// No entry at all.
    fn is_empty(&self) -> bool {
        let mut any = false;
        self.for_each(|_| any = true);
        !any
    }
}

/// Removes `path` if it exists.
fn remove_if_exists(fs: &DurableFs, path: &Path) -> Result<()> {
    if fs.exists(path)? {
        fs.remove_file(path)?;
    }
    Ok(())
}

/// Opens the store in `dir`; see the module docs. A read-only open takes no lock, so a
/// writer may create, list, merge or remove files while it reads: an error seen while the
/// files list or the directory changed (or while a merge's marker was there) is retried,
/// with a short wait, up to 20 times before it is believed.
pub(crate) fn recover(dir: &Path, opts: &Options, verify: bool) -> Result<Recovered> {
    if !opts.read_only {
        return recover_once(dir, opts, verify);
    }
    // What a writer changes: the files list and the directory (a merge's marker and outputs).
    let state = || {
        let mut names = opts.fs.list(dir).unwrap_or_default();
        names.sort();
        let list = kv_core::read_at_most(&opts.fs, &dir.join(FILES), crate::commit::MAX_FILES_LEN);
        (list.ok().flatten(), names)
    };
    let mut attempts = 0u32;
    loop {
        let before = state();
        let r = recover_once(dir, opts, verify);
        attempts += 1;
        if r.is_ok() || attempts >= 20 || state() == before {
            return r;
        }
        std::thread::sleep(std::time::Duration::from_millis(u64::from(attempts)));
    }
}

/// `verify`: scan every data file (hints are not used but checked against the scan).
fn recover_once(dir: &Path, opts: &Options, verify: bool) -> Result<Recovered> {
    opts.validate()?;
    let fs = &opts.fs;
    // Only a bitcask store (or, read-write, an empty or new directory): anything else is
    // refused before anything is created, read or removed.
    let lock = if opts.read_only {
        fs.require_store(dir, &STORE_KIND)??;
        None
    } else {
        Some(fs.open_store(dir, &STORE_KIND)??)
    };
    let mut report = RecoveryReport::default();
    let plan = finish_interrupted_merge(fs, dir, opts.read_only, &mut report)?;
    account_for_files(fs, dir, &plan, opts, &mut report)?;
    let listed = list_files(fs, dir, &plan)?;
    // The keydir image, if one is there, intact, and bound to files that are all still
    // there unchanged (`verify` does not use it: it checks it against the scans).
    let listed_path = |id: u64| listed.data.contains(&id).then(|| plan.path(dir, id));
    let header = match image::read_header(fs, dir) {
        Ok(Found::Image(h, file)) if image::bound(fs, &h, listed_path) => Some((h, file)),
        Ok(Found::Image(..)) => {
            report.stale_image = Some(dir.join(IMAGE));
            None
        }
        Ok(Found::Absent) => None,
        Ok(Found::Damaged) if verify => {
            return Err(Error::corrupt(dir.join(IMAGE), 0, CorruptionKind::BadHint));
        }
        Ok(Found::Damaged) => {
            log::warn!("{}: damaged; opening from hints", dir.join(IMAGE).display());
            None
        }
        // Unreadable: `verify` says so (an error, not damage); an open does without it.
        Err(e) if verify => return Err(e),
        Err(e) => {
            log::warn!(
                "{}: not read ({e}); opening from hints",
                dir.join(IMAGE).display()
            );
            None
        }
    };
    let covered: BTreeSet<u64> = header
        .iter()
        .flat_map(|(h, _)| h.files.iter().map(|c| u64::from(c.id)))
        .collect();
    // With an image bound to the files, the files it covers are not read; the others are
    // loaded first, so that the image's keydir is sized for them too (no growth by doubling
    // when they are applied), then applied on top of it if they are newer.
    let candidate = header.is_some() && !verify;
    let mut files = BTreeSet::new();
    let mut build = Build::default();
    if !candidate {
        // One allocation for the keydir, sized from the hints (an upper bound: every entry
        // of every hint), rather than growth by doubling and its copies. Best effort: an
        // estimate that cannot be allocated is simply not reserved.
        let (keys, key_bytes) = hinted_entries(fs, dir, &listed);
        build.keydir.map.try_reserve(keys, key_bytes);
    }
    // `verify` with an image bound to the files: the keydir of the files it covers, rebuilt
    // from their scans, to compare it with.
    let mut check = (verify && header.is_some()).then(Build::default);
    // Files loaded while an image is in use: applied on top of it once known to be newer.
    let mut pending = Vec::new();
    // Data files holding nothing (the active file of an open that wrote nothing): a
    // read-write open unlists and removes them, so they do not pile up one per open.
    let mut empty = Vec::new();
    let load = |id: u64, report: &mut RecoveryReport| {
        let how = How {
            newest: Some(id) == listed.newest_written,
            hinted: listed.hints.contains(&id),
            verify,
        };
        load_file(fs, (dir, plan.path(dir, id)), opts, id, how, report)
    };
    for &id in &listed.data {
        if candidate && covered.contains(&id) {
            files.insert(id);
            continue;
        }
        if let Some(l) = load(id, &mut report)? {
            if !opts.read_only && l.record_bytes == 0 && l.is_empty() {
                empty.push(id);
                continue;
            }
            files.insert(id);
            if let Some(c) = check.as_mut().filter(|_| covered.contains(&id)) {
                c.apply(l.clone())?;
            }
            if candidate {
                pending.push(l);
            } else {
                build.apply(l)?;
            }
        }
    }
    if candidate {
        // Room for every entry of the files loaded since (each adds at most one key).
        let mut extra = (0usize, 0usize);
        for l in &pending {
            l.for_each(|e| {
                extra.0 += 1;
                extra.1 += e.key.len();
            });
        }
        let image = header
            .as_ref()
            .and_then(|(h, file)| image::load(file, h, extra));
        match image {
            // Sound only if everything loaded since is newer than everything the image saw:
            // the image keeps no tombstones, so an older record could not be ordered against
            // it.
            Some(img) if pending.iter().all(|l| newer_than(l, img.max_seq)) => {
                build = Build::from_image(img);
                report.from_image = true;
            }
            img => {
                if img.is_some() {
                    log::warn!(
                        "{}: files loaded after it hold older records; opening from hints",
                        dir.join(IMAGE).display()
                    );
                    // Never usable with these files: reported (and removed by a read-write
                    // open) like an image whose files changed.
                    report.stale_image = Some(dir.join(IMAGE));
                } else {
                    log::warn!("{}: damaged; opening from hints", dir.join(IMAGE).display());
                }
                // Its keydir goes before the rebuild.
                drop(img);
                let (keys, key_bytes) = hinted_entries(fs, dir, &listed);
                build.keydir.map.try_reserve(keys, key_bytes);
                for &id in covered.iter().filter(|id| files.contains(id)) {
                    if let Some(l) = load(id, &mut report)? {
                        build.apply(l)?;
                    }
                }
            }
        }
        for l in pending {
            build.apply(l)?;
        }
    }
    if let (Some(c), Some((h, file))) = (check, &header) {
        // The same keys at the same places, and a max seq no lower than the files' (it is
        // the writer's last seq at close: a record merged away may have had it).
        match image::load(file, h, (0, 0)) {
            Some(img) if image::same(&img.keydir, &c.keydir) && img.max_seq >= c.max_seq => {
                report.image_checked = true;
            }
            _ => return Err(Error::corrupt(dir.join(IMAGE), 0, CorruptionKind::BadHint)),
        }
    }
    let image_files = report
        .from_image
        .then(|| header.map(|(h, _)| h.files))
        .flatten();
    if !opts.read_only && report.stale_image.is_some() {
        // Derived data describing files that changed: never usable again.
        remove_if_exists(fs, &dir.join(IMAGE))?;
    }
    if opts.read_only {
        // What a read-write open would remove and a reader leaves alone: named, not read.
        for n in fs.list(dir)? {
            let leftover = match parse_name(&n) {
                Some((id, "merge")) => !plan.staged.contains(&id),
                Some((id, "data")) => plan.dropped.contains(&id),
                Some((id, "hint")) => !files.contains(&id),
                _ => false,
            };
            if leftover {
                report.not_read.push(dir.join(n));
            }
        }
    }
    let Build {
        keydir, max_seq, ..
    } = build;
    report.files = files.len();
    report.keys = keydir.map.len() as u64;
    let mut next_id = listed.max_id + 1;
    let writer = if opts.read_only {
        None
    } else {
        let id = next_id;
        next_id += 1;
        if file_id32(id).is_none() {
            return Err(id_out_of_range(dir.join(&listed.max_name), id));
        }
        let data = DataFile::create(
            fs,
            dir.join(data_name(id)),
            &DATA_MAGIC,
            id,
            FileKind::Written,
        )?;
        files.insert(id);
        // The list names exactly the files loaded and the new one, before anything is
        // written to it (a store written before format 2 gets its first list here).
        fs.atomic_replace(&dir.join(FILES), &encode_files(&files))?;
        // Unlisted first, removed second: a crash in between leaves unlisted empty files,
        // which the next open removes.
        for id in empty {
            fs.remove_file(&dir.join(data_name(id)))?;
            remove_if_exists(fs, &dir.join(hint_name(id)))?;
        }
        let start = FILE_HEADER_LEN as u64;
        Some(Appender::new(data, start, start, max_seq))
    };
    Ok(Recovered {
        keydir,
        files,
        next_id,
        max_seq,
        writer,
        report,
        lock,
        staged: plan.staged,
        image_files,
    })
}

/// The store's files once an interrupted merge is settled.
#[derive(Default)]
struct Plan {
    /// The data files the store must hold (the files list, with a committed merge's outputs
    /// in place of its inputs), or `None` for a store without a list.
    expected: Option<BTreeSet<u64>>,
    /// Outputs of a committed merge still under their staged name (`N.merge`): only a
    /// read-only open, which rolls the merge forward in memory, leaves them there.
    staged: BTreeSet<u64>,
    /// Inputs of a committed merge, whether still on disk or not: never loaded.
    dropped: BTreeSet<u64>,
}

impl Plan {
    /// Where data file `id` is read from.
    fn path(&self, dir: &Path, id: u64) -> PathBuf {
        if self.staged.contains(&id) {
            dir.join(merge_name(id))
        } else {
            dir.join(data_name(id))
        }
    }
}

/// An interrupted merge: finish it if it committed, else drop its outputs; then temporary
/// files of interrupted atomic replaces go. A read-only open changes nothing: it rolls a
/// committed merge forward in memory (the outputs read where they are, the inputs left out)
/// and ignores an uncommitted one's outputs, as a read-write open would remove them.
fn finish_interrupted_merge(
    fs: &DurableFs,
    dir: &Path,
    read_only: bool,
    report: &mut RecoveryReport,
) -> Result<Plan> {
    let names = fs.list(dir)?;
    let mut plan = Plan {
        expected: read_files(fs, dir)?.map(|ids| ids.into_iter().collect()),
        ..Plan::default()
    };
    if names.iter().any(|n| n == MERGE_MARKER) {
        let marker = MergeMarker::read(fs, dir)?;
        if let Some(set) = &mut plan.expected {
            // The list may predate the commit: the outputs replace the inputs, written
            // before the roll-forward removes anything (idempotent if it was already so).
            for id in &marker.inputs {
                set.remove(id);
            }
            set.extend(marker.outputs.iter().copied());
            if !read_only {
                fs.atomic_replace(&dir.join(FILES), &encode_files(set))?;
            }
        }
        if read_only {
            for &id in &marker.outputs {
                if names.contains(&merge_name(id)) {
                    plan.staged.insert(id);
                } else if !names.contains(&data_name(id)) {
                    let path = dir.join(MERGE_MARKER);
                    return Err(Error::corrupt(path, 0, CorruptionKind::BadMergeMarker));
                }
            }
            plan.dropped.extend(marker.inputs.iter().copied());
        } else {
            roll_forward(fs, dir, &marker)?;
        }
        report.merge_completed = true;
    } else if !read_only {
        for n in &names {
            if matches!(parse_name(n), Some((_, "merge"))) {
                fs.remove_file(&dir.join(n))?;
                report.merge_abandoned_files += 1;
            }
        }
    }
    if !read_only {
        // Only the store's own temporaries (of the marker, the list and hints): not a
        // user's file.
        for n in names
            .iter()
            .filter(|n| is_own_temp(n, &[MERGE_MARKER, FILES, IMAGE], &["hint"]))
        {
            remove_if_exists(fs, &dir.join(n))?;
        }
    }
    Ok(plan)
}

/// Every data file accounted for. With a files list: a listed file that is missing is
/// `MissingFile`; an unlisted one that can hold no record (a file created just before a
/// crash, before the list named it) is removed (read-write) and reported (under
/// `RecoveryMode::Strict` a complete empty one is kept, a torn one refused); an unlisted one
/// with records is `UnlistedFile`. Without a list (a store written before format 2, or one
/// whose creation a crash cut before its first list): a format-2 data file holding records
/// means the list was lost, refused as `BadManifest`.
fn account_for_files(
    fs: &DurableFs,
    dir: &Path,
    plan: &Plan,
    opts: &Options,
    report: &mut RecoveryReport,
) -> Result<()> {
    // A read-only open's view of a committed merge: its outputs present (staged or not), its
    // inputs gone.
    let present: BTreeSet<u64> = fs
        .list(dir)?
        .iter()
        .filter_map(|n| match parse_name(n) {
            Some((id, "data")) => Some(id),
            _ => None,
        })
        .chain(plan.staged.iter().copied())
        .filter(|id| !plan.dropped.contains(id))
        .collect();
    let header_only = |id: u64| -> Result<bool> {
        let len = fs.open(&plan.path(dir, id), Access::Read)?.len()?;
        Ok(len <= FILE_HEADER_LEN as u64)
    };
    let Some(expected) = plan.expected.as_ref() else {
        for &id in &present {
            let path = plan.path(dir, id);
            let file = fs.open(&path, Access::Read)?;
            let mut h = [0u8; FILE_HEADER_LEN];
            if file.len()? > FILE_HEADER_LEN as u64 {
                file.read_exact_at(&mut h, 0)?;
                if FileHeader::decode(&h, &DATA_MAGIC).is_ok_and(|h| h.version != VERSION_1) {
                    let kind = CorruptionKind::BadManifest;
                    return Err(Error::corrupt(dir.join(FILES), 0, kind));
                }
            }
        }
        return Ok(());
    };
    if let Some(&id) = expected.iter().find(|id| !present.contains(id)) {
        return Err(Error::corrupt(
            dir.join(data_name(id)),
            0,
            CorruptionKind::MissingFile,
        ));
    }
    for &id in present.iter().filter(|id| !expected.contains(id)) {
        let path = dir.join(data_name(id));
        if !header_only(id)? {
            return Err(Error::corrupt(path, 0, CorruptionKind::UnlistedFile));
        }
        if opts.recovery == RecoveryMode::Strict {
            // Strict removes nothing: a complete empty file stays (and is loaded, as it
            // always was); a torn header is an error, as it always was.
            let mut h = [0u8; FILE_HEADER_LEN];
            let file = fs.open(&path, Access::Read)?;
            let whole = file.len()? == FILE_HEADER_LEN as u64;
            if whole {
                file.read_exact_at(&mut h, 0)?;
            }
            if whole && FileHeader::decode(&h, &DATA_MAGIC).is_ok() {
                continue;
            }
            return Err(Error::corrupt(path, 0, CorruptionKind::UnlistedFile));
        }
        log::info!(
            "{}: created just before a crash, never listed; removed",
            path.display()
        );
        if !opts.read_only {
            fs.remove_file(&path)?;
        }
        report.removed_torn_files.push(path);
    }
    Ok(())
}

/// The store's files.
struct Listed {
    /// Data file ids, ascending.
    data: Vec<u64>,
    hints: BTreeSet<u64>,
    /// The highest data file id (new files take higher ones), and that file's name.
    max_id: u64,
    max_name: String,
    /// The newest file the writer appended to (not a merge output): the one a crash may
    /// have torn.
    newest_written: Option<u64>,
}

fn list_files(fs: &DurableFs, dir: &Path, plan: &Plan) -> Result<Listed> {
    let mut out = Listed {
        data: Vec::new(),
        hints: BTreeSet::new(),
        max_id: 0,
        max_name: String::new(),
        newest_written: None,
    };
    for n in fs.list(dir)? {
        // The next id comes from the data files only: a hint without its data file (an
        // orphan, or a stray name) neither advances it nor is used (a hint is only read for
        // a data file of the same id, and only if it carries that file's salt).
        let id = match parse_name(&n) {
            Some((id, "data")) if plan.dropped.contains(&id) => continue,
            Some((id, "data" | "merge")) if plan.staged.contains(&id) => {
                if !out.data.contains(&id) {
                    out.data.push(id);
                }
                id
            }
            Some((id, "data")) => {
                out.data.push(id);
                id
            }
            Some((id, "hint")) => {
                out.hints.insert(id);
                continue;
            }
            _ => continue,
        };
        if file_id32(id).is_none() {
            // Refused, not aliased: two files must never share a keydir id.
            return Err(id_out_of_range(dir.join(&n), id));
        }
        if id >= out.max_id {
            out.max_id = id;
            out.max_name = n;
        }
    }
    out.data.sort_unstable();
    for &id in &out.data {
        let file = fs.open(&plan.path(dir, id), Access::Read)?;
        let mut h = [0u8; FILE_HEADER_LEN];
        if file.len()? >= FILE_HEADER_LEN as u64 {
            file.read_exact_at(&mut h, 0)?;
        }
        // The raw kind field, checked or not: a merge output with a damaged header is still
        // not the file a crash could have torn.
        let merged = FileHeader::peek_kind(&h) == Some(FileKind::Merged);
        if !merged {
            out.newest_written = Some(id);
        }
    }
    Ok(out)
}

/// Loads data file `id` from its hint (if intact, describing this very file, and covering
/// it to the last byte) or by a scan; `None` when the file's creation was torn (removed).
fn load_file(
    fs: &DurableFs,
    (dir, path): (&Path, PathBuf),
    opts: &Options,
    id: u64,
    how: How,
    report: &mut RecoveryReport,
) -> Result<Option<Loaded>> {
    let How {
        newest,
        hinted,
        verify,
    } = how;
    let len = fs.open(&path, Access::Read)?.len()?;
    let small = file_id32(id).ok_or_else(|| id_out_of_range(path.clone(), id))?;
    // Read-write unless read-only: any file may need its zero tail trimmed.
    let access = if opts.read_only {
        Access::Read
    } else {
        Access::ReadWrite
    };
    let (data, header) = match DataFile::open(fs, path.clone(), &DATA_MAGIC, id, access) {
        Ok(opened) => opened,
        Err(Error::Corruption {
            offset: 0,
            kind:
                CorruptionKind::ShortHeader
                | CorruptionKind::BadMagic
                | CorruptionKind::BadHeaderChecksum,
            ..
        }) if len <= FILE_HEADER_LEN as u64 && opts.recovery != RecoveryMode::Strict => {
            // Created, then the crash came before its header was synced (or the header's
            // fsync failed and the store stopped, fail-stop, while later files were made by a
            // reopen): it cannot hold a record, so nothing is lost with it.
            if !opts.read_only {
                fs.remove_file(&path)?;
            }
            report.removed_torn_files.push(path);
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let about = (header.salt, id, len);
    let from_hint = if hinted && !verify {
        kv_core::read_at_most(fs, &dir.join(hint_name(id)), kv_core::MAX_FILE_LEN)
            .ok()
            .flatten()
            .filter(|b| for_each_hint_entry(b, &HINT_MAGIC, about, |_| {}))
    } else {
        None
    };
    if let Some(bytes) = from_hint {
        report.from_hints += 1;
        let record_bytes = len - FILE_HEADER_LEN as u64;
        return Ok(Some(Loaded {
            id: small,
            path: dir.join(hint_name(id)),
            entries: Vec::new(),
            hint: Some((bytes, about)),
            record_bytes,
        }));
    }
    report.scanned += 1;
    // Read a chunk at a time: memory is bounded whatever the file's length.
    let mut src = data.chunks()?;
    let file_len = src.len();
    let scanned = scan_file(&mut src, header.salt, header.version, newest, opts.recovery)?
        .map_err(|(offset, kind)| Error::corrupt(&path, offset, kind))?;
    let salvaged = !scanned.skipped.is_empty();
    if verify && hinted {
        // Every byte of every file: the hint too, against what the scan found.
        let hint_path = dir.join(hint_name(id));
        let bytes = kv_core::read_at_most(fs, &hint_path, kv_core::MAX_FILE_LEN)?;
        let about = (header.salt, id, len);
        match bytes.map(|b| check_hint(&b, &HINT_MAGIC, about, &scanned.entries)) {
            Some(HintCheck::Matches) => report.hints_checked += 1,
            Some(HintCheck::Stale) => report.stale_hints.push(hint_path),
            _ => return Err(Error::corrupt(hint_path, 0, CorruptionKind::BadHint)),
        }
    }
    for &(offset, len, kind) in &scanned.skipped {
        report
            .skipped
            .push(Damage::new(path.clone(), offset, len, kind));
    }
    if let Some((offset, kind)) = scanned.torn_tail {
        let cut = file_len - offset;
        log::warn!(
            "{}: torn tail at offset {offset}: {cut} bytes ({kind})",
            path.display()
        );
        report.truncated_tail = Some(Damage::new(path.clone(), offset, cut, kind));
    }
    // Trim a torn tail or preallocated zeros: immutable files end at their records.
    // (Under salvage, only a torn tail is cut: skipped ranges stay for inspection.)
    let cut = match scanned.torn_tail {
        Some((offset, _)) => Some(offset),
        None => (scanned.end < file_len && !salvaged).then_some(scanned.end),
    };
    if !opts.read_only {
        repair(fs, (dir, &data, &mut src), cut, newest, report)?;
        // The newest file's records are durable now (repair synced them) and no write will
        // follow them (the writer starts a new file): sealed, so bit rot in them is
        // corruption at later opens, not a torn tail, even if the files made after it go
        // (merged away) and it is the newest written file again.
        let last_seq = scanned.entries.iter().map(|e| e.seq).max();
        let sealable = newest && !scanned.sealed && !salvaged && data.version == VERSION;
        if let Some(seq) = last_seq.filter(|_| sealable) {
            data.append_seal(scanned.end, seq)?;
            // And a hint, so later opens need not scan it (best effort, like every hint).
            let len = scanned.end + kv_core::format::RECORD_HEADER_LEN as u64;
            let hint = encode_hint(header, &HINT_MAGIC, &scanned.entries, len);
            if fs.atomic_replace(&dir.join(hint_name(id)), &hint).is_err() {
                log::warn!(
                    "{}: hint not written; the next open scans it",
                    path.display()
                );
            }
        }
    }
    Ok(Some(Loaded {
        id: small,
        path,
        entries: scanned.entries,
        hint: None,
        record_bytes: scanned.record_bytes,
    }))
}

/// Cuts a scanned file at `cut` (a torn tail, or preallocated zeros), keeping the cut bytes in
/// `quarantine/` first, durably; or, for the newest file, syncs what the scan read.
fn repair(
    fs: &DurableFs,
    (dir, data, src): (&Path, &DataFile, &mut dyn Source),
    cut: Option<u64>,
    newest: bool,
    report: &mut RecoveryReport,
) -> Result<()> {
    let Some(at) = cut else {
        if newest {
            // What the scan read may have come from the page cache after a process crash:
            // make it durable before it counts as durable, and before a newer file makes
            // this one immutable.
            data.file.sync_data()?;
        }
        return Ok(());
    };
    // Nothing destroyed: the cut bytes (a torn tail; trimmed zeros are nothing) go to
    // quarantine/ first, durably.
    if let Some(kept) = fs.quarantine_tail(dir, &data.path, src, at)? {
        let (path, kept_at) = (data.path.display(), kept.display());
        log::warn!("{path}: cut at offset {at}; the bytes are kept in {kept_at}");
        report.quarantined.push(kept);
    }
    data.file.set_len(at)?;
    data.file.sync_data()?;
    // Its hint (if any) described the bytes just cut.
    remove_if_exists(fs, &dir.join(hint_name(data.id)))
}

/// The keydir built file by file (each file's entries applied as it is loaded, so only one
/// file's entries are in memory besides the keydir), and the highest seq. The newest record
/// of a key (highest seq) wins whatever file it is in and whatever the order the files come
/// in (merge outputs carry old seqs under new ids); the newest tombstone of a key hides
/// every value of it with a lower seq.
#[derive(Default)]
struct Build {
    keydir: Keydir,
    tombs: KeyMap<u64>,
    max_seq: u64,
}

impl Build {
    /// Starts from a keydir image (whose files are all older than any applied after).
    fn from_image(img: image::Image) -> Build {
        Build {
            keydir: img.keydir,
            tombs: KeyMap::default(),
            max_seq: img.max_seq,
        }
    }

    fn apply(&mut self, l: Loaded) -> Result<()> {
        let Build {
            keydir,
            tombs,
            max_seq,
        } = self;
        keydir.files.entry(l.id).or_default().total = l.record_bytes;
        let mut failed = None;
        l.for_each(|e| {
            if failed.is_some() {
                return;
            }
            *max_seq = (*max_seq).max(e.seq);
            match offset32(&l.path, e.offset) {
                Ok(offset) => {
                    let loc = Loc {
                        seq: e.seq,
                        file: l.id,
                        offset,
                        value_len: e.value_len,
                    };
                    apply_entry(keydir, tombs, e, loc);
                }
                Err(err) => failed = Some(err),
            }
        });
        failed.map_or(Ok(()), Err)
    }
}

/// Entries and key bytes in the hints of the listed data files, from their trailers, each
/// bounded by its hint's length (a damaged or crafted count cannot make the reservation
/// larger than the files are).
fn hinted_entries(fs: &DurableFs, dir: &Path, listed: &Listed) -> (usize, usize) {
    use kv_core::format::HINT_ENTRY_LEN;
    let (mut keys, mut key_bytes) = (0usize, 0usize);
    for id in listed.data.iter().filter(|id| listed.hints.contains(id)) {
        let Ok(file) = fs.open(&dir.join(hint_name(*id)), Access::Read) else {
            continue;
        };
        // A hint longer than any an open reads is not read at all: not counted.
        let Ok(len) = file.len() else { continue };
        let Some(body) = len
            .checked_sub((FILE_HEADER_LEN + 20) as u64)
            .filter(|_| len <= kv_core::MAX_FILE_LEN)
        else {
            continue;
        };
        let mut count = [0u8; 8];
        if file.read_exact_at(&mut count, len - 12).is_err() {
            continue;
        }
        let n = u64::from_le_bytes(count).min(body / HINT_ENTRY_LEN as u64);
        keys = keys.saturating_add(n as usize);
        key_bytes = key_bytes.saturating_add((body - n * HINT_ENTRY_LEN as u64) as usize);
    }
    (keys, key_bytes)
}

/// True when every record `l` holds is newer than `seq`.
fn newer_than(l: &Loaded, seq: u64) -> bool {
    let mut newer = true;
    l.for_each(|e| newer &= e.seq > seq);
    newer
}

/// A file id past the keydir's 32-bit ids, named by `path`.
fn id_out_of_range(path: PathBuf, id: u64) -> Error {
    let kind = CorruptionKind::OutOfRange {
        what: "file id",
        value: id,
        max: u64::from(u32::MAX),
    };
    Error::corrupt(path, 0, kind)
}

fn apply_entry(keydir: &mut Keydir, tombs: &mut KeyMap<u64>, e: HintRef<'_>, loc: Loc) {
    let len = loc.record_len(e.key.len());
    let dead = |kd: &mut Keydir, file: u32, n: u64| kd.files.entry(file).or_default().dead += n;
    if e.flags & TOMBSTONE != 0 {
        dead(keydir, loc.file, len);
        if keydir.map.get(e.key).is_some_and(|v| v.seq > e.seq) {
            return; // an older delete
        }
        if let Some(old) = keydir.map.remove(e.key) {
            dead(keydir, old.file, old.record_len(e.key.len()));
        }
        let seq = tombs.entry(Box::from(e.key)).or_insert(0);
        *seq = (*seq).max(e.seq);
        return;
    }
    if !tombs.is_empty() && tombs.get(e.key).is_some_and(|&t| t > e.seq) {
        dead(keydir, loc.file, len); // deleted later
        return;
    }
    match keydir.map.upsert(e.key, loc, |cur| cur.seq <= loc.seq) {
        Upsert::Inserted => {}
        Upsert::Replaced(old) => dead(keydir, old.file, old.record_len(e.key.len())),
        Upsert::Kept => dead(keydir, loc.file, len),
    }
}
