//! xdp-guard user space: loading the XDP program, the controller, the API and the CLI.

pub mod api;
pub mod bench;
pub mod bpf;
pub mod cli;
pub mod clock;
pub mod config;
pub mod controller;
pub mod daemon;
pub mod e2e;
pub mod frames;
pub mod model;
pub mod netns;
pub mod paths;
pub mod store;
pub mod sysctl;
pub mod tcpstate;
