//! Damaged segments. Proves: a flipped byte anywhere is found by `Strict` recovery and by
//! `verify`, as `Corruption` naming the segment file and the offset of the damaged record;
//! `TolerateTornTail` truncates only a genuine tail (damage with no valid record after it)
//! and refuses mid-log damage; `SkipCorrupt` salvages the records around damage and reports
//! it; random bytes never make the decoder or recovery panic.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use durable_fs::sim::{CrashMode, SimFs};
use durable_fs::{Access, DurableFs, Event, RecordingFs};
use proptest::prelude::*;
use wal::format::{RECORD_HEADER_LEN, SEGMENT_HEADER_LEN, SegmentHeader, decode_record};
use wal::{CorruptionKind, Error, Options, RecoveryMode, SyncPolicy, Wal};

const DIR: &str = "/db/wal";

/// Without preallocation, so that a segment's length is the end of its records.
fn opts(fs: &DurableFs, mode: RecoveryMode) -> Options {
    Options::default()
        .with_fs(fs.clone())
        .with_max_segment_bytes(4096)
        .with_preallocate_bytes(0)
        .with_sync(SyncPolicy::Never)
        .with_recovery(mode)
}

/// A log of `n` records of 90..190 bytes over several segments; returns the sim and records.
fn build(n: u64) -> (SimFs, Vec<(u64, Vec<u8>)>) {
    build_with(n, SyncPolicy::Never)
}

/// Under `Always` each record carries the previous one's LSN as `synced_lsn`; under `Never`
/// every record of a segment carries 0 (nothing was synced when it was written).
fn build_with(n: u64, sync: SyncPolicy) -> (SimFs, Vec<(u64, Vec<u8>)>) {
    let sim = SimFs::new();
    let wal = Wal::open(
        DIR,
        opts(&sim.durable(), RecoveryMode::Strict).with_sync(sync),
    )
    .unwrap();
    let mut recs = Vec::new();
    for i in 0..n {
        let p = vec![b'a' + (i % 26) as u8; 90 + (i as usize * 37) % 100];
        recs.push((wal.append(&p).unwrap(), p));
    }
    wal.close().unwrap();
    (sim, recs)
}

/// Like [`build`], but the process dies after a last `sync` instead of closing: the last
/// segment has no seal, so damage in its last records can be a torn write.
fn build_crashed(n: u64) -> (SimFs, Vec<(u64, Vec<u8>)>) {
    let sim = SimFs::new();
    let wal = Wal::open(DIR, opts(&sim.durable(), RecoveryMode::Strict)).unwrap();
    let mut recs = Vec::new();
    for i in 0..n {
        let p = vec![b'a' + (i % 26) as u8; 90 + (i as usize * 37) % 100];
        recs.push((wal.append(&p).unwrap(), p));
    }
    wal.sync().unwrap();
    let image = sim.crash_image(CrashMode::Strict, 0);
    drop(wal);
    (image, recs)
}

/// Offsets where records and seals start in a segment.
fn entry_starts(fs: &DurableFs, seg: &Path) -> Vec<u64> {
    let bytes = fs.read(seg).unwrap();
    let header = SegmentHeader::decode(&bytes).unwrap();
    let mut pos = SEGMENT_HEADER_LEN;
    let mut out = Vec::new();
    while let Ok(r) = decode_record(&bytes[pos..], header.salt, header.version, 1 << 20) {
        out.push(pos as u64);
        pos += r.encoded_len();
    }
    out
}

fn segments(fs: &DurableFs) -> Vec<PathBuf> {
    fs.list(Path::new(DIR))
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(".wal"))
        .map(|n| Path::new(DIR).join(n))
        .collect()
}

/// Offsets where records start in a segment.
fn record_starts(fs: &DurableFs, seg: &Path) -> Vec<u64> {
    let bytes = fs.read(seg).unwrap();
    let header = SegmentHeader::decode(&bytes).unwrap();
    let mut pos = SEGMENT_HEADER_LEN;
    let mut out = Vec::new();
    while let Ok(r) = decode_record(&bytes[pos..], header.salt, header.version, 1 << 20) {
        if !r.is_seal() {
            out.push(pos as u64);
        }
        pos += r.encoded_len();
    }
    out
}

fn read_all(wal: &Wal) -> Vec<(u64, Vec<u8>)> {
    wal.iter_from(0)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

#[test]
fn strict_recovery_and_verify_name_file_and_offset_of_any_flipped_byte() {
    let (sim, _) = build(60);
    let fs = sim.durable();
    let segs = segments(&fs);
    assert!(segs.len() >= 3, "the log spans several segments");
    for seg in &segs {
        let len = fs.open(seg, Access::Read).unwrap().len().unwrap();
        let starts = entry_starts(&fs, seg);
        // Every 7th byte, to keep the test quick while covering headers and payloads.
        for off in (0..len).step_by(7) {
            let img = sim.crash_image(CrashMode::Strict, 0);
            img.flip_bit(seg, off, (off % 8) as u8).unwrap();
            let ifs = img.durable();
            let expect_at = if off < SEGMENT_HEADER_LEN as u64 {
                None
            } else {
                Some(*starts.iter().rev().find(|&&s| s <= off).unwrap())
            };
            let err = match wal::verify(&ifs, Path::new(DIR), 1 << 20) {
                // Only the last record of the last segment (the seal `close` wrote) has no
                // later proof of durability: damage there is a torn tail an open would cut.
                Ok(r) => {
                    let t = r
                        .torn_tail
                        .unwrap_or_else(|| panic!("flip at {off}: not seen"));
                    assert_eq!(&t.path, seg, "flip at {off}");
                    assert_eq!(
                        seg,
                        segs.last().unwrap(),
                        "flip at {off}: not the last segment"
                    );
                    assert!(t.offset <= off, "flip at {off}: tail at {}", t.offset);
                    continue;
                }
                Err(e) => e,
            };
            match (&err, expect_at) {
                (Error::Corruption { path, offset, .. }, Some(at)) => {
                    assert_eq!((path, *offset), (seg, at), "flip at {off}");
                }
                (Error::Corruption { path, .. }, None) => assert_eq!(path, seg),
                (Error::UnsupportedVersion { path, .. }, None) => assert_eq!(path, seg),
                _ => panic!("flip at {off} of {}: {err:?}", seg.display()),
            }
            assert!(
                Wal::open(DIR, opts(&ifs, RecoveryMode::Strict)).is_err(),
                "flip at {off}"
            );
        }
    }
}

#[test]
fn mid_log_damage_is_refused_not_skipped() {
    // Records written after the damaged one was durable prove it is corruption, not a tail.
    let (sim, _) = build_with(60, SyncPolicy::Always);
    let fs = sim.durable();
    let segs = segments(&fs);
    // A payload byte of the second record of the first segment, and of the last segment.
    for seg in [&segs[0], segs.last().unwrap()] {
        let img = sim.crash_image(CrashMode::Strict, 0);
        let second = record_starts(&fs, seg)[1];
        img.flip_bit(seg, second + RECORD_HEADER_LEN as u64 + 3, 0)
            .unwrap();
        let err = Wal::open(DIR, opts(&img.durable(), RecoveryMode::TolerateTornTail)).unwrap_err();
        match err {
            Error::Corruption { path, offset, kind } => {
                assert_eq!((&path, offset), (seg, second));
                assert!(
                    matches!(kind, CorruptionKind::ChecksumMismatch { .. }),
                    "{kind:?}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn torn_tail_is_truncated_durably_and_reported() {
    let (sim, recs) = build_crashed(60);
    let fs = sim.durable();
    let last = segments(&fs).pop().unwrap();
    let starts = record_starts(&fs, &last);
    let tail = *starts.last().unwrap();
    for damage in ["flip", "cut"] {
        let img = sim.crash_image(CrashMode::Strict, 0);
        let ifs = img.durable();
        if damage == "flip" {
            img.flip_bit(&last, tail + 25, 4).unwrap();
        } else {
            let f = ifs.open(&last, Access::ReadWrite).unwrap();
            f.set_len(tail + 10).unwrap();
            f.sync_data().unwrap();
        }
        let before = ifs.read(&last).unwrap();
        let wal = Wal::open(DIR, opts(&ifs, RecoveryMode::TolerateTornTail)).unwrap();
        let t = wal.recovery_report().truncated_tail.clone().unwrap();
        assert_eq!((&t.path, t.offset), (&last, tail), "{damage}");
        assert_eq!(read_all(&wal), recs[..recs.len() - 1], "{damage}");
        // Nothing destroyed: the cut record's bytes were kept first, durably, by file and offset.
        let kept = wal.recovery_report().quarantined.clone();
        let prefix = format!("{}.{tail}.", last.file_name().unwrap().to_string_lossy());
        assert_eq!(kept.len(), 1, "{damage}");
        assert_eq!(
            kept[0].parent(),
            Some(Path::new(DIR).join("quarantine").as_path())
        );
        let name = kept[0].file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(&prefix), "{name}");
        let bytes = img
            .crash_image(CrashMode::Strict, 0)
            .durable()
            .read(&kept[0])
            .unwrap();
        let mut want = before[usize::try_from(tail).unwrap()..].to_vec();
        while want.last() == Some(&0) {
            want.pop();
        }
        assert!(!want.is_empty());
        assert_eq!(
            bytes, want,
            "{damage}: exactly the cut bytes, without trailing zeros"
        );
        // The next append continues the sequence.
        assert_eq!(wal.append(b"next").unwrap(), recs.len() as u64);
        wal.close().unwrap();
        // The truncation was durable: a crash now still recovers cleanly.
        let again = img.crash(CrashMode::Strict, 0).durable();
        let wal = Wal::open(DIR, opts(&again, RecoveryMode::Strict)).unwrap();
        assert_eq!(read_all(&wal).len(), recs.len());
    }
}

#[test]
fn torn_tail_truncation_is_synced_before_the_log_is_used() {
    let (sim, _) = build(10);
    let fs = sim.durable();
    let last = segments(&fs).pop().unwrap();
    let f = fs.open(&last, Access::ReadWrite).unwrap();
    let len = f.len().unwrap();
    f.set_len(len - 3).unwrap();
    f.sync_data().unwrap();
    let rec = RecordingFs::new(Arc::new(sim.clone()));
    let rfs = DurableFs::new(Arc::new(rec.clone()));
    let wal = Wal::open(DIR, opts(&rfs, RecoveryMode::TolerateTornTail)).unwrap();
    assert!(wal.recovery_report().truncated_tail.is_some());
    let events = rec.events();
    let cut = events
        .iter()
        .position(|e| matches!(e, Event::SetLen(p, _) if *p == last))
        .expect("the torn tail is cut");
    assert_eq!(
        events.get(cut + 1),
        Some(&Event::SyncData(last)),
        "{events:?}"
    );
}

#[test]
fn preallocated_zeros_are_free_space_and_a_torn_tail_in_them_is_cut() {
    let sim = SimFs::new();
    let fs = sim.durable();
    let o = |mode| {
        opts(&fs, mode)
            .with_preallocate_bytes(1 << 16)
            .with_max_segment_bytes(1 << 16)
    };
    let wal = Wal::open(DIR, o(RecoveryMode::Strict)).unwrap();
    for i in 0..10u8 {
        wal.append(&[i; 50]).unwrap();
    }
    wal.close().unwrap();
    let seg = segments(&fs)[0].clone();
    assert_eq!(
        fs.open(&seg, Access::Read).unwrap().len().unwrap(),
        1 << 16,
        "preallocated"
    );
    // Zeros after the records: a clean end, even for Strict and verify.
    assert_eq!(
        wal::verify(&fs, Path::new(DIR), 1 << 20).unwrap().records,
        10
    );
    // The records, then the seal `close` wrote.
    let end =
        SEGMENT_HEADER_LEN as u64 + 10 * (RECORD_HEADER_LEN as u64 + 50) + RECORD_HEADER_LEN as u64;
    // Garbage where the next record would go, then zeros: a torn tail.
    sim.flip_bit(&seg, end + 5, 2).unwrap();
    let torn = wal::verify(&fs, Path::new(DIR), 1 << 20).unwrap().torn_tail;
    assert_eq!(
        torn.map(|t| t.offset),
        Some(end),
        "verify: a torn tail, not damage"
    );
    let wal = Wal::open(DIR, o(RecoveryMode::TolerateTornTail)).unwrap();
    let t = wal.recovery_report().truncated_tail.clone().unwrap();
    assert_eq!((t.offset, t.len), (end, 6), "cut at the end of the records");
    assert_eq!(read_all(&wal).len(), 10);
    assert_eq!(wal.append(b"more").unwrap(), 11);
    wal.close().unwrap();
    assert_eq!(
        fs.open(&seg, Access::Read).unwrap().len().unwrap(),
        1 << 16,
        "still preallocated"
    );
    assert_eq!(
        wal::verify(&fs, Path::new(DIR), 1 << 20).unwrap().records,
        11
    );
}

#[test]
fn damage_followed_only_by_records_written_before_it_was_synced_is_a_torn_tail() {
    // Under `Never`, nothing in the last segment was known durable when its records were
    // written: a hole there followed by valid records is what a disk that writes pages back
    // out of order leaves, so it is cut (and reported), not refused.
    let (sim, recs) = build_crashed(60);
    let fs = sim.durable();
    let last = segments(&fs).pop().unwrap();
    let second = record_starts(&fs, &last)[1];
    sim.flip_bit(&last, second + RECORD_HEADER_LEN as u64 + 3, 0)
        .unwrap();
    let wal = Wal::open(DIR, opts(&fs, RecoveryMode::TolerateTornTail)).unwrap();
    let t = wal.recovery_report().truncated_tail.clone().unwrap();
    assert_eq!((t.path, t.offset), (last.clone(), second));
    let got = read_all(&wal);
    assert!(got.len() < recs.len());
    assert_eq!(got, recs[..got.len()], "a prefix survives");
}

#[test]
fn strict_mode_refuses_even_a_torn_tail() {
    let (sim, _) = build(10);
    let fs = sim.durable();
    let last = segments(&fs).pop().unwrap();
    let f = fs.open(&last, Access::ReadWrite).unwrap();
    let len = f.len().unwrap();
    f.set_len(len - 3).unwrap();
    let err = Wal::open(DIR, opts(&fs, RecoveryMode::Strict)).unwrap_err();
    assert!(
        matches!(&err, Error::Corruption { path, kind: CorruptionKind::TruncatedRecord, .. } if *path == last),
        "{err:?}"
    );
}

#[test]
fn skip_corrupt_salvages_around_damage_and_reports_it() {
    let (sim, recs) = build(60);
    let fs = sim.durable();
    let first = segments(&fs)[0].clone();
    let starts = record_starts(&fs, &first);
    sim.flip_bit(&first, starts[2] + RECORD_HEADER_LEN as u64, 1)
        .unwrap();
    let wal = Wal::open(DIR, opts(&fs, RecoveryMode::SkipCorrupt)).unwrap();
    let skipped = &wal.recovery_report().skipped;
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert_eq!((&skipped[0].path, skipped[0].offset), (&first, starts[2]));
    let got = read_all(&wal);
    let mut expect = recs.clone();
    expect.remove(2);
    assert_eq!(got, expect, "every record but the damaged one");
}

#[test]
fn unknown_version_and_foreign_files_are_reported() {
    let (sim, _) = build(3);
    let fs = sim.durable();
    let seg = segments(&fs)[0].clone();
    let mut header = fs.read(&seg).unwrap()[..SEGMENT_HEADER_LEN].to_vec();
    header[8] = 9; // version 9, with a valid header checksum
    let crc = crc32fast::hash(&header[..28]);
    header[28..32].copy_from_slice(&crc.to_le_bytes());
    let f = fs.open(&seg, Access::ReadWrite).unwrap();
    f.write_all_at(&header, 0).unwrap();
    let err = Wal::open(DIR, opts(&fs, RecoveryMode::TolerateTornTail)).unwrap_err();
    assert!(
        matches!(err, Error::UnsupportedVersion { version: 9, .. }),
        "{err:?}"
    );
    f.write_all_at(b"NOTAWAL!", 0).unwrap();
    let err = Wal::open(DIR, opts(&fs, RecoveryMode::TolerateTornTail)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Corruption {
                offset: 0,
                kind: CorruptionKind::BadMagic,
                ..
            }
        ),
        "{err:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn decoders_never_panic_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200), salt: u32, max in 0u32..1000, v1: bool) {
        let version = if v1 { wal::format::VERSION_1 } else { wal::format::VERSION };
        let _ = decode_record(&bytes, salt, version, max);
        let _ = wal::format::plausible_record(&bytes, salt, version, max);
        let _ = wal::format::decode_header(&bytes, salt, version, max);
        let _ = SegmentHeader::decode(&bytes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn recovery_never_panics_on_a_damaged_segment(
        cut in 0usize..2000,
        flips in proptest::collection::vec((0usize..2000, 0u8..8), 0..4),
        junk in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let (sim, recs) = build(12);
        let fs = sim.durable();
        let seg = segments(&fs).pop().unwrap();
        let f = fs.open(&seg, Access::ReadWrite).unwrap();
        let len = f.len().unwrap() as usize;
        for (at, bit) in flips {
            if at < len {
                sim.flip_bit(&seg, at as u64, bit).unwrap();
            }
        }
        f.set_len(cut.min(len) as u64).unwrap();
        f.append(&junk).unwrap();
        for mode in [RecoveryMode::Strict, RecoveryMode::TolerateTornTail, RecoveryMode::SkipCorrupt] {
            let img = sim.crash_image(CrashMode::Strict, 0);
            if let Ok(wal) = Wal::open(DIR, opts(&img.durable(), mode)) {
                let got = read_all(&wal);
                // Whatever is returned is a subset of what was written, in order.
                for (lsn, p) in &got {
                    prop_assert_eq!(&recs[(*lsn - 1) as usize].1, p);
                }
            }
        }
    }
}

/// Finding 2 of the integrity issue: a lost segment file. The segment chain (`CHAIN`) lists
/// every segment, so removing the first, a middle or the last one is `MissingSegment` naming
/// it (for the open and for `verify`), never a shorter log or reused LSNs; removing the
/// chain itself is `MissingChain`; a segment swapped in from another log is
/// `ForeignSegment`; a sealed segment cut at a record boundary is `MissingRecords`.
#[test]
fn a_missing_first_middle_or_last_segment_is_corruption_naming_it() {
    let (sim, _) = build(60);
    let fs = sim.durable();
    let segs = segments(&fs);
    assert!(segs.len() >= 3, "{segs:?}");
    for victim in [&segs[0], &segs[segs.len() / 2], &segs[segs.len() - 1]] {
        let img = sim.crash_image(CrashMode::Strict, 0);
        let ifs = img.durable();
        ifs.remove_file(victim).unwrap();
        for err in [
            Wal::open(DIR, opts(&ifs, RecoveryMode::TolerateTornTail)).unwrap_err(),
            Wal::open(DIR, opts(&ifs, RecoveryMode::SkipCorrupt)).unwrap_err(),
            wal::verify(&ifs, Path::new(DIR), 1 << 20).unwrap_err(),
        ] {
            match err {
                Error::Corruption { path, kind, .. } => {
                    assert_eq!((&path, kind), (victim, CorruptionKind::MissingSegment));
                }
                other => panic!("{}: {other:?}", victim.display()),
            }
        }
        assert!(!ifs.exists(victim).unwrap(), "nothing recreated");
    }
    // The chain itself.
    let img = sim.crash_image(CrashMode::Strict, 0);
    let ifs = img.durable();
    ifs.remove_file(&Path::new(DIR).join("CHAIN")).unwrap();
    assert!(matches!(
        Wal::open(DIR, opts(&ifs, RecoveryMode::TolerateTornTail)),
        Err(Error::Corruption {
            kind: CorruptionKind::MissingChain,
            ..
        })
    ));
    // A middle segment that lost its last records (cut at a record boundary).
    let img = sim.crash_image(CrashMode::Strict, 0);
    let ifs = img.durable();
    let middle = &segs[1];
    let last_start = *record_starts(&ifs, middle).last().unwrap();
    let f = ifs.open(middle, Access::ReadWrite).unwrap();
    f.set_len(last_start).unwrap();
    f.sync_data().unwrap();
    match Wal::open(DIR, opts(&ifs, RecoveryMode::TolerateTornTail)) {
        Err(Error::Corruption { path, kind, .. }) => {
            assert_eq!(&path, middle);
            assert!(
                matches!(kind, CorruptionKind::MissingRecords { .. }),
                "{kind:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    // Salvage keeps what is there and reports the loss.
    let wal = Wal::open(DIR, opts(&ifs, RecoveryMode::SkipCorrupt)).unwrap();
    let skipped = &wal.recovery_report().skipped;
    let reported = skipped
        .iter()
        .any(|d| &d.path == middle && matches!(d.kind, CorruptionKind::MissingRecords { .. }));
    assert!(reported, "{skipped:?}");
    drop(wal);
    // Another log's segment under the same name.
    let (other, _) = build(60);
    let img = sim.crash_image(CrashMode::Strict, 0);
    let ifs = img.durable();
    let theirs = other.durable().read(middle).unwrap();
    ifs.atomic_replace(middle, &theirs).unwrap();
    assert!(matches!(
        Wal::open(DIR, opts(&ifs, RecoveryMode::TolerateTornTail)),
        Err(Error::Corruption {
            kind: CorruptionKind::ForeignSegment { .. },
            ..
        })
    ));
}

/// `truncate_before` and `truncate_after` record what they remove in the chain before they
/// remove it: a crash in between leaves files the next open recognises as leftovers
/// (removed, reported), not as damage; and their removals never read as lost segments.
#[test]
fn truncations_are_told_from_lost_segments() {
    let (sim, recs) = build(60);
    let fs = sim.durable();
    let wal = Wal::open(DIR, opts(&fs, RecoveryMode::Strict)).unwrap();
    let segs = segments(&fs);
    let cut_before = recs[recs.len() / 2].0;
    let removed = wal.truncate_before(cut_before).unwrap();
    assert!(removed > 0);
    wal.truncate_after(cut_before + 3).unwrap();
    let next = wal.append(b"after").unwrap();
    assert!(next > recs.last().unwrap().0, "no LSN reused");
    wal.close().unwrap();
    let wal = Wal::open(DIR, opts(&fs, RecoveryMode::Strict)).unwrap();
    let got: Vec<u64> = wal.iter_from(0).unwrap().map(|r| r.unwrap().0).collect();
    assert!(got.first().unwrap() <= &cut_before);
    assert!(got.contains(&(cut_before + 3)) && !got.contains(&(cut_before + 4)));
    assert_eq!(got.last(), Some(&next));
    drop(wal);
    // A leftover of an unfinished truncate_before: an old segment back in the directory.
    let img = sim.crash_image(CrashMode::Strict, 0);
    let ifs = img.durable();
    let first_old = &segs[0];
    let bytes = build(60).0.durable().read(first_old).unwrap();
    ifs.atomic_replace(first_old, &bytes).unwrap();
    let wal = Wal::open(DIR, opts(&ifs, RecoveryMode::Strict)).unwrap();
    assert_eq!(
        wal.recovery_report().removed_unlisted,
        vec![first_old.clone()]
    );
    assert!(!ifs.exists(first_old).unwrap());
}

/// Finding 3 of the integrity issue, counted in work (`RecoveryReport::rescan_bytes`), not
/// wall time: garbage after a valid header is rejected offset by offset in O(1); 8 MiB of
/// records whose payloads hold u64s near the current LSN (what made format 1's LSN check
/// pass everywhere) cost one checksum of the segment after a flipped bit; a crafted segment
/// of forged headers exhausts a linear budget and is refused as `RescanLimit`.
#[test]
fn rescans_after_damage_are_linear_in_work() {
    let big =
        |fs: &DurableFs| opts(fs, RecoveryMode::TolerateTornTail).with_max_segment_bytes(64 << 20);
    // Garbage: a closed, empty log whose segment is then extended with 17 MiB of 0x01.
    let sim = SimFs::new();
    let fs = sim.durable();
    Wal::open(DIR, big(&fs)).unwrap().close().unwrap();
    let seg = segments(&fs).pop().unwrap();
    let f = fs.open(&seg, Access::ReadWrite).unwrap();
    f.write_all_at(&vec![1u8; 17 << 20], SEGMENT_HEADER_LEN as u64)
        .unwrap();
    f.sync_data().unwrap();
    match wal::verify(&fs, Path::new(DIR), 1 << 20) {
        Ok(r) => assert_eq!(r.torn_tail.unwrap().offset, SEGMENT_HEADER_LEN as u64),
        other => panic!("{other:?}"),
    }
    let wal = Wal::open(DIR, big(&fs)).unwrap();
    assert_eq!(wal.recovery_report().rescan_bytes, 0, "nothing checksummed");
    assert!(wal.recovery_report().truncated_tail.is_some());
    drop(wal);

    // 8 MiB of records holding u64s near the current LSN, a bit flipped in the first.
    let sim = SimFs::new();
    let fs = sim.durable();
    let wal = Wal::open(DIR, big(&fs)).unwrap();
    for lsn in 1..=2048u64 {
        let p: Vec<u8> = (lsn..lsn + 512).flat_map(u64::to_le_bytes).collect();
        wal.append(&p).unwrap();
    }
    wal.sync().unwrap();
    let image = sim.crash_image(CrashMode::Strict, 0);
    drop(wal);
    let ifs = image.durable();
    let seg = segments(&ifs).pop().unwrap();
    let len = ifs.open(&seg, Access::Read).unwrap().len().unwrap();
    image
        .flip_bit(&seg, SEGMENT_HEADER_LEN as u64 + 100, 3)
        .unwrap();
    let wal = Wal::open(DIR, big(&ifs)).unwrap();
    let r = wal.recovery_report();
    assert!(r.truncated_tail.is_some());
    assert!(r.rescan_bytes <= len, "{} > {len}", r.rescan_bytes);
    drop(wal);

    // Crafted: a forged header (valid header CRC) every 28 bytes, each claiming the rest.
    let sim = SimFs::new();
    let fs = sim.durable();
    Wal::open(DIR, big(&fs)).unwrap().close().unwrap();
    let seg = segments(&fs).pop().unwrap();
    let salt = SegmentHeader::decode(&fs.read(&seg).unwrap()).unwrap().salt;
    let len = 4usize << 20;
    let mut body = vec![0xFFu8; 1];
    body.resize(len - SEGMENT_HEADER_LEN, 0);
    let mut at = 1;
    while at + RECORD_HEADER_LEN <= body.len() {
        let claim = (body.len() - at - RECORD_HEADER_LEN) as u32;
        let mut h = Vec::new();
        wal::format::encode_record(&mut h, salt, 2, 0, 0, b"");
        h[0..4].copy_from_slice(&claim.to_le_bytes());
        let mut c = crc32fast::Hasher::new();
        c.update(&salt.to_le_bytes());
        c.update(&h[0..4]);
        c.update(&h[wal::format::RECORD_LSN..RECORD_HEADER_LEN]);
        h[wal::format::RECORD_HEADER_CRC..wal::format::RECORD_LSN]
            .copy_from_slice(&c.finalize().to_le_bytes());
        body[at..at + RECORD_HEADER_LEN].copy_from_slice(&h);
        at += RECORD_HEADER_LEN;
    }
    let f = fs.open(&seg, Access::ReadWrite).unwrap();
    f.write_all_at(&body, SEGMENT_HEADER_LEN as u64).unwrap();
    f.sync_data().unwrap();
    match Wal::open(DIR, big(&fs).with_max_record_bytes(1 << 30)) {
        Err(Error::Corruption { kind, .. }) => assert_eq!(kind, CorruptionKind::RescanLimit),
        other => panic!("{other:?}"),
    }
}
