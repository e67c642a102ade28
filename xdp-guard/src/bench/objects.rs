//! eBPF objects only the benchmark loads, built by build.rs from the xdp-guard-ebpf crate.

/// The SYN-flood generator (`xdp-guard-ebpf/src/flood.rs`), see [`super::flood`].
pub static FLOOD_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdp-guard-flood"));
