//! Proves: recovery and verification read files in bounded chunks, so their memory does not
//! grow with a file's length. A WAL segment and a bitcask data file are extended (sparse) to
//! 1 GiB past their records, with a stray nonzero byte near the end (damage after a long
//! run of zeros, so the whole file is read); `wal::verify` and a read-only `Bitcask::open`
//! run over them (reporting the damage), and the process's peak resident memory (`VmHWM`)
//! may grow by less than 64 MiB. (Reading each file whole, as format 1's code did, grows it by the
//! file's 1 GiB: that is the negative control.) Linux only (`/proc/self/status`); one test in
//! its own binary, so no other test moves the peak.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use std::path::Path;

use durable_fs::{Access, DurableFs};

const GIB: u64 = 1 << 30;

/// The process's peak resident set, in bytes (`None` off Linux).
fn peak_rss() -> Option<u64> {
    // /proc files report a length of 0, so they are read to their end, not by length.
    let file = DurableFs::real()
        .open(Path::new("/proc/self/status"), Access::Read)
        .ok()?;
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = file.read_at(&mut buf, bytes.len() as u64).ok()?;
        if n == 0 {
            break;
        }
        bytes.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8(bytes).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Extends `file` (sparse) to 1 GiB and puts one nonzero byte near the end.
fn extend(fs: &DurableFs, file: &Path) {
    let f = fs.open(file, Access::ReadWrite).unwrap();
    f.set_len(GIB).unwrap();
    f.write_all_at(&[0x5A], GIB - 100).unwrap();
    f.sync_data().unwrap();
}

#[test]
fn recovery_memory_does_not_grow_with_file_length() {
    let Some(before) = peak_rss() else {
        eprintln!("no /proc/self/status: skipped");
        return;
    };
    let fs = DurableFs::real();
    let tmp = tempfile::tempdir().unwrap();

    let wal_dir = tmp.path().join("wal");
    let log = wal::Wal::open(&wal_dir, wal::Options::default()).unwrap();
    for i in 0..100u32 {
        log.append(&i.to_le_bytes()).unwrap();
    }
    log.close().unwrap();
    let seg = fs
        .list(&wal_dir)
        .unwrap()
        .into_iter()
        .find(|n| n.ends_with(".wal"))
        .map(|n| wal_dir.join(n))
        .unwrap();
    extend(&fs, &seg);
    // Garbage after the seal, with no later proof of durability: a torn tail an open would
    // cut, found by verify after reading to the end.
    assert!(
        wal::verify(&fs, &wal_dir, 1 << 20)
            .unwrap()
            .torn_tail
            .is_some()
    );
    let grown = peak_rss().unwrap().saturating_sub(before);
    assert!(
        grown < 64 << 20,
        "wal verify of a 1 GiB segment: peak +{grown} bytes"
    );

    let kv_dir = tmp.path().join("bitcask");
    let db = bitcask::Bitcask::open(&kv_dir, bitcask::Options::default()).unwrap();
    for i in 0..100u32 {
        db.put(&i.to_le_bytes(), b"value").unwrap();
    }
    db.close().unwrap();
    let data = fs
        .list(&kv_dir)
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(".data"))
        .max()
        .map(|n| kv_dir.join(n))
        .unwrap();
    extend(&fs, &data);
    let ro = bitcask::Options::default().with_read_only(true);
    // The hint no longer describes the file's length: the open scans it, to the end, and
    // reports the bytes after the seal as a torn tail (a read-only open cuts nothing).
    let db = bitcask::Bitcask::open(&kv_dir, ro).unwrap();
    let tail = db.recovery_report().truncated_tail.clone().unwrap();
    assert!(tail.len > GIB - (1 << 20), "{tail:?}");
    drop(db);
    let grown = peak_rss().unwrap().saturating_sub(before);
    assert!(
        grown < 64 << 20,
        "bitcask scan of a 1 GiB file: peak +{grown} bytes"
    );
}
