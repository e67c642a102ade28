//! The controller: reads the counters the XDP program writes, decides, writes decisions back.
//!
//! [`Guard`] owns the durable lists and every decision; it talks to the kernel only through
//! [`Dataplane`], implemented by [`crate::bpf::Datapath`] and, for tests that run without
//! root, by [`MemoryDataplane`].

mod guard;
pub use guard::{AttackThresholds, loopback, parse_cidr};

use std::{
    collections::BTreeMap,
    net::IpAddr,
    sync::{Arc, Mutex, mpsc},
    time::Duration,
};

use ipnet::IpNet;
use xdp_guard_common::{
    config::GuardConfig,
    maps::SourceKey,
    stats::{self, COUNT},
};

pub use self::guard::{
    Guard, GuardError, MAX_BATCH, Offender, Settings, StatsSnapshot, TickReport,
    spoof_budget_per_window,
};
use crate::bpf::{BpfError, CounterMaps, Datapath, SourceTotals};

/// What the controller needs from the kernel side.
pub trait Dataplane: Send {
    /// Block until `expires_at_ns` (monotonic clock; `u64::MAX` permanent).
    fn block(&mut self, net: IpNet, expires_at_ns: u64) -> Result<(), BpfError>;
    fn unblock(&mut self, net: IpNet) -> Result<bool, BpfError>;
    fn allow(&mut self, net: IpNet) -> Result<(), BpfError>;
    fn disallow(&mut self, net: IpNet) -> Result<bool, BpfError>;
    fn stats(&self) -> Result<[u64; COUNT], BpfError>;
    /// Per-source totals summed over all CPUs.
    fn sources(&self) -> Result<Vec<(SourceKey, SourceTotals)>, BpfError>;
    fn config(&self) -> GuardConfig;
    fn set_config(&mut self, cfg: GuardConfig) -> Result<(), BpfError>;
    fn set_ports(&mut self, ports: &[u16]) -> Result<(), BpfError>;
    /// Start tracking sources that completed a handshake (the spoof guard lets tracked
    /// sources through); already tracked ones are left alone. Returns how many were new.
    fn track(&mut self, keys: &[SourceKey]) -> Result<usize, BpfError>;
    /// A reader of the same counters that works without this dataplane, so a tick reads
    /// them before it takes the guard's lock. `None`: ticks read through the dataplane,
    /// under the lock.
    fn reader(&self) -> Option<Arc<dyn CounterReader>> {
        None
    }
}

/// The counters a tick reads: [`Dataplane::stats`] and [`Dataplane::sources`], from a handle
/// of their own.
pub trait CounterReader: Send + Sync {
    fn stats(&self) -> Result<[u64; COUNT], BpfError>;
    fn sources(&self) -> Result<Vec<(SourceKey, SourceTotals)>, BpfError>;
}

impl CounterReader for CounterMaps {
    fn stats(&self) -> Result<[u64; COUNT], BpfError> {
        CounterMaps::stats(self)
    }
    fn sources(&self) -> Result<Vec<(SourceKey, SourceTotals)>, BpfError> {
        CounterMaps::sources(self)
    }
}

impl Dataplane for Datapath {
    fn block(&mut self, net: IpNet, expires_at_ns: u64) -> Result<(), BpfError> {
        Datapath::block(self, net, expires_at_ns)
    }
    fn unblock(&mut self, net: IpNet) -> Result<bool, BpfError> {
        Datapath::unblock(self, net)
    }
    fn allow(&mut self, net: IpNet) -> Result<(), BpfError> {
        Datapath::allow(self, net)
    }
    fn disallow(&mut self, net: IpNet) -> Result<bool, BpfError> {
        Datapath::disallow(self, net)
    }
    fn stats(&self) -> Result<[u64; COUNT], BpfError> {
        Datapath::stats(self)
    }
    fn sources(&self) -> Result<Vec<(SourceKey, SourceTotals)>, BpfError> {
        self.sources_batched()
    }
    fn config(&self) -> GuardConfig {
        *Datapath::config(self)
    }
    fn set_config(&mut self, cfg: GuardConfig) -> Result<(), BpfError> {
        Datapath::set_config(self, cfg)
    }
    fn set_ports(&mut self, ports: &[u16]) -> Result<(), BpfError> {
        Datapath::set_ports(self, ports)
    }
    fn track(&mut self, keys: &[SourceKey]) -> Result<usize, BpfError> {
        Datapath::track(self, keys)
    }
    fn reader(&self) -> Option<Arc<dyn CounterReader>> {
        match self.counter_maps() {
            Ok(maps) => Some(Arc::new(maps)),
            Err(e) => {
                log::warn!("no second handle on the counter maps ({e}): ticks read under the lock");
                None
            }
        }
    }
}

/// An in-memory dataplane: what API and controller tests use without root. Tests feed it
/// per-source totals and counters; it records blocks and allows.
#[derive(Debug, Default)]
pub struct MemoryDataplane {
    pub blocks: BTreeMap<IpNet, u64>,
    pub allows: Vec<IpNet>,
    pub counters: [u64; COUNT],
    pub sources: BTreeMap<SourceKey, SourceTotals>,
    pub config: GuardConfig,
    pub ports: Vec<u16>,
    /// Blocklist capacity, to exercise the "full" error.
    pub capacity: usize,
    /// When set, [`Dataplane::sources`] announces itself on the sender, then waits for the
    /// receiver: a test holds a tick in the middle of its read.
    pub pause_reads: Option<(mpsc::SyncSender<()>, mpsc::Receiver<()>)>,
}

impl MemoryDataplane {
    pub fn new() -> Self {
        Self {
            capacity: 1_000_000,
            ..Default::default()
        }
    }

    /// Add SYNs for a source, as the program would count them.
    pub fn add_syns(&mut self, addr: IpAddr, syns: u64) {
        let key = crate::bpf::source_key(addr, self.config.ipv6_prefix_len.max(1));
        let t = self.sources.entry(key).or_default();
        t.syns += syns;
        self.counters[stats::SYNS] += syns;
        self.counters[stats::PACKETS] += syns;
    }
}

impl Dataplane for MemoryDataplane {
    fn block(&mut self, net: IpNet, expires_at_ns: u64) -> Result<(), BpfError> {
        if !self.blocks.contains_key(&net) && self.blocks.len() >= self.capacity {
            return Err(BpfError::BlocklistFull(self.capacity as u32));
        }
        self.blocks.insert(net, expires_at_ns);
        Ok(())
    }
    fn unblock(&mut self, net: IpNet) -> Result<bool, BpfError> {
        Ok(self.blocks.remove(&net).is_some())
    }
    fn allow(&mut self, net: IpNet) -> Result<(), BpfError> {
        if !self.allows.contains(&net) {
            self.allows.push(net);
        }
        Ok(())
    }
    fn disallow(&mut self, net: IpNet) -> Result<bool, BpfError> {
        let before = self.allows.len();
        self.allows.retain(|a| *a != net);
        Ok(self.allows.len() != before)
    }
    fn stats(&self) -> Result<[u64; COUNT], BpfError> {
        Ok(self.counters)
    }
    fn sources(&self) -> Result<Vec<(SourceKey, SourceTotals)>, BpfError> {
        if let Some((reading, resume)) = &self.pause_reads {
            let _ = reading.send(());
            let _ = resume.recv();
        }
        Ok(self.sources.iter().map(|(k, v)| (*k, *v)).collect())
    }
    fn config(&self) -> GuardConfig {
        self.config
    }
    fn set_config(&mut self, cfg: GuardConfig) -> Result<(), BpfError> {
        self.config = cfg;
        Ok(())
    }
    fn set_ports(&mut self, ports: &[u16]) -> Result<(), BpfError> {
        self.ports = ports.to_vec();
        Ok(())
    }
    fn track(&mut self, keys: &[SourceKey]) -> Result<usize, BpfError> {
        let before = self.sources.len();
        for key in keys {
            self.sources.entry(*key).or_default();
        }
        Ok(self.sources.len() - before)
    }
}

/// TTL of a block for a source with `offences` earlier offences:
/// `default_ttl x escalation^offences`, capped at `max_ttl`.
pub fn escalated_ttl(
    default_ttl: Duration,
    escalation: f64,
    max_ttl: Duration,
    offences: u32,
) -> Duration {
    let factor = escalation.max(1.0).powi(offences.min(64) as i32);
    let secs = default_ttl.as_secs_f64() * factor;
    if !secs.is_finite() || secs >= max_ttl.as_secs_f64() {
        max_ttl
    } else {
        Duration::from_secs_f64(secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escalation_doubles_then_caps() {
        let (d, m) = (Duration::from_secs(600), Duration::from_secs(86_400));
        assert_eq!(escalated_ttl(d, 2.0, m, 0), Duration::from_secs(600));
        assert_eq!(escalated_ttl(d, 2.0, m, 1), Duration::from_secs(1200));
        assert_eq!(escalated_ttl(d, 2.0, m, 3), Duration::from_secs(4800));
        assert_eq!(escalated_ttl(d, 2.0, m, 10), m);
        assert_eq!(escalated_ttl(d, 2.0, m, u32::MAX), m);
        assert_eq!(
            escalated_ttl(d, 1.0, m, 50),
            d,
            "escalation 1.0 never grows"
        );
    }
}

/// A dataplane the caller keeps a handle on while the guard owns the other (tests feed a
/// [`MemoryDataplane`] through it; the benchmark shares one loaded [`Datapath`] between
/// guards). Its reader locks the dataplane, so ticks read as they would through it.
impl<D: Dataplane + 'static> Dataplane for Arc<Mutex<D>> {
    fn block(&mut self, net: IpNet, expires_at_ns: u64) -> Result<(), BpfError> {
        lock(self).block(net, expires_at_ns)
    }
    fn unblock(&mut self, net: IpNet) -> Result<bool, BpfError> {
        lock(self).unblock(net)
    }
    fn allow(&mut self, net: IpNet) -> Result<(), BpfError> {
        lock(self).allow(net)
    }
    fn disallow(&mut self, net: IpNet) -> Result<bool, BpfError> {
        lock(self).disallow(net)
    }
    fn stats(&self) -> Result<[u64; COUNT], BpfError> {
        lock(self).stats()
    }
    fn sources(&self) -> Result<Vec<(SourceKey, SourceTotals)>, BpfError> {
        lock(self).sources()
    }
    fn config(&self) -> GuardConfig {
        lock(self).config()
    }
    fn set_config(&mut self, cfg: GuardConfig) -> Result<(), BpfError> {
        lock(self).set_config(cfg)
    }
    fn set_ports(&mut self, ports: &[u16]) -> Result<(), BpfError> {
        lock(self).set_ports(ports)
    }
    fn track(&mut self, keys: &[SourceKey]) -> Result<usize, BpfError> {
        lock(self).track(keys)
    }
    fn reader(&self) -> Option<Arc<dyn CounterReader>> {
        Some(Arc::new(Arc::clone(self)))
    }
}

impl<D: Dataplane + 'static> CounterReader for Arc<Mutex<D>> {
    fn stats(&self) -> Result<[u64; COUNT], BpfError> {
        lock(self).stats()
    }
    fn sources(&self) -> Result<Vec<(SourceKey, SourceTotals)>, BpfError> {
        lock(self).sources()
    }
}

/// Lock `m`, poisoned or not: a panic while holding one of the controller's locks leaves
/// consistent-enough state (every mutation rolls back before returning an error); keep
/// serving rather than fail every later call.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod guard_tests;
