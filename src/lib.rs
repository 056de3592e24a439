//! Support code of the `durable` command-line tool, shared with the benchmarks (feature
//! `bench`): adapters that put our engines and their peers (okaywal, fjall, redb, sled)
//! behind one interface, and the quick side-by-side benchmark behind `durable bench`.

#[cfg(feature = "bench")]
pub mod bench;
#[cfg(feature = "bench")]
pub mod peers;

/// This crate's README: its Rust blocks compile and run as doc tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
