//! BPF_PROG_TEST_RUN tests: hand-built frames through the loaded program, asserting verdict
//! and counter deltas, each also checked against the reference classifier.

mod support;

use xdp_guard::frames::Frame;
use xdp_guard_common::{config::RateParams, stats::*};

use support::*;

fn params() -> RateParams {
    RateParams {
        syn_rate: 1,
        syn_burst: 3,
        enforce: true,
        ipv6_prefix_len: 64,
    }
}

#[test]
fn loads_and_passes_a_syn() {
    if !require_root() {
        return;
    }
    let mut h = Harness::new(params());
    let (action, delta) = h.run(&Frame::syn4("192.0.2.1".parse().unwrap(), 80).bytes());
    assert_eq!(action, XDP_PASS);
    assert_eq!(delta[SYNS], 1);
    assert_eq!(delta[PASSED], 1);
}
