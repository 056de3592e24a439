//! Running a program under `strace` and reading back what it did, and saved traces.
//!
//! A saved trace is strace's output behind a few header lines of our own (strace never
//! writes a line starting with `#`): `# durable-audit watch HEX`, `# durable-audit dir HEX`
//! and `# durable-audit exists HEX` (paths in hex: the watched directories, and what was in
//! them, directories and other entries, when the run started). A trace captured for
//! explore also has `# durable-audit contents` and, for each regular file that was there,
//! `# durable-audit file HEXPATH HEXBYTES` (its bytes at the start).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use durable_fs::{DurableFs, EntryKind};

use crate::lint::{Config, normalize};

/// The system calls traced (strace `-e trace=`): what the lint models, and what it refuses.
pub const TRACED: &str = "open,openat,openat2,creat,write,pwrite64,writev,pwritev,pwritev2,\
ftruncate,fallocate,fsync,fdatasync,sync,syncfs,rename,renameat,renameat2,unlink,unlinkat,\
rmdir,mkdir,mkdirat,link,linkat,symlink,symlinkat,mmap,io_uring_setup,io_submit,\
clone,clone3,fork,vfork,execve,execveat,chdir,fchdir,exit_group";

/// What explore traces besides [`TRACED`]: what moves a descriptor's position or copies it,
/// and what writes data the model must refuse.
pub const TRACED_EXPLORE: &str = "close,close_range,dup,dup2,dup3,fcntl,lseek,read,readv,\
truncate,sendfile,splice,tee,copy_file_range";

/// Most bytes of the watched directories' files saved at the start for explore.
pub const MAX_CONTENTS: u64 = crate::explore::MAX_INITIAL_BYTES;

/// Why a capture failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// strace is missing or too old.
    #[error("strace is needed (5.3 or later, for --seccomp-bpf): {0}")]
    NoStrace(String),
    /// The filesystem door failed (reading the trace, listing a watched directory).
    #[error(transparent)]
    Fs(#[from] durable_fs::Error),
    /// Spawning or waiting for strace failed.
    #[error("running strace: {0}")]
    Spawn(std::io::Error),
    /// A saved trace's header is damaged.
    #[error("{0}")]
    Header(String),
    /// The watched directories hold too much to copy into every crash state.
    #[error(
        "not measured: the watched directories hold more than {MAX_CONTENTS} bytes (explore copies them into every crash state)"
    )]
    TooBig,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

fn path_bytes(p: &Path) -> &[u8] {
    use std::os::unix::ffi::OsStrExt;
    p.as_os_str().as_bytes()
}

fn bytes_path(b: Vec<u8>) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(b))
}

/// Lists what is under each watched directory now (recursively), through the door; with
/// `contents`, keeps the bytes of each regular file too (at most [`MAX_CONTENTS`]).
pub fn snapshot(fs: &DurableFs, cfg: &mut Config, contents: bool) -> Result<(), CaptureError> {
    let mut total = 0u64;
    if contents {
        cfg.contents = Some(Default::default());
    }
    let mut stack: Vec<PathBuf> = cfg.watch.clone();
    let mut seen = BTreeSet::new();
    while let Some(dir) = stack.pop() {
        if !seen.insert(dir.clone()) || fs.kind(&dir)? != Some(EntryKind::Dir) {
            continue;
        }
        cfg.existing.insert(dir.clone());
        cfg.existing_dirs.insert(dir.clone());
        let real_dir = fs.canonicalize(&dir)?;
        for name in fs.list(&dir)? {
            let p = dir.join(&name);
            cfg.existing.insert(p.clone());
            // A symlink (also one to a directory, or dangling): listed, never followed, and
            // its bytes not saved (explore refuses what it cannot model).
            if fs.canonicalize(&p).ok() != Some(real_dir.join(&name)) {
                continue;
            }
            match fs.kind(&p)? {
                Some(EntryKind::Dir) => stack.push(p),
                Some(EntryKind::File) if contents => {
                    let bytes = fs.read(&p)?;
                    total += bytes.len() as u64;
                    if total > MAX_CONTENTS {
                        return Err(CaptureError::TooBig);
                    }
                    if let Some(c) = &mut cfg.contents {
                        c.insert(p, bytes);
                    }
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// The header lines for `cfg`.
pub fn header(cfg: &Config) -> String {
    let mut h = String::new();
    for w in &cfg.watch {
        h.push_str(&format!("# durable-audit watch {}\n", hex(path_bytes(w))));
    }
    if let Some(cwd) = &cfg.start_cwd {
        h.push_str(&format!("# durable-audit cwd {}\n", hex(path_bytes(cwd))));
    }
    for d in &cfg.existing_dirs {
        h.push_str(&format!("# durable-audit dir {}\n", hex(path_bytes(d))));
    }
    for e in cfg.existing.difference(&cfg.existing_dirs) {
        h.push_str(&format!("# durable-audit exists {}\n", hex(path_bytes(e))));
    }
    if let Some(contents) = &cfg.contents {
        h.push_str("# durable-audit contents\n");
        for (p, bytes) in contents {
            h.push_str(&format!(
                "# durable-audit file {} {}\n",
                hex(path_bytes(p)),
                hex(bytes)
            ));
        }
    }
    h
}

/// Reads a saved trace's header into `cfg` (its watched directories join those given).
pub fn read_header(text: &str, cfg: &mut Config) -> Result<(), CaptureError> {
    for (i, line) in text.lines().enumerate() {
        let Some(rest) = line.strip_prefix("# durable-audit ") else {
            if line.starts_with('#') {
                continue;
            }
            break;
        };
        let bad = || CaptureError::Header(format!("trace line {}: {line:?}", i + 1));
        if rest == "contents" {
            cfg.contents.get_or_insert_with(Default::default);
            continue;
        }
        if let Some(file) = rest.strip_prefix("file ") {
            let (p, b) = file.split_once(' ').ok_or_else(bad)?;
            let (p, b) = (unhex(p).ok_or_else(bad)?, unhex(b.trim()).ok_or_else(bad)?);
            cfg.contents
                .get_or_insert_with(Default::default)
                .insert(bytes_path(p), b);
            continue;
        }
        let (kind, value) = rest
            .split_once(' ')
            .ok_or_else(|| CaptureError::Header(format!("trace line {}: {line:?}", i + 1)))?;
        let path = unhex(value.trim())
            .map(bytes_path)
            .ok_or_else(|| CaptureError::Header(format!("trace line {}: {line:?}", i + 1)))?;
        match kind {
            "watch" => cfg.watch.push(path),
            "cwd" => cfg.start_cwd = Some(path),
            "dir" => {
                cfg.existing_dirs.insert(path.clone());
                cfg.existing.insert(path);
            }
            "exists" => {
                cfg.existing.insert(path);
            }
            _ => {
                return Err(CaptureError::Header(format!(
                    "trace line {}: unknown header {kind:?}",
                    i + 1
                )));
            }
        }
    }
    cfg.watch.sort();
    cfg.watch.dedup();
    Ok(())
}

/// strace's version, if it runs and is new enough.
pub fn strace_version() -> Result<String, CaptureError> {
    let out = Command::new("strace")
        .arg("-V")
        .output()
        .map_err(|e| CaptureError::NoStrace(e.to_string()))?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let version = text
        .split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .unwrap_or("")
        .to_owned();
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if (major, minor) < (5, 3) {
        return Err(CaptureError::NoStrace(format!("found {text:?}")));
    }
    Ok(version)
}

/// Runs `cmd` under strace (its stdout and stderr go to this process's stderr, its stdin
/// is this process's), and returns the trace with its header, and the program's exit code.
///
/// `inject_eio`: the n-th fsync or fdatasync (1-based, counted in each process: strace
/// counts per tracee) fails with EIO
/// (strace's `-e inject`), to see what the program does after a failed fsync.
///
/// `max_write`: the bytes of each string strace keeps (`-s`). `explore`: trace what explore
/// needs as well ([`TRACED_EXPLORE`]) and save the watched directories' contents.
pub fn run(
    fs: &DurableFs,
    cfg: &mut Config,
    cmd: &[String],
    inject_eio: Option<u64>,
    explore: bool,
    max_write: usize,
) -> Result<(String, Option<i32>), CaptureError> {
    strace_version()?;
    snapshot(fs, cfg, explore)?;
    cfg.start_cwd = std::env::current_dir().ok().map(|d| normalize(&d));
    let traced = if explore {
        format!("{TRACED},{TRACED_EXPLORE}")
    } else {
        TRACED.to_owned()
    };
    let file = std::env::temp_dir().join(format!(
        "durable-audit-{}-{}.strace",
        std::process::id(),
        durable_fs::random_salt(u64::from(std::process::id()))
    ));
    let mut child = Command::new("strace")
        .args(["-f", "--seccomp-bpf", "-qq", "-y", "-xx", "-X", "raw", "-s"])
        .arg(max_write.to_string())
        .arg(format!("-etrace={traced}"))
        .args(inject_eio.map(|n| format!("-einject=fsync,fdatasync:error=EIO:when={n}")))
        .arg("-o")
        .arg(&file)
        .arg("--")
        .args(cmd)
        .stdin(Stdio::inherit())
        // A pipe of our own, copied to our stderr: the program's descriptor 1 is a pipe
        // whatever our stderr is (a file, /dev/null), so its acknowledgements are seen.
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(CaptureError::Spawn)?;
    // Drained to the end even if our stderr is gone (the program must never get SIGPIPE
    // for our sake).
    let copier = child.stdout.take().map(|mut out| {
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            let mut buf = [0u8; 8192];
            let mut stderr = std::io::stderr();
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let _ = stderr.write_all(buf.get(..n).unwrap_or_default());
            }
        })
    });
    let status = child.wait().map_err(CaptureError::Spawn)?;
    if let Some(c) = copier {
        let _ = c.join();
    }
    let bytes = fs.read(&file);
    let _ = fs.remove_file(&file);
    let text = String::from_utf8_lossy(&bytes?).into_owned();
    Ok((format!("{}{text}", header(cfg)), status.code()))
}

/// An absolute, lexically normalised form of `p` (relative to the working directory).
pub fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        normalize(p)
    } else {
        normalize(&std::env::current_dir().unwrap_or_default().join(p))
    }
}

/// `p` as the kernel names it (strace's `-y` paths are those): absolute, with the symlinks
/// of its longest existing prefix resolved (the rest may not exist yet: the program makes
/// it). A watched directory given through a symlink would otherwise match nothing.
pub fn resolve(fs: &DurableFs, p: &Path) -> PathBuf {
    let abs = absolute(p);
    let mut base = abs.clone();
    let mut rest = Vec::new();
    loop {
        if let Ok(c) = fs.canonicalize(&base) {
            return rest
                .iter()
                .rev()
                .fold(c, |acc, n: &std::ffi::OsString| acc.join(n));
        }
        match (base.file_name().map(|n| n.to_os_string()), base.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                base = parent.to_path_buf();
            }
            _ => return abs,
        }
    }
}
