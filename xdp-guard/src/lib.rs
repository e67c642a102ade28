//! xdp-guard user space: loading the XDP program, the controller, the API and the CLI.

pub mod bench;
pub mod bpf;
pub mod clock;
pub mod frames;
pub mod netns;
pub mod sysctl;
pub mod tcpstate;
