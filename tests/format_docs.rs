//! Proves: each on-disk format is documented once, and the documentation is the code. The
//! offset tables of `docs/FORMAT-kv-record.md` (file header, record, hint entry) and
//! `docs/FORMAT-wal.md` (segment header, record) are read and compared, row by row (offset,
//! size, field name), with the named constants of `kv_core::format` and `wal::format`. A
//! field moved in the code and not in the docs, or the other way round, fails here (this is
//! how the old "bytes 24..28: reserved or kind?" drift would have been caught).

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use std::path::Path;

use kv_core::format as kv;
use wal::format as w;

/// The rows `(offset, size, field)` of the first table after the heading that starts with
/// `heading` in `doc`.
fn table(doc: &str, heading: &str) -> Vec<(String, String, String)> {
    let mut lines = doc.lines().skip_while(|l| !l.starts_with(heading));
    assert!(lines.next().is_some(), "no section {heading:?}");
    lines
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2) // header and alignment rows
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (cells[1].into(), cells[2].into(), cells[3].into())
        })
        .collect()
}

fn doc(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs")
        .join(name);
    String::from_utf8(durable_fs::DurableFs::real().read(&path).unwrap()).unwrap()
}

fn rows(fields: &[(usize, &str, &str)]) -> Vec<(String, String, String)> {
    fields
        .iter()
        .map(|&(at, size, name)| (at.to_string(), size.to_owned(), name.to_owned()))
        .collect()
}

#[test]
fn kv_record_page_matches_kv_core_format() {
    let d = doc("FORMAT-kv-record.md");
    let header = rows(&[
        (kv::HEADER_MAGIC, "8", "magic"),
        (kv::HEADER_VERSION, "4", "version"),
        (kv::HEADER_SALT, "4", "salt"),
        (kv::HEADER_FILE_ID, "8", "file_id"),
        (kv::HEADER_KIND, "4", "kind"),
        (kv::HEADER_CRC, "4", "header_crc"),
    ]);
    assert_eq!(table(&d, "## File header"), header);
    assert_eq!(kv::HEADER_CRC + 4, kv::FILE_HEADER_LEN);
    let body = |mut r: Vec<(String, String, String)>| {
        r.push((
            kv::RECORD_HEADER_LEN.to_string(),
            "key_len".into(),
            "key".into(),
        ));
        r.push((
            format!("{}+key_len", kv::RECORD_HEADER_LEN),
            "value_len".into(),
            "value".into(),
        ));
        r
    };
    let record = body(rows(&[
        (kv::RECORD_CRC, "4", "crc"),
        (kv::RECORD_HEADER_CRC, "4", "header_crc"),
        (kv::RECORD_SEQ, "8", "seq"),
        (kv::RECORD_KEY_LEN, "4", "key_len"),
        (kv::RECORD_VALUE_LEN, "4", "value_len"),
        (kv::RECORD_FLAGS, "4", "flags"),
        (kv::RECORD_SYNCED_DELTA, "4", "synced_delta"),
    ]));
    assert_eq!(table(&d, "## Record"), record);
    let v1 = body(rows(&[
        (kv::v1::RECORD_CRC, "4", "crc"),
        (kv::v1::RECORD_SEQ, "8", "seq"),
        (kv::v1::RECORD_KEY_LEN, "4", "key_len"),
        (kv::v1::RECORD_VALUE_LEN, "4", "value_len"),
        (kv::v1::RECORD_FLAGS, "4", "flags"),
        (kv::v1::RECORD_SYNCED_SEQ, "8", "synced_seq"),
    ]));
    assert_eq!(table(&d, "## Format 1 record"), v1);
    let hint = rows(&[
        (kv::HINT_SEQ, "8", "seq"),
        (kv::HINT_OFFSET, "8", "offset"),
        (kv::HINT_KEY_LEN, "4", "key_len"),
        (kv::HINT_VALUE_LEN, "4", "value_len"),
        (kv::HINT_FLAGS, "4", "flags"),
        (kv::HINT_ENTRY_LEN, "key_len", "key"),
    ]);
    assert_eq!(table(&d, "## Hint entry"), hint);
    assert!(d.contains(&format!("{}-byte trailer", kv::HINT_TRAILER_LEN)));
    assert!(d.contains(&format!("{}-byte trailer", kv::v1::HINT_TRAILER_LEN)));
}

#[test]
fn wal_page_matches_wal_format() {
    let d = doc("FORMAT-wal.md");
    let header = rows(&[
        (w::HEADER_MAGIC, "8", "magic"),
        (w::HEADER_VERSION, "4", "version"),
        (w::HEADER_SALT, "4", "salt"),
        (w::HEADER_FIRST_LSN, "8", "first_lsn"),
        (w::HEADER_RESERVED, "4", "reserved"),
        (w::HEADER_CRC, "4", "header_crc"),
    ]);
    assert_eq!(table(&d, "## Segment header"), header);
    assert_eq!(w::HEADER_CRC + 4, w::SEGMENT_HEADER_LEN);
    let record = rows(&[
        (w::RECORD_LEN, "4", "len"),
        (w::RECORD_CRC, "4", "crc"),
        (w::RECORD_HEADER_CRC, "4", "header_crc"),
        (w::RECORD_LSN, "8", "lsn"),
        (w::RECORD_SYNCED_DELTA, "4", "synced_delta"),
        (w::RECORD_FLAGS, "4", "flags"),
        (w::RECORD_HEADER_LEN, "len", "payload"),
    ]);
    assert_eq!(table(&d, "## Record"), record);
    let v1 = rows(&[
        (w::RECORD_LEN, "4", "len"),
        (w::RECORD_CRC, "4", "crc"),
        (w::v1::RECORD_LSN, "8", "lsn"),
        (w::v1::RECORD_SYNCED_LSN, "8", "synced_lsn"),
        (w::v1::RECORD_FLAGS, "4", "flags"),
        (w::RECORD_HEADER_LEN, "len", "payload"),
    ]);
    assert_eq!(table(&d, "## Format 1 record"), v1);
}

/// The identity page's example is what `Identity::encode` writes, byte for byte, and what
/// `Identity::decode` accepts; its size is the one the page states.
#[test]
fn identity_page_matches_durable_fs() {
    let d = doc("FORMAT-identity.md");
    let example: String = d
        .lines()
        .skip_while(|l| *l != "```identity")
        .skip(1)
        .take_while(|l| !l.starts_with("```"))
        .map(|l| format!("{l}\n"))
        .collect();
    let id = durable_fs::Identity {
        engine: "bitcask".into(),
        format: kv::VERSION,
    };
    assert_eq!(example.as_bytes(), &id.encode()[..]);
    assert_eq!(durable_fs::Identity::decode(example.as_bytes()), Some(id));
    assert!(d.contains(&format!("({} bytes)", example.len())));
    assert_eq!(durable_fs::IDENTITY_MAX_LEN, 256);
    assert!(d.contains("more than 256 bytes"));
}

/// The keydir image's three tables are what `bitcask`'s image code writes: the page's rows are
/// compared with the bytes of a real image (field by field, at the offsets the page gives).
#[test]
fn bitcask_keydir_image_page_matches_the_code() {
    let d = doc("FORMAT-bitcask.md");
    let section = "## Keydir image";
    let tables: Vec<_> = (0..3)
        .map(|n| {
            // The n-th table of the section.
            let mut lines: Vec<&str> = d.lines().skip_while(|l| !l.starts_with(section)).collect();
            for _ in 0..n {
                let skip = lines.iter().position(|l| l.starts_with('|')).unwrap();
                let len = lines[skip..]
                    .iter()
                    .take_while(|l| l.starts_with('|'))
                    .count();
                lines.drain(..skip + len);
            }
            let text = format!("{section}\n{}", lines.join("\n"));
            table(&text, section)
        })
        .collect();
    let field = |t: &Vec<(String, String, String)>, name: &str| {
        let r = t
            .iter()
            .find(|r| r.2 == name)
            .unwrap_or_else(|| panic!("no row {name}"));
        (r.0.parse::<usize>().unwrap(), r.1.parse::<usize>().unwrap())
    };
    let sizes = |t: &Vec<(String, String, String)>| -> usize {
        t.iter().map(|r| r.1.parse::<usize>().unwrap()).sum()
    };
    assert_eq!(sizes(&tables[0]), 48);
    assert_eq!(sizes(&tables[1]), 40);
    assert_eq!(sizes(&tables[2]), 24);

    // A real image: 20 keys of 5 bytes in a simulated store.
    let sim = durable_fs::sim::SimFs::new();
    let opts = bitcask::Options::default()
        .with_fs(sim.durable())
        .with_image_min_keys(0);
    let db = bitcask::Bitcask::open("/db", opts).unwrap();
    for i in 0..20u32 {
        db.put(format!("k{i:04}").as_bytes(), b"value").unwrap();
    }
    db.close().unwrap();
    let b = sim.durable().read(Path::new("/db/KEYDIR")).unwrap();
    let int = |at: usize, size: usize| -> u64 {
        let mut v = [0u8; 8];
        v[..size].copy_from_slice(&b[at..at + size]);
        u64::from_le_bytes(v)
    };
    let get = |t: usize, base: usize, name: &str| {
        let (at, size) = field(&tables[t], name);
        int(base + at, size)
    };
    let (at, size) = field(&tables[0], "magic");
    assert_eq!(&b[at..at + size], b"\x89BCK\r\n\x1a\n");
    assert!(d.contains("`89 42 43 4B 0D 0A 1A 0A`"));
    assert_eq!(get(0, 0, "version"), 1);
    let files = get(0, 0, "file_count") as usize;
    assert_eq!(get(0, 0, "key_count"), 20);
    assert_eq!(get(0, 0, "key_bytes"), 100);
    assert_eq!(get(0, 0, "max_seq"), 20);
    assert_eq!(files, 1);
    let file_len = get(1, 48, "file_len");
    assert_eq!(get(1, 48, "file_id"), 1);
    assert_eq!(get(1, 48, "reserved"), 0);
    let data = sim
        .durable()
        .open(Path::new("/db/0000000001.data"), durable_fs::Access::Read)
        .unwrap();
    assert_eq!(data.len().unwrap(), file_len);
    let mut header = [0u8; 32];
    data.read_exact_at(&mut header, 0).unwrap();
    let salt = u64::from(u32::from_le_bytes(header[12..16].try_into().unwrap()));
    assert_eq!(get(1, 48, "salt"), salt);
    assert_eq!(
        crc32fast::hash(&b[..88]),
        int(88, 4) as u32,
        "header and table CRC"
    );
    let entries = 92;
    assert_eq!(get(2, entries, "file_id"), 1);
    assert_eq!(get(2, entries, "key_len"), 5);
    assert_eq!(get(2, entries, "value_len"), 5);
    let first_key = &b[entries + 24..entries + 29];
    assert!(first_key.starts_with(b"k00"));
    // The entries in load order: by slot in a table of 20 keys' buckets under the seed.
    let seed = get(0, 0, "hash_seed");
    let mut index = kv_core::key_index::KeyIndex::with_seed(seed);
    let mut at = entries;
    let mut keys = Vec::new();
    for _ in 0..20 {
        keys.push(b[at + 24..at + 29].to_vec());
        at += 29;
    }
    for (i, k) in keys.iter().enumerate() {
        let loc = kv_core::key_index::Loc {
            seq: i as u64,
            file: 1,
            offset: 32,
            value_len: 0,
        };
        assert!(index.insert_new(k, loc));
    }
    let order: Vec<Vec<u8>> = index
        .iter_in_load_order()
        .map(|(k, _)| k.to_vec())
        .collect();
    assert_eq!(order, keys, "entries in the load order of the seed");
    let seq = get(2, entries, "seq");
    let offset = get(2, entries, "offset");
    assert!((1..=20).contains(&seq) && offset >= 32);
    assert_eq!(
        b.len(),
        48 + 40 * files + 4 + 24 * 20 + 100 + 4,
        "the length the page gives"
    );
    let end = b.len() - 4;
    assert_eq!(
        crc32fast::hash(&b[entries..end]),
        int(end, 4) as u32,
        "entries CRC"
    );
}

/// The bytes of the first ```` ```hex ```` block after the heading that starts with
/// `heading` in `doc` (whitespace ignored).
fn hex_block(doc: &str, heading: &str) -> Vec<u8> {
    let mut lines = doc.lines().skip_while(|l| !l.starts_with(heading));
    assert!(lines.next().is_some(), "no section {heading:?}");
    let text: String = lines
        .skip_while(|l| !l.starts_with("```hex"))
        .skip(1)
        .take_while(|l| !l.starts_with("```"))
        .flat_map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .collect();
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn hex_lines(bytes: &[u8]) -> String {
    bytes
        .chunks(16)
        .map(|c| {
            c.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn raft_examples() -> Vec<(&'static str, Vec<u8>)> {
    use durable_raft::meta::Meta;
    use durable_raft::openraft::{BasicNode, CommittedLeaderId, EntryPayload, Membership};
    use durable_raft::snapshot::{Manifest, SnapshotWriter};
    use durable_raft::{Entry, LogId, Request, SnapshotMeta, StoredMembership, Vote};

    let meta = Meta {
        vote: Some(Vote::new_committed(3, 2)),
        last_purged: Some(LogId::new(CommittedLeaderId::new(2, 1), 40)),
    };
    let entry = Entry {
        log_id: LogId::new(CommittedLeaderId::new(3, 2), 41),
        payload: EntryPayload::Normal(Request::Put {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        }),
    };
    let manifest = Manifest {
        generation: 2,
        snapshot: 5,
    };
    let membership = Membership::new(
        vec![[1u64].into_iter().collect()],
        [(1u64, BasicNode::new("n1"))]
            .into_iter()
            .collect::<std::collections::BTreeMap<_, _>>(),
    );
    let snap_meta = SnapshotMeta {
        last_log_id: Some(LogId::new(CommittedLeaderId::new(3, 2), 41)),
        last_membership: StoredMembership::new(
            Some(LogId::new(CommittedLeaderId::new(1, 1), 1)),
            membership,
        ),
        snapshot_id: "41-5".into(),
    };
    let mut w = SnapshotWriter::new(&snap_meta).unwrap();
    w.push(b"k", b"v").unwrap();
    vec![
        ("## RAFT-META", meta.encode().to_vec()),
        (
            "## Entry record",
            durable_raft::log::encode_entry(&entry).unwrap(),
        ),
        ("## MANIFEST", manifest.encode().to_vec()),
        ("## Snapshot", w.finish()),
    ]
}

#[test]
fn raft_page_examples_are_the_bytes_the_code_writes() {
    let d = doc("FORMAT-raft.md");
    for (heading, bytes) in raft_examples() {
        assert_eq!(
            hex_block(&d, heading),
            bytes,
            "{heading}: the page's example is not what the code writes; the code writes:\n{}",
            hex_lines(&bytes)
        );
    }
}

#[test]
fn raft_page_tables_match_the_code() {
    let d = doc("FORMAT-raft.md");
    let meta = rows(&[
        (0, "8", "magic"),
        (8, "4", "version"),
        (12, "1", "flags"),
        (13, "3", "zero"),
        (16, "8", "vote_term"),
        (24, "8", "vote_node"),
        (32, "8", "purged_term"),
        (40, "8", "purged_node"),
        (48, "8", "purged_index"),
        (56, "4", "crc"),
    ]);
    assert_eq!(table(&d, "## RAFT-META"), meta);
    assert_eq!(durable_raft::meta::META_LEN, 60);
    let manifest = rows(&[
        (0, "8", "magic"),
        (8, "4", "version"),
        (12, "4", "zero"),
        (16, "8", "generation"),
        (24, "8", "snapshot"),
        (32, "4", "crc"),
    ]);
    assert_eq!(table(&d, "## MANIFEST"), manifest);
    assert_eq!(durable_raft::snapshot::MANIFEST_LEN, 36);
}
