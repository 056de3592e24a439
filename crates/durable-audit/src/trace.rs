//! A parser of `strace -f -qq -y -xx -X raw` output, one line at a time.
//!
//! The lines it reads (strace 5.3 and later; `-f` prefixes each with the process id, which
//! may be absent without `-f`):
//!
//! ```text
//! PID NAME(ARGS) = RET                          a call that returned
//! PID NAME(ARGS) = -1 ENOENT (No such file or directory)
//! PID NAME(ARGS <unfinished ...>                the first half of a call another process interrupted
//! PID <... NAME resumed>REST) = RET             its second half
//! PID +++ exited with N +++                     the process exited
//! PID +++ killed by SIGKILL +++
//! PID --- SIGCHLD {si_signo=...} ---            a signal was delivered
//! ```
//!
//! Arguments are split at the top level (outside strings, brackets, braces and `-y` path
//! annotations). With `-xx` every string is hex-escaped (`"\x2f\x74"`), so its exact bytes
//! come back whatever they are; with `-y` a descriptor is printed with the path strace
//! resolved for it (`3<\x2f\x74\x6d\x70>`), and so is a returned descriptor; with `-X raw`
//! flags are numbers. A string cut at strace's `-s` limit ends with `...`.

use std::collections::HashMap;

/// A line that is not what strace writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("trace line {line}: {what}")]
pub struct ParseError {
    /// The line number (1-based).
    pub line: u64,
    /// What is wrong.
    pub what: String,
}

/// One argument of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    /// A descriptor and the path strace resolved for it (`-y`); `AT_FDCWD` is -100.
    Fd {
        /// The descriptor number.
        fd: i64,
        /// Its path (or `pipe:[N]`, `socket:[N]`, ... as the kernel names it).
        path: Vec<u8>,
    },
    /// A string, decoded to its exact bytes.
    Str {
        /// The bytes.
        bytes: Vec<u8>,
        /// Cut at strace's `-s` limit (`...` followed it).
        truncated: bool,
    },
    /// A number (decimal, or `0x` hexadecimal for raw flags).
    Int(i64),
    /// Anything else, as written (`[...]` arrays, `{...}` structures, `NULL`, comments).
    Other(String),
}

/// What a call returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ret {
    /// A value; a returned descriptor carries its path (`-y`).
    Value {
        /// The value.
        value: i64,
        /// The path of a returned descriptor.
        path: Option<Vec<u8>>,
    },
    /// `-1` and an errno name (`ENOENT`).
    Error {
        /// The errno name.
        errno: String,
    },
    /// `?` (the call did not return: `exit_group`, a process that died in it).
    Unknown,
}

/// A call that returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Syscall {
    /// Its name (`openat`, `fsync`, ...).
    pub name: String,
    /// Its arguments.
    pub args: Vec<Arg>,
    /// What it returned.
    pub ret: Ret,
}

/// What one line (or a resumed pair of lines) says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// A call, complete.
    Syscall(Syscall),
    /// The process exited with this code.
    Exited(i32),
    /// The process was killed by this signal.
    Killed(String),
    /// A signal was delivered (`--- SIGCHLD ... ---`).
    Signal(String),
}

/// One event of the trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The line it completed on (a resumed call: its second half).
    pub line: u64,
    /// The line it started on: `line`, or for a call interrupted by another process's
    /// lines, its first half's (what other processes did in between overlapped it).
    pub start: u64,
    /// The process (thread) id; 0 when the trace has none.
    pub pid: u32,
    /// What happened.
    pub kind: EventKind,
}

/// Reads a trace line by line, joining the halves of interrupted calls.
#[derive(Debug, Default)]
pub struct Parser {
    /// The first half of an interrupted call, per process: (its line, its text).
    pending: HashMap<u32, (u64, String)>,
}

/// Most calls a trace may leave half-finished at once (one per process): a bound on what
/// a crafted trace can make the parser hold.
pub const MAX_PENDING: usize = 1 << 16;

fn err(line: u64, what: impl Into<String>) -> ParseError {
    ParseError {
        line,
        what: what.into(),
    }
}

impl Parser {
    /// A parser with nothing pending.
    pub fn new() -> Parser {
        Parser::default()
    }

    /// Reads line `n` (1-based, for errors). `None` for a line that completes nothing (the
    /// first half of an interrupted call, a blank line, a `#` comment).
    pub fn feed(&mut self, n: u64, line: &str) -> Result<Option<Event>, ParseError> {
        let line = line.trim_end_matches(['\n', '\r']);
        if line.trim().is_empty() || line.starts_with('#') {
            return Ok(None);
        }
        let (pid, body) = split_pid(line);
        let body = body.trim_start();
        if let Some(rest) = body.strip_prefix("+++ ") {
            let rest = rest.trim_end_matches(" +++").trim();
            if let Some(code) = rest.strip_prefix("exited with ") {
                let code = code
                    .trim()
                    .parse()
                    .map_err(|_| err(n, format!("exit code {code:?}")))?;
                return Ok(Some(Event {
                    line: n,
                    start: n,
                    pid,
                    kind: EventKind::Exited(code),
                }));
            }
            if let Some(sig) = rest.strip_prefix("killed by ") {
                let sig = sig.split_whitespace().next().unwrap_or("").to_owned();
                return Ok(Some(Event {
                    line: n,
                    start: n,
                    pid,
                    kind: EventKind::Killed(sig),
                }));
            }
            // `+++ superseded by execve in pid N +++` and the like: nothing to model.
            return Ok(None);
        }
        if let Some(rest) = body.strip_prefix("--- ") {
            let sig = rest.split_whitespace().next().unwrap_or("").to_owned();
            return Ok(Some(Event {
                line: n,
                start: n,
                pid,
                kind: EventKind::Signal(sig),
            }));
        }
        let mut start = n;
        let text = if let Some(rest) = body.strip_prefix("<... ") {
            let (name, tail) = rest
                .split_once(" resumed>")
                .ok_or_else(|| err(n, "a resumed call without \"resumed>\""))?;
            let (first, head) = self
                .pending
                .remove(&pid)
                .ok_or_else(|| err(n, format!("{name} resumed, never started")))?;
            start = first;
            format!("{head}{tail}")
        } else if body.ends_with(" <detached ...>") {
            // strace let go of the process in the middle of a call: it never completes.
            self.pending.remove(&pid);
            return Ok(None);
        } else if let Some(head) = body.strip_suffix(" <unfinished ...>") {
            if self.pending.len() >= MAX_PENDING && !self.pending.contains_key(&pid) {
                return Err(err(n, "too many calls left unfinished"));
            }
            self.pending.insert(pid, (n, head.to_owned()));
            return Ok(None);
        } else {
            body.to_owned()
        };
        let call = parse_call(&text).map_err(|what| err(n, what))?;
        Ok(Some(Event {
            line: n,
            start,
            pid,
            kind: EventKind::Syscall(call),
        }))
    }

    /// Calls started and never resumed (a trace cut short): (process, line).
    pub fn unfinished(&self) -> Vec<(u32, u64)> {
        let mut v: Vec<(u32, u64)> = self.pending.iter().map(|(&p, &(l, _))| (p, l)).collect();
        v.sort_unstable();
        v
    }

    /// The calls started and never resumed (the trace ends, or the process died in them),
    /// as events at the line they started on, returning `?` ([`Ret::Unknown`]): a write of
    /// an acknowledgement cut short may still have been read.
    pub fn finish(self) -> Vec<Event> {
        let mut out: Vec<Event> = self
            .pending
            .into_iter()
            .filter_map(|(pid, (line, head))| {
                let call = parse_call(&format!("{head}) = ?")).ok()?;
                Some(Event {
                    line,
                    start: line,
                    pid,
                    kind: EventKind::Syscall(call),
                })
            })
            .collect();
        out.sort_by_key(|e| e.line);
        out
    }
}

/// Parses a whole trace; calls never resumed come last ([`Parser::finish`]).
pub fn parse(text: &str) -> Result<Vec<Event>, ParseError> {
    let mut p = Parser::new();
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if let Some(ev) = p.feed(i as u64 + 1, line)? {
            out.push(ev);
        }
    }
    out.extend(p.finish());
    Ok(out)
}

fn split_pid(line: &str) -> (u32, &str) {
    let digits = line.bytes().take_while(u8::is_ascii_digit).count();
    match line.get(..digits).and_then(|d| d.parse().ok()) {
        Some(pid) if line.get(digits..digits + 1) == Some(" ") => {
            (pid, line.get(digits + 1..).unwrap_or(""))
        }
        _ => (0, line),
    }
}

/// `NAME(ARGS) = RET ...`.
fn parse_call(text: &str) -> Result<Syscall, String> {
    let open = text.find('(').ok_or("no '(' after the call's name")?;
    let name = text.get(..open).unwrap_or("").trim();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(format!("{name:?} is not a call name"));
    }
    let rest = text.get(open + 1..).unwrap_or("");
    let (args, after) = split_args(rest)?;
    let after = after.trim_start();
    let ret = after
        .strip_prefix('=')
        .ok_or_else(|| format!("no '=' after {name}'s arguments"))?;
    Ok(Syscall {
        name: name.to_owned(),
        args: args
            .iter()
            .map(|a| parse_arg(a.trim()))
            .collect::<Result<_, _>>()?,
        ret: parse_ret(ret.trim())?,
    })
}

/// Splits the arguments up to the call's closing `)`; returns them and what follows it.
fn split_args(s: &str) -> Result<(Vec<&str>, &str), String> {
    let b = s.as_bytes();
    let mut args = Vec::new();
    let mut depth = 0usize; // [ { ( <
    let mut start = 0usize;
    let mut i = 0usize;
    let mut in_str = false;
    while let Some(&c) = b.get(i) {
        if in_str {
            match c {
                b'\\' => i += 1, // the escaped byte is skipped below
                b'"' => in_str = false,
                _ => {}
            }
        } else {
            match c {
                b'"' => in_str = true,
                b'[' | b'{' | b'(' | b'<' => depth += 1,
                b']' | b'}' | b'>' => depth = depth.saturating_sub(1),
                b')' if depth == 0 => {
                    let last = s.get(start..i).unwrap_or("");
                    if !last.trim().is_empty() || !args.is_empty() {
                        args.push(last);
                    }
                    return Ok((args, s.get(i + 1..).unwrap_or("")));
                }
                b')' => depth -= 1,
                b',' if depth == 0 => {
                    args.push(s.get(start..i).unwrap_or(""));
                    start = i + 1;
                }
                _ => {}
            }
        }
        i += 1;
    }
    Err("the arguments never close".to_owned())
}

/// Decodes a quoted string's contents (`\xNN`, `\n`, `\\`, ...).
fn unescape(s: &str) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len() / 4 + 1);
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c != b'\\' {
            out.push(c);
            i += 1;
            continue;
        }
        let e = *b.get(i + 1).ok_or("a string ends in '\\'")?;
        i += 2;
        match e {
            b'x' => {
                let hex = s.get(i..i + 2).ok_or("a cut \\x escape")?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| format!("\\x{hex}"))?);
                i += 2;
            }
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'v' => out.push(0x0b),
            b'f' => out.push(0x0c),
            b'\\' | b'"' | b'\'' => out.push(e),
            b'0'..=b'7' => {
                // Up to three octal digits (strace without -xx).
                let mut v = u32::from(e - b'0');
                for _ in 0..2 {
                    match b.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(u8::try_from(v).map_err(|_| format!("octal escape {v}"))?);
            }
            _ => return Err(format!("unknown escape \\{}", e as char)),
        }
    }
    Ok(out)
}

/// Decodes the contents of a string in strace's notation (between its quotes).
pub fn unescape_str(s: &str) -> Result<Vec<u8>, String> {
    unescape(s)
}

fn parse_int(s: &str) -> Option<i64> {
    if let Some(h) = s.strip_prefix("0x") {
        return u64::from_str_radix(h, 16).ok().map(|v| v as i64);
    }
    s.parse().ok()
}

/// `3<\x2f...>` -> (3, path).
fn parse_fd(s: &str) -> Result<Option<(i64, Vec<u8>)>, String> {
    let Some(lt) = s.find('<') else {
        return Ok(None);
    };
    let Some(fd) = s.get(..lt).and_then(parse_int) else {
        return Ok(None);
    };
    // A file unlinked while open is shown as `3<PATH>(deleted)`.
    let rest = s.get(lt + 1..).unwrap_or("");
    let inner = rest
        .strip_suffix(">(deleted)")
        .or_else(|| rest.strip_suffix('>'))
        .ok_or_else(|| format!("a descriptor's path does not close: {s:?}"))?;
    Ok(Some((fd, unescape(inner)?)))
}

fn parse_arg(s: &str) -> Result<Arg, String> {
    if let Some(body) = s.strip_prefix('"') {
        let (body, truncated) = match body.strip_suffix("\"...") {
            Some(b) => (b, true),
            None => (
                body.strip_suffix('"')
                    .ok_or_else(|| format!("a string does not close: {s:?}"))?,
                false,
            ),
        };
        return Ok(Arg::Str {
            bytes: unescape(body)?,
            truncated,
        });
    }
    if let Some((fd, path)) = parse_fd(s)? {
        return Ok(Arg::Fd { fd, path });
    }
    Ok(match parse_int(s) {
        Some(v) => Arg::Int(v),
        None => Arg::Other(s.to_owned()),
    })
}

fn parse_ret(s: &str) -> Result<Ret, String> {
    let first = s.split_whitespace().next().ok_or("no return value")?;
    if first == "?" {
        return Ok(Ret::Unknown);
    }
    if first == "-1"
        && let Some(errno) = s.split_whitespace().nth(1)
        && errno.starts_with('E')
    {
        return Ok(Ret::Error {
            errno: errno.to_owned(),
        });
    }
    if let Some((value, path)) = parse_fd(first)? {
        return Ok(Ret::Value {
            value,
            path: Some(path),
        });
    }
    let value = parse_int(first).ok_or_else(|| format!("return value {first:?}"))?;
    Ok(Ret::Value { value, path: None })
}

impl Syscall {
    /// The path of descriptor argument `i`, if it is one.
    pub fn fd_path(&self, i: usize) -> Option<&[u8]> {
        match self.args.get(i) {
            Some(Arg::Fd { path, .. }) => Some(path),
            _ => None,
        }
    }

    /// The bytes of string argument `i`, if it is one.
    pub fn str_arg(&self, i: usize) -> Option<&[u8]> {
        match self.args.get(i) {
            Some(Arg::Str { bytes, .. }) => Some(bytes),
            _ => None,
        }
    }

    /// Number argument `i`, if it is one.
    pub fn int_arg(&self, i: usize) -> Option<i64> {
        match self.args.get(i) {
            Some(Arg::Int(v)) => Some(*v),
            Some(Arg::Fd { fd, .. }) => Some(*fd),
            _ => None,
        }
    }

    /// Whether it succeeded.
    pub fn ok(&self) -> bool {
        matches!(self.ret, Ret::Value { .. })
    }
}
