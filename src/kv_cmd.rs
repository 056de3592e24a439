//! `durable kv --engine E --dir DIR ...`: the key-value engines from the command line.

use std::io::{self, BufRead, Write};
use std::path::Path;
use std::process::ExitCode;

use bitcask::Bitcask;
use clap::{Subcommand, ValueEnum};
use kv_core::{KvStore, SyncPolicy, WriteBatch};
use lsm_hash::LsmHash;

use crate::out::{Fail, Format, Outcome, hex, json_bytes, line_key, line_value, out, unhex};
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
    /// is durable (`merged` after a merge). With `--hex`, KEY and VALUE are hex.
    Load {
        /// `always`: ack after fsync; `never`: ack after the write, sync at the end.
        #[arg(long, value_enum, default_value_t = SyncArg::Always)]
        sync: SyncArg,
        /// Rotate data files at this size (e.g. `64MiB`).
        #[arg(long, value_parser = crate::out::parse_size)]
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
    Dump {
        /// Only keys starting with these bytes (hex with `--hex`).
        #[arg(long)]
        prefix: Option<String>,
        /// Print at most this many pairs.
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Merge / compact now.
    Merge,
    /// Check every file and record; name the file and offset of any damage (exit 1).
    Verify,
    /// Print counts and sizes.
    Stats,
    /// List the store's files with their sizes and headers.
    Files,
}

impl KvCommand {
    /// True for the commands that only read: their stdout closing early ends them quietly.
    pub fn reads_only(&self) -> bool {
        matches!(
            self,
            KvCommand::Get { .. }
                | KvCommand::Dump { .. }
                | KvCommand::Verify
                | KvCommand::Stats
                | KvCommand::Files
        )
    }
}

/// How keys and values are written on the command line and on stdout.
#[derive(Clone, Copy, Debug)]
pub struct Io {
    /// `--hex`: keys and values in hex, in and out.
    pub hex: bool,
    /// `--format`.
    pub format: Format,
}

impl Io {
    /// A key or value given on the command line (or a `load` line).
    fn bytes(self, s: &[u8]) -> Result<Vec<u8>, String> {
        if self.hex {
            unhex(std::str::from_utf8(s).map_err(|_| "not hex".to_owned())?)
        } else {
            Ok(s.to_vec())
        }
    }
}

/// A read error: damage (exit 1, named file and offset) or anything else (exit 2).
enum Corrupt {
    At {
        path: String,
        offset: u64,
        kind: String,
    },
    Other(String),
}

impl From<kv_core::Error> for Corrupt {
    fn from(e: kv_core::Error) -> Self {
        match e {
            kv_core::Error::Corruption { path, offset, kind } => Corrupt::At {
                path: path.display().to_string(),
                offset,
                kind: kind.to_string(),
            },
            other => Corrupt::Other(other.to_string()),
        }
    }
}

impl From<Corrupt> for String {
    fn from(c: Corrupt) -> String {
        match c {
            Corrupt::At { path, offset, kind } => format!("corrupt {path} offset {offset}: {kind}"),
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
        Err(StoreError::BadIdentity { path }) => Err(Corrupt::At {
            path: path.display().to_string(),
            offset: 0,
            kind: kv_core::CorruptionKind::BadIdentity.to_string(),
        }),
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
fn verify(given: Option<Engine>, dir: &Path, format: Format, stdout: &mut dyn Write) -> Outcome {
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
        Ok((keys, torn, mut notes)) => {
            if let Some(d) = &torn {
                notes.insert(
                    0,
                    format!(
                        "note: torn tail at {} offset {}, {} bytes ({}): an open would cut it",
                        d.path.display(),
                        d.offset,
                        d.len,
                        d.kind
                    ),
                );
            }
            for n in &notes {
                eprintln!("{n}");
            }
            let line = match format {
                Format::Text => format!("ok keys {keys}"),
                Format::Json => serde_json::json!({
                    "status": "ok",
                    "keys": keys,
                    "torn_tail": torn.as_ref().map(|d| serde_json::json!({
                        "path": d.path.display().to_string(),
                        "offset": d.offset,
                        "len": d.len,
                        "kind": d.kind.to_string(),
                    })),
                    "notes": notes,
                })
                .to_string(),
            };
            out(writeln!(stdout, "{line}"))?;
            Ok(ExitCode::SUCCESS)
        }
        Err(Corrupt::At { path, offset, kind }) => {
            let line = match format {
                Format::Text => format!("corrupt {path} offset {offset}: {kind}"),
                Format::Json => serde_json::json!({
                    "status": "corrupt", "path": path, "offset": offset, "kind": kind,
                })
                .to_string(),
            };
            // Damage is exit 1 whether or not anyone still reads stdout.
            match out(writeln!(stdout, "{line}")) {
                Ok(()) | Err(Fail::Closed) => Ok(ExitCode::from(1)),
                Err(e) => Err(e),
            }
        }
        Err(Corrupt::Other(s)) => Err(s.into()),
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
pub fn run(engine: Option<Engine>, dir: &Path, io_: Io, cmd: &KvCommand) -> Outcome {
    let mut stdout = io::stdout().lock();
    let write_mode = |create| Mode::Write {
        sync: SyncArg::Always,
        file_bytes: None,
        create,
    };
    let needs_hex = |what: &str| format!("{what} cannot be carried by the line format: use --hex");
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
                        out(writeln!(stdout, "merged").and_then(|()| stdout.flush()))?;
                        continue;
                    }
                    Line::Put(k, v) => {
                        let (k, v) = (io_.bytes(k)?, io_.bytes(v)?);
                        let carried = line_key(&k) && line_value(&v);
                        if !io_.hex && !carried {
                            return Err(
                                needs_hex("a key or value holding a carriage return").into()
                            );
                        }
                        db.write(batch(&k, Some(&v))).map_err(err)?;
                    }
                    Line::Del(k) => db.write(batch(&io_.bytes(k)?, None)).map_err(err)?,
                }
                n += 1;
                out(writeln!(stdout, "ack {n}").and_then(|()| stdout.flush()))?;
            }
            db.close().map_err(err)?;
            Ok(ExitCode::SUCCESS)
        }
        KvCommand::Get { key } => {
            let key = io_.bytes(key.as_bytes())?;
            let db = open_or_fail(engine, dir, Mode::Read)?.db;
            match db.get(&key).map_err(err)? {
                Some(v) if io_.hex => {
                    out(writeln!(stdout, "{}", hex(&v)))?;
                    Ok(ExitCode::SUCCESS)
                }
                Some(v) => {
                    out(stdout.write_all(&v).and_then(|()| stdout.write_all(b"\n")))?;
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    eprintln!("{}: not found", String::from_utf8_lossy(&key));
                    Ok(ExitCode::from(1))
                }
            }
        }
        KvCommand::Put { key, value } => {
            let (key, value) = (io_.bytes(key.as_bytes())?, io_.bytes(value.as_bytes())?);
            if !io_.hex && !line_key(&key) {
                return Err(needs_hex("a key that is empty or holds a space or a newline").into());
            }
            if !io_.hex && !line_value(&value) {
                return Err(needs_hex("a value holding a newline").into());
            }
            let db = open_or_fail(engine, dir, write_mode(true))?.db;
            db.write(batch(&key, Some(&value))).map_err(err)?;
            db.close().map_err(err)?;
            Ok(ExitCode::SUCCESS)
        }
        KvCommand::Del { key } => {
            let key = io_.bytes(key.as_bytes())?;
            let db = open_or_fail(engine, dir, write_mode(false))?.db;
            if !db.delete(&key).map_err(err)? {
                eprintln!(
                    "{}: not found (nothing deleted)",
                    String::from_utf8_lossy(&key)
                );
            }
            db.close().map_err(err)?;
            Ok(ExitCode::SUCCESS)
        }
        KvCommand::Dump { prefix, limit } => {
            let prefix = prefix
                .as_ref()
                .map(|p| io_.bytes(p.as_bytes()))
                .transpose()?
                .unwrap_or_default();
            let db = open_or_fail(engine, dir, Mode::Read)?.db;
            let pairs = db.pairs().map_err(|e| String::from(Corrupt::from(e)))?;
            let mut stdout = io::BufWriter::new(stdout);
            let limit = usize::try_from(limit.unwrap_or(u64::MAX)).unwrap_or(usize::MAX);
            for (k, v) in pairs
                .into_iter()
                .filter(|(k, _)| k.starts_with(&prefix))
                .take(limit)
            {
                match io_.format {
                    Format::Text if io_.hex => {
                        out(writeln!(stdout, "{} {}", hex(&k), hex(&v)))?;
                    }
                    Format::Text => {
                        if !line_key(&k) || !line_value(&v) {
                            out(stdout.flush())?;
                            return Err(format!(
                                "key {:?}: {}",
                                String::from_utf8_lossy(&k),
                                needs_hex("it or its value")
                            )
                            .into());
                        }
                        out(stdout
                            .write_all(&k)
                            .and_then(|()| stdout.write_all(b" "))
                            .and_then(|()| stdout.write_all(&v))
                            .and_then(|()| stdout.write_all(b"\n")))?;
                    }
                    Format::Json => {
                        let mut obj = serde_json::Map::new();
                        let utf8 = json_bytes(&mut obj, "key", &k, io_.hex)
                            .and_then(|()| json_bytes(&mut obj, "value", &v, io_.hex));
                        if utf8.is_none() {
                            out(stdout.flush())?;
                            return Err(format!(
                                "key {:?}: it or its value is not UTF-8: use --hex",
                                String::from_utf8_lossy(&k)
                            )
                            .into());
                        }
                        out(writeln!(stdout, "{}", serde_json::Value::Object(obj)))?;
                    }
                }
            }
            out(stdout.flush())?;
            Ok(ExitCode::SUCCESS)
        }
        KvCommand::Merge => {
            let db = open_or_fail(engine, dir, write_mode(false))?.db;
            db.compact().map_err(err)?;
            db.close().map_err(err)?;
            out(writeln!(stdout, "merged"))?;
            Ok(ExitCode::SUCCESS)
        }
        KvCommand::Verify => verify(engine, dir, io_.format, &mut stdout),
        KvCommand::Stats => {
            let db = open_or_fail(engine, dir, Mode::Read)?.db;
            let s = db.stats().map_err(err)?;
            let fields = [
                ("keys", serde_json::Value::from(s.keys)),
                ("files", s.files.into()),
                ("total_bytes", s.total_bytes.into()),
                ("dead_bytes", s.dead_bytes.into()),
            ];
            match io_.format {
                Format::Text => {
                    for (name, value) in &fields {
                        out(writeln!(stdout, "{name} {value}"))?;
                    }
                    out(writeln!(stdout, "fragmentation {:.3}", s.fragmentation()))?;
                }
                Format::Json => {
                    let mut obj: serde_json::Map<String, serde_json::Value> =
                        fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
                    obj.insert("fragmentation".into(), s.fragmentation().into());
                    out(writeln!(stdout, "{}", serde_json::Value::Object(obj)))?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        KvCommand::Files => files(engine, dir, io_.format, &mut stdout),
    }
}

/// `kv files`: every file of the store with its size; data, hint and segment files with
/// their decoded headers. Reads only headers.
fn files(given: Option<Engine>, dir: &Path, format: Format, stdout: &mut dyn Write) -> Outcome {
    let engine = resolve_engine(given, dir, false).map_err(String::from)?;
    let kind = match engine {
        Engine::Bitcask => &bitcask::STORE_KIND,
        Engine::LsmHash => &lsm_hash::STORE_KIND,
    };
    let fs = durable_fs::DurableFs::real();
    let mut names = fs.list(dir).map_err(|e| e.to_string())?;
    names.sort();
    let mut stdout = io::BufWriter::new(stdout);
    for name in names {
        let mut fields: Vec<(&str, serde_json::Value)> = Vec::new();
        let path = dir.join(&name);
        let entry = fs.kind(&path).map_err(|e| e.to_string())?;
        let (bytes, what) = match entry {
            Some(durable_fs::EntryKind::Dir) => (None, "directory".to_owned()),
            Some(durable_fs::EntryKind::File) => {
                let file = fs
                    .open(&path, durable_fs::Access::Read)
                    .map_err(|e| e.to_string())?;
                let bytes = file.len().map_err(|e| e.to_string())?;
                let magic = (kind.magic)(&name).and_then(|m| <&[u8; 8]>::try_from(m).ok());
                let what = match magic {
                    Some(magic) if kv_core::format::parse_name(&name).is_some() => {
                        let mut h = [0u8; kv_core::format::FILE_HEADER_LEN];
                        let header = file
                            .read_exact_at(&mut h, 0)
                            .ok()
                            .map(|()| kv_core::format::FileHeader::decode(&h, magic));
                        match header {
                            Some(Ok(h)) => {
                                fields.push(("version", h.version.into()));
                                fields.push(("id", h.file_id.into()));
                                fields.push(("salt", format!("{:08x}", h.salt).into()));
                                fields.push((
                                    "file_kind",
                                    format!("{:?}", h.kind).to_lowercase().into(),
                                ));
                            }
                            Some(Err(e)) => fields.push(("header", e.to_string().into())),
                            None => fields.push(("header", "short".into())),
                        }
                        name.rsplit('.').next().unwrap_or("file").to_owned()
                    }
                    _ => match name.as_str() {
                        "KEYDIR" => "keydir-image".to_owned(),
                        "IDENTITY" => "identity".to_owned(),
                        "LOCK" => "lock".to_owned(),
                        "FILES" | "MANIFEST" => "manifest".to_owned(),
                        "MERGE" => "merge-marker".to_owned(),
                        _ => "other".to_owned(),
                    },
                };
                (Some(bytes), what)
            }
            // Went meanwhile (a writer beside us), or not a file or directory.
            _ => continue,
        };
        let line = crate::out::file_line(format, &name, bytes, &what, fields);
        out(writeln!(stdout, "{line}"))?;
    }
    out(stdout.flush())?;
    Ok(ExitCode::SUCCESS)
}
