//! Merge: rewrite the live records of every immutable file into new files, switch to them
//! atomically, remove the old ones.
//!
//! The recipe, and what a crash at each point leaves:
//!
//! 1. Rotate, so every record written so far is in an immutable file (the inputs).
//! 2. Copy each input record that the keydir still points to into outputs named
//!    `<id>.merge`, and sync them. *Crash: open removes the `.merge` files; the old set
//!    stands.*
//! 3. Make every write so far durable (the writes that made the skipped records dead may
//!    still be in the page cache) and check the store is not poisoned; otherwise drop the
//!    outputs and return the error, the inputs untouched.
//!    **Commit**: write the marker `MERGE` (inputs and outputs, with a CRC) with
//!    `atomic_replace`. *From here a crash rolls forward: open finishes steps 4-6.*
//! 4. Rename the outputs to `<id>.data`; point the keydir at them.
//! 5. Remove the inputs and their hints.
//! 6. Write the outputs' hints; remove the marker.
//!
//! Tombstones are dropped: every file older than the active one is an input, so no file that
//! stays can hold an older value they would need to hide. Reads continue throughout (a read
//! that raced with step 5 retries through the keydir); writes go to the active file, which is
//! not an input.
//!
//! **Racing writers.** Step 2 keeps a record only while the keydir still points at it. Under
//! `Always` the keydir holds only durable writes (a batch is published after its fsync), and
//! the batches in the inputs are published before the copy starts; under `Never` and
//! `Interval` it holds page-cache writes, which step 3 makes durable before the commit. Either
//! way, a record is dropped only when what replaced it survives a power cut.

use durable_fs::Source;
use kv_core::format::{
    DecodeError, FILE_HEADER_LEN, FileKind, HintEntry, RECORD_HEADER_LEN, decode_header,
    decode_record, encode_record,
};
use kv_core::{CompactionReport, DataFile, Error, Result};

use crate::commit::{MERGE_MARKER, MergeMarker};
use crate::format::{data_name, file_id32, hint_name, merge_name};
use crate::handles::open_data;
use crate::inner::{HintJob, Inner};
use crate::keydir::{FileStats, Loc};
use crate::options::MergeTriggers;

/// Keys moved to a merge's outputs per hold of the keydir's write lock (see the switch).
const SWITCH_CHUNK: usize = 4096;

/// True when the immutable files meet either trigger.
pub(crate) fn should_merge(inner: &Inner, t: &MergeTriggers) -> bool {
    let active = inner
        .writer
        .as_ref()
        .and_then(|w| file_id32(w.lock().app.data.id));
    let kd = inner.keydir.read();
    let (total, dead) = kd
        .files
        .iter()
        .filter(|(f, _)| Some(**f) != active)
        .fold((0u64, 0u64), |(t, d), (_, s)| (t + s.total, d + s.dead));
    total > 0 && (dead as f64 / total as f64 >= t.fragmentation || dead >= t.dead_bytes)
}

/// An output file being written.
struct Output {
    data: DataFile,
    /// Its id in the keydir.
    small: u32,
    offset: u64,
    hint: Vec<HintEntry>,
}

/// A live record moved from `from` to `to`.
struct Moved {
    key: Box<[u8]>,
    from: Loc,
    to: Loc,
}

/// Runs a merge; see the module docs.
pub(crate) fn merge(inner: &Inner) -> Result<CompactionReport> {
    let _one_at_a_time = inner.merge_lock.lock();
    inner.check_poison()?;
    let writer = inner.writer.as_ref().ok_or(Error::ReadOnly)?;
    // 1. Everything written so far becomes immutable. The inputs are chosen under the writer
    // lock: a rotation right after it must not turn the next active file into an input.
    let (inputs, hint_job) = {
        let mut w = writer.lock();
        // A write that failed while this merge waited for the lock poisoned the store: do
        // not rotate on top of it.
        inner.check_poison()?;
        let job = if w.app.has_records() {
            Some(inner.rotate(&mut w).map_err(|e| inner.fail(e))?)
        } else {
            None
        };
        let active = w.app.data.id;
        let inputs: Vec<u64> = inner
            .files
            .lock()
            .iter()
            .copied()
            .filter(|&id| id != active)
            .collect();
        (inputs, job)
    };
    if let Some(job) = hint_job {
        inner.write_hint(job);
    }
    if inputs.is_empty() {
        return Ok(CompactionReport::default());
    }
    // Every record in the inputs is durable (each input was synced when it was rotated
    // away), but under `Always` a batch becomes visible only after its writer's wait: make
    // them all visible now, or the copy below would take their records for dead ones.
    inner.publish_upto(inner.group.durable());
    let mut outputs: Vec<Output> = Vec::new();
    let mut moved: Vec<Moved> = Vec::new();
    let mut report = CompactionReport::default();
    report.inputs.clone_from(&inputs);
    // 2. Copy live records (on failure, drop the outputs: the old set is untouched).
    if let Err(e) = copy_live(inner, &inputs, &mut outputs, &mut moved, &mut report) {
        for o in &outputs {
            let _ = inner.opts.fs.remove_file(&o.data.path);
        }
        return Err(e);
    }
    report.outputs = outputs.iter().map(|o| o.data.id).collect();
    // 3. Commit, once what made the skipped records dead is durable. A record was skipped
    // because the keydir pointed past it, to a newer write or a delete that may still be only
    // in the page cache (`Never`, `Interval`): without this sync, a power cut after the
    // inputs are removed would leave neither the old value nor the new one. Then, last,
    // fail-stop: a store poisoned meanwhile (a concurrent write's fsync failed) does not
    // commit, and its inputs stay.
    let ready = if inner.opts.regressions.merge_commits_before_durable {
        Ok(()) // the old rule: commit at once
    } else {
        inner
            .wait_durable(inner.last_seq())
            .and_then(|()| inner.check_poison())
    };
    if let Err(e) = ready {
        for o in &outputs {
            let _ = inner.opts.fs.remove_file(&o.data.path);
        }
        return Err(e);
    }
    let marker = MergeMarker {
        inputs: inputs.clone(),
        outputs: report.outputs.clone(),
    };
    // If this fails after its rename, the merge may be committed on disk but not in memory:
    // fail-stop, and let the next open roll forward (or not) from what is on disk.
    inner
        .opts
        .fs
        .atomic_replace(&inner.dir.join(MERGE_MARKER), &marker.encode())
        .map_err(|e| inner.fail(e.into()))?;
    // 4-6. From here on the merge has happened; a failure means the in-memory state no
    // longer matches the disk: poison (reopen rolls forward).
    switch(inner, &inputs, outputs, moved).map_err(|e| inner.fail(e))?;
    Ok(report)
}

fn copy_live(
    inner: &Inner,
    inputs: &[u64],
    outputs: &mut Vec<Output>,
    moved: &mut Vec<Moved>,
    report: &mut CompactionReport,
) -> Result<()> {
    let opts = &inner.opts;
    let mut buf = Vec::new();
    for &id in inputs {
        let input = open_data(&opts.fs, &inner.dir, id)?;
        // Read a record at a time: memory holds one chunk or one record, whatever the
        // file's length.
        let mut src = input.chunks()?;
        let len = src.len();
        report.bytes_before += len.saturating_sub(FILE_HEADER_LEN as u64);
        let mut pos = FILE_HEADER_LEN as u64;
        let file_id = file_id32(id)
            .ok_or_else(|| Error::Internal(format!("input file id {id} past 32 bits")))?;
        while pos < len {
            let corrupt = |e| Error::corrupt(&input.path, pos, e);
            let mut h = [0u8; RECORD_HEADER_LEN];
            let got = src.get(pos, RECORD_HEADER_LEN)?;
            let n = got.len();
            h.get_mut(..n).unwrap_or_default().copy_from_slice(got);
            let head = h.get(..n).unwrap_or_default();
            let hdr = decode_header(head, input.salt, input.version).map_err(corrupt)?;
            // The record's CRC is checked as it streams, before its bytes are held: a damaged
            // length never makes the merge allocate what it claims.
            if pos + hdr.encoded_len() > len {
                return Err(corrupt(DecodeError::Truncated));
            }
            let mut hasher = hdr.crc_start(input.salt, &h);
            let body = pos + RECORD_HEADER_LEN as u64;
            durable_fs::each_chunk(&mut src, body, hdr.body_len(), |c| hasher.update(c))?;
            hdr.crc_matches(hasher).map_err(corrupt)?;
            let whole = usize::try_from(hdr.encoded_len()).unwrap_or(usize::MAX);
            let rest = src.get(pos, whole)?;
            let r = decode_record(rest, input.salt, input.version).map_err(corrupt)?;
            let offset = kv_core::offset32(&input.path, pos)?;
            pos += r.encoded_len() as u64;
            if r.is_tombstone() || r.is_seal() {
                continue;
            }
            let live = inner.keydir.read().map.get(r.key);
            let Some(from) = live.filter(|l| l.file == file_id && l.offset == offset) else {
                continue;
            };
            let len = r.encoded_len() as u64;
            let need_new = match outputs.last() {
                None => true,
                Some(o) => {
                    o.offset > FILE_HEADER_LEN as u64 && o.offset + len > opts.max_file_bytes
                }
            };
            if need_new {
                if let Some(o) = outputs.last_mut() {
                    o.data.file.sync_data()?;
                }
                let (oid, small) = inner.next_id()?;
                let data = inner.create_file(merge_name(oid), oid, FileKind::Merged)?;
                outputs.push(Output {
                    data,
                    small,
                    offset: FILE_HEADER_LEN as u64,
                    hint: Vec::new(),
                });
            }
            let Some(o) = outputs.last_mut() else {
                continue;
            };
            buf.clear();
            // Merge outputs are synced before they count, never torn: synced_seq is moot.
            encode_record(&mut buf, o.data.salt, r.seq, r.seq, 0, r.key, r.value);
            o.data.file.write_all_at(&buf, o.offset)?;
            let to = Loc {
                seq: r.seq,
                file: o.small,
                offset: kv_core::offset32(&o.data.path, o.offset)?,
                value_len: r.value.len() as u32,
            };
            o.hint.push(HintEntry {
                seq: r.seq,
                offset: o.offset,
                value_len: to.value_len,
                flags: 0,
                key: r.key.to_vec(),
            });
            moved.push(Moved {
                key: r.key.into(),
                from,
                to,
            });
            o.offset += len;
            report.records += 1;
            report.bytes_after += len;
        }
    }
    if let Some(o) = outputs.last() {
        o.data.file.sync_data()?;
    }
    Ok(())
}

fn switch(inner: &Inner, inputs: &[u64], outputs: Vec<Output>, moved: Vec<Moved>) -> Result<()> {
    let fs = &inner.opts.fs;
    let dir = &inner.dir;
    // 4. Outputs become data files, then the keydir points at them.
    for o in &outputs {
        fs.rename(&o.data.path, &dir.join(data_name(o.data.id)))?;
    }
    {
        let mut kd = inner.keydir.write();
        for o in &outputs {
            kd.files.insert(
                o.small,
                FileStats {
                    total: o.offset - FILE_HEADER_LEN as u64,
                    dead: 0,
                },
            );
        }
    }
    // The keydir moves to the outputs a chunk of keys at a time, the write lock released in
    // between, so gets wait for one chunk, not for the whole merge. Between chunks a key
    // points to its input copy or to its output copy, both on disk (inputs go only in step
    // 5) and holding the same value; a write between chunks wins as it would after the
    // switch (the chunk sees the key moved on and counts its copy dead).
    for chunk in moved.chunks(SWITCH_CHUNK) {
        let mut kd = inner.keydir.write();
        for m in chunk {
            let key_len = m.key.len();
            if kd.map.get(&m.key) == Some(m.from) {
                kd.map.insert(&m.key, m.to);
            } else if let Some(s) = kd.files.get_mut(&m.to.file) {
                // Overwritten or deleted while the merge ran: its copy is dead already.
                s.dead += m.to.record_len(key_len);
            }
        }
    }
    {
        let mut kd = inner.keydir.write();
        for small in inputs.iter().filter_map(|&id| file_id32(id)) {
            kd.files.remove(&small);
        }
    }
    {
        // The list names the outputs instead of the inputs before any input goes (a crash
        // before this leaves the marker, and the open that rolls it forward fixes the list).
        let mut files = inner.files.lock();
        for id in inputs {
            files.remove(id);
        }
        files.extend(outputs.iter().map(|o| o.data.id));
        inner.store_files(&files)?;
    }
    // 5. The inputs go.
    for &id in inputs {
        inner.handles.evict(id);
        fs.remove_file(&dir.join(data_name(id)))?;
        let hint = dir.join(hint_name(id));
        if fs.exists(&hint)? {
            fs.remove_file(&hint)?;
        }
    }
    // 6. Hints for the outputs, then the marker goes.
    for o in outputs {
        inner.write_hint(HintJob {
            id: o.data.id,
            salt: o.data.salt,
            entries: o.hint,
            len: o.offset,
        });
    }
    fs.remove_file(&dir.join(MERGE_MARKER))?;
    Ok(())
}
