//! Network namespaces and veth pairs for tests, the end-to-end bed and the benchmark.
//! Everything is created with `ip` and removed in `Drop`, so a failing test still cleans up.
//! Names start with `xg-` so leftovers are easy to find (`cargo xtask test` checks).

use std::{
    fs::File,
    os::fd::AsRawFd,
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
};

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("`{cmd}` failed: {stderr}")]
    Command { cmd: String, stderr: String },
    #[error("running `{cmd}`: {source}")]
    Spawn { cmd: String, source: std::io::Error },
    #[error("entering namespace {name}: {source}")]
    Enter {
        name: String,
        source: std::io::Error,
    },
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Run a command; its stderr becomes the error.
pub fn run(cmd: &[&str]) -> Result<Output, NetnsError> {
    let line = cmd.join(" ");
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .map_err(|source| NetnsError::Spawn {
            cmd: line.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(NetnsError::Command {
            cmd: line,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out)
}

/// A network namespace, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// `xg-<role>-<pid>-<n>`: unique per process and call, at most 15 characters of role.
    pub fn new(role: &str) -> Result<Self, NetnsError> {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("xg-{role}-{}-{n}", std::process::id());
        run(&["ip", "netns", "add", &name])?;
        let ns = Self { name };
        ns.exec(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Run a command inside the namespace.
    pub fn exec(&self, cmd: &[&str]) -> Result<Output, NetnsError> {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(cmd);
        run(&full)
    }

    /// A `Command` that runs inside the namespace, for callers that need to spawn.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// A `Command` that runs in this network namespace but the host's mount namespace
    /// (`nsenter --net`), unlike [`Self::command`]: `ip netns exec` remounts `/sys`, hiding
    /// the host's bpffs, so a daemon whose pins must outlive it is started this way.
    pub fn nsenter_command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/var/run/netns/{}", self.name))
            .arg("--")
            .arg(program);
        c
    }

    /// Move the calling thread into this namespace (for netlink-based attach from Rust).
    /// Threads do not go back: use a dedicated thread.
    pub fn enter_current_thread(&self) -> Result<(), NetnsError> {
        let err = |source| NetnsError::Enter {
            name: self.name.clone(),
            source,
        };
        let f = File::open(format!("/var/run/netns/{}", self.name)).map_err(err)?;
        // SAFETY: a valid namespace fd; CLONE_NEWNET affects only the calling thread.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(err(std::io::Error::last_os_error()));
        }
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run(&["ip", "netns", "del", &self.name]);
    }
}

/// Connect two namespaces with a veth pair; each end is named `veth0` inside its namespace
/// and gets the given address (CIDR notation, e.g. `198.18.0.1/24`).
pub fn veth_pair(a: &Netns, a_addr: &str, b: &Netns, b_addr: &str) -> Result<(), NetnsError> {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let (ta, tb) = (
        format!("xga{}x{n}", std::process::id() % 100_000),
        format!("xgb{}x{n}", std::process::id() % 100_000),
    );
    run(&[
        "ip", "link", "add", &ta, "type", "veth", "peer", "name", &tb,
    ])?;
    run(&["ip", "link", "set", &ta, "netns", a.name()])?;
    run(&["ip", "link", "set", &tb, "netns", b.name()])?;
    for (ns, tmp, addr) in [(a, &ta, a_addr), (b, &tb, b_addr)] {
        ns.exec(&["ip", "link", "set", tmp, "name", "veth0"])?;
        ns.exec(&["ip", "addr", "add", addr, "dev", "veth0"])?;
        ns.exec(&["ip", "link", "set", "veth0", "up"])?;
    }
    Ok(())
}

/// Namespaces left over by this project's tests (`xg-` prefix).
pub fn leftovers() -> Vec<String> {
    run(&["ip", "netns", "list"])
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.split_whitespace().next())
                .filter(|n| n.starts_with("xg-"))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Hosts on one Ethernet segment: a bridge in its own namespace and one namespace per host,
/// each with a veth into the bridge. Interface names are unique on the machine (bpffs pins
/// are per interface name and global), e.g. `xg1234h0`.
pub struct Lan {
    pub hosts: Vec<LanHost>,
    _bridge: Netns,
}

pub struct LanHost {
    pub ns: Netns,
    pub iface: String,
    /// The host's address without prefix length.
    pub addr: String,
}

impl Lan {
    /// `hosts`: (role, address with prefix length), e.g. `("srv", "198.18.0.1/24")`.
    pub fn new(hosts: &[(&str, &str)]) -> Result<Self, NetnsError> {
        let bridge = Netns::new("br")?;
        bridge.exec(&["ip", "link", "add", "br0", "type", "bridge"])?;
        bridge.exec(&["ip", "link", "set", "br0", "up"])?;
        let mut out = Vec::new();
        for (role, cidr) in hosts {
            let ns = Netns::new(role)?;
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let iface = format!("xg{}h{n}", std::process::id() % 100_000);
            let peer = format!("xg{}p{n}", std::process::id() % 100_000);
            run(&[
                "ip", "link", "add", &iface, "type", "veth", "peer", "name", &peer,
            ])?;
            run(&["ip", "link", "set", &iface, "netns", ns.name()])?;
            run(&["ip", "link", "set", &peer, "netns", bridge.name()])?;
            bridge.exec(&["ip", "link", "set", &peer, "master", "br0"])?;
            bridge.exec(&["ip", "link", "set", &peer, "up"])?;
            ns.exec(&["ip", "addr", "add", cidr, "dev", &iface])?;
            ns.exec(&["ip", "link", "set", &iface, "up"])?;
            let addr = cidr.split('/').next().unwrap_or(cidr).to_string();
            out.push(LanHost { ns, iface, addr });
        }
        Ok(Self {
            hosts: out,
            _bridge: bridge,
        })
    }
}
