//! `xdp-guard run`: load, attach and pin the program, restore durable state, then run the
//! controller, the event reader and the API until SIGTERM/SIGINT. SIGHUP reloads the
//! configuration without losing state.
//!
//! One shutdown source: a watch channel every task subscribes to.

use std::{
    fs::{File, OpenOptions},
    io::{Read as _, Seek as _, Write as _},
    net::IpAddr,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use ipnet::IpNet;
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
    sync::{Notify, watch},
};

use crate::{
    bpf::{AttachMode, BpfError, Datapath, LoadOptions, pin},
    config::{Config, ConfigError, SysctlMode, XdpModeSetting},
    controller::{AttackThresholds, Guard, GuardError, Settings, loopback},
    paths,
    store::Store,
};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Bpf(#[from] BpfError),
    #[error("{0}")]
    Guard(#[from] GuardError),
    #[error("another xdp-guard (pid {pid}) is already running on {iface}; it was left untouched")]
    AlreadyRunning { iface: String, pid: String },
    #[error(
        "another xdp-guard ({holder}) keeps its state in {}; give each daemon its own state_dir",
        dir.display()
    )]
    StateDirInUse { dir: PathBuf, holder: String },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("API: {0}")]
    Api(String),
    #[error("finding the daemon's state_dir in {}: {source}; name it with --state-dir", path.display())]
    LockDir {
        path: PathBuf,
        source: Box<ConfigError>,
    },
}

/// What `xdp-guard run` was asked on the command line, on top of the file.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub config: PathBuf,
    pub iface: Option<String>,
    pub mode: Option<XdpModeSetting>,
}

/// Exclusive per-interface lock (flock), held for the daemon's lifetime. The file keeps the
/// holder's pid for the error message of the next one.
pub struct InterfaceLock {
    _file: File,
}

impl InterfaceLock {
    pub fn acquire(path: &Path, iface: &str) -> Result<Self, DaemonError> {
        Self::take(path, &std::process::id().to_string()).map_err(|held| match held {
            Held::By(pid) => DaemonError::AlreadyRunning {
                iface: iface.into(),
                pid,
            },
            Held::Io(source) => DaemonError::Io {
                what: "lock file",
                path: path.to_path_buf(),
                source,
            },
        })
    }

    /// The state directory's own lock: blocks, allows and the sysctl backup are one set per
    /// directory, so two daemons (on two interfaces) must not share one.
    pub fn acquire_state_dir(state_dir: &Path, iface: &str) -> Result<Self, DaemonError> {
        let me = format!("pid {}, interface {iface}", std::process::id());
        let path = paths::state_lock(state_dir);
        Self::take(&path, &me).map_err(|held| match held {
            Held::By(holder) => DaemonError::StateDirInUse {
                dir: state_dir.to_path_buf(),
                holder,
            },
            Held::Io(source) => DaemonError::Io {
                what: "lock file",
                path,
                source,
            },
        })
    }

    /// Take the lock at `path` and write `me` in it, or say who holds it.
    fn take(path: &Path, me: &str) -> Result<Self, Held> {
        let io = Held::Io;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        // SAFETY: a valid open fd.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            return Err(Held::By(holder.trim().to_string()));
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        write!(file, "{me}").map_err(io)?;
        Ok(Self { _file: file })
    }

    /// Whether some process holds the lock now (for `detach`).
    pub fn held(path: &Path) -> Option<String> {
        let mut file = File::open(path).ok()?;
        // SAFETY: a valid open fd; we release at once.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } != 0 {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            return Some(pid.trim().to_string());
        }
        None
    }
}

/// Why a lock was not taken.
enum Held {
    /// Another process has it; what it wrote in the file.
    By(String),
    Io(std::io::Error),
}

/// Every address configured on this host (any interface): never blockable.
pub fn host_addresses() -> Vec<IpNet> {
    let mut out = Vec::new();
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates a list we walk read-only and free once.
    unsafe {
        if libc::getifaddrs(&mut ifap) != 0 {
            return out;
        }
        let mut cur = ifap;
        while !cur.is_null() {
            let sa = (*cur).ifa_addr;
            if !sa.is_null() {
                match i32::from((*sa).sa_family) {
                    libc::AF_INET => {
                        let sin = &*(sa as *const libc::sockaddr_in);
                        out.push(IpNet::from(IpAddr::from(
                            u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
                        )));
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(sa as *const libc::sockaddr_in6);
                        out.push(IpNet::from(IpAddr::from(sin6.sin6_addr.s6_addr)));
                    }
                    _ => {}
                }
            }
            cur = (*cur).ifa_next;
        }
        libc::freeifaddrs(ifap);
    }
    out.sort();
    out.dedup();
    out
}

/// The guard's settings for a configuration.
pub fn settings(cfg: &Config) -> Settings {
    let mut protected = loopback();
    protected.extend(host_addresses().into_iter().map(|n| (n, "a host address")));
    protected.extend(cfg.admin_networks.iter().map(|n| (*n, "the admin network")));
    Settings {
        interface: cfg.interface.clone(),
        enforce: cfg.enforce,
        syn_rate: cfg.syn.rate,
        ipv6_prefix_len: u32::from(cfg.syn.ipv6_prefix_len),
        default_ttl: cfg.blocking.default_ttl,
        escalation: cfg.blocking.escalation,
        max_ttl: cfg.blocking.max_ttl,
        over_limit_ticks: cfg.blocking.over_limit_ticks,
        unblock_grace: cfg.blocking.unblock_grace,
        min_prefix_v4: cfg.blocking.min_prefix_v4,
        min_prefix_v6: cfg.blocking.min_prefix_v6,
        protected,
        config_allowlist: cfg.allowlist.clone(),
        attack: AttackThresholds {
            new_sources_per_sec: cfg.attack.new_sources_per_sec,
            syn_rate_total: cfg.attack.syn_rate_total,
            syn_recv: cfg.attack.syn_recv_threshold,
            listen_overflows_per_sec: cfg.attack.listen_overflows_per_sec,
            quiet_period: cfg.attack.quiet_period,
            spoofed_syn_budget: cfg.attack.spoofed_syn_budget,
        },
        sysctl_auto: cfg.sysctl.mode == SysctlMode::Auto,
        sysctl_root: PathBuf::from(paths::SYSCTL_ROOT),
        sysctl_backup: paths::sysctl_backup(&cfg.state_dir),
        // The spoof guard reads the handshaken clients whatever the sysctl mode.
        watch_sockets: cfg.sysctl.mode != SysctlMode::Off || cfg.attack.spoofed_syn_budget > 0,
        protected_ports: cfg.protected_ports.clone(),
    }
}

fn load_config(opts: &RunOptions) -> Result<Config, DaemonError> {
    let mut cfg = Config::load(&opts.config)?;
    if let Some(i) = &opts.iface {
        cfg.interface = i.clone();
    }
    if let Some(m) = opts.mode {
        cfg.xdp_mode = m;
    }
    cfg.validate()?;
    Ok(cfg)
}

fn attach_mode(m: XdpModeSetting) -> AttachMode {
    match m {
        XdpModeSetting::Auto => AttachMode::Auto,
        XdpModeSetting::Native => AttachMode::Native,
        XdpModeSetting::Generic => AttachMode::Generic,
    }
}

/// Run until SIGTERM/SIGINT (or `stop` fires, for tests).
pub async fn run(opts: RunOptions, stop: Option<watch::Receiver<bool>>) -> Result<(), DaemonError> {
    let cfg = load_config(&opts)?;
    let iface = cfg.interface.clone();
    let _lock = InterfaceLock::acquire(&paths::lock_file(&cfg.state_dir, &iface), &iface)?;
    let _state_lock = InterfaceLock::acquire_state_dir(&cfg.state_dir, &iface)?;
    pin::ensure_bpffs(Path::new(paths::BPFFS_ROOT))?;
    let pins = pin::PinDir::new(Path::new(paths::PIN_ROOT), &iface);
    let adopted = pins.prepare()?;

    let mut dp = Datapath::load(&LoadOptions {
        block_max_entries: cfg.blocking.block_max_entries,
        syn_counters_max_entries: cfg.syn.lru_entries,
        pin_maps: Some(pins.layout_dir()),
    })?;
    let seed = match dp.config().hash_seed {
        0 => rand::random::<u64>() | 1,
        kept => kept,
    };
    dp.set_config(cfg.rate_params().to_config(seed))?;
    dp.set_ports(&cfg.protected_ports)?;
    let store = Store::new(paths::state_file(&cfg.state_dir));
    if adopted {
        // Drop what the durable state does not know; Guard::new re-applies the rest. Entries
        // that stay are overwritten in place: the datapath keeps dropping throughout.
        let state = store.load().map_err(GuardError::from)?;
        let keep_blocks: Vec<IpNet> = state.blocks.iter().map(|b| b.cidr).collect();
        let mut keep_allows: Vec<IpNet> = state.allows.iter().map(|a| a.cidr).collect();
        keep_allows.extend(cfg.allowlist.iter().copied());
        dp.reconcile(&keep_blocks, &keep_allows)?;
        log::info!(
            "adopted pinned maps and link under {}",
            pins.layout_dir().display()
        );
    }
    let mode = dp.attach(&iface, attach_mode(cfg.xdp_mode), Some(&pins.link()))?;
    log::info!("XDP attached to {iface} in {} mode", mode.as_str());
    let events = dp.take_events();

    let guard = Arc::new(Guard::new(
        Box::new(dp),
        store,
        settings(&cfg),
        mode.as_str(),
    )?);
    let (stop_tx, stop_rx) = watch::channel(false);
    let wake = Arc::new(Notify::new());

    let token = crate::api::load_or_create_token(&cfg.api.token_file)
        .map_err(|e| DaemonError::Api(e.to_string()))?;
    let listener = tokio::net::TcpListener::bind(cfg.api.listen)
        .await
        .map_err(|source| DaemonError::Io {
            what: "binding the API to",
            path: PathBuf::from(cfg.api.listen.to_string()),
            source,
        })?;
    log::info!("API listening on http://{}", cfg.api.listen);
    let api_state = crate::api::ApiState::new(
        guard.clone(),
        token,
        crate::api::ApiSettings {
            max_body_bytes: cfg.api.max_body_bytes,
            writes_per_minute: cfg.api.writes_per_minute,
            sysctl_root: PathBuf::from(paths::SYSCTL_ROOT),
        },
    );
    let mut api_stop = stop_rx.clone();
    let api = tokio::spawn(crate::api::serve(
        listener,
        crate::api::router(api_state),
        async move {
            let _ = api_stop.wait_for(|s| *s).await;
        },
    ));

    let controller = tokio::spawn(controller_loop(
        guard.clone(),
        cfg.syn.tick,
        wake.clone(),
        stop_rx.clone(),
    ));
    let reader = events.map(|ring| tokio::spawn(event_loop(ring, wake.clone(), stop_rx.clone())));

    let mut term = signal(SignalKind::terminate()).map_err(|source| DaemonError::Io {
        what: "signal",
        path: "SIGTERM".into(),
        source,
    })?;
    let mut int = signal(SignalKind::interrupt()).map_err(|source| DaemonError::Io {
        what: "signal",
        path: "SIGINT".into(),
        source,
    })?;
    let mut hup = signal(SignalKind::hangup()).map_err(|source| DaemonError::Io {
        what: "signal",
        path: "SIGHUP".into(),
        source,
    })?;
    let mut external = stop;
    loop {
        tokio::select! {
            _ = term.recv() => { log::info!("SIGTERM: shutting down"); break; }
            _ = int.recv() => { log::info!("SIGINT: shutting down"); break; }
            _ = async { match external.as_mut() { Some(rx) => { let _ = rx.wait_for(|s| *s).await; } None => std::future::pending().await } } => break,
            _ = hup.recv() => {
                match load_config(&opts) {
                    Ok(new) if new.interface == iface => {
                        let kernel = new.rate_params().to_config(seed);
                        match guard.reload(settings(&new), Some(kernel), Some(&new.protected_ports)) {
                            Ok(()) => log::info!("SIGHUP: configuration reloaded"),
                            Err(e) => log::error!("SIGHUP: reload failed, keeping the running configuration: {e}"),
                        }
                    }
                    Ok(_) => log::error!("SIGHUP: the interface cannot change without a restart; reload ignored"),
                    Err(e) => log::error!("SIGHUP: {e}; keeping the running configuration"),
                }
            }
        }
    }
    let _ = stop_tx.send(true);
    let _ = controller.await;
    if let Some(r) = reader {
        let _ = r.await;
    }
    match api.await {
        Ok(Err(e)) => log::warn!("API server: {e}"),
        Err(e) => log::warn!("API task: {e}"),
        Ok(Ok(())) => {}
    }
    guard.restore_sysctls();
    drop(guard);
    if cfg.detach_on_exit {
        pin::remove(&pins)?;
        log::info!("detached from {iface} and removed the pins");
    } else {
        log::info!(
            "left XDP attached and pinned on {iface}; `xdp-guard detach --iface {iface}` removes it"
        );
    }
    Ok(())
}

async fn controller_loop(
    guard: Arc<Guard>,
    tick: Duration,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = wake.notified() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let g = guard.clone();
        match tokio::task::spawn_blocking(move || g.tick()).await {
            Ok(r) if !r.blocked.is_empty() => {
                log::debug!("tick blocked {:?} in {:?}", r.blocked, r.duration)
            }
            Ok(_) => {}
            Err(e) => log::error!("controller tick panicked: {e}"),
        }
    }
}

/// Over-limit events from the ring buffer wake the controller at once instead of waiting
/// for the next tick.
async fn event_loop(
    ring: aya::maps::RingBuf<aya::maps::MapData>,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    // SAFETY: the ring owns its map fd, which stays open and unchanged for as long as the
    // AsyncFd owns the ring.
    let mut fd =
        match unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) } {
            Ok(fd) => fd,
            Err(e) => {
                log::warn!("event ring: {e}; relying on ticks alone");
                return;
            }
        };
    loop {
        tokio::select! {
            guard = fd.readable_mut() => {
                let Ok(mut guard) = guard else { return };
                let mut n = 0;
                while let Some(item) = guard.get_inner_mut().next() {
                    n += 1;
                    if item.len() >= std::mem::size_of::<xdp_guard_common::maps::OverLimitEvent>() {
                        // SAFETY: the program writes OverLimitEvent records; read unaligned.
                        let ev: xdp_guard_common::maps::OverLimitEvent = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
                        log::debug!("over-limit event: {:?} on CPU {}", crate::bpf::source_net(&ev.source, 128), ev.cpu);
                    }
                }
                guard.clear_ready();
                if n > 0 {
                    wake.notify_one();
                }
            }
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Where a daemon keeps its interface locks, for `detach`: `explicit`, else the `state_dir`
/// of `config`, else (no such file) the default. A config that exists but does not load is
/// an error: guessing could detach from under a running daemon.
pub fn lock_dir(config: &Path, explicit: Option<&Path>) -> Result<PathBuf, DaemonError> {
    if let Some(dir) = explicit {
        return Ok(dir.to_path_buf());
    }
    if !config.exists() {
        return Ok(PathBuf::from(paths::DEFAULT_STATE_DIR));
    }
    Config::load(config)
        .map(|c| c.state_dir)
        .map_err(|source| DaemonError::LockDir {
            path: config.to_path_buf(),
            source: Box::new(source),
        })
}

/// `xdp-guard detach`: the program off `iface` and its pins removed, unless a daemon holds
/// the interface's lock (in the state_dir [`lock_dir`] finds). Returns whether anything was
/// pinned.
pub fn detach(iface: &str, config: &Path, state_dir: Option<&Path>) -> Result<bool, DaemonError> {
    let state_dir = lock_dir(config, state_dir)?;
    if let Some(pid) = InterfaceLock::held(&paths::lock_file(&state_dir, iface)) {
        return Err(DaemonError::AlreadyRunning {
            iface: iface.into(),
            pid,
        });
    }
    Ok(pin::remove(&pin::PinDir::new(
        Path::new(paths::PIN_ROOT),
        iface,
    ))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two daemons on two interfaces with one state_dir would overwrite each other's lists:
    /// the second is refused, naming the first.
    #[test]
    fn a_state_dir_has_one_daemon() {
        let dir = std::env::temp_dir().join(format!("xg-statelock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = InterfaceLock::acquire_state_dir(&dir, "eth0").expect("first daemon");
        // flock: a second open file description conflicts, even in this process.
        let e = InterfaceLock::acquire_state_dir(&dir, "eth1")
            .err()
            .expect("second daemon refused");
        let msg = e.to_string();
        assert!(matches!(e, DaemonError::StateDirInUse { .. }), "{msg}");
        assert!(
            msg.contains("interface eth0") && msg.contains(&dir.display().to_string()),
            "{msg}"
        );
        drop(first);
        InterfaceLock::acquire_state_dir(&dir, "eth1").expect("free again");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn detach_finds_the_lock_dir_of_the_config_or_refuses_to_guess() {
        let dir = std::env::temp_dir().join(format!("xg-lockdir-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let config = dir.join("xdp-guard.toml");
        let explicit = Path::new("/srv/xg");
        assert_eq!(
            lock_dir(&config, Some(explicit)).expect("explicit"),
            explicit
        );
        assert_eq!(
            lock_dir(&config, None).expect("no file"),
            Path::new(paths::DEFAULT_STATE_DIR)
        );
        std::fs::write(&config, "interface = \"eth0\"\nstate_dir = \"/srv/xg\"\n").expect("write");
        assert_eq!(lock_dir(&config, None).expect("from the file"), explicit);
        std::fs::write(&config, "interface = \"eth0\"\nstate_dir = 7\n").expect("write");
        let e = lock_dir(&config, None).expect_err("a broken config");
        assert!(matches!(e, DaemonError::LockDir { .. }), "{e}");
        assert!(e.to_string().contains("--state-dir"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
