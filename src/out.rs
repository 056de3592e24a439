//! What the commands share: stdout that knows when its reader went away, the hex and line
//! formats, and `--format`.

use std::io;
use std::process::ExitCode;

/// Why a command stopped without an exit code of its own.
#[derive(Debug)]
pub enum Fail {
    /// Stdout was closed by its reader (`| head`): a reader ends quietly with exit 0; a
    /// writer, whose stdout carries its acknowledgements, exits 2.
    Closed,
    /// An error, printed on stderr (exit 2).
    Msg(String),
}

impl From<String> for Fail {
    fn from(s: String) -> Self {
        Fail::Msg(s)
    }
}

/// What a command returns.
pub type Outcome = Result<ExitCode, Fail>;

/// A write to stdout: a closed pipe is [`Fail::Closed`], anything else an error.
pub fn out(r: io::Result<()>) -> Result<(), Fail> {
    r.map_err(|e| {
        if e.kind() == io::ErrorKind::BrokenPipe {
            Fail::Closed
        } else {
            Fail::Msg(format!("writing stdout: {e}"))
        }
    })
}

/// `--format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Lines of text, as the command-line contract writes them.
    #[default]
    Text,
    /// JSON: one object a line (schemas in README.md).
    Json,
}

/// A size in bytes, as `4096`, `64KiB`, `64MiB` or `1GB` (parse-size: `KiB`/`MiB` are powers
/// of two, `KB`/`MB` powers of ten).
pub fn parse_size(s: &str) -> Result<u64, String> {
    parse_size::parse_size(s).map_err(|e| format!("{s:?}: {e}"))
}

/// One line of `wal files` / `kv files`: `NAME BYTES KIND [FIELD VALUE]...` (`-` for the
/// bytes of a directory), or the same as one JSON object.
pub fn file_line(
    format: Format,
    name: &str,
    bytes: Option<u64>,
    kind: &str,
    fields: Vec<(&str, serde_json::Value)>,
) -> String {
    match format {
        Format::Text => {
            let mut l = format!(
                "{name} {} {kind}",
                bytes.map_or("-".to_owned(), |b| b.to_string())
            );
            for (k, v) in &fields {
                let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                l.push_str(&format!(" {k} {v}"));
            }
            l
        }
        Format::Json => {
            let mut obj = serde_json::Map::new();
            obj.insert("name".into(), name.into());
            obj.insert("bytes".into(), bytes.into());
            obj.insert("kind".into(), kind.into());
            for (k, v) in fields {
                obj.insert(k.into(), v);
            }
            serde_json::Value::Object(obj).to_string()
        }
    }
}

/// Lowercase hex.
pub fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for &x in b {
        for d in [x >> 4, x & 15] {
            s.push(char::from_digit(u32::from(d), 16).unwrap_or('0'));
        }
    }
    s
}

/// Bytes from hex (either case); an error names what is wrong.
pub fn unhex(s: &str) -> Result<Vec<u8>, String> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return Err(format!("{s:?}: not hex (an odd number of digits)"));
    }
    b.chunks_exact(2)
        .map(|p| match p {
            [h, l] => Some(digit(*h)? << 4 | digit(*l)?),
            _ => None,
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(|| format!("{s:?}: not hex"))
}

/// True when `key` can be one word of a line (`KEY VALUE`, `del KEY`): not empty, no space,
/// newline or carriage return.
pub fn line_key(key: &[u8]) -> bool {
    !key.is_empty() && !key.iter().any(|b| matches!(b, b' ' | b'\n' | b'\r'))
}

/// True when `value` can end a line: no newline or carriage return.
pub fn line_value(value: &[u8]) -> bool {
    !value.iter().any(|b| matches!(b, b'\n' | b'\r'))
}

/// A key, value or payload for a JSON line: `"<name>": "text"` when it is UTF-8 (and not
/// `--hex`), `"<name>_hex": "..."` with `--hex`; `None` when it is not UTF-8 and `--hex` was not
/// given.
pub fn json_bytes(
    obj: &mut serde_json::Map<String, serde_json::Value>,
    name: &str,
    b: &[u8],
    hex_out: bool,
) -> Option<()> {
    if hex_out {
        obj.insert(format!("{name}_hex"), hex(b).into());
    } else {
        obj.insert(name.to_owned(), std::str::from_utf8(b).ok()?.into());
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_non_hex() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(unhex(&hex(&all)), Ok(all));
        assert_eq!(unhex("0A0b"), Ok(vec![10, 11]));
        assert!(unhex("abc").is_err());
        assert!(unhex("zz").is_err());
        assert_eq!(unhex(""), Ok(Vec::new()));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("1MB"), Ok(1_000_000));
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn line_rules() {
        assert!(line_key(b"k"));
        assert!(!line_key(b""));
        assert!(!line_key(b"a b"));
        assert!(!line_key(b"a\nb"));
        assert!(line_value(b"a b c"));
        assert!(line_value(b""));
        assert!(!line_value(b"a\n"));
        assert!(!line_value(b"a\r"));
    }
}
