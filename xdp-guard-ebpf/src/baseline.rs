//! The cheapest possible XDP program, measured beside xdp-guard in every benchmark run so
//! that costs are reported as ratios against the same machine at the same moment.
#![no_std]
#![no_main]

use aya_ebpf::{bindings::xdp_action::XDP_DROP, macros::xdp, programs::XdpContext};

#[xdp]
pub fn xdp_drop(_ctx: XdpContext) -> u32 {
    XDP_DROP
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
