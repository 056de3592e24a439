//! The text-plus-CRC codec of small control files: bitcask's merge marker and lsm-hash's
//! manifest. Each is replaced atomically (`DurableFs::atomic_replace`), so it is whole or
//! absent; the CRC catches damage at rest.
//!
//! ```text
//! <title>                      for example `bitcask-merge 1`, `lsm-hash-manifest 1`
//! <tag> <id> <id> ...          one line per list, in a fixed order
//! crc <CRC-32 of the lines above, 8 hex digits>
//! ```

/// Encodes `lists` (tag, ids) under `title`.
///
/// ```
/// let b = kv_core::marker::encode("demo 1", &[("ids", &[3, 4])]);
/// assert!(b.starts_with(b"demo 1\nids 3 4\ncrc "));
/// assert_eq!(kv_core::marker::decode(&b, "demo 1", &["ids"]), Some(vec![vec![3, 4]]));
/// ```
pub fn encode(title: &str, lists: &[(&str, &[u64])]) -> Vec<u8> {
    let mut body = format!("{title}\n");
    for (tag, ids) in lists {
        let ids: Vec<String> = ids.iter().map(u64::to_string).collect();
        body.push_str(&format!("{tag} {}\n", ids.join(" ")));
    }
    let crc = crc32fast::hash(body.as_bytes());
    format!("{body}crc {crc:08x}\n").into_bytes()
}

/// Decodes a file written by [`encode`] with `title` and `tags` (in that order); `None` if
/// anything is off (damage, another title, a missing or extra line).
pub fn decode(b: &[u8], title: &str, tags: &[&str]) -> Option<Vec<Vec<u64>>> {
    let s = std::str::from_utf8(b).ok()?;
    let (body, crc_line) = s.strip_suffix('\n')?.rsplit_once('\n')?;
    let body = format!("{body}\n");
    let crc = u32::from_str_radix(crc_line.strip_prefix("crc ")?, 16).ok()?;
    if crc32fast::hash(body.as_bytes()) != crc {
        return None;
    }
    let mut lines = body.lines();
    if lines.next()? != title {
        return None;
    }
    let lists = tags
        .iter()
        .map(|tag| {
            lines
                .next()?
                .strip_prefix(tag)?
                .split_whitespace()
                .map(|t| t.parse().ok())
                .collect()
        })
        .collect::<Option<Vec<Vec<u64>>>>()?;
    lines.next().is_none().then_some(lists)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_damage() {
        let b = encode("x 1", &[("inputs", &[1, 2, 5]), ("outputs", &[9])]);
        let lists = vec![vec![1, 2, 5], vec![9]];
        assert_eq!(decode(&b, "x 1", &["inputs", "outputs"]), Some(lists));
        assert_eq!(decode(&b, "y 1", &["inputs", "outputs"]), None);
        assert_eq!(decode(&b, "x 1", &["inputs"]), None, "an extra line");
        for i in 0..b.len() {
            let mut d = b.clone();
            d[i] ^= 0x01;
            assert_eq!(
                decode(&d, "x 1", &["inputs", "outputs"]),
                None,
                "flip at {i}"
            );
        }
        let empty = encode("x 1", &[("segments", &[])]);
        assert!(
            empty.starts_with(b"x 1\nsegments \ncrc "),
            "the layout of format 1"
        );
        assert_eq!(decode(&empty, "x 1", &["segments"]), Some(vec![vec![]]));
    }
}
