#![doc = include_str!("../README.md")]

pub mod capture;
pub mod explore;
pub mod lint;
pub mod trace;
