//! Recovery throughput on clean, damaged and crafted files (the integrity issue's "open and
//! verify of damaged and crafted files at the same MB/s as clean ones"). Four inputs of the
//! same size, each measured in MB/s of file:
//!
//! - `clean`: records, sealed;
//! - `flipped`: the same with one bit flipped in the first record, so everything after it
//!   is rescanned for records that prove it durable;
//! - `garbage`: a valid header, then 0x01 bytes (every offset is a candidate to reject);
//! - `crafted`: a forged header (valid header CRC, a length claiming the rest of the file) at
//!   every record-header offset: the worst a hostile file can do; the rescan budget (twice
//!   the file's length) bounds it.
//!
//! For the WAL, `wal::verify` (read-only, strict) over a 32 MiB segment on a real directory
//! (page cache warm); for the key-value engines, `kv_core::scan::scan_records` over a 32 MiB
//! data file image (the scan both engines run at open, without IO). Results in BENCHMARKS.md.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    missing_docs,
    reason = "benchmark code: a panic is a failed run"
)]

use std::path::Path;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kv_core::RecoveryMode;
use kv_core::format::{FILE_HEADER_LEN, FileHeader, RECORD_HEADER_LEN, VERSION, encode_record};

const LEN: usize = 32 << 20;

fn payload(i: u64, n: usize) -> Vec<u8> {
    let mut p = vec![0u8; n];
    durable_fs::sim::Rng::new(i).fill(&mut p);
    p
}

/// The four kv data-file images.
fn kv_images() -> Vec<(&'static str, Vec<u8>)> {
    let salt = 7;
    let header = FileHeader::new(salt, 1)
        .encode(b"\x89BCD\r\n\x1a\n")
        .to_vec();
    let mut clean = header.clone();
    let mut seq = 1;
    while clean.len() + 4200 < LEN {
        encode_record(
            &mut clean,
            salt,
            seq,
            seq - 1,
            0,
            &seq.to_le_bytes(),
            &payload(seq, 4096),
        );
        seq += 1;
    }
    let mut flipped = clean.clone();
    flipped[FILE_HEADER_LEN + 40] ^= 2;
    let mut garbage = header.clone();
    garbage.resize(clean.len(), 1);
    let mut crafted = header;
    crafted.push(0xFF);
    while crafted.len() + RECORD_HEADER_LEN <= clean.len() {
        let claim = (clean.len() - crafted.len() - RECORD_HEADER_LEN) as u32;
        let mut h = Vec::new();
        encode_record(&mut h, salt, 5, 0, 0, b"", b"");
        h[kv_core::format::RECORD_VALUE_LEN..kv_core::format::RECORD_VALUE_LEN + 4]
            .copy_from_slice(&claim.to_le_bytes());
        let mut c = crc32fast::Hasher::new();
        c.update(&salt.to_le_bytes());
        c.update(&h[kv_core::format::RECORD_SEQ..RECORD_HEADER_LEN]);
        h[kv_core::format::RECORD_HEADER_CRC..kv_core::format::RECORD_SEQ]
            .copy_from_slice(&c.finalize().to_le_bytes());
        crafted.extend_from_slice(&h[..RECORD_HEADER_LEN]);
    }
    crafted.resize(clean.len(), 0);
    vec![
        ("clean", clean),
        ("flipped", flipped),
        ("garbage", garbage),
        ("crafted", crafted),
    ]
}

fn kv_scan(c: &mut Criterion) {
    let mut g = c.benchmark_group("recovery/kv-scan");
    g.sample_size(10);
    for (name, bytes) in kv_images() {
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(name), &bytes, |b, bytes| {
            b.iter(|| {
                kv_core::scan::scan_records(bytes, 7, VERSION, true, RecoveryMode::TolerateTornTail)
            })
        });
    }
    g.finish();
}

/// A log directory holding one 32 MiB segment of `kind`.
fn wal_dir(root: &Path, kind: &str) -> std::path::PathBuf {
    let dir = root.join(kind);
    let fs = durable_fs::DurableFs::real();
    let opts = wal::Options::default()
        .with_max_segment_bytes(64 << 20)
        .with_preallocate_bytes(0)
        .with_sync(wal::SyncPolicy::Never);
    let log = wal::Wal::open(&dir, opts).unwrap();
    if kind != "garbage" && kind != "crafted" {
        let mut i = 0;
        while (i + 1) * 4124 < LEN as u64 {
            log.append(&payload(i, 4096)).unwrap();
            i += 1;
        }
    }
    log.close().unwrap();
    let seg = fs
        .list(&dir)
        .unwrap()
        .into_iter()
        .find(|n| n.ends_with(".wal"))
        .map(|n| dir.join(n))
        .unwrap();
    let file = fs.open(&seg, durable_fs::Access::ReadWrite).unwrap();
    let header = wal::format::SEGMENT_HEADER_LEN as u64;
    match kind {
        "flipped" => {
            let mut b = [0u8; 1];
            file.read_exact_at(&mut b, header + 40).unwrap();
            b[0] ^= 2;
            file.write_all_at(&b, header + 40).unwrap();
        }
        "garbage" => file.write_all_at(&vec![1u8; LEN], header).unwrap(),
        "crafted" => {
            let salt = wal::format::SegmentHeader::decode(&fs.read(&seg).unwrap())
                .unwrap()
                .salt;
            let mut body = vec![0xFFu8];
            while body.len() + RECORD_HEADER_LEN <= LEN {
                let claim = (LEN - body.len() - RECORD_HEADER_LEN) as u32;
                let mut h = Vec::new();
                wal::format::encode_record(&mut h, salt, 2, 0, 0, b"");
                h[0..4].copy_from_slice(&claim.to_le_bytes());
                let mut c = crc32fast::Hasher::new();
                c.update(&salt.to_le_bytes());
                c.update(&h[0..4]);
                c.update(&h[wal::format::RECORD_LSN..wal::format::RECORD_HEADER_LEN]);
                h[wal::format::RECORD_HEADER_CRC..wal::format::RECORD_LSN]
                    .copy_from_slice(&c.finalize().to_le_bytes());
                body.extend_from_slice(&h);
            }
            body.resize(LEN, 0);
            file.write_all_at(&body, header).unwrap();
        }
        _ => {}
    }
    file.sync_data().unwrap();
    dir
}

fn wal_verify(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let fs = durable_fs::DurableFs::real();
    let mut g = c.benchmark_group("recovery/wal-verify");
    g.sample_size(10);
    for kind in ["clean", "flipped", "garbage", "crafted"] {
        let dir = wal_dir(tmp.path(), kind);
        g.throughput(Throughput::Bytes(LEN as u64));
        g.bench_function(BenchmarkId::from_parameter(kind), |b| {
            b.iter(|| wal::verify(&fs, &dir, 1 << 30))
        });
    }
    g.finish();
}

criterion_group!(benches, kv_scan, wal_verify);
criterion_main!(benches);
