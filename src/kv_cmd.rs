//! `durable kv --engine E --dir DIR ...`: the key-value engines from the command line.

use std::io::{self, BufRead, Write};
use std::path::Path;
use std::process::ExitCode;

use bitcask::Bitcask;
use clap::{Subcommand, ValueEnum};
use kv_core::{KvStore, SyncPolicy, WriteBatch};
use lsm_hash::LsmHash;

use crate::wal_cmd::SyncArg;

/// The key-value engines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Engine {
    /// The Bitcask store.
    Bitcask,
    /// The DDIA log-structured hash table.
    LsmHash,
}

impl Engine {
    /// The name the command line and identity files use.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Bitcask => "bitcask",
            Engine::LsmHash => "lsm-hash",
        }
    }
}

/// `durable kv` subcommands.
#[derive(Subcommand, Debug)]
pub enum KvCommand {
    /// Read `put KEY VALUE` / `del KEY` / `merge` lines from stdin; print `ack <n>` once each
    /// is durable (`merged` after a merge).
    Load {
        /// `always`: ack after fsync; `never`: ack after the write, sync at the end.
        #[arg(long, value_enum, default_value_t = SyncArg::Always)]
        sync: SyncArg,
        /// Rotate data files at this size.
        #[arg(long)]
        file_bytes: Option<u64>,
    },
    /// Print the value of KEY (exit 1 if it is not there).
    Get {
        /// The key.
        key: String,
    },
    /// Set KEY to VALUE, durably.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Delete KEY, durably.
    Del {
        /// The key.
        key: String,
    },
    /// Print `KEY VALUE` for every live key, sorted by key.
    Dump,
    /// Merge / compact now.
    Merge,
    /// Check every file and record; name the file and offset of any damage (exit 1).
    Verify,
    /// Print counts and sizes.
    Stats,
}

/// A read error: damage (exit 1, named file and offset) or anything else (exit 2).
enum Corrupt {
    At(String),
    Other(String),
}

impl From<kv_core::Error> for Corrupt {
    fn from(e: kv_core::Error) -> Self {
        match e {
            kv_core::Error::Corruption { path, offset, kind } => {
                Corrupt::At(format!("{} offset {offset}: {kind}", path.display()))
            }
            other => Corrupt::Other(other.to_string()),
        }
    }
}

impl From<Corrupt> for String {
    fn from(c: Corrupt) -> String {
        match c {
            Corrupt::At(s) => format!("corrupt {s}"),
            Corrupt::Other(s) => s,
        }
    }
}

/// One put or delete as a batch.
fn batch(key: &[u8], value: Option<&[u8]>) -> WriteBatch {
    let mut b = WriteBatch::new();
    match value {
        Some(v) => b.put(key, v),
        None => b.delete(key),
    }
    b
}

fn err(e: kv_core::Error) -> String {
    e.to_string()
}

/// How a command opens the store.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Writes, with durability per `--sync` (default always).
    Write {
        sync: SyncArg,
        file_bytes: Option<u64>,
        /// May create a store (`load`, `put`); `del` and `merge` need one.
        create: bool,
    },
    /// Reads only: no lock, nothing written.
    Read,
}

/// Which engine owns `dir`: the one its identity file (or, for a store written before
/// identity files, its files' names and magic numbers) says. `given` must agree. A missing or
/// empty directory has no engine yet: a writer may create a store of `given` there; a reader
/// is refused. Another engine's store, a WAL, or a directory of other files: refused, nothing
/// changed.
fn resolve_engine(given: Option<Engine>, dir: &Path, write: bool) -> Result<Engine, Corrupt> {
    use durable_fs::StoreError;
    let kinds = [
        &bitcask::STORE_KIND,
        &lsm_hash::STORE_KIND,
        &wal::STORE_KIND,
    ];
    let found = durable_fs::DurableFs::real()
        .detect_store(dir, &kinds)
        .map_err(|e| Corrupt::Other(e.to_string()))?;
    let engine = |name: &str| match name {
        "bitcask" => Some(Engine::Bitcask),
        "lsm-hash" => Some(Engine::LsmHash),
        _ => None,
    };
    match found {
        Ok(kind) => {
            let Some(found) = engine(kind.engine) else {
                return Err(Corrupt::Other(format!(
                    "{}: a {} store, not a key-value store (try `durable {} ...`)",
                    dir.display(),
                    kind.engine,
                    kind.engine
                )));
            };
            match given {
                Some(g) if g != found => Err(Corrupt::Other(format!(
                    "{}: a {} store, not a {} store (nothing was changed)",
                    dir.display(),
                    kind.engine,
                    g.name()
                ))),
                _ => Ok(found),
            }
        }
        Err(StoreError::NoSuchDir { .. } | StoreError::NotAStore { .. }) if write => given
            .ok_or_else(|| {
                Corrupt::Other(format!(
                    "{}: no store yet: give --engine bitcask|lsm-hash to create one",
                    dir.display()
                ))
            }),
        Err(StoreError::BadIdentity { path }) => Err(Corrupt::At(format!(
            "{} offset 0: {}",
            path.display(),
            kv_core::CorruptionKind::BadIdentity
        ))),
        // With the engine given, its own check names what it does not own.
        Err(StoreError::ForeignFile { .. }) if given.is_some() => {
            let kind = match given {
                Some(Engine::LsmHash) => &lsm_hash::STORE_KIND,
                _ => &bitcask::STORE_KIND,
            };
            match durable_fs::DurableFs::real().inspect_store(dir, kind) {
                Ok(Err(e)) => Err(Corrupt::Other(e.to_string())),
                Ok(Ok(_)) => Ok(given.unwrap_or(Engine::Bitcask)),
                Err(e) => Err(Corrupt::Other(e.to_string())),
            }
        }
        Err(e) => Err(Corrupt::Other(e.to_string())),
    }
}

/// What an open found, for stderr: nothing when there is nothing to say.
fn report_lines(engine: Engine, db: &dyn std::any::Any, read_only: bool) -> Vec<String> {
    let mut out = Vec::new();
    let torn = |d: &kv_core::Damage| {
        let what = if read_only {
            "left out; nothing changed (read-only)"
        } else {
            "cut"
        };
        format!(
            "recovery: torn tail of {} bytes at {} offset {} ({}): {what}",
            d.len,
            d.path.display(),
            d.offset,
            d.kind
        )
    };
    let skipped = |d: &kv_core::Damage| {
        format!(
            "recovery: skipped {} damaged bytes at {} offset {} ({})",
            d.len,
            d.path.display(),
            d.offset,
            d.kind
        )
    };
    let kept =
        |p: &std::path::PathBuf| format!("recovery: the cut bytes are kept in {}", p.display());
    let removed = |p: &str| {
        if read_only {
            format!("recovery: {p}: a crash leftover, not read (a read-write open removes it)")
        } else {
            format!("recovery: {p}: a crash leftover, removed")
        }
    };
    match engine {
        Engine::Bitcask => {
            let Some(db) = db.downcast_ref::<Bitcask>() else {
                return out;
            };
            let r = db.recovery_report();
            out.extend(r.truncated_tail.iter().map(torn));
            out.extend(r.quarantined.iter().map(kept));
            out.extend(r.skipped.iter().map(skipped));
            out.extend(
                r.removed_torn_files
                    .iter()
                    .map(|p| removed(&p.display().to_string())),
            );
            if r.merge_completed {
                out.push(if read_only {
                    "recovery: an interrupted merge had committed: read as finished, in memory \
                     only (a read-write open finishes it on disk)"
                        .to_owned()
                } else {
                    "recovery: finished an interrupted merge".to_owned()
                });
            }
            if r.merge_abandoned_files > 0 && !read_only {
                out.push(format!(
                    "recovery: removed {} output files of an interrupted, uncommitted merge",
                    r.merge_abandoned_files
                ));
            }
        }
        Engine::LsmHash => {
            let Some(db) = db.downcast_ref::<LsmHash>() else {
                return out;
            };
            let r = db.recovery_report();
            out.extend(r.truncated_tail.iter().map(torn));
            out.extend(r.quarantined.iter().map(kept));
            out.extend(r.skipped.iter().map(skipped));
            out.extend(r.removed_files.iter().map(|n| removed(n)));
        }
    }
    out
}

/// An open store of either engine.
struct Opened {
    db: Box<dyn KvStore>,
}

/// Opens the store with the same options for either engine: read commands open read-only
/// (no lock, nothing written). Prints what recovery found on stderr.
fn open(given: Option<Engine>, dir: &Path, mode: Mode) -> Result<Opened, Corrupt> {
    let (sync, file_bytes, read_only, create) = match mode {
        Mode::Write {
            sync,
            file_bytes,
            create,
        } => (sync, file_bytes, false, create),
        Mode::Read => (SyncArg::Always, None, true, false),
    };
    let engine = resolve_engine(given, dir, create)?;
    let policy = match sync {
        SyncArg::Always => SyncPolicy::Always,
        SyncArg::Never => SyncPolicy::Never,
    };
    let (db, lines): (Box<dyn KvStore>, Vec<String>) = match engine {
        Engine::Bitcask => {
            let mut opts = bitcask::Options::default()
                .with_sync(policy)
                .with_read_only(read_only);
            if let Some(n) = file_bytes {
                opts = opts.with_max_file_bytes(n);
            }
            let db = Bitcask::open(dir, opts)?;
            let lines = report_lines(engine, &db, read_only);
            (Box::new(db), lines)
        }
        Engine::LsmHash => {
            let mut opts = lsm_hash::Options::default()
                .with_sync(policy)
                .with_read_only(read_only);
            if let Some(n) = file_bytes {
                opts = opts.with_max_file_bytes(n);
            }
            let db = LsmHash::open(dir, opts)?;
            let lines = report_lines(engine, &db, read_only);
            (Box::new(db), lines)
        }
    };
    for l in lines {
        eprintln!("{l}");
    }
    Ok(Opened { db })
}

fn open_or_fail(given: Option<Engine>, dir: &Path, mode: Mode) -> Result<Opened, String> {
    open(given, dir, mode).map_err(String::from)
}

/// `verify`: every byte of every file, nothing changed. Exit 0 intact (a torn tail an open
/// would cut is a note on stderr), 1 on damage (stdout names file, offset, kind), 2 on error.
fn verify(given: Option<Engine>, dir: &Path, out: &mut dyn Write) -> Result<ExitCode, String> {
    let w = |r: io::Result<()>| r.map_err(|e| format!("writing stdout: {e}"));
    let checked = resolve_engine(given, dir, false).and_then(|engine| {
        let (keys, torn, notes) = match engine {
            Engine::Bitcask => {
                let r = Bitcask::verify(dir, bitcask::Options::default())?;
                let mut notes: Vec<String> = r
                    .stale_hints
                    .iter()
                    .map(|p| format!("note: {}: a stale hint (opens never use it)", p.display()))
                    .collect();
                notes.extend(r.stale_image.iter().map(|p| {
                    format!(
                        "note: {}: a stale keydir image, describing files since changed (opens \
                         do not use it; a read-write open removes it)",
                        p.display()
                    )
                }));
                notes.extend(r.not_read.iter().map(|p| {
                    format!(
                        "note: {}: a crash leftover, not read (a read-write open removes it)",
                        p.display()
                    )
                }));
                if r.merge_completed {
                    notes.push(
                        "note: an interrupted merge had committed: read as finished (a \
                         read-write open finishes it on disk)"
                            .to_owned(),
                    );
                }
                notes.extend(r.removed_torn_files.iter().map(|p| {
                    format!(
                        "note: {}: a creation cut by a crash, holding no record (a read-write \
                         open removes it)",
                        p.display()
                    )
                }));
                (r.keys, r.truncated_tail, notes)
            }
            Engine::LsmHash => {
                let r = LsmHash::verify(dir, lsm_hash::Options::default())?;
                let mut notes: Vec<String> = r
                    .stale_snapshots
                    .iter()
                    .map(|p| {
                        format!(
                            "note: {}: a stale index snapshot (opens never use it)",
                            p.display()
                        )
                    })
                    .collect();
                notes.extend(r.removed_files.iter().map(|n| {
                    format!(
                        "note: {n}: a crash leftover the manifest does not name (a read-write \
                         open removes it)"
                    )
                }));
                (r.keys, r.truncated_tail, notes)
            }
        };
        Ok((keys, torn, notes))
    });
    match checked {
        Ok((keys, torn, notes)) => {
            if let Some(d) = torn {
                eprintln!(
                    "note: torn tail at {} offset {}, {} bytes ({}): an open would cut it",
                    d.path.display(),
                    d.offset,
                    d.len,
                    d.kind
                );
            }
            for n in notes {
                eprintln!("{n}");
            }
            w(writeln!(out, "ok keys {keys}"))?;
            Ok(ExitCode::SUCCESS)
        }
        Err(Corrupt::At(s)) => {
            w(writeln!(out, "corrupt {s}"))?;
            Ok(ExitCode::from(1))
        }
        Err(Corrupt::Other(s)) => Err(s),
    }
}

/// One parsed `load` line.
enum Line<'a> {
    Put(&'a [u8], &'a [u8]),
    Del(&'a [u8]),
    Merge,
}

fn parse_line(line: &[u8]) -> Result<Line<'_>, String> {
    let bad = || {
        format!(
            "bad line {:?}: want `put KEY VALUE`, `del KEY` or `merge`",
            String::from_utf8_lossy(line)
        )
    };
    if line == b"merge" {
        return Ok(Line::Merge);
    }
    let (cmd, rest) = line.split_at(line.iter().position(|&b| b == b' ').ok_or_else(bad)?);
    let rest = rest.get(1..).unwrap_or_default();
    match cmd {
        b"put" => {
            // `put KEY VALUE`; `put KEY ` (the space, then nothing) is the empty value. A
            // `put KEY` without the space is a truncated line, not an empty value: refused.
            let i = rest.iter().position(|&b| b == b' ').ok_or_else(bad)?;
            let (key, value) = (
                rest.get(..i).unwrap_or_default(),
                rest.get(i + 1..).unwrap_or_default(),
            );
            if key.is_empty() {
                return Err(bad());
            }
            Ok(Line::Put(key, value))
        }
        b"del" if !rest.is_empty() && !rest.contains(&b' ') => Ok(Line::Del(rest)),
        _ => Err(bad()),
    }
}

/// Runs a `durable kv` subcommand.
pub fn run(engine: Option<Engine>, dir: &Path, cmd: &KvCommand) -> Result<ExitCode, String> {
    let mut out = io::stdout().lock();
    let w = |r: io::Result<()>| r.map_err(|e| format!("writing stdout: {e}"));
    let write_mode = |create| Mode::Write {
        sync: SyncArg::Always,
        file_bytes: None,
        create,
    };
    match cmd {
        KvCommand::Load { sync, file_bytes } => {
            let db = open_or_fail(
                engine,
                dir,
                Mode::Write {
                    sync: *sync,
                    file_bytes: *file_bytes,
                    create: true,
                },
            )?
            .db;
            let mut n = 0u64;
            for line in io::stdin().lock().split(b'\n') {
                let mut line = line.map_err(|e| format!("reading stdin: {e}"))?;
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if line.is_empty() {
                    continue;
                }
                match parse_line(&line)? {
                    Line::Merge => {
                        db.compact().map_err(err)?;
                        w(writeln!(out, "merged").and_then(|()| out.flush()))?;
                        continue;
                    }
                    Line::Put(k, v) => db.write(batch(k, Some(v))).map_err(err)?,
                    Line::Del(k) => db.write(batch(k, None)).map_err(err)?,
                }
                n += 1;
                w(writeln!(out, "ack {n}").and_then(|()| out.flush()))?;
            }
            db.close().map_err(err)?;
            Ok(ExitCode::SUCCESS)
        }
        KvCommand::Get { key } => {
            let db = open_or_fail(engine, dir, Mode::Read)?.db;
            match db.get(key.as_bytes()).map_err(err)? {
                Some(v) => {
                    w(out.write_all(&v).and_then(|()| out.write_all(b"\n")))?;
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    eprintln!("{key}: not found");
                    Ok(ExitCode::from(1))
                }
            }
        }
        KvCommand::Put { key, value } => {
            let db = open_or_fail(engine, dir, write_mode(true))?.db;
            db.write(batch(key.as_bytes(), Some(value.as_bytes())))
                .map_err(err)?;
            db.close().map_err(err)?;
            Ok(ExitCode::SUCCESS)
        }
        KvCommand::Del { key } => {
            let db = open_or_fail(engine, dir, write_mode(false))?.db;
            if !db.delete(key.as_bytes()).map_err(err)? {
                eprintln!("{key}: not found (nothing deleted)");
            }
            db.close().map_err(err)?;
            Ok(ExitCode::SUCCESS)
        }
        KvCommand::Dump => {
            let db = open_or_fail(engine, dir, Mode::Read)?.db;
            let pairs = db.pairs().map_err(|e| String::from(Corrupt::from(e)))?;
            let mut out = io::BufWriter::new(out);
            for (k, v) in pairs {
                w(out
                    .write_all(&k)
                    .and_then(|()| out.write_all(b" "))
                    .and_then(|()| out.write_all(&v))
                    .and_then(|()| out.write_all(b"\n")))?;
            }
            w(out.flush())?;
            Ok(ExitCode::SUCCESS)
        }
        KvCommand::Merge => {
            let db = open_or_fail(engine, dir, write_mode(false))?.db;
            db.compact().map_err(err)?;
            db.close().map_err(err)?;
            w(writeln!(out, "merged"))?;
            Ok(ExitCode::SUCCESS)
        }
        KvCommand::Verify => verify(engine, dir, &mut out),
        KvCommand::Stats => {
            let db = open_or_fail(engine, dir, Mode::Read)?.db;
            let s = db.stats().map_err(err)?;
            let lines = [
                ("keys", s.keys.to_string()),
                ("files", s.files.to_string()),
                ("total_bytes", s.total_bytes.to_string()),
                ("dead_bytes", s.dead_bytes.to_string()),
                ("fragmentation", format!("{:.3}", s.fragmentation())),
            ];
            for (name, value) in lines {
                w(writeln!(out, "{name} {value}"))?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
