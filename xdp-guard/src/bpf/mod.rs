//! Loading the XDP program and typed access to its maps. Map names and layouts come from
//! `xdp_guard_common`; nothing here spells a map name.

pub mod batch;
pub mod index;
pub mod pin;

use std::{
    net::{IpAddr, Ipv4Addr},
    os::fd::AsFd as _,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{
        Array, HashMap, MapData, MapError, PerCpuArray, PerCpuHashMap, PerCpuValues, RingBuf,
        lpm_trie::{Key, LpmTrie},
    },
    programs::Xdp,
};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use xdp_guard_common::{
    PROGRAM_NAME,
    config::{FLAG_ALL_PORTS, FLAG_ALLOW_V4, FLAG_ALLOW_V6, GuardConfig},
    maps::{
        self, BLOCK_MAX_ENTRIES, BlockEntry, BlockKeyV4, BlockKeyV6, MAX_V6_BLOCK_LENS, PORT_WORDS,
        PrefixLens, SYN_COUNTERS_MAX_ENTRIES, SourceKey, SynCounter, V4Slot,
    },
    rate,
    stats::{self, Stats},
};

use self::index::{V4Index, V6Index, v4_slots};

/// The XDP object built by build.rs, embedded so the binary is self-contained.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdp-guard"));

#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error("loading the eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("XDP program: {0}")]
    Program(#[from] aya::programs::ProgramError),
    #[error("eBPF map: {0}")]
    Map(#[from] MapError),
    #[error("the eBPF object has no map named {0}")]
    MissingMap(&'static str),
    #[error("the eBPF object has no XDP program named {PROGRAM_NAME}")]
    MissingProgram,
    #[error("the blocklist is full ({0} entries)")]
    BlocklistFull(u32),
    #[error("reading the eBPF maps: {0}")]
    Io(std::io::Error),
    #[error("XDP link: {0}")]
    Link(#[from] aya::programs::links::LinkError),
    #[error("pinning under {path}: {message}")]
    Pin { path: PathBuf, message: String },
    #[error(
        "{dir} holds pins of layout {found}, but this build uses layout {expected}; stop the other version and run `xdp-guard detach --iface {iface}` (that removes protection until the next start)"
    )]
    LayoutMismatch {
        dir: PathBuf,
        iface: String,
        found: String,
        expected: u32,
    },
    #[error("attaching XDP to {iface} in {mode} mode: {source}")]
    Attach {
        iface: String,
        mode: &'static str,
        source: aya::programs::ProgramError,
    },
    #[error("the allowlist is full")]
    AllowlistFull,
    #[error(
        "IPv6 blocks may use at most {MAX_V6_BLOCK_LENS} distinct prefix lengths; {0} would add another"
    )]
    TooManyV6Lengths(Ipv6Net),
}

/// Map sizes chosen at load time, and where the maps are pinned (none: not pinned).
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub block_max_entries: u32,
    pub syn_counters_max_entries: u32,
    /// Directory for the map pins (see [`pin::PinDir`]); existing pins there are adopted.
    pub pin_maps: Option<PathBuf>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            block_max_entries: BLOCK_MAX_ENTRIES,
            syn_counters_max_entries: SYN_COUNTERS_MAX_ENTRIES,
            pin_maps: None,
        }
    }
}

/// How to attach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// Native (driver) mode, falling back to generic with a warning.
    Auto,
    Native,
    Generic,
}

/// What was attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttachedMode {
    Native,
    Generic,
}

impl AttachedMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Generic => "generic",
        }
    }
}

/// The counter maps through their own file descriptors (duplicates of the [`Datapath`]'s):
/// `Send + Sync` and independent of it, so the controller reads them (most of a tick's time:
/// ~30 ms at the default 65,536 sources, ~400 ms at 1M) while its lock is free.
pub struct CounterMaps {
    syn_counters: MapData,
    stats: PerCpuArray<MapData, Stats>,
}

impl CounterMaps {
    pub fn stats(&self) -> Result<[u64; stats::COUNT], BpfError> {
        sum_stats(&self.stats)
    }

    pub fn sources(&self) -> Result<Vec<(SourceKey, SourceTotals)>, BpfError> {
        read_sources(&self.syn_counters)
    }
}

fn sum_stats(map: &PerCpuArray<MapData, Stats>) -> Result<[u64; stats::COUNT], BpfError> {
    let per_cpu = map.get(&0, 0)?;
    let mut sum = [0u64; stats::COUNT];
    for cpu in per_cpu.iter() {
        for (s, v) in sum.iter_mut().zip(cpu.counters.iter()) {
            *s += v;
        }
    }
    Ok(sum)
}

/// Every source's totals, 4,096 entries per `BPF_MAP_LOOKUP_BATCH`, summed as read: no
/// allocation per entry (a third of the time at 1M sources).
fn read_sources(map: &MapData) -> Result<Vec<(SourceKey, SourceTotals)>, BpfError> {
    let ncpus = aya::util::nr_cpus().map_err(|(_, e)| BpfError::Io(e))?;
    batch::fold_all_percpu::<SourceKey, SynCounter, _>(map, ncpus, 4096, |_, v| {
        sum_source(v.iter())
    })
    .map_err(BpfError::Io)
}

/// Per-source totals summed over every CPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceTotals {
    pub syns: u64,
    pub over_limit: u64,
    pub last_seen_ns: u64,
}

pub struct Datapath {
    ebpf: Ebpf,
    config: GuardConfig,
    config_map: Array<MapData, GuardConfig>,
    ports: Array<MapData, u64>,
    allow_v4: LpmTrie<MapData, [u8; 4], u8>,
    allow_v6: LpmTrie<MapData, [u8; 16], u8>,
    allow_v4_count: usize,
    allow_v6_count: usize,
    block_v4: HashMap<MapData, BlockKeyV4, BlockEntry>,
    v4_slots: Array<MapData, V4Slot>,
    block_v6: HashMap<MapData, BlockKeyV6, BlockEntry>,
    v6_lens: Array<MapData, PrefixLens>,
    syn_counters: PerCpuHashMap<MapData, SourceKey, SynCounter>,
    stats: PerCpuArray<MapData, Stats>,
    events: Option<RingBuf<MapData>>,
    v4: V4Index,
    v6: V6Index,
    block_max_entries: u32,
    link: Option<aya::programs::links::FdLink>,
}

fn take(ebpf: &mut Ebpf, name: &'static str) -> Result<aya::maps::Map, BpfError> {
    ebpf.take_map(name).ok_or(BpfError::MissingMap(name))
}

fn is_full(err: &MapError) -> bool {
    matches!(err, MapError::SyscallError(e) if matches!(e.io_error.raw_os_error(), Some(libc::E2BIG) | Some(libc::ENOMEM) | Some(libc::ENOSPC)))
}

impl Datapath {
    /// Load the object and the program into the kernel (runs the verifier); nothing is
    /// attached yet. Accounting starts disabled until [`Datapath::set_config`].
    pub fn load(opts: &LoadOptions) -> Result<Self, BpfError> {
        let pins: Vec<(&'static str, PathBuf)> = match &opts.pin_maps {
            Some(dir) => maps::ALL.iter().map(|m| (*m, dir.join(m))).collect(),
            None => vec![],
        };
        let mut loader = EbpfLoader::new();
        loader
            .map_max_entries(maps::BLOCK_V4, opts.block_max_entries)
            .map_max_entries(maps::BLOCK_V6, opts.block_max_entries)
            .map_max_entries(maps::SYN_COUNTERS, opts.syn_counters_max_entries);
        for (name, path) in &pins {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader.load(OBJECT)?;
        let program: &mut Xdp = ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or(BpfError::MissingProgram)?
            .try_into()?;
        program.load()?;
        let mut dp = Self {
            config: GuardConfig {
                flags: FLAG_ALL_PORTS,
                ..Default::default()
            },
            config_map: Array::try_from(take(&mut ebpf, maps::CONFIG)?)?,
            ports: Array::try_from(take(&mut ebpf, maps::PORTS)?)?,
            allow_v4: LpmTrie::try_from(take(&mut ebpf, maps::ALLOW_V4)?)?,
            allow_v6: LpmTrie::try_from(take(&mut ebpf, maps::ALLOW_V6)?)?,
            allow_v4_count: 0,
            allow_v6_count: 0,
            block_v4: HashMap::try_from(take(&mut ebpf, maps::BLOCK_V4)?)?,
            v4_slots: Array::try_from(take(&mut ebpf, maps::BLOCK_V4_SLOTS)?)?,
            block_v6: HashMap::try_from(take(&mut ebpf, maps::BLOCK_V6)?)?,
            v6_lens: Array::try_from(take(&mut ebpf, maps::BLOCK_V6_LENS)?)?,
            syn_counters: PerCpuHashMap::try_from(take(&mut ebpf, maps::SYN_COUNTERS)?)?,
            stats: PerCpuArray::try_from(take(&mut ebpf, maps::STATS)?)?,
            events: Some(RingBuf::try_from(take(&mut ebpf, maps::EVENTS)?)?),
            v4: V4Index::default(),
            v6: V6Index::default(),
            block_max_entries: opts.block_max_entries,
            link: None,
            ebpf,
        };
        // Adopted (pinned) maps: the attached program is reading this config right now, so
        // keep it, and count the allowlist entries already there; a fresh map gets defaults
        // (accounting off until the caller's `set_config`).
        let live = dp.config_map.get(&0, 0)?;
        dp.allow_v4_count = dp.allow_v4.keys().count();
        dp.allow_v6_count = dp.allow_v6.keys().count();
        if live == GuardConfig::default() {
            dp.write_config()?;
        } else {
            dp.config = live;
        }
        Ok(dp)
    }

    /// Attach to `iface`. With `link_pin`, the XDP link is pinned there; if a pinned link
    /// already exists (a previous daemon's), the program inside it is replaced atomically, so
    /// protection never lapses across a restart.
    pub fn attach(
        &mut self,
        iface: &str,
        mode: AttachMode,
        link_pin: Option<&Path>,
    ) -> Result<AttachedMode, BpfError> {
        use aya::programs::{
            XdpMode,
            links::{FdLink, PinnedLink},
            xdp::XdpLink,
        };
        if let Some(path) = link_pin
            && path.exists()
        {
            let fd_link: FdLink = PinnedLink::from_pin(path)?.into();
            let xdp_link = XdpLink::try_from(fd_link)?;
            let program = self.program()?;
            let id = program.attach_to_link(xdp_link)?;
            // Keep our reference as a plain fd: dropping it closes the fd, the pin keeps the
            // link (and the program) in place.
            let link: FdLink = program.take_link(id)?.try_into()?;
            self.link = Some(link);
            return Ok(pin::recorded_mode(path).unwrap_or(AttachedMode::Native));
        }
        let tries: &[(XdpMode, AttachedMode)] = match mode {
            AttachMode::Auto => &[
                (XdpMode::Driver, AttachedMode::Native),
                (XdpMode::Skb, AttachedMode::Generic),
            ],
            AttachMode::Native => &[(XdpMode::Driver, AttachedMode::Native)],
            AttachMode::Generic => &[(XdpMode::Skb, AttachedMode::Generic)],
        };
        let mut last = None;
        for (xdp_mode, attached) in tries {
            let program = self.program()?;
            match program.attach(iface, *xdp_mode) {
                Ok(id) => {
                    let link: FdLink = program.take_link(id)?.try_into()?;
                    if let Some(path) = link_pin {
                        let pinned = link.pin(path).map_err(|e| BpfError::Pin {
                            path: path.to_path_buf(),
                            message: e.to_string(),
                        })?;
                        pin::record_mode(path, *attached);
                        self.link = Some(pinned.into());
                    } else {
                        self.link = Some(link);
                    }
                    return Ok(*attached);
                }
                Err(e) => {
                    if mode == AttachMode::Auto && *attached == AttachedMode::Native {
                        log::warn!(
                            "native XDP on {iface} failed ({e}); falling back to generic mode"
                        );
                    }
                    last = Some(BpfError::Attach {
                        iface: iface.into(),
                        mode: attached.as_str(),
                        source: e,
                    });
                }
            }
        }
        Err(last.unwrap_or(BpfError::MissingProgram))
    }

    /// Detach now (only for a link this process attached without a pin, or to drop ours;
    /// a pinned link stays until [`pin::remove`]).
    pub fn release_link(&mut self) {
        self.link = None;
    }

    /// Rebuild the user-space mirror of adopted (pinned) maps: every block and allow that
    /// is in the kernel but not in `keep_blocks`/`keep_allows` is removed; the caller then
    /// re-applies its durable state with [`Self::block`] and [`Self::allow`], which only
    /// overwrite: nothing that should stay blocked is ever absent from the maps.
    pub fn reconcile(
        &mut self,
        keep_blocks: &[IpNet],
        keep_allows: &[IpNet],
    ) -> Result<(), BpfError> {
        let v4: Vec<BlockKeyV4> = self.block_v4.keys().collect::<Result<_, _>>()?;
        for k in v4 {
            let net = IpNet::V4(
                Ipv4Net::new(k.addr.into(), k.prefix_len as u8)
                    .map_err(|_| BpfError::MissingMap(maps::BLOCK_V4))?,
            );
            if !keep_blocks.contains(&net) {
                self.block_v4.remove(&k)?;
            } else {
                let e = self.block_v4.get(&k, 0)?;
                if let IpNet::V4(n) = net {
                    self.v4.insert(n, e.expires_at_ns);
                }
            }
        }
        let v6: Vec<BlockKeyV6> = self.block_v6.keys().collect::<Result<_, _>>()?;
        for k in v6 {
            let net = IpNet::V6(
                Ipv6Net::new(k.addr.into(), k.prefix_len as u8)
                    .map_err(|_| BpfError::MissingMap(maps::BLOCK_V6))?,
            );
            if !keep_blocks.contains(&net) {
                self.block_v6.remove(&k)?;
            } else {
                let e = self.block_v6.get(&k, 0)?;
                if let IpNet::V6(n) = net {
                    self.v6.insert(n, e.expires_at_ns);
                }
            }
        }
        // Slots and lengths of what is left, then of what the caller re-applies.
        for slot in 0..maps::V4_SLOT_COUNT {
            let want = self.v4.slot(slot);
            if self.v4_slots.get(&slot, 0)? != want {
                self.v4_slots.set(slot, want, 0)?;
            }
        }
        self.v6_lens.set(0, self.v6.lens(), 0)?;
        let a4: Vec<Key<[u8; 4]>> = self.allow_v4.keys().collect::<Result<_, _>>()?;
        for k in a4 {
            let net = IpNet::V4(
                Ipv4Net::new(k.data().into(), k.prefix_len() as u8)
                    .map_err(|_| BpfError::MissingMap(maps::ALLOW_V4))?,
            );
            if !keep_allows.contains(&net) {
                self.allow_v4.remove(&k)?;
            }
        }
        let a6: Vec<Key<[u8; 16]>> = self.allow_v6.keys().collect::<Result<_, _>>()?;
        for k in a6 {
            let net = IpNet::V6(
                Ipv6Net::new(k.data().into(), k.prefix_len() as u8)
                    .map_err(|_| BpfError::MissingMap(maps::ALLOW_V6))?,
            );
            if !keep_allows.contains(&net) {
                self.allow_v6.remove(&k)?;
            }
        }
        self.allow_v4_count = self.allow_v4.keys().count();
        self.allow_v6_count = self.allow_v6.keys().count();
        self.write_config()
    }

    pub fn program(&mut self) -> Result<&mut Xdp, BpfError> {
        Ok(self
            .ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or(BpfError::MissingProgram)?
            .try_into()?)
    }

    /// The over-limit event ring; taken once by whoever consumes it.
    pub fn take_events(&mut self) -> Option<RingBuf<MapData>> {
        self.events.take()
    }

    pub fn config(&self) -> &GuardConfig {
        &self.config
    }

    /// Replace thresholds and switches. The flags this type owns (allowlist presence, all
    /// ports) are kept in step with the maps, whatever `cfg` says.
    pub fn set_config(&mut self, cfg: GuardConfig) -> Result<(), BpfError> {
        let owned = FLAG_ALLOW_V4 | FLAG_ALLOW_V6 | FLAG_ALL_PORTS;
        self.config = GuardConfig {
            flags: (cfg.flags & !owned) | (self.config.flags & owned),
            ..cfg
        };
        self.write_config()
    }

    fn write_config(&mut self) -> Result<(), BpfError> {
        let mut flags = self.config.flags & !(FLAG_ALLOW_V4 | FLAG_ALLOW_V6);
        if self.allow_v4_count > 0 {
            flags |= FLAG_ALLOW_V4;
        }
        if self.allow_v6_count > 0 {
            flags |= FLAG_ALLOW_V6;
        }
        self.config.flags = flags;
        self.config_map.set(0, self.config, 0)?;
        Ok(())
    }

    /// Protected destination ports; empty means every port.
    pub fn set_ports(&mut self, ports: &[u16]) -> Result<(), BpfError> {
        let mut words = vec![0u64; PORT_WORDS as usize];
        for p in ports {
            words[usize::from(*p >> 6)] |= 1 << (p & 63);
        }
        // Bitmap first, then the flag: a reader never sees "some ports" with an old bitmap.
        for (i, w) in words.iter().enumerate() {
            self.ports.set(i as u32, *w, 0)?;
        }
        if ports.is_empty() {
            self.config.flags |= FLAG_ALL_PORTS;
        } else {
            self.config.flags &= !FLAG_ALL_PORTS;
        }
        self.write_config()
    }

    pub fn allow(&mut self, net: IpNet) -> Result<(), BpfError> {
        let net = net.trunc();
        let r = match net {
            IpNet::V4(n) => self.allow_v4.insert(
                &Key::new(u32::from(n.prefix_len()), n.network().octets()),
                1,
                0,
            ),
            IpNet::V6(n) => self.allow_v6.insert(
                &Key::new(u32::from(n.prefix_len()), n.network().octets()),
                1,
                0,
            ),
        };
        match r {
            Ok(()) => {}
            Err(e) if is_full(&e) => return Err(BpfError::AllowlistFull),
            Err(e) => return Err(e.into()),
        }
        match net {
            IpNet::V4(_) => self.allow_v4_count = self.allow_v4.keys().count(),
            IpNet::V6(_) => self.allow_v6_count = self.allow_v6.keys().count(),
        }
        self.write_config()
    }

    /// Remove an allowlist prefix; `Ok(false)` when it was not there.
    pub fn disallow(&mut self, net: IpNet) -> Result<bool, BpfError> {
        let net = net.trunc();
        let r = match net {
            IpNet::V4(n) => self
                .allow_v4
                .remove(&Key::new(u32::from(n.prefix_len()), n.network().octets())),
            IpNet::V6(n) => self
                .allow_v6
                .remove(&Key::new(u32::from(n.prefix_len()), n.network().octets())),
        };
        match r {
            Ok(()) => {}
            Err(MapError::KeyNotFound) => return Ok(false),
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {
                return Ok(false);
            }
            Err(e) => return Err(e.into()),
        }
        match net {
            IpNet::V4(_) => self.allow_v4_count = self.allow_v4.keys().count(),
            IpNet::V6(_) => self.allow_v6_count = self.allow_v6.keys().count(),
        }
        self.write_config()?;
        Ok(true)
    }

    pub fn block_count(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Block a prefix until `expires_at_ns` (monotonic clock; [`maps::NEVER`] for permanent).
    /// Entry first, summary second: the program never probes for an entry that is missing.
    pub fn block(&mut self, net: IpNet, expires_at_ns: u64) -> Result<(), BpfError> {
        let entry = BlockEntry { expires_at_ns };
        match net.trunc() {
            IpNet::V4(n) => {
                if self.v4.get(&n).is_none() && self.v4.len() as u32 >= self.block_max_entries {
                    return Err(BpfError::BlocklistFull(self.block_max_entries));
                }
                let key = BlockKeyV4 {
                    prefix_len: u32::from(n.prefix_len()),
                    addr: n.network().octets(),
                };
                self.block_v4
                    .insert(key, entry, 0)
                    .map_err(|e| self.full_or(e))?;
                self.v4.insert(n, expires_at_ns);
                self.write_slots(&n)?;
            }
            IpNet::V6(n) => {
                if self.v6.would_exceed_lengths(&n) {
                    return Err(BpfError::TooManyV6Lengths(n));
                }
                if self.v6.get(&n).is_none() && self.v6.len() as u32 >= self.block_max_entries {
                    return Err(BpfError::BlocklistFull(self.block_max_entries));
                }
                let key = BlockKeyV6 {
                    prefix_len: u32::from(n.prefix_len()),
                    addr: n.network().octets(),
                };
                self.block_v6
                    .insert(key, entry, 0)
                    .map_err(|e| self.full_or(e))?;
                self.v6.insert(n, expires_at_ns);
                self.v6_lens.set(0, self.v6.lens(), 0)?;
            }
        }
        Ok(())
    }

    /// Remove a block; `Ok(false)` when it was not there. Summary first, entry second.
    pub fn unblock(&mut self, net: IpNet) -> Result<bool, BpfError> {
        match net.trunc() {
            IpNet::V4(n) => {
                if self.v4.remove(&n).is_none() {
                    return Ok(false);
                }
                self.write_slots(&n)?;
                let key = BlockKeyV4 {
                    prefix_len: u32::from(n.prefix_len()),
                    addr: n.network().octets(),
                };
                self.block_v4.remove(&key)?;
            }
            IpNet::V6(n) => {
                if self.v6.remove(&n).is_none() {
                    return Ok(false);
                }
                self.v6_lens.set(0, self.v6.lens(), 0)?;
                let key = BlockKeyV6 {
                    prefix_len: u32::from(n.prefix_len()),
                    addr: n.network().octets(),
                };
                self.block_v6.remove(&key)?;
            }
        }
        Ok(true)
    }

    /// Every block in the kernel with its expiry (monotonic clock).
    pub fn blocks(&self) -> Vec<(IpNet, u64)> {
        self.v4
            .iter()
            .map(|(n, e)| (IpNet::V4(*n), *e))
            .chain(self.v6.iter().map(|(n, e)| (IpNet::V6(*n), *e)))
            .collect()
    }

    fn full_or(&self, e: MapError) -> BpfError {
        if is_full(&e) {
            BpfError::BlocklistFull(self.block_max_entries)
        } else {
            e.into()
        }
    }

    fn write_slots(&mut self, net: &Ipv4Net) -> Result<(), BpfError> {
        for slot in v4_slots(net) {
            self.v4_slots.set(slot, self.v4.slot(slot), 0)?;
        }
        Ok(())
    }

    /// Stats summed over every possible CPU.
    pub fn stats(&self) -> Result<[u64; stats::COUNT], BpfError> {
        sum_stats(&self.stats)
    }

    /// Per-source totals in batches of 4,096 (one syscall per batch).
    pub fn sources_batched(&self) -> Result<Vec<(SourceKey, SourceTotals)>, BpfError> {
        use aya::maps::IterableMap as _;
        read_sources(self.syn_counters.map())
    }

    /// A second handle on the counter maps, for reading them without `&self` (see
    /// [`CounterMaps`]).
    pub fn counter_maps(&self) -> Result<CounterMaps, BpfError> {
        use aya::maps::IterableMap as _;
        let dup = |map: &MapData| -> Result<MapData, BpfError> {
            let fd = map
                .fd()
                .as_fd()
                .try_clone_to_owned()
                .map_err(BpfError::Io)?;
            Ok(MapData::from_fd(fd)?)
        };
        let stats = aya::maps::Map::from_map_data(dup(self.stats.map())?)?;
        Ok(CounterMaps {
            syn_counters: dup(self.syn_counters.map())?,
            stats: PerCpuArray::try_from(stats)?,
        })
    }

    /// Per-source totals, key by key (two syscalls per entry; see [`Self::sources_batched`]).
    pub fn sources(&self) -> Result<Vec<(SourceKey, SourceTotals)>, BpfError> {
        let mut out = Vec::new();
        for item in self.syn_counters.iter() {
            let (key, per_cpu) = item?;
            out.push((key, sum_source(per_cpu.iter())));
        }
        Ok(out)
    }

    /// Start tracking `keys` (sources user space saw complete a handshake) with a fresh
    /// bucket on every CPU, so the spoof guard counts them as known. Sources already tracked
    /// keep their state (`BPF_NOEXIST`). Returns how many were added.
    pub fn track(&mut self, keys: &[SourceKey]) -> Result<usize, BpfError> {
        let ncpus = aya::util::nr_cpus().map_err(|(_, e)| BpfError::Io(e))?;
        let fresh = rate::admitted(crate::clock::mono_ns(), 1, &self.config);
        // BPF_NOEXIST: create only.
        const BPF_NOEXIST: u64 = 1;
        let mut added = 0;
        for key in keys {
            let values = PerCpuValues::try_from(vec![fresh; ncpus]).map_err(BpfError::Io)?;
            match self.syn_counters.insert(key, values, BPF_NOEXIST) {
                Ok(()) => added += 1,
                // Already tracked: its bucket stays as the program left it.
                Err(MapError::SyscallError(e))
                    if e.io_error.raw_os_error() == Some(libc::EEXIST) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(added)
    }

    pub fn source(&self, key: &SourceKey) -> Result<Option<SourceTotals>, BpfError> {
        match self.syn_counters.get(key, 0) {
            Ok(v) => Ok(Some(sum_source(v.iter()))),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

pub fn sum_source<'a>(per_cpu: impl Iterator<Item = &'a SynCounter>) -> SourceTotals {
    let mut t = SourceTotals::default();
    for c in per_cpu {
        t.syns += c.syns;
        t.over_limit += c.over_limit;
        t.last_seen_ns = t.last_seen_ns.max(c.last_seen_ns);
    }
    t
}

/// The accounting key of an address, as the program computes it.
pub fn source_key(addr: IpAddr, ipv6_prefix_len: u32) -> SourceKey {
    match addr {
        IpAddr::V4(a) => SourceKey {
            addr: xdp_guard_common::net::v4_mapped(a.octets()),
        },
        IpAddr::V6(a) => SourceKey {
            addr: xdp_guard_common::net::mask_v6(a.octets(), ipv6_prefix_len),
        },
    }
}

/// The address (or IPv6 prefix) a source key stands for.
pub fn source_net(key: &SourceKey, ipv6_prefix_len: u32) -> IpNet {
    let a = key.addr;
    if a[..12] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff] {
        IpNet::V4(Ipv4Net::from(Ipv4Addr::new(a[12], a[13], a[14], a[15])))
    } else {
        let len = ipv6_prefix_len.min(128) as u8;
        IpNet::V6(
            Ipv6Net::new(a.into(), len)
                .unwrap_or_else(|_| Ipv6Net::from(std::net::Ipv6Addr::from(a))),
        )
    }
}

/// The bare XDP_DROP program the benchmark measures as its baseline.
pub static BASELINE_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdp-guard-baseline"));
