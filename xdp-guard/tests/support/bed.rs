//! A daemon test bed: the real `xdp-guard` binary in a namespace of a test LAN, started with
//! `nsenter --net` so its pins live in the host's bpffs, its API reached with curl from inside
//! the namespace, and the traffic helpers the daemon tests share.

use std::{
    io::Read as _,
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use aya::maps::{Map, MapData, PerCpuArray};
use xdp_guard::netns::{LanHost, Netns};
use xdp_guard_common::{
    LAYOUT_VERSION, maps,
    stats::{self, Stats},
};

pub const BIN: &str = env!("CARGO_BIN_EXE_xdp-guard");

/// A daemon test's files (config, API token, state, log) in a directory of their own under
/// the temp dir: emptied first, removed on drop unless the test failed (the log is the first
/// thing to read then).
pub struct WorkDir(pub PathBuf);

impl WorkDir {
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("xg-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("test work directory");
        Self(dir)
    }

    pub fn token(&self) -> PathBuf {
        self.0.join("api.token")
    }

    pub fn state(&self) -> PathBuf {
        self.0.join("state")
    }

    pub fn log(&self) -> PathBuf {
        self.0.join("daemon.log")
    }

    /// Writes `xdp-guard.toml` and returns its path.
    pub fn config(&self, toml: &str) -> PathBuf {
        let path = self.0.join("xdp-guard.toml");
        std::fs::write(&path, toml).expect("write the config");
        path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

pub struct Daemon {
    child: Child,
}

impl Daemon {
    pub fn start(srv: &LanHost, config: &Path, log: &Path) -> Self {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        // nsenter, not `ip netns exec`: the daemon must see the host's bpffs, or its pins
        // would die with it (see bpf::pin::ensure_bpffs).
        let child = srv
            .ns
            .nsenter_command(BIN)
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start the daemon");
        Self { child }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: our child's pid (nsenter execs the daemon in place).
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    pub fn stop(mut self) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM);
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "daemon did not exit on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn kill9(mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.signal(libc::SIGTERM);
            let _ = self.child.wait();
        }
    }
}

/// The API, from inside the server's namespace (it listens on that namespace's loopback).
pub fn api(srv: &LanHost, token: &Path, path: &str) -> Option<serde_json::Value> {
    let token = std::fs::read_to_string(token).ok()?;
    let out = srv
        .ns
        .command("curl")
        .args(["-sf", "--max-time", "2", "-H"])
        .arg(format!("Authorization: Bearer {}", token.trim()))
        .arg(format!("http://127.0.0.1:9180{path}"))
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

pub fn blocked(srv: &LanHost, token: &Path, cidr: &str) -> bool {
    api(srv, token, "/v1/blocklist")
        .and_then(|v| v["entries"].as_array().cloned())
        .is_some_and(|e| e.iter().any(|b| b["cidr"] == cidr))
}

pub fn read_sysctl(host: &LanHost, key: &str) -> String {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    let out = host.ns.exec(&["cat", &path]).expect("read sysctl");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Stats straight from the pinned map: readable while no daemon runs.
pub fn pinned_stats(iface: &str) -> [u64; stats::COUNT] {
    let path = PathBuf::from(format!(
        "/sys/fs/bpf/xdp-guard/{iface}/layout-{LAYOUT_VERSION}/{}",
        maps::STATS
    ));
    let data = MapData::from_pin(&path).expect("pinned STATS map");
    let arr: PerCpuArray<MapData, Stats> =
        PerCpuArray::try_from(Map::PerCpuArray(data)).expect("per-CPU array");
    let mut sum = [0u64; stats::COUNT];
    for cpu in arr.get(&0, 0).expect("read").iter() {
        for (s, v) in sum.iter_mut().zip(cpu.counters) {
            *s += v;
        }
    }
    sum
}

/// A TCP server on port 80 inside the server namespace: accepts and closes.
/// Returns once it is listening.
pub fn spawn_server(srv: &LanHost, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let ns = srv.ns.name().to_string();
    let addr = srv.addr.clone();
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        enter(&ns);
        let l = TcpListener::bind(format!("{addr}:80")).expect("bind :80");
        l.set_nonblocking(true).expect("nonblocking");
        let _ = ready_tx.send(());
        while !stop.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((s, _)) => drop(s),
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    });
    ready.recv().expect("the server thread bound :80");
    handle
}

/// A well-behaved client: one connection every 50 ms, counting successes and failures.
pub fn spawn_client(
    host: &LanHost,
    server: SocketAddr,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    let ns = host.ns.name().to_string();
    std::thread::spawn(move || {
        enter(&ns);
        let started = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            match TcpStream::connect_timeout(&server, Duration::from_secs(2)) {
                Ok(mut s) => {
                    let mut b = [0u8; 1];
                    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                    let _ = s.read(&mut b);
                    ok.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    eprintln!("client: connect failed at {:?}: {e}", started.elapsed());
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
}

pub fn enter(ns: &str) {
    let f = std::fs::File::open(format!("/var/run/netns/{ns}")).expect("netns");
    // SAFETY: a valid namespace fd; affects only this thread.
    let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns");
}

/// `count` SYNs to port 80 of `target` at ~10k/s from `atk` (hping3), bounded by count and
/// by 60 s.
pub fn flood(atk: &Netns, target: &str, count: u32) -> Child {
    atk.command("timeout")
        .args([
            "60",
            "hping3",
            "-q",
            "-S",
            "-p",
            "80",
            "-i",
            "u100",
            "-c",
            &count.to_string(),
            target,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("hping3 (installed by `cargo xtask setup`)")
}
