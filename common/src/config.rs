//! The record the program reads from the `CONFIG` map on every packet. User space derives it
//! from the operator's config (rates become GCRA intervals here, so the program never divides
//! on the hot path) and rewrites it to change thresholds without reloading.

use core::mem::size_of;

/// Drop over-limit SYNs (otherwise monitor mode: count them as would-drop and pass).
pub const FLAG_ENFORCE: u32 = 1 << 0;
/// Every destination port is protected (the `PORTS` bitmap is not consulted).
pub const FLAG_ALL_PORTS: u32 = 1 << 1;
/// The IPv4 allowlist has entries (skip the trie lookup when it does not).
pub const FLAG_ALLOW_V4: u32 = 1 << 2;
/// The IPv6 allowlist has entries.
pub const FLAG_ALLOW_V6: u32 = 1 << 3;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuardConfig {
    pub flags: u32,
    /// IPv6 sources are accounted per prefix of this length (default /64).
    pub ipv6_prefix_len: u32,
    /// GCRA emission interval: 1e9 / SYN rate. 0 disables SYN accounting altogether (the state
    /// of a freshly created map before user space configures it).
    pub syn_interval_ns: u64,
    /// GCRA tolerance: (burst - 1) * interval.
    pub syn_tolerance_ns: u64,
    /// Sketch estimate (SYNs in the current sketch window) at which a never-seen source is
    /// admitted into the per-source LRU. Must not exceed the burst.
    pub sketch_admit: u32,
    /// Most LRU admissions per CPU per flood-guard window; beyond it the flood guard stops
    /// inserting (a spoofed flood would otherwise churn the LRU).
    pub guard_max_new: u32,
    /// Sketch window = 2^shift ns (30: ~1.07 s). A shift, not a division, on the SYN path.
    pub sketch_window_shift: u32,
    pub _pad0: u32,
    pub guard_window_ns: u64,
    /// Least time between two over-limit events for one source on one CPU.
    pub event_interval_ns: u64,
    /// Most over-limit events per CPU per flood-guard window.
    pub event_budget: u32,
    /// The spoof guard's budget: SYNs from untracked sources allowed per CPU per flood-guard
    /// window while it is on.
    pub spoof_budget: u32,
    /// Seed of the sketch hash, random per load so collisions cannot be planned.
    pub hash_seed: u64,
    /// The spoof guard is on until this time (monotonic ns; 0: off). User space, having
    /// detected a spoofed flood, keeps pushing it a few seconds ahead, so the guard lapses
    /// by itself if the daemon dies. While on, SYNs from sources the program does not track
    /// (not in the per-source LRU; user space adds the clients it saw complete a handshake)
    /// pass at most `spoof_budget` per CPU per window; the rest are dropped.
    pub spoof_until_ns: u64,
}

const _: () = assert!(size_of::<GuardConfig>() == 80);

impl GuardConfig {
    #[inline(always)]
    pub const fn enforce(&self) -> bool {
        self.flags & FLAG_ENFORCE != 0
    }
    #[inline(always)]
    pub const fn all_ports(&self) -> bool {
        self.flags & FLAG_ALL_PORTS != 0
    }
    /// Is the spoof guard on at `now_ns`?
    #[inline(always)]
    pub const fn spoof_guard(&self, now_ns: u64) -> bool {
        now_ns < self.spoof_until_ns
    }
}

/// Thresholds as an operator writes them; [`RateParams::to_config`] turns them into the
/// kernel record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(serde::Serialize, serde::Deserialize))]
pub struct RateParams {
    /// Sustained SYNs per second allowed per source (per CPU, see the README).
    pub syn_rate: u32,
    /// SYNs a source may send at once before the rate applies.
    pub syn_burst: u32,
    pub enforce: bool,
    pub ipv6_prefix_len: u32,
}

impl RateParams {
    /// The kernel record for these thresholds. `rate == 0` disables accounting.
    pub fn to_config(&self, hash_seed: u64) -> GuardConfig {
        let interval = if self.syn_rate == 0 {
            0
        } else {
            (1_000_000_000u64 / u64::from(self.syn_rate)).max(1)
        };
        let burst = u64::from(self.syn_burst.max(1));
        // Admission at a quarter of the burst: late enough that one-off sources (a spoofed
        // flood) never reach the LRU, early enough that the bucket still sees most of a burst;
        // the admitted estimate is charged to the bucket, so nothing is forgiven.
        let admit = (self.syn_burst / 4).clamp(1, 64);
        let mut flags = FLAG_ALL_PORTS;
        if self.enforce {
            flags |= FLAG_ENFORCE;
        }
        GuardConfig {
            flags,
            ipv6_prefix_len: self.ipv6_prefix_len.min(128),
            syn_interval_ns: interval,
            syn_tolerance_ns: (burst - 1) * interval,
            sketch_admit: admit,
            guard_max_new: 4096,
            sketch_window_shift: 30,
            _pad0: 0,
            guard_window_ns: 100_000_000,
            event_interval_ns: 1_000_000_000,
            event_budget: 64,
            spoof_budget: 0,
            hash_seed,
            spoof_until_ns: 0,
        }
    }
}

#[cfg(feature = "user")]
// SAFETY: repr(C), integers only, no implicit padding (size asserted above).
unsafe impl aya::Pod for GuardConfig {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_to_interval() {
        let p = RateParams {
            syn_rate: 100,
            syn_burst: 20,
            enforce: true,
            ipv6_prefix_len: 64,
        };
        let c = p.to_config(7);
        assert_eq!(c.syn_interval_ns, 10_000_000);
        assert_eq!(c.syn_tolerance_ns, 19 * 10_000_000);
        assert!(c.enforce());
        assert!(c.all_ports());
        assert_eq!(c.sketch_admit, 5);
        assert!(c.sketch_admit <= p.syn_burst);
        let off = RateParams { syn_rate: 0, ..p }.to_config(0);
        assert_eq!(off.syn_interval_ns, 0);
        let monitor = RateParams {
            enforce: false,
            ..p
        }
        .to_config(0);
        assert!(!monitor.enforce());
    }

    #[test]
    fn admission_never_exceeds_burst() {
        for burst in 1..300 {
            let c = RateParams {
                syn_rate: 10,
                syn_burst: burst,
                enforce: true,
                ipv6_prefix_len: 64,
            }
            .to_config(0);
            assert!(
                c.sketch_admit >= 1 && c.sketch_admit <= burst,
                "burst {burst}"
            );
        }
    }
}
