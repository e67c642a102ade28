//! Per-client token buckets for the changing routes (POST, DELETE).
//!
//! The key is the TCP peer address the connection came from, never a header: anyone can
//! write `X-Forwarded-For`. The limit is checked after authentication, so a client without
//! the token cannot spend the bucket of the operators who share its address (on the
//! default loopback listener, every local client has the address 127.0.0.1).

use std::{collections::HashMap, net::IpAddr, sync::Mutex, time::Duration};

use tokio::time::Instant;

/// Clients remembered before those with a full bucket are forgotten.
const PRUNE_AT: usize = 4096;

/// `per_minute` writes per client, refilled continuously, bursting up to `per_minute`.
///
/// A token bucket kept as GCRA: one instant per client (when its bucket will be full
/// again), integer arithmetic, so `Retry-After` is exact.
#[derive(Debug)]
pub struct WriteLimiter {
    /// Time one token takes to come back; `None` when the limit is zero.
    interval: Option<Duration>,
    /// How far ahead of now a client's full-again instant may be and still be served:
    /// `per_minute - 1` intervals, the burst.
    tolerance: Duration,
    /// Per client, the instant its bucket is full again. `None` keys requests without a
    /// peer address (in-process tests): they share one bucket.
    full_at: Mutex<HashMap<Option<IpAddr>, Instant>>,
}

impl WriteLimiter {
    pub fn new(per_minute: u32) -> Self {
        let interval = (per_minute > 0).then(|| Duration::from_secs(60) / per_minute);
        Self {
            interval,
            tolerance: interval.unwrap_or_default() * per_minute.saturating_sub(1),
            full_at: Mutex::new(HashMap::new()),
        }
    }

    /// Take one token for `peer`, or say how long until one is there.
    pub fn check(&self, peer: Option<IpAddr>) -> Result<(), Duration> {
        let Some(interval) = self.interval else {
            return Err(Duration::from_secs(60));
        };
        let now = Instant::now();
        // IPv4 clients of a dual-stack listener arrive as ::ffff:a.b.c.d.
        let key = peer.map(|ip| ip.to_canonical());
        let mut full_at = self.full_at.lock().unwrap_or_else(|p| p.into_inner());
        if full_at.len() >= PRUNE_AT && !full_at.contains_key(&key) {
            full_at.retain(|_, t| *t > now);
        }
        let tat = full_at.get(&key).copied().unwrap_or(now).max(now);
        let earliest = now + self.tolerance;
        if tat <= earliest {
            full_at.insert(key, tat + interval);
            Ok(())
        } else {
            Err(tat.duration_since(earliest))
        }
    }
}

/// Whole seconds for `Retry-After`, rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().expect("test address"))
    }

    #[tokio::test(start_paused = true)]
    async fn bucket_bursts_then_refills() {
        let l = WriteLimiter::new(6); // one every 10 s
        for _ in 0..6 {
            assert!(l.check(ip("192.0.2.1")).is_ok());
        }
        let wait = l.check(ip("192.0.2.1")).expect_err("spent");
        assert_eq!(retry_after_secs(wait), 10);
        // Another client, and the anonymous bucket, are untouched.
        assert!(l.check(ip("192.0.2.2")).is_ok());
        assert!(l.check(None).is_ok());
        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!(
            retry_after_secs(l.check(ip("192.0.2.1")).expect_err("not yet")),
            1
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(l.check(ip("192.0.2.1")).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn mapped_ipv4_shares_the_ipv4_bucket() {
        let l = WriteLimiter::new(1);
        assert!(l.check(ip("192.0.2.1")).is_ok());
        assert!(l.check(ip("::ffff:192.0.2.1")).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn zero_per_minute_refuses_everything() {
        let l = WriteLimiter::new(0);
        assert_eq!(l.check(None), Err(Duration::from_secs(60)));
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
    }
}
