//! The guard: durable lists, per-source rates, decisions. One mutex around the whole core:
//! every operation is a handful of map writes and one state save, so contention is not the
//! bottleneck, and a single lock makes "validate, write kernel, persist, or roll back" atomic
//! with respect to every other request and the controller tick. The tick's slow parts, reading
//! the per-source map and updating a track per source, happen outside it (the tracks have a
//! lock of their own); the tick holds the core's lock only for its decisions.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use ipnet::IpNet;
use serde::Serialize;
use xdp_guard_common::{
    maps::{NEVER, SourceKey},
    stats::{self, COUNT},
};

use super::{CounterReader, Dataplane, escalated_ttl};
use crate::{
    bpf::{BpfError, SourceTotals, source_net},
    clock,
    model::{AllowRecord, AttackState, BlockRecord, Offence, Origin, now_ms},
    store::{Change, State, Store, StoreError},
};

/// Longest TTL a block request may ask for (a permanent block omits the TTL); keeps the
/// expiry arithmetic far from overflow.
pub const MAX_TTL: Duration = Duration::from_secs(10 * 365 * 86_400);

/// Rate samples kept per source for the `top` view's sparkline.
const HISTORY: usize = 30;

#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("{input:?} is not an IP address or prefix: {reason}")]
    InvalidCidr { input: String, reason: String },
    #[error("{input} has host bits set; the prefix is {canonical}")]
    HostBits { input: String, canonical: IpNet },
    #[error("{cidr} is broader than /{min}, the broadest IPv{family} prefix accepted")]
    TooBroad { cidr: IpNet, min: u8, family: u8 },
    #[error("{cidr} overlaps the allowlist entry {allow}; remove that first")]
    OverlapsAllowlist { cidr: IpNet, allow: IpNet },
    #[error("{cidr} covers {what} {net}, which is never blocked")]
    Protected {
        cidr: IpNet,
        net: IpNet,
        what: &'static str,
    },
    #[error("{0} is not in the list")]
    NotFound(IpNet),
    #[error(
        "the blocklist is full ({0} entries); unblock something or raise blocking.block_max_entries"
    )]
    Full(u32),
    #[error("invalid TTL: {0}")]
    InvalidTtl(String),
    #[error("saving state: {0}")]
    Persist(#[from] StoreError),
    #[error("datapath: {0}")]
    Datapath(BpfError),
    #[error("entry {index} of the batch: {source}; nothing in the batch was applied")]
    BatchEntry {
        /// From 0, in the order given.
        index: usize,
        source: Box<GuardError>,
    },
    #[error("a batch holds 1 to {MAX_BATCH} prefixes; this one had {0}")]
    BatchSize(usize),
}

/// Most prefixes one [`Guard::block_many`] takes.
pub const MAX_BATCH: usize = 10_000;

impl From<BpfError> for GuardError {
    fn from(e: BpfError) -> Self {
        match e {
            BpfError::BlocklistFull(n) => Self::Full(n),
            other => Self::Datapath(other),
        }
    }
}

/// Parse an address (`192.0.2.1`, a /32 or /128) or a canonical prefix. A prefix with host
/// bits set is refused with its canonical form, never silently truncated.
pub fn parse_cidr(input: &str) -> Result<IpNet, GuardError> {
    let s = input.trim();
    if let Ok(addr) = s.parse::<IpAddr>() {
        return Ok(IpNet::from(addr));
    }
    let net: IpNet = s
        .parse()
        .map_err(|e: ipnet::AddrParseError| GuardError::InvalidCidr {
            input: input.to_string(),
            reason: e.to_string(),
        })?;
    if net.trunc() != net {
        return Err(GuardError::HostBits {
            input: input.to_string(),
            canonical: net.trunc(),
        });
    }
    Ok(net)
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(b) || b.contains(a)
}

/// Thresholds that decide the attack state.
#[derive(Clone, Debug)]
pub struct AttackThresholds {
    pub new_sources_per_sec: u64,
    pub syn_rate_total: u64,
    pub syn_recv: u64,
    pub listen_overflows_per_sec: u64,
    pub quiet_period: Duration,
    /// While a spoofed flood lasts: SYNs per second per CPU let through from sources the
    /// program does not track (0: no spoof guard, every such SYN goes to the kernel).
    pub spoofed_syn_budget: u32,
}

/// What the guard needs of the configuration (decoupled from the file format so tests can
/// build it directly).
#[derive(Clone, Debug)]
pub struct Settings {
    pub interface: String,
    pub enforce: bool,
    /// SYN/s per source (summed over CPUs) above which a source is an offender.
    pub syn_rate: u32,
    pub ipv6_prefix_len: u32,
    pub default_ttl: Duration,
    pub escalation: f64,
    pub max_ttl: Duration,
    pub over_limit_ticks: u32,
    /// After an operator unblock, sources inside the prefix are not auto-blocked for this long.
    pub unblock_grace: Duration,
    pub min_prefix_v4: u8,
    pub min_prefix_v6: u8,
    /// Never blockable: loopback, the host's own addresses, admin networks.
    pub protected: Vec<(IpNet, &'static str)>,
    pub config_allowlist: Vec<IpNet>,
    pub attack: AttackThresholds,
    pub sysctl_auto: bool,
    pub sysctl_root: PathBuf,
    pub sysctl_backup: PathBuf,
    /// Read SYN_RECV and listen counters (sock_diag, /proc/net/netstat) every few ticks, and
    /// with the spoof guard on, the peers of the protected ports' handshaken sockets.
    pub watch_sockets: bool,
    /// The protected ports (empty: all), whose clients the spoof guard lets through.
    pub protected_ports: Vec<u16>,
}

impl Settings {
    /// Settings for tests and tools: sensible thresholds, nothing on disk outside `dir`.
    pub fn for_tests(dir: &std::path::Path) -> Self {
        Self {
            interface: "test0".into(),
            enforce: true,
            syn_rate: 100,
            ipv6_prefix_len: 64,
            default_ttl: Duration::from_secs(600),
            escalation: 2.0,
            max_ttl: Duration::from_secs(86_400),
            over_limit_ticks: 2,
            unblock_grace: Duration::from_secs(60),
            min_prefix_v4: 8,
            min_prefix_v6: 32,
            protected: loopback(),
            config_allowlist: vec![],
            attack: AttackThresholds {
                new_sources_per_sec: 5_000,
                syn_rate_total: 20_000,
                syn_recv: 512,
                listen_overflows_per_sec: 1,
                quiet_period: Duration::from_secs(60),
                spoofed_syn_budget: 0,
            },
            sysctl_auto: false,
            sysctl_root: dir.join("sys"),
            sysctl_backup: dir.join("sysctl-backup.json"),
            watch_sockets: false,
            protected_ports: vec![80],
        }
    }
}

/// Loopback ranges: never blockable.
pub fn loopback() -> Vec<(IpNet, &'static str)> {
    vec![
        ("127.0.0.0/8".parse().expect("literal"), "loopback"),
        ("::1/128".parse().expect("literal"), "loopback"),
    ]
}

#[derive(Clone, Debug, Default)]
struct Track {
    syns: u64,
    over_limit: u64,
    rate: f64,
    over_ticks: u32,
    history: History,
    /// The tick that last found the source in the map (`Core::ticks`).
    seen: u64,
}

/// The last [`HISTORY`] rate samples of a source, oldest first once read. Kept inline: a
/// tick touches every track, and a heap buffer per source was a cache miss per source on top
/// of the hash map's (measured at 1M sources in `cargo xtask bench`, section 4).
#[derive(Clone, Debug)]
struct History {
    samples: [f32; HISTORY],
    /// Where the next sample goes.
    next: u8,
    len: u8,
}

impl Default for History {
    fn default() -> Self {
        Self {
            samples: [0.0; HISTORY],
            next: 0,
            len: 0,
        }
    }
}

impl History {
    fn push(&mut self, sample: f32) {
        self.samples[usize::from(self.next)] = sample;
        self.next = ((usize::from(self.next) + 1) % HISTORY) as u8;
        self.len = (usize::from(self.len) + 1).min(HISTORY) as u8;
    }

    fn to_vec(&self) -> Vec<f32> {
        let (len, next) = (usize::from(self.len), usize::from(self.next));
        (0..len)
            .map(|i| self.samples[(next + HISTORY - len + i) % HISTORY])
            .collect()
    }
}

/// A tracked source as the API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Offender {
    pub source: IpNet,
    pub syn_rate: f64,
    pub syns: u64,
    pub dropped: u64,
    pub blocked: bool,
    pub blocked_until_ms: Option<u64>,
    /// Recent SYN/s samples, oldest first, one per tick.
    pub history: Vec<f32>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Rates {
    pub packets_per_sec: f64,
    pub syns_per_sec: f64,
    pub dropped_per_sec: f64,
    pub new_sources_per_sec: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct StatsSnapshot {
    pub interface: String,
    pub xdp_mode: String,
    pub enforce: bool,
    pub counters: BTreeMap<&'static str, u64>,
    pub rates: Rates,
    pub blocklist_size: usize,
    pub allowlist_size: usize,
    pub tracked_sources: usize,
    pub attack_state: AttackState,
    /// The program's spoof guard is on (untracked sources limited to their budget).
    pub spoof_guard: bool,
    pub sysctl_profile: &'static str,
    pub syn_recv: u64,
    pub tick_duration_ms: f64,
    pub ticks: u64,
    pub uptime_secs: u64,
}

/// What one tick did.
#[derive(Clone, Debug, Default)]
pub struct TickReport {
    pub expired: Vec<IpNet>,
    pub blocked: Vec<IpNet>,
    pub attack_changed: Option<AttackState>,
    pub duration: Duration,
    /// The part of `duration` the tick held the guard's lock (API calls wait that long at
    /// most); the counters are read before it when the dataplane has a [`CounterReader`].
    pub locked: Duration,
}

/// The counters as one tick read them, and when.
struct Reading {
    at: tokio::time::Instant,
    counters: [u64; COUNT],
    sources: Vec<(SourceKey, SourceTotals)>,
}

/// Every source the last tick found in the per-source map, and the global counters then.
#[derive(Default)]
struct Tracks {
    map: HashMap<SourceKey, Track>,
    last: Option<(tokio::time::Instant, [u64; COUNT])>,
}

/// What a tick's aggregation hands to the decisions.
struct Aggregate {
    now: tokio::time::Instant,
    /// `None` on the first tick (no interval yet).
    rates: Option<Rates>,
    /// Sources over the limit for enough ticks: key, rate, ticks over.
    offenders: Vec<(SourceKey, f64, u32)>,
    /// SYN/s explained by tracked sources.
    attributable: f64,
}

impl Tracks {
    /// Per-source rates since the last reading; sources over `limit` SYN/s for
    /// `over_limit_ticks` ticks in a row are offenders. `stamp` tells this tick's sources
    /// from those the LRU evicted since.
    fn aggregate(
        &mut self,
        reading: Reading,
        limit: f64,
        over_limit_ticks: u32,
        stamp: u64,
    ) -> Aggregate {
        let Reading {
            at: now,
            counters,
            sources,
        } = reading;
        let dt = match self.last {
            Some((t, _)) => now.duration_since(t).as_secs_f64().max(1e-3),
            None => 0.0,
        };
        let rates = match self.last {
            Some((_, prev)) if dt > 0.0 => {
                let d = |i: usize| counters[i].saturating_sub(prev[i]) as f64 / dt;
                Some(Rates {
                    packets_per_sec: d(stats::PACKETS),
                    syns_per_sec: d(stats::SYNS),
                    dropped_per_sec: stats::DROPS.iter().map(|i| d(*i)).sum(),
                    // SYNs of sources the sketch admitted, the flood guard refused or the
                    // spoof guard dropped: all from sources the program did not know.
                    new_sources_per_sec: d(stats::LRU_ADMITTED)
                        + d(stats::FLOOD_GUARD)
                        + d(stats::DROP_UNVERIFIED),
                })
            }
            _ => None,
        };
        self.last = Some((now, counters));

        let mut offenders = Vec::new();
        let mut attributable = 0.0;
        for (key, totals) in sources {
            let t = self.map.entry(key).or_default();
            t.seen = stamp;
            let delta = totals.syns.saturating_sub(t.syns);
            // A source seen for the first time counted its SYNs since admission, within
            // the last tick (or two): charge them to this interval.
            let rate = if dt > 0.0 { delta as f64 / dt } else { 0.0 };
            t.syns = totals.syns;
            t.over_limit = totals.over_limit;
            t.rate = rate;
            t.history.push(rate as f32);
            attributable += rate;
            if rate > limit {
                t.over_ticks += 1;
                if t.over_ticks >= over_limit_ticks {
                    offenders.push((key, rate, t.over_ticks));
                }
            } else {
                t.over_ticks = 0;
            }
        }
        // Sources the LRU evicted.
        self.map.retain(|_, t| t.seen == stamp);
        Aggregate {
            now,
            rates,
            offenders,
            attributable,
        }
    }
}

/// What the socket table said (`None`: that read failed).
struct Sockets {
    syn_recv: Option<u64>,
    listen_overflows: Option<u64>,
}

fn read_sockets() -> Sockets {
    use crate::tcpstate::{Filter, StateSet, TcpState, listen_counters, snapshot};
    let syn_recv = Filter::default().with_states(StateSet::of(&[TcpState::SynRecv]));
    Sockets {
        syn_recv: snapshot(&syn_recv).ok().map(|s| s.syn_recv),
        listen_overflows: listen_counters().ok().map(|c| c.listen_overflows),
    }
}

struct Core {
    dp: Box<dyn Dataplane>,
    store: Store,
    settings: Settings,
    blocks: BTreeMap<IpNet, BlockRecord>,
    allows: BTreeMap<IpNet, AllowRecord>,
    offences: BTreeMap<IpNet, Offence>,
    /// Prefixes an operator unblocked, and until when their sources are not auto-blocked.
    grace: BTreeMap<IpNet, tokio::time::Instant>,
    /// Sources tracked after the last tick (the tracks themselves are in [`Guard::tracks`]).
    tracked: usize,
    rates: Rates,
    attack: AttackState,
    last_trigger: Option<tokio::time::Instant>,
    sysctl_tuned: bool,
    /// When the spoof guard last looked for handshaken clients to let through.
    verified_at: Option<tokio::time::Instant>,
    syn_recv: u64,
    listen_overflows: Option<u64>,
    tick_duration: Duration,
    ticks: u64,
    /// A tick's changes are in force but missed the journal (its append failed): the next
    /// successful save writes a whole snapshot.
    stale: bool,
    xdp_mode: String,
    /// Wall time as the guard sees it: the wall clock at start plus tokio's monotonic time
    /// since. Immune to wall-clock steps, and paused tokio time (tests) pauses it.
    base_wall_ms: u64,
    base_instant: tokio::time::Instant,
}

pub struct Guard {
    core: Mutex<Core>,
    /// Per-source tracks, apart from the core so that a tick aggregates a million sources
    /// without holding the lock API calls need. Lock order: `tracks`, then `core`.
    tracks: Mutex<Tracks>,
    /// Reads the counters without the lock (see [`Dataplane::reader`]).
    reader: Option<Arc<dyn CounterReader>>,
    started: Instant,
}

fn wall_ms_to_mono(ms: Option<u64>) -> u64 {
    match ms {
        None => NEVER,
        Some(ms) => clock::wall_to_mono_ns(crate::model::from_unix_ms(ms)),
    }
}

impl Guard {
    /// Build the guard from durable state: lapsed blocks are dropped, the configured
    /// allowlist is merged in, and everything is written to the dataplane.
    pub fn new(
        mut dp: Box<dyn Dataplane>,
        store: Store,
        settings: Settings,
        xdp_mode: &str,
    ) -> Result<Self, GuardError> {
        let state = store.load()?;
        let (base_wall_ms, base_instant) = (now_ms(), tokio::time::Instant::now());
        let now = base_wall_ms;
        let mut blocks = BTreeMap::new();
        for b in state.blocks {
            if !b.expired(now) {
                dp.block(b.cidr, wall_ms_to_mono(b.expires_at_ms))?;
                blocks.insert(b.cidr, b);
            }
        }
        let mut allows = BTreeMap::new();
        for a in state.allows {
            dp.allow(a.cidr)?;
            allows.insert(a.cidr, a);
        }
        for net in &settings.config_allowlist {
            if !allows.contains_key(net) {
                dp.allow(*net)?;
                allows.insert(
                    *net,
                    AllowRecord {
                        cidr: *net,
                        origin: Origin::Config,
                        note: "configuration".into(),
                        created_at_ms: now,
                    },
                );
            }
        }
        // A backup on disk means a previous run tuned the sysctls and did not restore them
        // (killed): this run owns restoring them once things are quiet.
        let sysctl_tuned = settings.sysctl_auto && settings.sysctl_backup.exists();
        let mut core = Core {
            dp,
            store,
            settings,
            blocks,
            allows,
            offences: state.offences,
            grace: BTreeMap::new(),
            tracked: 0,
            rates: Rates::default(),
            attack: AttackState::None,
            last_trigger: None,
            sysctl_tuned,
            verified_at: None,
            syn_recv: 0,
            listen_overflows: None,
            tick_duration: Duration::ZERO,
            ticks: 0,
            stale: false,
            xdp_mode: xdp_mode.to_string(),
            base_wall_ms,
            base_instant,
        };
        core.snapshot()?;
        Ok(Self {
            reader: core.dp.reader(),
            core: Mutex::new(core),
            tracks: Mutex::new(Tracks::default()),
            started: Instant::now(),
        })
    }

    /// Ticks read the counters while holding the lock, as before the [`CounterReader`]
    /// existed: the benchmark's baseline for how long API calls wait on a tick.
    pub fn without_reader(mut self) -> Self {
        self.reader = None;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Core> {
        super::lock(&self.core)
    }

    /// Block a prefix. `ttl: None` is permanent. Re-blocking an entry replaces it.
    pub fn block(
        &self,
        cidr: &str,
        ttl: Option<Duration>,
        reason: Option<String>,
    ) -> Result<BlockRecord, GuardError> {
        let net = parse_cidr(cidr)?;
        let mut core = self.lock();
        core.check_blockable(&net)?;
        check_ttl(ttl)?;
        let now = core.now_ms();
        let record = BlockRecord {
            cidr: net,
            expires_at_ms: ttl.map(|t| now + t.as_millis() as u64),
            reason: reason.unwrap_or_else(|| "manual".into()),
            origin: Origin::Manual,
            offences: core.offences.get(&net).map(|o| o.count).unwrap_or(0),
            created_at_ms: now,
        };
        core.insert_block(record.clone())?;
        // The operator changed their mind: no grace left that overlaps what they block.
        core.grace.retain(|g, _| !overlaps(g, &net));
        log::info!(
            "blocked {net} ({}), until {}",
            record.reason,
            until(record.expires_at_ms)
        );
        Ok(record)
    }

    /// Block every prefix of `cidrs` (a feed), all or nothing: each is checked as
    /// [`Guard::block`] would, then all go to the dataplane and into one journal append. An
    /// error names the entry, and leaves the lists, the kernel and the disk as they were. A
    /// prefix given twice is blocked once.
    pub fn block_many(
        &self,
        cidrs: &[String],
        ttl: Option<Duration>,
        reason: Option<String>,
    ) -> Result<Vec<BlockRecord>, GuardError> {
        if cidrs.is_empty() || cidrs.len() > MAX_BATCH {
            return Err(GuardError::BatchSize(cidrs.len()));
        }
        let entry = |index: usize| {
            move |e: GuardError| GuardError::BatchEntry {
                index,
                source: Box::new(e),
            }
        };
        let mut nets = Vec::with_capacity(cidrs.len());
        let mut seen = std::collections::HashSet::with_capacity(cidrs.len());
        for (i, c) in cidrs.iter().enumerate() {
            let net = parse_cidr(c).map_err(entry(i))?;
            if seen.insert(net) {
                nets.push((i, net));
            }
        }
        check_ttl(ttl)?;
        let mut core = self.lock();
        for (i, net) in &nets {
            core.check_blockable(net).map_err(entry(*i))?;
        }
        let now = core.now_ms();
        let reason = reason.unwrap_or_else(|| "manual".into());
        let records: Vec<BlockRecord> = nets
            .iter()
            .map(|(_, net)| BlockRecord {
                cidr: *net,
                expires_at_ms: ttl.map(|t| now + t.as_millis() as u64),
                reason: reason.clone(),
                origin: Origin::Manual,
                offences: core.offences.get(net).map(|o| o.count).unwrap_or(0),
                created_at_ms: now,
            })
            .collect();
        // Kernel first, then memory and disk; any failure puts back what was there.
        let mut applied: Vec<(IpNet, Option<BlockRecord>)> = Vec::with_capacity(records.len());
        for ((i, _), record) in nets.iter().zip(&records) {
            let prev = core.blocks.get(&record.cidr).cloned();
            if let Err(e) = core
                .dp
                .block(record.cidr, wall_ms_to_mono(record.expires_at_ms))
            {
                core.put_back(applied);
                return Err(entry(*i)(e.into()));
            }
            core.blocks.insert(record.cidr, record.clone());
            applied.push((record.cidr, prev));
        }
        let changes: Vec<Change> = records.iter().cloned().map(Change::Block).collect();
        if let Err(e) = core.record(&changes) {
            core.put_back(applied);
            return Err(e);
        }
        core.grace
            .retain(|g, _| !nets.iter().any(|(_, net)| overlaps(g, net)));
        log::info!(
            "blocked {} prefixes ({reason}) until {}",
            records.len(),
            until(records[0].expires_at_ms)
        );
        Ok(records)
    }

    pub fn unblock(&self, cidr: &str) -> Result<BlockRecord, GuardError> {
        let net = parse_cidr(cidr)?;
        let mut core = self.lock();
        let Some(prev) = core.blocks.remove(&net) else {
            return Err(GuardError::NotFound(net));
        };
        core.dp.unblock(net)?;
        if let Err(e) = core.record(&[Change::Unblock(net)]) {
            // Not acknowledged: put it back as it was.
            let _ = core.dp.block(net, wall_ms_to_mono(prev.expires_at_ms));
            core.blocks.insert(net, prev);
            return Err(e);
        }
        let grace = core.settings.unblock_grace;
        if grace.is_zero() {
            log::info!("unblocked {net}");
        } else {
            core.grace.insert(net, tokio::time::Instant::now() + grace);
            log::info!(
                "unblocked {net}; its sources are not auto-blocked for {} (still rate-limited)",
                humantime::format_duration(grace)
            );
        }
        Ok(prev)
    }

    pub fn allow(&self, cidr: &str, note: Option<String>) -> Result<AllowRecord, GuardError> {
        let net = parse_cidr(cidr)?;
        let mut core = self.lock();
        if let Some(existing) = core.allows.get(&net) {
            return Ok(existing.clone());
        }
        let record = AllowRecord {
            cidr: net,
            origin: Origin::Manual,
            note: note.unwrap_or_default(),
            created_at_ms: core.now_ms(),
        };
        core.dp.allow(net).map_err(|e| match e {
            BpfError::AllowlistFull => GuardError::Datapath(BpfError::AllowlistFull),
            other => GuardError::from(other),
        })?;
        core.allows.insert(net, record.clone());
        if let Err(e) = core.record(&[Change::Allow(record.clone())]) {
            core.allows.remove(&net);
            let _ = core.dp.disallow(net);
            return Err(e);
        }
        log::info!("allowlisted {net}");
        Ok(record)
    }

    pub fn disallow(&self, cidr: &str) -> Result<AllowRecord, GuardError> {
        let net = parse_cidr(cidr)?;
        let mut core = self.lock();
        let Some(prev) = core.allows.remove(&net) else {
            return Err(GuardError::NotFound(net));
        };
        core.dp.disallow(net)?;
        if let Err(e) = core.record(&[Change::Disallow(net)]) {
            let _ = core.dp.allow(net);
            core.allows.insert(net, prev);
            return Err(e);
        }
        log::info!("removed {net} from the allowlist");
        Ok(prev)
    }

    pub fn blocklist(&self) -> Vec<BlockRecord> {
        self.lock().blocks.values().cloned().collect()
    }

    pub fn allowlist(&self) -> Vec<AllowRecord> {
        self.lock().allows.values().cloned().collect()
    }

    pub fn attack_state(&self) -> AttackState {
        self.lock().attack
    }

    /// Tracked sources, highest current SYN rate first.
    pub fn offenders(&self, limit: usize) -> Vec<Offender> {
        let tracks = super::lock(&self.tracks);
        let core = self.lock();
        let prefix = core.settings.ipv6_prefix_len;
        // The first `limit` by rate, then by SYNs, before building anything per source:
        // there may be a million tracks, and `top` asks every second.
        let order = |a: &(&SourceKey, &Track), b: &(&SourceKey, &Track)| {
            b.1.rate
                .total_cmp(&a.1.rate)
                .then(b.1.syns.cmp(&a.1.syns))
                .then_with(|| source_net(a.0, prefix).cmp(&source_net(b.0, prefix)))
        };
        if limit == 0 {
            return Vec::new();
        }
        let mut top: Vec<(&SourceKey, &Track)> = tracks.map.iter().collect();
        if top.len() > limit {
            top.select_nth_unstable_by(limit - 1, order);
            top.truncate(limit);
        }
        top.sort_by(order);
        top.into_iter()
            .map(|(key, t)| {
                let source = source_net(key, prefix);
                let block = core.covering_block(&source);
                Offender {
                    source,
                    syn_rate: t.rate,
                    syns: t.syns,
                    dropped: t.over_limit,
                    blocked: block.is_some(),
                    blocked_until_ms: block.and_then(|b| b.expires_at_ms),
                    history: t.history.to_vec(),
                }
            })
            .collect()
    }

    pub fn stats(&self) -> StatsSnapshot {
        let core = self.lock();
        let counters = core.dp.stats().unwrap_or([0; COUNT]);
        StatsSnapshot {
            interface: core.settings.interface.clone(),
            xdp_mode: core.xdp_mode.clone(),
            enforce: core.settings.enforce,
            counters: stats::NAMES
                .iter()
                .zip(counters)
                .map(|(n, c)| (*n, c))
                .collect(),
            rates: core.rates.clone(),
            blocklist_size: core.blocks.len(),
            allowlist_size: core.allows.len(),
            tracked_sources: core.tracked,
            attack_state: core.attack,
            spoof_guard: core.dp.config().spoof_guard(clock::mono_ns()),
            sysctl_profile: if core.sysctl_tuned {
                "under_attack"
            } else {
                "unchanged"
            },
            syn_recv: core.syn_recv,
            tick_duration_ms: core.tick_duration.as_secs_f64() * 1000.0,
            ticks: core.ticks,
            uptime_secs: self.started.elapsed().as_secs(),
        }
    }

    /// New thresholds and lists from a reloaded configuration; durable state is kept.
    /// `kernel` and `ports` update the program's thresholds in place (no reload).
    pub fn reload(
        &self,
        settings: Settings,
        kernel: Option<xdp_guard_common::config::GuardConfig>,
        ports: Option<&[u16]>,
    ) -> Result<(), GuardError> {
        let mut core = self.lock();
        if let Some(cfg) = kernel {
            core.dp.set_config(cfg)?;
        }
        if let Some(p) = ports {
            core.dp.set_ports(p)?;
        }
        let old: Vec<IpNet> = core
            .allows
            .values()
            .filter(|a| a.origin == Origin::Config)
            .map(|a| a.cidr)
            .collect();
        for net in old
            .iter()
            .filter(|n| !settings.config_allowlist.contains(n))
        {
            core.dp.disallow(*net)?;
            core.allows.remove(net);
        }
        for net in &settings.config_allowlist {
            if !core.allows.contains_key(net) {
                core.dp.allow(*net)?;
                let created_at_ms = core.now_ms();
                core.allows.insert(
                    *net,
                    AllowRecord {
                        cidr: *net,
                        origin: Origin::Config,
                        note: "configuration".into(),
                        created_at_ms,
                    },
                );
            }
        }
        core.settings = settings;
        core.snapshot()?;
        Ok(())
    }

    /// Track `peers` in the program so the spoof guard lets them through (the controller
    /// feeds it the handshaken clients of the protected ports while the guard is on).
    pub fn track_clients(&self, peers: &[IpAddr]) {
        let tracks = super::lock(&self.tracks);
        self.lock().track_peers(peers, &tracks);
    }

    /// Put back the sysctls the tuner changed (shutdown).
    pub fn restore_sysctls(&self) {
        let mut core = self.lock();
        if core.sysctl_tuned {
            core.restore_sysctls();
        }
    }

    /// One controller step. `event` is true when an over-limit event woke us early.
    pub fn tick(&self) -> TickReport {
        let started = Instant::now();
        // Reading the counters is most of a tick (a BPF_MAP_LOOKUP_BATCH walk of the whole
        // per-source map); API calls need not wait for it.
        let reading = self
            .reader
            .as_deref()
            .map(|r| -> Result<Reading, BpfError> {
                Ok(Reading {
                    at: tokio::time::Instant::now(),
                    counters: r.stats()?,
                    sources: r.sources()?,
                })
            });
        let (limit, over_limit_ticks, stamp, watch) = {
            let core = self.lock();
            let settings = &core.settings;
            (
                f64::from(settings.syn_rate),
                settings.over_limit_ticks,
                core.ticks,
                settings.watch_sockets && core.ticks.is_multiple_of(4),
            )
        };
        // Every fourth tick, the SYN_RECV count and the listen overflows (sock_diag dumps walk
        // the whole socket table): also before the lock.
        let sockets = watch.then(read_sockets);
        let mut tracks = super::lock(&self.tracks);
        let t = Instant::now();
        let reading = reading.unwrap_or_else(|| self.lock().read_counters());
        let read_locked = if self.reader.is_some() {
            Duration::ZERO
        } else {
            t.elapsed()
        };
        // Aggregating is the other slow part (a hash map update per source): also without
        // the core's lock.
        let aggregate = match reading {
            Ok(r) => Some(tracks.aggregate(r, limit, over_limit_ticks, stamp)),
            Err(e) => {
                log::warn!("controller tick: reading the counters: {e}");
                None
            }
        };
        let mut core = self.lock();
        let locked = Instant::now();
        let mut report = TickReport::default();
        core.expire(&mut report);
        if let Some(sockets) = sockets {
            core.apply_sockets(sockets);
        }
        if let Some(agg) = aggregate {
            core.decide(agg, &mut tracks, &mut report);
        }
        core.tracked = tracks.map.len();
        let changes = core.tick_changes(&report);
        if let Err(e) = core.record(&changes) {
            // In force, not durable yet: the next change that saves writes a whole snapshot.
            core.stale = true;
            log::error!("saving state after a tick: {e}");
        }
        core.ticks += 1;
        core.tick_duration = started.elapsed();
        report.duration = core.tick_duration;
        report.locked = read_locked + locked.elapsed();
        report
    }
}

/// How long the spoof guard stays on after the last tick that saw a spoofed flood.
pub const SPOOF_GUARD_HOLD: Duration = Duration::from_secs(5);

/// `per_sec` SYNs per second as a budget per window of `window_ns` (at least one).
pub fn spoof_budget_per_window(per_sec: u32, window_ns: u64) -> u32 {
    let per_window = u64::from(per_sec).saturating_mul(window_ns) / 1_000_000_000;
    per_window.clamp(1, u64::from(u32::MAX)) as u32
}

/// A block's TTL: at least a second, at most [`MAX_TTL`] (`None`, permanent, is fine).
fn check_ttl(ttl: Option<Duration>) -> Result<(), GuardError> {
    match ttl {
        Some(t) if t.is_zero() => Err(GuardError::InvalidTtl("must be at least one second".into())),
        Some(t) if t > MAX_TTL => Err(GuardError::InvalidTtl(format!(
            "at most {} (ten years); omit it for a permanent block",
            humantime::format_duration(MAX_TTL)
        ))),
        _ => Ok(()),
    }
}

fn until(ms: Option<u64>) -> String {
    match ms {
        None => "forever".into(),
        Some(ms) => humantime::format_rfc3339_seconds(crate::model::from_unix_ms(ms)).to_string(),
    }
}

impl Core {
    fn now_ms(&self) -> u64 {
        self.base_wall_ms
            + tokio::time::Instant::now()
                .duration_since(self.base_instant)
                .as_millis() as u64
    }

    /// Write the whole state as a new snapshot (start, reload, and journal compaction).
    fn snapshot(&mut self) -> Result<(), GuardError> {
        let state = State {
            format: crate::store::STATE_FORMAT,
            blocks: self.blocks.values().cloned().collect(),
            allows: self.allows.values().cloned().collect(),
            offences: self.offences.clone(),
        };
        self.store.save(&state)?;
        Ok(())
    }

    /// Make `changes` durable (one journal append); an error means they are not, and the
    /// caller rolls back. Folding the journal into a new snapshot, when due, is not part of
    /// the change: if it fails the change stands, and the next change tries again.
    fn record(&mut self, changes: &[Change]) -> Result<(), GuardError> {
        self.store.append(changes)?;
        if self.stale || self.store.wants_compaction() {
            let lines = self.store.journal_lines();
            match self.snapshot() {
                Ok(()) => self.stale = false,
                Err(e) => log::warn!("folding {lines} journal lines into a new snapshot: {e}"),
            }
        }
        Ok(())
    }

    fn check_blockable(&self, net: &IpNet) -> Result<(), GuardError> {
        let (min, family) = match net {
            IpNet::V4(_) => (self.settings.min_prefix_v4, 4),
            IpNet::V6(_) => (self.settings.min_prefix_v6, 6),
        };
        if net.prefix_len() < min {
            return Err(GuardError::TooBroad {
                cidr: *net,
                min,
                family,
            });
        }
        if let Some(a) = self.allows.keys().find(|a| overlaps(a, net)) {
            return Err(GuardError::OverlapsAllowlist {
                cidr: *net,
                allow: *a,
            });
        }
        if let Some((p, what)) = self
            .settings
            .protected
            .iter()
            .find(|(p, _)| overlaps(p, net))
        {
            return Err(GuardError::Protected {
                cidr: *net,
                net: *p,
                what,
            });
        }
        Ok(())
    }

    /// The block on `net` or on a prefix that contains it, longest first: one map lookup per
    /// prefix length, not a scan of a blocklist that may hold a million entries.
    fn covering_block(&self, net: &IpNet) -> Option<&BlockRecord> {
        // Every length, not only from `min_prefix_*`: blocks saved under a lower minimum stay.
        (0..=net.prefix_len()).rev().find_map(|len| {
            let prefix = IpNet::new(net.addr(), len).ok()?.trunc();
            self.blocks.get(&prefix)
        })
    }

    /// What a tick changed in the durable state: lapsed blocks, then new blocks with their
    /// offence counts.
    fn tick_changes(&self, report: &TickReport) -> Vec<Change> {
        let mut changes: Vec<Change> = report.expired.iter().map(|n| Change::Unblock(*n)).collect();
        for net in &report.blocked {
            if let Some(b) = self.blocks.get(net) {
                changes.push(Change::Block(b.clone()));
            }
            if let Some(o) = self.offences.get(net) {
                changes.push(Change::Offence(*net, *o));
            }
        }
        changes
    }

    /// Undo a batch's blocks, last first: each prefix's earlier block comes back (kernel and
    /// memory), or the prefix is unblocked.
    fn put_back(&mut self, applied: Vec<(IpNet, Option<BlockRecord>)>) {
        for (net, prev) in applied.into_iter().rev() {
            match prev {
                Some(p) => {
                    let _ = self.dp.block(net, wall_ms_to_mono(p.expires_at_ms));
                    self.blocks.insert(net, p);
                }
                None => {
                    let _ = self.dp.unblock(net);
                    self.blocks.remove(&net);
                }
            }
        }
    }

    /// Kernel first, then durable state; if saving fails, the kernel goes back to what it was.
    fn insert_block(&mut self, record: BlockRecord) -> Result<(), GuardError> {
        let net = record.cidr;
        let prev = self.blocks.get(&net).cloned();
        self.dp.block(net, wall_ms_to_mono(record.expires_at_ms))?;
        self.blocks.insert(net, record.clone());
        if let Err(e) = self.record(&[Change::Block(record)]) {
            self.put_back(vec![(net, prev)]);
            return Err(e);
        }
        Ok(())
    }

    fn expire(&mut self, report: &mut TickReport) {
        let now = self.now_ms();
        let lapsed: Vec<IpNet> = self
            .blocks
            .values()
            .filter(|b| b.expired(now))
            .map(|b| b.cidr)
            .collect();
        for net in lapsed {
            match self.dp.unblock(net) {
                Ok(_) => {
                    self.blocks.remove(&net);
                    log::info!("block on {net} expired");
                    report.expired.push(net);
                }
                Err(e) => log::warn!("removing expired block {net}: {e}"),
            }
        }
    }

    /// The counters through the dataplane, under the lock (a dataplane without a
    /// [`CounterReader`]).
    fn read_counters(&self) -> Result<Reading, BpfError> {
        Ok(Reading {
            at: tokio::time::Instant::now(),
            counters: self.dp.stats()?,
            sources: self.dp.sources()?,
        })
    }

    /// Blocks for the offenders, then the attack state, from a tick's aggregation.
    fn decide(&mut self, agg: Aggregate, tracks: &mut Tracks, report: &mut TickReport) {
        let Aggregate {
            now,
            rates,
            offenders,
            attributable,
        } = agg;
        if let Some(rates) = rates {
            self.rates = rates;
        }
        let per_source_trigger = !offenders.is_empty();
        self.grace.retain(|_, until| *until > now);
        for (key, rate, ticks) in offenders {
            let net = source_net(&key, self.settings.ipv6_prefix_len);
            if self.covering_block(&net).is_some() {
                continue;
            }
            if self.grace.keys().any(|g| g.contains(&net)) {
                log::debug!("{net}: {rate:.0} SYN/s, not blocked: unblocked by the operator");
                continue;
            }
            if !self.settings.enforce {
                log::info!("monitor mode: would block {net} ({rate:.0} SYN/s for {ticks} ticks)");
                continue;
            }
            if self.check_blockable(&net).is_err() {
                continue;
            }
            if let Some(t) = tracks.map.get_mut(&key) {
                t.over_ticks = 0;
            }
            self.auto_block(net, rate, ticks, report);
        }

        self.update_attack_state(per_source_trigger, attributable, tracks, report);
    }

    fn auto_block(&mut self, net: IpNet, rate: f64, ticks: u32, report: &mut TickReport) {
        let now = self.now_ms();
        let offence = self.offences.get(&net).copied().unwrap_or_default();
        let ttl = escalated_ttl(
            self.settings.default_ttl,
            self.settings.escalation,
            self.settings.max_ttl,
            offence.count,
        );
        let record = BlockRecord {
            cidr: net,
            expires_at_ms: Some(now + ttl.as_millis() as u64),
            reason: format!(
                "{rate:.0} SYN/s over the limit of {}/s for {ticks} ticks",
                self.settings.syn_rate
            ),
            origin: Origin::Auto,
            offences: offence.count,
            created_at_ms: now,
        };
        match self.dp.block(net, wall_ms_to_mono(record.expires_at_ms)) {
            Ok(()) => {
                log::warn!(
                    "auto-blocked {net} for {} ({}; offence {})",
                    humantime::format_duration(ttl),
                    record.reason,
                    offence.count + 1
                );
                self.blocks.insert(net, record);
                self.offences.insert(
                    net,
                    Offence {
                        count: offence.count + 1,
                        last_at_ms: now,
                    },
                );
                report.blocked.push(net);
            }
            Err(e) => log::error!("auto-blocking {net}: {e}"),
        }
    }

    fn update_attack_state(
        &mut self,
        per_source: bool,
        attributable: f64,
        tracks: &Tracks,
        report: &mut TickReport,
    ) {
        let th = self.settings.attack.clone();
        let syn_total = self.rates.syns_per_sec;
        let spoofed = self.rates.new_sources_per_sec >= th.new_sources_per_sec as f64
            || (syn_total >= th.syn_rate_total as f64 && attributable < syn_total * 0.5);
        let overload = syn_total >= th.syn_rate_total as f64 || self.syn_recv >= th.syn_recv;
        let now = tokio::time::Instant::now();
        if spoofed || per_source || overload {
            self.last_trigger = Some(now);
        }
        let next = if spoofed {
            AttackState::Spoofed
        } else if per_source {
            if self.attack == AttackState::Spoofed {
                AttackState::Spoofed
            } else {
                AttackState::PerSource
            }
        } else if self
            .last_trigger
            .is_some_and(|t| now.duration_since(t) < th.quiet_period)
        {
            if self.attack == AttackState::None && overload {
                AttackState::PerSource
            } else {
                self.attack
            }
        } else {
            AttackState::None
        };
        if next != self.attack {
            match next {
                AttackState::Spoofed => log::warn!(
                    "spoofed SYN flood: {:.0} SYN/s, {:.0} new sources/s, {:.0}% attributable to tracked sources; per-source blocking cannot help: {}",
                    syn_total,
                    self.rates.new_sources_per_sec,
                    if syn_total > 0.0 {
                        attributable / syn_total * 100.0
                    } else {
                        0.0
                    },
                    if th.spoofed_syn_budget > 0 {
                        "syncookies forced (with sysctl.mode auto) and the spoof guard on"
                    } else {
                        "syncookies forced (with sysctl.mode auto); attack.spoofed_syn_budget would drop the flood in XDP"
                    }
                ),
                AttackState::PerSource => {
                    log::warn!("SYN flood from identifiable sources: blocking them")
                }
                AttackState::None => log::info!(
                    "attack over: quiet for {}",
                    humantime::format_duration(th.quiet_period)
                ),
            }
            self.attack = next;
            report.attack_changed = Some(next);
        }
        self.spoof_guard(spoofed, tracks);
        if self.settings.sysctl_auto {
            let triggered = self.attack != AttackState::None || overload;
            if triggered && !self.sysctl_tuned {
                self.apply_attack_sysctls();
            } else if !triggered && self.sysctl_tuned {
                self.restore_sysctls();
            }
        }
    }

    /// Keep the program's spoof guard on while a spoofed flood is being seen (and the budget
    /// is configured): first let the clients that completed a handshake through (they join
    /// the per-source LRU), then push `spoof_until_ns` a few ticks ahead. When the flood
    /// stops being seen the guard lapses by itself, also if the daemon dies.
    fn spoof_guard(&mut self, spoofed_now: bool, tracks: &Tracks) {
        let budget = self.settings.attack.spoofed_syn_budget;
        if !spoofed_now || budget == 0 {
            return;
        }
        let now = tokio::time::Instant::now();
        if self
            .verified_at
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            self.verified_at = Some(now);
            if self.settings.watch_sockets {
                match crate::tcpstate::handshaken_peers(&self.settings.protected_ports) {
                    Ok(peers) => self.track_peers(&peers, tracks),
                    Err(e) => log::warn!("spoof guard: listing handshaken clients: {e}"),
                }
            }
        }
        let mut cfg = self.dp.config();
        let now_ns = clock::mono_ns();
        let was_on = cfg.spoof_guard(now_ns);
        cfg.spoof_budget = spoof_budget_per_window(budget, cfg.guard_window_ns);
        cfg.spoof_until_ns = now_ns + SPOOF_GUARD_HOLD.as_nanos() as u64;
        match self.dp.set_config(cfg) {
            Ok(()) if !was_on => log::warn!(
                "spoof guard on: SYNs from untracked sources limited to {budget}/s per CPU, \
                 handshaken clients let through; it lapses {} after the flood stops being seen",
                humantime::format_duration(SPOOF_GUARD_HOLD)
            ),
            Ok(()) => {}
            Err(e) => log::error!("spoof guard: writing the config: {e}"),
        }
    }

    /// Track `peers` (clients that completed a handshake) so the spoof guard lets them
    /// through.
    fn track_peers(&mut self, peers: &[IpAddr], tracks: &Tracks) {
        let prefix = self.settings.ipv6_prefix_len;
        let keys: Vec<SourceKey> = peers
            .iter()
            .map(|a| crate::bpf::source_key(*a, prefix))
            .filter(|k| !tracks.map.contains_key(k))
            .collect();
        if keys.is_empty() {
            return;
        }
        match self.dp.track(&keys) {
            Ok(n) => log::info!("spoof guard: {n} handshaken clients let through"),
            Err(e) => log::warn!("spoof guard: tracking handshaken clients: {e}"),
        }
    }

    fn apply_sockets(&mut self, sockets: Sockets) {
        if let Some(n) = sockets.syn_recv {
            self.syn_recv = n;
        }
        if let Some(n) = sockets.listen_overflows {
            self.listen_overflows = Some(n);
        }
    }

    fn apply_attack_sysctls(&mut self) {
        use crate::sysctl::{Profile, Scope, apply_selected};
        let select = |s: &crate::sysctl::Setting| {
            s.scope == Scope::PerNetns
                && (s.under_attack.is_some() || s.key == "net.ipv4.tcp_syncookies")
        };
        match apply_selected(
            Profile::UnderAttack,
            &self.settings.sysctl_root,
            &self.settings.sysctl_backup,
            select,
        ) {
            Ok(changes) => {
                for c in &changes {
                    log::warn!(
                        "sysctl {}: {} -> {} (under attack)",
                        c.key,
                        c.before,
                        c.after
                    );
                }
                self.sysctl_tuned = true;
            }
            Err(e) => log::error!("applying the under-attack sysctl profile: {e}"),
        }
    }

    fn restore_sysctls(&mut self) {
        match crate::sysctl::restore(&self.settings.sysctl_root, &self.settings.sysctl_backup) {
            Ok(changes) => {
                for c in &changes {
                    log::info!("sysctl {}: {} -> {} (restored)", c.key, c.before, c.after);
                }
                self.sysctl_tuned = false;
            }
            Err(e) => log::error!("restoring sysctls: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_keeps_the_last_samples_oldest_first() {
        let mut h = History::default();
        assert!(h.to_vec().is_empty());
        h.push(1.0);
        h.push(2.0);
        assert_eq!(h.to_vec(), vec![1.0, 2.0]);
        for i in 3..=(HISTORY as u32 + 5) {
            h.push(i as f32);
        }
        let want: Vec<f32> = (6..=(HISTORY as u32 + 5)).map(|i| i as f32).collect();
        assert_eq!(h.to_vec(), want);
    }
}
