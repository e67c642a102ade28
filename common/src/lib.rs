//! The one place where the XDP program and user space agree.
//!
//! Everything the two sides share lives here: map names ([`maps`]), the `repr(C)` layouts of
//! map keys and values (with size assertions), stat indices ([`stats`]), the configuration
//! record the program reads on every packet ([`config`]), and the pure decision math
//! ([`rate`]: GCRA token bucket, count-min sketch hashing) that both the kernel program and
//! the host-side reference classifier ([`reference`], `user` feature) call, so the same rules
//! are unit-tested on the host.
#![no_std]

#[cfg(feature = "user")]
extern crate std;

pub mod config;
pub mod maps;
pub mod net;
pub mod rate;
pub mod stats;

#[cfg(feature = "user")]
pub mod reference;

/// Bumped whenever any map layout, map name or the meaning of a config field changes.
/// The daemon refuses to adopt pinned maps written by a build with another version.
pub const LAYOUT_VERSION: u32 = 2;

/// Name of the XDP program inside the object (the `#[xdp]` function).
pub const PROGRAM_NAME: &str = "xdp_guard";
