//! The real `xdp-guard` daemon on the server's veth, and its API seen from inside the
//! server's namespace (it listens on that namespace's loopback).

use std::{
    fs::OpenOptions,
    path::{Path, PathBuf},
    process::{Child, Stdio},
    time::Duration,
};

use aya::maps::{Map, MapData, PerCpuArray};
use serde::de::DeserializeOwned;
use xdp_guard_common::{maps, stats};

use super::{E2eError, cpus, wait_for};
use crate::{
    bpf::pin::PinDir,
    cli::Stats,
    model::BlockRecord,
    netns::LanHost,
    paths::{PIN_ROOT, pin_dir},
};

/// Where the API listens inside the server's namespace (its own loopback, so the port
/// cannot clash with anything on the host).
pub const API_LISTEN: &str = "127.0.0.1:9180";

/// Per-source SYN thresholds of one daemon run (`[syn] rate` and `burst`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    pub rate: u32,
    pub burst: u32,
    /// `attack.spoofed_syn_budget` (0: the spoof guard off, the shipped default).
    pub spoofed_syn_budget: u32,
}

impl Thresholds {
    /// The shipped defaults (configs/xdp-guard.toml): 100 SYN/s, burst 200, no spoof guard.
    pub const DEFAULT: Thresholds = Thresholds {
        rate: 100,
        burst: 200,
        spoofed_syn_budget: 0,
    };
}

/// The configuration of a daemon run. Everything else is the shipped default, except what
/// a test bed needs: native XDP on the server's veth, port 80 protected, state and token in
/// the run's directory, detach on exit (nothing may be left behind) and the sysctl tuner in
/// `auto` (it forces syncookies in a spoofed flood).
pub fn config_text(iface: &str, dir: &Path, th: Thresholds) -> String {
    format!(
        "# xdp-guard end-to-end run\n\
         interface = \"{iface}\"\n\
         state_dir = \"{state}\"\n\
         xdp_mode = \"native\"\n\
         detach_on_exit = true\n\
         protected_ports = [80]\n\
         [syn]\n\
         rate = {rate}\n\
         burst = {burst}\n\
         [attack]\n\
         spoofed_syn_budget = {budget}\n\
         [api]\n\
         listen = \"{API_LISTEN}\"\n\
         token_file = \"{token}\"\n\
         [sysctl]\n\
         mode = \"auto\"\n",
        state = dir.join("state").display(),
        token = dir.join("api.token").display(),
        rate = th.rate,
        burst = th.burst,
        budget = th.spoofed_syn_budget,
    )
}

pub struct Daemon {
    bin: PathBuf,
    config: PathBuf,
    log: PathBuf,
    pub token: PathBuf,
    pub iface: String,
    child: Option<Child>,
}

impl Daemon {
    /// Writes the run's configuration into `dir` (created if needed) and starts the daemon;
    /// returns once its API answers.
    pub fn start(
        bin: &Path,
        srv: &LanHost,
        dir: &Path,
        th: Thresholds,
    ) -> Result<Daemon, E2eError> {
        std::fs::create_dir_all(dir)
            .map_err(E2eError::io(format!("creating {}", dir.display())))?;
        let config = dir.join("xdp-guard.toml");
        std::fs::write(&config, config_text(&srv.iface, dir, th))
            .map_err(E2eError::io(format!("writing {}", config.display())))?;
        let mut daemon = Daemon {
            bin: bin.to_path_buf(),
            config,
            log: dir.join("daemon.log"),
            token: dir.join("api.token"),
            iface: srv.iface.clone(),
            child: None,
        };
        daemon.spawn(srv)?;
        Ok(daemon)
    }

    fn spawn(&mut self, srv: &LanHost) -> Result<(), E2eError> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(E2eError::io(format!("opening {}", self.log.display())))?;
        let err = log
            .try_clone()
            .map_err(E2eError::io(format!("opening {}", self.log.display())))?;
        // nsenter --net, not `ip netns exec`: the latter remounts /sys, hiding the host's
        // bpffs, and the pins must outlive a killed daemon (scenario 5).
        let child = srv
            .ns
            .nsenter_command("taskset")
            .args(["-c", &cpus::list(&cpus::server())])
            .arg(&self.bin)
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|source| E2eError::Spawn {
                cmd: format!("{} run", self.bin.display()),
                source,
            })?;
        self.child = Some(child);
        let api = Api::new(srv, &self.token);
        let exited = wait_for(
            "the xdp-guard API",
            Duration::from_secs(30),
            Duration::from_millis(50),
            || {
                if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                    return Some(Some(status));
                }
                api.get::<Stats>("/v1/stats").ok().map(|_| None)
            },
        )?;
        if let Some(status) = exited {
            self.child = None;
            return Err(E2eError::Setup(format!(
                "xdp-guard exited at start ({status}); log {}:\n{}",
                self.log.display(),
                self.log_tail(20)
            )));
        }
        Ok(())
    }

    /// SIGKILL: no flush, no detach; the pins and the program stay.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the daemon again with the same configuration (it adopts the pins).
    pub fn restart(&mut self, srv: &LanHost) -> Result<(), E2eError> {
        self.kill9();
        self.spawn(srv)
    }

    /// SIGTERM and wait: the daemon restores sysctls, detaches and removes its pins.
    pub fn stop(mut self) -> Result<(), E2eError> {
        let status = self.terminate();
        if let Some(status) = status
            && !status.success()
        {
            return Err(E2eError::Setup(format!(
                "xdp-guard exited with {status}; log:\n{}",
                self.log_tail(20)
            )));
        }
        if pin_dir(&self.iface).exists() {
            return Err(E2eError::Setup(format!(
                "xdp-guard exited but left {}",
                pin_dir(&self.iface).display()
            )));
        }
        Ok(())
    }

    fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        // nsenter and taskset exec the daemon in place: the child is the daemon.
        let mut child = self.child.take()?;
        super::stop_child(&mut child, libc::SIGTERM, Duration::from_secs(20))
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Whether the daemon process is running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.terminate();
        // A killed daemon leaves its pins: remove them as `xdp-guard detach` would.
        if pin_dir(&self.iface).exists() {
            let _ = crate::bpf::pin::remove(&PinDir::new(Path::new(PIN_ROOT), &self.iface));
        }
    }
}

/// The daemon's REST API from inside the server's namespace: each call is one HTTP/1.0
/// request from a short-lived thread that enters the namespace (no `ip netns exec` and no
/// curl processes, which would cost the measured server CPU during a flood).
pub struct Api<'a> {
    srv: &'a LanHost,
    token: &'a Path,
}

impl<'a> Api<'a> {
    pub fn new(srv: &'a LanHost, token: &'a Path) -> Self {
        Self { srv, token }
    }

    /// One request; the body of a 2xx answer.
    fn request(&self, method: &str, path: &str, body: Option<&str>) -> Result<Vec<u8>, E2eError> {
        let err = |reason: String| E2eError::Api {
            path: path.to_string(),
            reason,
        };
        let token = std::fs::read_to_string(self.token).map_err(|e| err(e.to_string()))?;
        let mut request = format!(
            "{method} {path} HTTP/1.0\r\nHost: {API_LISTEN}\r\nAuthorization: Bearer {}\r\n",
            token.trim()
        );
        if let Some(body) = body {
            request.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ));
        } else {
            request.push_str("\r\n");
        }
        let ns = self.srv.ns.name().to_string();
        let response = std::thread::scope(|scope| {
            scope
                .spawn(move || -> Result<Vec<u8>, String> {
                    super::legit::enter_netns(&ns).map_err(|e| e.to_string())?;
                    http(&request).map_err(|e| e.to_string())
                })
                .join()
                .map_err(|_| "the API client thread panicked".to_string())?
        })
        .map_err(err)?;
        let split = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| err("no end of headers in the answer".into()))?;
        let status_line = String::from_utf8_lossy(&response[..split]);
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| err(format!("bad status line {status_line:?}")))?;
        let body = response[split + 4..].to_vec();
        if !(200..300).contains(&status) {
            return Err(err(format!(
                "{status}: {}",
                String::from_utf8_lossy(&body).trim()
            )));
        }
        Ok(body)
    }

    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, E2eError> {
        let body = self.request("GET", path, None)?;
        serde_json::from_slice(&body).map_err(|e| E2eError::Api {
            path: path.to_string(),
            reason: e.to_string(),
        })
    }

    pub fn stats(&self) -> Result<Stats, E2eError> {
        self.get("/v1/stats")
    }

    pub fn blocklist(&self) -> Result<Vec<BlockRecord>, E2eError> {
        #[derive(serde::Deserialize)]
        struct List {
            entries: Vec<BlockRecord>,
        }
        Ok(self.get::<List>("/v1/blocklist")?.entries)
    }

    /// `POST /v1/blocklist`: a permanent block.
    pub fn block(&self, cidr: &str, reason: &str) -> Result<BlockRecord, E2eError> {
        let body = serde_json::json!({ "cidr": cidr, "reason": reason }).to_string();
        let answer = self.request("POST", "/v1/blocklist", Some(&body))?;
        serde_json::from_slice(&answer).map_err(|e| E2eError::Api {
            path: "/v1/blocklist".into(),
            reason: e.to_string(),
        })
    }
}

/// Sends `request` to the API address and reads the answer until the server closes.
fn http(request: &str) -> std::io::Result<Vec<u8>> {
    use std::io::{Read as _, Write as _};
    let addr: std::net::SocketAddr = API_LISTEN
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    Ok(response)
}

/// The datapath counters summed over CPUs, read from the pinned STATS map: readable while no
/// daemon runs (scenario 5).
pub fn pinned_stats(iface: &str) -> Result<[u64; stats::COUNT], E2eError> {
    let path = PinDir::new(Path::new(PIN_ROOT), iface)
        .layout_dir()
        .join(maps::STATS);
    let data = MapData::from_pin(&path)?;
    let array: PerCpuArray<MapData, stats::Stats> = PerCpuArray::try_from(Map::PerCpuArray(data))?;
    let mut sum = [0u64; stats::COUNT];
    for cpu in array.get(&0, 0)?.iter() {
        for (s, v) in sum.iter_mut().zip(cpu.counters) {
            *s += v;
        }
    }
    Ok(sum)
}

/// Packets the program dropped, by the API's counter names.
pub fn dropped(stats: &Stats) -> u64 {
    xdp_guard_common::stats::DROPS
        .iter()
        .map(|i| {
            let name = xdp_guard_common::stats::NAMES[*i];
            stats.counters.get(name).copied().unwrap_or(0)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn run_config_is_valid() {
        let text = config_text("xg123h0", Path::new("/tmp/run"), Thresholds::DEFAULT);
        let cfg: Config = toml::from_str(&text).expect("parses");
        cfg.validate().expect("valid");
        assert_eq!(cfg.syn.rate, 100);
        assert!(cfg.detach_on_exit);
        assert_eq!(cfg.protected_ports, [80]);
    }
}
