//! The program checks block expiry against `bpf_ktime_get_boot_ns` (CLOCK_BOOTTIME): the same
//! clock for every process until reboot, so expiries written by one daemon are honoured by
//! the kernel after it dies and by the next daemon. Durable state stores wall-clock times and
//! converts at load.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// CLOCK_BOOTTIME now, in nanoseconds.
pub fn boot_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec; CLOCK_BOOTTIME exists on every supported kernel.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    debug_assert_eq!(rc, 0);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Boot-clock nanoseconds for a wall-clock instant (saturating at 1 for instants before boot,
/// so a block that should already have lapsed is written as lapsed, never as "no expiry").
pub fn wall_to_boot_ns(at: SystemTime) -> u64 {
    let now_wall = SystemTime::now();
    let now_boot = boot_ns();
    match at.duration_since(now_wall) {
        Ok(ahead) => now_boot.saturating_add(ahead.as_nanos() as u64),
        Err(behind) => now_boot
            .saturating_sub(behind.duration().as_nanos() as u64)
            .max(1),
    }
}

/// Wall-clock instant of a boot-clock value.
pub fn boot_to_wall(boot: u64) -> SystemTime {
    let now_wall = SystemTime::now();
    let now_boot = boot_ns();
    if boot >= now_boot {
        now_wall + Duration::from_nanos(boot - now_boot)
    } else {
        now_wall
            .checked_sub(Duration::from_nanos(now_boot - boot))
            .unwrap_or(UNIX_EPOCH)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_within_a_millisecond() {
        let at = SystemTime::now() + Duration::from_secs(600);
        let back = boot_to_wall(wall_to_boot_ns(at));
        let diff = back.duration_since(at).unwrap_or_else(|e| e.duration());
        assert!(diff < Duration::from_millis(5), "{diff:?}");
    }

    #[test]
    fn past_instants_are_lapsed_not_permanent() {
        let long_ago = UNIX_EPOCH + Duration::from_secs(1);
        let b = wall_to_boot_ns(long_ago);
        assert!(b >= 1 && b < boot_ns());
    }
}
