//! The test bed: three hosts on one bridge, Apache in `srv`, and the knobs the scenarios
//! turn between runs (syncookies, a fresh Apache listener, the server's sysctls).
//!
//! Addresses (all in 198.18.0.0/15, the benchmarking range; no default routes anywhere):
//!
//! | host | addresses | used for |
//! |---|---|---|
//! | srv | 198.18.0.1/15 | Apache on :80, xdp-guard on its veth |
//! | legit | 198.18.0.2/15 | `ab` (scenario 4) |
//! | legit | 198.18.1.1-8/32 | paced clients (scenarios 1-3, 5) |
//! | legit | 198.18.6.1/32 | the client the operator blocks (scenario 6) |
//! | legit | 198.18.7.1-4/32 | held keep-alive connections (scenario 7) |
//! | atk | 198.18.0.3/15 | the single flooding source (scenarios 1, 5) |
//! | atk | 198.19.0.1-250/32 | many real sources (scenario 2) |
//!
//! Spoofed floods (scenario 3) come from random addresses in 10.0.0.0/8. srv routes that
//! prefix via `atk` (its "Internet": SYN-ACKs to spoofed sources leave as they would on a
//! real server, and `atk` drops them), so half-open connections to spoofed sources take
//! their place in the SYN queue; without a route the kernel would drop each such SYN at once.
//!
//! The /32s are configured on the hosts' interfaces, so the server's SYN-ACKs reach them
//! (they answer ARP): real sources, not spoofed ones. Like a flooding tool's host, `atk`
//! drops its own RSTs, so the half-open connections it causes stay in the server's queue.

use std::{
    io::Write as _,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use super::{E2eError, apache::Apache, cpus, output};
use crate::{
    netns::{Lan, LanHost, leftovers},
    sysctl::{SETTINGS, Scope},
};

pub const SRV_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const LEGIT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const ATK_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);
const PREFIX_LEN: u8 = 15;

/// The paced clients' addresses: 198.18.1.1-8.
pub fn client_addrs() -> Vec<Ipv4Addr> {
    (1..=8).map(|i| Ipv4Addr::new(198, 18, 1, i)).collect()
}

/// The client inside the prefix the operator blocks in scenario 6.
pub const OPERATOR_CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 6, 1);
pub const OPERATOR_PREFIX: &str = "198.18.6.0/24";

/// Sources of the held connections of scenario 7: 198.18.7.1-4.
pub fn holder_addrs() -> Vec<Ipv4Addr> {
    (1..=4).map(|i| Ipv4Addr::new(198, 18, 7, i)).collect()
}

/// Spoofed sources are random addresses in `<this>.0.0.0/8`.
pub const SPOOFED_FIRST_OCTET: u8 = 10;

/// The many real sources of scenario 2: 198.19.0.1-250.
pub const MANY_SOURCES: u8 = 250;
pub fn many_source_addrs() -> Vec<Ipv4Addr> {
    (1..=MANY_SOURCES)
        .map(|i| Ipv4Addr::new(198, 19, 0, i))
        .collect()
}

/// How the server is protected during one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// No XDP program, `tcp_syncookies = 0`: the SYN queue is all there is.
    Unprotected,
    /// No XDP program, `tcp_syncookies = 1` (the kernel default).
    Syncookies,
    /// xdp-guard attached, syncookies as the run says (normally left at 1).
    XdpGuard,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Unprotected, Mode::Syncookies, Mode::XdpGuard];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Unprotected => "no protection",
            Mode::Syncookies => "syncookies only",
            Mode::XdpGuard => "xdp-guard",
        }
    }
}

/// The nftables table counting SYNs that reach the server's IP stack (behind XDP).
const NFT_TABLE: &str = "xg_e2e";

pub struct Bed {
    pub dir: PathBuf,
    /// The sysctls the daemon may tune, as the namespace started with them.
    sysctls: Vec<(String, String)>,
    apache: Option<Apache>,
    names: Vec<String>,
    lan: Lan,
}

impl Bed {
    /// Creates the namespaces, addresses and the SYN counter, and starts Apache. `dir`
    /// holds configs and logs; it must exist.
    pub fn new(dir: &Path) -> Result<Bed, E2eError> {
        let cidr = |a: Ipv4Addr| format!("{a}/{PREFIX_LEN}");
        let lan = Lan::new(&[
            ("srv", &cidr(SRV_ADDR)),
            ("legit", &cidr(LEGIT_ADDR)),
            ("atk", &cidr(ATK_ADDR)),
        ])?;
        let names = lan.hosts.iter().map(|h| h.ns.name().to_string()).collect();
        let mut bed = Bed {
            dir: dir.to_path_buf(),
            sysctls: Vec::new(),
            apache: None,
            names,
            lan,
        };
        let mut legit_extra = client_addrs();
        legit_extra.push(OPERATOR_CLIENT);
        legit_extra.extend(holder_addrs());
        add_addresses(bed.legit(), &legit_extra)?;
        add_addresses(bed.atk(), &many_source_addrs())?;
        bed.srv().ns.exec(&["nft", "-f", &bed.nft_file()?])?;
        // The attack host drops its own RSTs, as flooding tools do: the server's SYN-ACKs to
        // it go unanswered and its half-open connections stay in the SYN queue.
        // It also stands for the Internet behind spoofed sources: it drops what srv sends
        // them before routing (no ICMP back).
        let spoofed = format!("{SPOOFED_FIRST_OCTET}.0.0.0/8");
        bed.atk().ns.exec(&["nft", "-f", &bed.write(
            "atk.nft",
            &format!(
                "table inet xg_e2e_atk {{\n  chain output {{\n    type filter hook output priority 0;\n    \
                 tcp flags & rst == rst drop\n  }}\n  chain prerouting {{\n    type filter hook \
                 prerouting priority 0;\n    ip daddr {spoofed} drop\n  }}\n}}\n"
            ),
        )?])?;
        bed.srv()
            .ns
            .exec(&["ip", "route", "add", &spoofed, "via", &ATK_ADDR.to_string()])?;
        bed.steer_receive()?;
        bed.sysctls = bed.snapshot_sysctls();
        bed.restart_apache()?;
        Ok(bed)
    }

    /// Steers what srv's veth receives (RPS) to the server's CPUs ([`cpus`]): the flood's
    /// transport and the XDP verdicts stay on the attacker's CPU (veth runs them in the
    /// sender's context), srv's network stack runs beside Apache. So what the kernel must do
    /// for the SYNs that get past XDP (all of them, without it) costs the server, as it
    /// would on a real one.
    fn steer_receive(&self) -> Result<(), E2eError> {
        let path = format!("/sys/class/net/{}/queues/rx-0/rps_cpus", self.srv().iface);
        let mask = cpus::mask(&cpus::server());
        self.srv()
            .ns
            .exec(&["sh", "-c", &format!("echo {mask} > {path}")])?;
        Ok(())
    }

    pub fn srv(&self) -> &LanHost {
        &self.lan.hosts[0]
    }

    pub fn legit(&self) -> &LanHost {
        &self.lan.hosts[1]
    }

    pub fn atk(&self) -> &LanHost {
        &self.lan.hosts[2]
    }

    /// The namespaces this bed made (to check they are gone afterwards).
    pub fn namespace_names(&self) -> &[String] {
        &self.names
    }

    fn nft_file(&self) -> Result<String, E2eError> {
        self.write(
            "syn-counter.nft",
            &format!(
                "table inet {NFT_TABLE} {{\n  chain input {{\n    type filter hook input priority 0;\n    \
                 tcp dport 80 tcp flags & (syn | ack) == syn counter\n  }}\n}}\n"
            ),
        )
    }

    /// Writes a file into the bed's directory; its path.
    fn write(&self, name: &str, text: &str) -> Result<String, E2eError> {
        let path = self.dir.join(name);
        std::fs::write(&path, text).map_err(E2eError::io(format!("writing {}", path.display())))?;
        Ok(path.display().to_string())
    }

    /// SYNs to port 80 that reached the server's kernel so far (an nftables counter on the
    /// input hook: whatever XDP dropped never gets there).
    pub fn kernel_syns(&self) -> Result<u64, E2eError> {
        let out = self
            .srv()
            .ns
            .exec(&["nft", "list", "table", "inet", NFT_TABLE])?;
        parse_nft_counter(&String::from_utf8_lossy(&out.stdout)).ok_or_else(|| E2eError::Parse {
            what: "the nftables SYN counter".into(),
            reason: String::from_utf8_lossy(&out.stdout).into_owned(),
        })
    }

    /// MAC address of a host's interface.
    pub fn mac(&self, host: &LanHost) -> Result<String, E2eError> {
        let path = format!("/sys/class/net/{}/address", host.iface);
        let out = host.ns.exec(&["cat", &path])?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// A sysctl of the server's namespace, read from a thread inside it (`/proc/sys/net`
    /// shows the reader's namespace): no process is started, so it can be read mid-flood.
    pub fn sysctl(&self, key: &str) -> Result<String, E2eError> {
        let ns = self.srv().ns.name().to_string();
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    super::legit::enter_netns(&ns)?;
                    std::fs::read_to_string(&path)
                        .map(|v| v.trim().to_string())
                        .map_err(E2eError::io(format!("reading {path} in {ns}")))
                })
                .join()
                .map_err(|_| E2eError::Setup("the sysctl reader panicked".into()))?
        })
    }

    pub fn set_sysctl(&self, key: &str, value: &str) -> Result<(), E2eError> {
        self.srv()
            .ns
            .exec(&["sysctl", "-q", "-w", &format!("{key}={value}")])?;
        Ok(())
    }

    fn snapshot_sysctls(&self) -> Vec<(String, String)> {
        SETTINGS
            .iter()
            .filter(|s| s.scope == Scope::PerNetns)
            .filter_map(|s| Some((s.key.to_string(), self.sysctl(s.key).ok()?)))
            .collect()
    }

    /// Puts the server's sysctls back as the namespace started with them (the daemon restores
    /// what it tuned itself; this makes every run start alike even if a run failed).
    pub fn reset_sysctls(&self) -> Result<(), E2eError> {
        for (key, value) in &self.sysctls {
            if self.sysctl(key)? != *value {
                self.set_sysctl(key, value)?;
            }
        }
        Ok(())
    }

    /// Prepares the server for one run in `mode`: sysctls as they started, syncookies as
    /// the mode wants (`cookies` overrides it for xdp-guard runs), and a fresh Apache, so
    /// no half-open connection of an earlier flood is left in its SYN queue.
    pub fn prepare(&mut self, mode: Mode, cookies: Option<bool>) -> Result<(), E2eError> {
        self.reset_sysctls()?;
        let on = match mode {
            Mode::Unprotected => false,
            Mode::Syncookies => true,
            Mode::XdpGuard => cookies.unwrap_or(true),
        };
        self.set_sysctl("net.ipv4.tcp_syncookies", if on { "1" } else { "0" })?;
        self.restart_apache()
    }

    pub fn restart_apache(&mut self) -> Result<(), E2eError> {
        if let Some(apache) = self.apache.take() {
            apache.stop();
        }
        let apache = Apache::start(self.srv(), self.legit(), SRV_ADDR, &self.dir)?;
        self.apache = Some(apache);
        Ok(())
    }

    /// Stops Apache, removes the namespaces and checks nothing of ours is left: no
    /// namespace, no pins for the server's interface.
    pub fn teardown(mut self) -> Result<(), E2eError> {
        if let Some(apache) = self.apache.take() {
            apache.stop();
        }
        let names = std::mem::take(&mut self.names);
        let pins = crate::paths::pin_dir(&self.srv().iface);
        drop(self);
        let left: Vec<String> = leftovers()
            .into_iter()
            .filter(|n| names.contains(n))
            .collect();
        if !left.is_empty() {
            return Err(E2eError::Setup(format!(
                "namespaces left behind: {}",
                left.join(" ")
            )));
        }
        if pins.exists() {
            return Err(E2eError::Setup(format!(
                "pins left behind: {}",
                pins.display()
            )));
        }
        Ok(())
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        if let Some(apache) = self.apache.take() {
            apache.stop();
        }
        // The namespaces go with `lan`.
    }
}

/// Adds /32 addresses to a host's interface in one `ip -batch`.
fn add_addresses(host: &LanHost, addrs: &[Ipv4Addr]) -> Result<(), E2eError> {
    let script: String = addrs
        .iter()
        .map(|a| format!("address add {a}/32 dev {}\n", host.iface))
        .collect();
    let mut cmd = Command::new("ip");
    cmd.args(["-n", host.ns.name(), "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let line = super::display(&cmd);
    let mut child = cmd.spawn().map_err(|source| E2eError::Spawn {
        cmd: line.clone(),
        source,
    })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(E2eError::io("writing to `ip -batch`"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(E2eError::io("waiting for `ip -batch`"))?;
    if !out.status.success() {
        return Err(E2eError::Command {
            cmd: line,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// `... counter packets 1234 bytes 49360` -> 1234.
fn parse_nft_counter(listing: &str) -> Option<u64> {
    let rest = listing.split("counter packets ").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

/// `ip netns exec`, for commands that must run in a host's namespace and be waited for.
pub fn exec_in(host: &LanHost, args: &[&str]) -> Result<std::process::Output, E2eError> {
    let mut cmd = host.ns.command(args[0]);
    cmd.args(&args[1..]);
    output(&mut cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nft_counter() {
        let listing = "table inet xg_e2e {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t\ttcp dport 80 tcp flags syn / syn,ack counter packets 1149860 bytes 45994400\n\t}\n}\n";
        assert_eq!(parse_nft_counter(listing), Some(1_149_860));
        assert_eq!(parse_nft_counter("table inet xg_e2e {}"), None);
    }

    #[test]
    fn address_plan() {
        assert_eq!(many_source_addrs().len(), 250);
        let all: Vec<Ipv4Addr> = [SRV_ADDR, LEGIT_ADDR, ATK_ADDR, OPERATOR_CLIENT]
            .into_iter()
            .chain(client_addrs())
            .chain(holder_addrs())
            .chain(many_source_addrs())
            .collect();
        let lan: ipnet::Ipv4Net = "198.18.0.0/15".parse().expect("prefix");
        assert!(
            all.iter().all(|a| lan.contains(a)),
            "all inside 198.18.0.0/15"
        );
        let mut dedup = all.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), all.len(), "no address used twice");
        let operator: ipnet::Ipv4Net = OPERATOR_PREFIX.parse().expect("prefix");
        assert!(operator.contains(&OPERATOR_CLIENT));
        assert_eq!(
            all.iter().filter(|a| operator.contains(*a)).count(),
            1,
            "the operator's block hits one client only"
        );
    }
}
