//! Shared harness of the privileged tests: the loaded program next to the reference
//! classifier, with every map change applied to both.
#![allow(dead_code)]

pub mod bed;

use std::net::IpAddr;

use aya::programs::{TestRun, TestRunOptions};
use ipnet::IpNet;
use xdp_guard::{
    bpf::{Datapath, LoadOptions},
    clock,
};
use xdp_guard_common::{
    config::{GuardConfig, RateParams},
    reference::{self, Action, Prefix, RateState, Tables},
    stats::COUNT,
};

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;

/// Privileged tests need root (BPF_PROG_LOAD, netlink). They fail without it, rather than
/// pass vacuously, unless the caller opts out explicitly.
pub fn require_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var_os("XDP_GUARD_SKIP_PRIVILEGED").is_some() {
        eprintln!("skipping: not root and XDP_GUARD_SKIP_PRIVILEGED is set");
        return false;
    }
    panic!("this test needs root (run `cargo xtask test`), or set XDP_GUARD_SKIP_PRIVILEGED=1");
}

/// Per-CPU state (LRU counters, sketch) must stay on one CPU for verdicts to be exact.
pub fn pin_to_cpu0() {
    // SAFETY: a zeroed cpu_set_t with one bit set, for the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        let rc = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        assert_eq!(rc, 0, "sched_setaffinity");
    }
}

pub fn prefix(net: IpNet) -> Prefix {
    match net.trunc() {
        IpNet::V4(n) => Prefix::v4(n.network().octets(), u32::from(n.prefix_len())),
        IpNet::V6(n) => Prefix::v6(n.network().octets(), u32::from(n.prefix_len())),
    }
}

pub struct Harness {
    pub dp: Datapath,
    pub tables: Tables,
    pub state: RateState,
}

impl Harness {
    pub fn new(params: RateParams) -> Self {
        pin_to_cpu0();
        let mut dp = Datapath::load(&LoadOptions::default()).expect("load the XDP program");
        let cfg = params.to_config(0x5eed);
        dp.set_config(cfg).expect("config");
        let tables = Tables {
            config: *dp.config(),
            ..Default::default()
        };
        Self {
            dp,
            tables,
            state: RateState::default(),
        }
    }

    pub fn set_config(&mut self, cfg: GuardConfig) {
        self.dp.set_config(cfg).expect("config");
        self.tables.config = *self.dp.config();
    }

    pub fn set_ports(&mut self, ports: &[u16]) {
        self.dp.set_ports(ports).expect("ports");
        self.tables.ports = ports.to_vec();
        self.tables.config = *self.dp.config();
    }

    pub fn allow(&mut self, net: &str) {
        let net: IpNet = net.parse().expect("test prefix");
        self.dp.allow(net).expect("allow");
        self.tables.allow.push(prefix(net));
        self.tables.config = *self.dp.config();
    }

    /// Block for `ttl_ns` from now (negative: already expired).
    pub fn block(&mut self, net: &str, ttl_ns: i64) {
        let net: IpNet = net.parse().expect("test prefix");
        let expiry = (clock::mono_ns() as i64 + ttl_ns) as u64;
        self.dp.block(net, expiry).expect("block");
        self.tables.blocks.retain(|(p, _)| *p != prefix(net));
        self.tables.blocks.push((prefix(net), expiry));
    }

    pub fn unblock(&mut self, net: &str) {
        let net: IpNet = net.parse().expect("test prefix");
        assert!(self.dp.unblock(net).expect("unblock"));
        self.tables.blocks.retain(|(p, _)| *p != prefix(net));
    }

    /// Track `addr` as the daemon does for a handshaken client (a fresh bucket), in both.
    pub fn track(&mut self, addr: IpAddr) {
        let key = xdp_guard::bpf::source_key(addr, self.tables.config.ipv6_prefix_len);
        assert_eq!(self.dp.track(&[key]).expect("track"), 1, "newly tracked");
        assert_eq!(self.dp.track(&[key]).expect("track"), 0, "already tracked");
        self.state.sources.insert(
            key,
            xdp_guard_common::rate::admitted(clock::mono_ns(), 1, &self.tables.config),
        );
    }

    /// One frame through the kernel program; returns its action and the stats it bumped.
    pub fn run_kernel(&mut self, frame: &[u8]) -> (u32, [u64; COUNT]) {
        let before = self.dp.stats().expect("stats");
        let result = self
            .dp
            .program()
            .expect("program")
            .test_run(TestRunOptions {
                data_in: Some(frame),
                repeat: 1,
                ..Default::default()
            })
            .expect("BPF_PROG_TEST_RUN");
        let after = self.dp.stats().expect("stats");
        let mut delta = [0u64; COUNT];
        for i in 0..COUNT {
            delta[i] = after[i] - before[i];
        }
        (result.return_value, delta)
    }

    pub fn run_reference(&mut self, frame: &[u8]) -> reference::Decision {
        reference::classify(frame, &self.tables, &mut self.state, clock::mono_ns())
    }

    /// Kernel and reference on the same frame; both must agree, and the kernel's action is
    /// returned with its counter deltas.
    pub fn run(&mut self, frame: &[u8]) -> (u32, [u64; COUNT]) {
        let (action, delta) = self.run_kernel(frame);
        let want = self.run_reference(frame);
        let want_action = match want.action {
            Action::Pass => XDP_PASS,
            Action::Drop => XDP_DROP,
        };
        assert_eq!(
            action, want_action,
            "kernel and reference disagree on the verdict"
        );
        assert_eq!(
            delta, want.counters,
            "kernel and reference disagree on the counters"
        );
        (action, delta)
    }
}

pub fn addr(s: &str) -> IpAddr {
    s.parse().expect("test address")
}
