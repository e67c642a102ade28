//! The program checks block expiry against `bpf_ktime_get_coarse_ns` (CLOCK_MONOTONIC, read
//! from the tick-cached value): the same clock for every process until reboot, so expiries
//! written by one daemon are honoured by the kernel after it dies and by the next daemon.
//! Durable state stores wall-clock times and converts at load. The kernel's reading lags the
//! precise clock by up to one tick (4 ms at HZ=250), so a block lapses up to a tick late.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// CLOCK_MONOTONIC now, in nanoseconds: the program's clock base.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec; CLOCK_MONOTONIC always exists.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    debug_assert_eq!(rc, 0);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Monotonic nanoseconds for a wall-clock instant (saturating at 1 for instants before boot,
/// so a block that should already have lapsed is written as lapsed, never as "no expiry").
pub fn wall_to_mono_ns(at: SystemTime) -> u64 {
    let now_wall = SystemTime::now();
    let now_mono = mono_ns();
    match at.duration_since(now_wall) {
        Ok(ahead) => now_mono.saturating_add(ahead.as_nanos() as u64),
        Err(behind) => now_mono
            .saturating_sub(behind.duration().as_nanos() as u64)
            .max(1),
    }
}

/// Wall-clock instant of a monotonic value.
pub fn mono_to_wall(boot: u64) -> SystemTime {
    let now_wall = SystemTime::now();
    let now_mono = mono_ns();
    if boot >= now_mono {
        now_wall + Duration::from_nanos(boot - now_mono)
    } else {
        now_wall
            .checked_sub(Duration::from_nanos(now_mono - boot))
            .unwrap_or(UNIX_EPOCH)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_within_a_millisecond() {
        let at = SystemTime::now() + Duration::from_secs(600);
        let back = mono_to_wall(wall_to_mono_ns(at));
        let diff = back.duration_since(at).unwrap_or_else(|e| e.duration());
        assert!(diff < Duration::from_millis(5), "{diff:?}");
    }

    #[test]
    fn past_instants_are_lapsed_not_permanent() {
        let long_ago = UNIX_EPOCH + Duration::from_secs(1);
        let m = wall_to_mono_ns(long_ago);
        assert!(m >= 1 && m < mono_ns());
    }
}
