//! The throughput bed: an attacker namespace and a server namespace joined by one veth pair,
//! both created here and removed in `Drop` (names `xg-*`, interfaces `xga<id>`/`xgs<id>`, so
//! the receive kthread of this bed is recognisable among other tests' `veth0`s).
//!
//! The server side is set up like a host behind a firewall: the address 198.18.0.1/24, a TCP
//! listener on port 80, no default route (its SYN-ACKs to spoofed sources fail at the route
//! lookup and leave nothing), reverse-path filtering off (a server with a default route would
//! accept the spoofed sources too), and the veth's receive path (NAPI) in its own kthread
//! pinned to one CPU ([`Bed::pin_napi`]), so that the flood generator and the receiver each
//! have a CPU of the machine's two.

use std::{
    ffi::CString,
    fs::File,
    io::{Read as _, Seek as _, SeekFrom},
    net::{Ipv4Addr, TcpListener},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    sync::atomic::{AtomicU32, Ordering},
};

use crate::netns::{Netns, NetnsError, run};

pub const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const ATTACKER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const PORT: u16 = 80;

static NEXT: AtomicU32 = AtomicU32::new(0);

#[derive(Debug, thiserror::Error)]
pub enum BedError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("unexpected output of {what}: {text}")]
    Parse { what: String, text: String },
    #[error("a thread inside the namespace panicked")]
    Panicked,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BedError {
    let what = what.into();
    move |source| BedError::Io { what, source }
}

/// Run `f` on a fresh thread that entered `ns` (threads never leave a namespace, so the
/// calling thread stays where it is). Sockets and `/proc/thread-self/net` files opened there
/// keep referring to `ns` wherever they are used later.
pub fn in_ns<T: Send>(
    ns: &Netns,
    f: impl FnOnce() -> Result<T, BedError> + Send,
) -> Result<T, BedError> {
    std::thread::scope(|s| {
        s.spawn(|| {
            ns.enter_current_thread()?;
            f()
        })
        .join()
        .map_err(|_| BedError::Panicked)?
    })
}

pub struct Bed {
    /// Deleting either namespace removes the veth pair.
    pub attacker: Netns,
    pub server: Netns,
    pub attacker_if: String,
    pub server_if: String,
    pub server_mac: [u8; 6],
    /// `/proc/net/dev` and `/proc/net/snmp` of the server namespace, opened inside it.
    dev_stats: File,
    snmp: File,
    _listener: TcpListener,
}

/// Receive counters of the server-side veth. `packets` counts every frame its NAPI poll took,
/// whatever an XDP program or the stack then did with it; `dropped` includes frames the
/// sender could not queue because the receive ring was full.
#[derive(Clone, Copy, Debug, Default)]
pub struct RxCounters {
    pub packets: u64,
    pub dropped: u64,
}

impl Bed {
    pub fn new() -> Result<Self, BedError> {
        let attacker = Netns::new("atk")?;
        let server = Netns::new("srv")?;
        let id = format!(
            "{}{}",
            std::process::id() % 10_000,
            NEXT.fetch_add(1, Ordering::Relaxed) % 10
        );
        let (attacker_if, server_if) = (format!("xga{id}"), format!("xgs{id}"));
        run(&[
            "ip",
            "link",
            "add",
            &attacker_if,
            "type",
            "veth",
            "peer",
            "name",
            &server_if,
        ])?;
        run(&["ip", "link", "set", &attacker_if, "netns", attacker.name()])?;
        run(&["ip", "link", "set", &server_if, "netns", server.name()])?;
        for (ns, iface, addr) in [
            (&attacker, &attacker_if, ATTACKER),
            (&server, &server_if, SERVER),
        ] {
            ns.exec(&["ip", "addr", "add", &format!("{addr}/24"), "dev", iface])?;
            ns.exec(&["ip", "link", "set", iface, "up"])?;
        }
        for key in ["all", "default", server_if.as_str()] {
            server.exec(&[
                "sysctl",
                "-q",
                "-w",
                &format!("net.ipv4.conf.{key}.rp_filter=0"),
            ])?;
        }
        let mac = server.exec(&["cat", &format!("/sys/class/net/{server_if}/address")])?;
        let text = String::from_utf8_lossy(&mac.stdout).trim().to_string();
        let server_mac = parse_mac(&text).ok_or_else(|| BedError::Parse {
            what: "the server MAC".into(),
            text: text.clone(),
        })?;
        let (dev_stats, snmp, listener) = in_ns(&server, || {
            let stats = File::open("/proc/thread-self/net/dev").map_err(io("/proc/net/dev"))?;
            let snmp = File::open("/proc/thread-self/net/snmp").map_err(io("/proc/net/snmp"))?;
            let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, PORT))
                .map_err(io("listening on port 80"))?;
            Ok((stats, snmp, listener))
        })?;
        Ok(Self {
            attacker,
            server,
            attacker_if,
            server_if,
            server_mac,
            dev_stats,
            snmp,
            _listener: listener,
        })
    }

    /// GRO on the server veth: it then runs NAPI (and so takes redirected frames) without an
    /// XDP program. The `ethtool -K <if> gro on` ioctl, done here so no ethtool is needed.
    pub fn set_gro(&self, on: bool) -> Result<(), BedError> {
        let iface = self.server_if.clone();
        in_ns(&self.server, move || set_gro(&iface, on))
    }

    /// Run the server veth's NAPI in a kthread (`threaded` = 1) and pin that kthread to `cpu`,
    /// under SCHED_FIFO when `realtime`. The kthread is created with the NAPI instance, which
    /// veth creates when XDP or GRO is turned on: call this after the receiver is set up.
    /// Returns how many were pinned.
    pub fn pin_napi(&self, cpu: usize, realtime: bool) -> Result<usize, BedError> {
        self.server.exec(&[
            "sh",
            "-c",
            &format!("echo 1 > /sys/class/net/{}/threaded", self.server_if),
        ])?;
        let prefix = format!("napi/{}-", self.server_if);
        let mut pinned = 0;
        for entry in std::fs::read_dir("/proc").map_err(io("/proc"))?.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim_end().starts_with(&prefix) {
                super::pin_pid_to_cpu(pid, cpu).map_err(io(format!("pinning {comm}")))?;
                if realtime {
                    super::realtime(pid, 50).map_err(io(format!("SCHED_FIFO {comm}")))?;
                }
                pinned += 1;
            }
        }
        Ok(pinned)
    }

    pub fn rx(&self) -> Result<RxCounters, BedError> {
        let mut f = &self.dev_stats;
        let mut text = String::new();
        f.seek(SeekFrom::Start(0))
            .and_then(|_| f.read_to_string(&mut text))
            .map_err(io("reading /proc/net/dev"))?;
        parse_dev(&text, &self.server_if).ok_or_else(|| BedError::Parse {
            what: "/proc/net/dev".into(),
            text,
        })
    }
}

/// What the server's TCP stack saw (`/proc/net/snmp`): a check that the generator's frames
/// are valid, not a rate.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct TcpCounters {
    pub in_segs: u64,
    pub in_csum_errors: u64,
}

impl Bed {
    pub fn tcp(&self) -> Result<TcpCounters, BedError> {
        let mut f = &self.snmp;
        let mut text = String::new();
        f.seek(SeekFrom::Start(0))
            .and_then(|_| f.read_to_string(&mut text))
            .map_err(io("reading /proc/net/snmp"))?;
        parse_snmp_tcp(&text).ok_or_else(|| BedError::Parse {
            what: "/proc/net/snmp".into(),
            text,
        })
    }
}

/// `InSegs` and `InCsumErrors` from the two `Tcp:` lines (names, then values).
fn parse_snmp_tcp(text: &str) -> Option<TcpCounters> {
    let mut lines = text.lines().filter(|l| l.starts_with("Tcp:"));
    let names: Vec<&str> = lines.next()?.split_whitespace().collect();
    let values: Vec<&str> = lines.next()?.split_whitespace().collect();
    let get = |name: &str| -> Option<u64> {
        let i = names.iter().position(|n| *n == name)?;
        values.get(i)?.parse().ok()
    };
    Some(TcpCounters {
        in_segs: get("InSegs")?,
        in_csum_errors: get("InCsumErrors")?,
    })
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut out {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// (rx packets, rx drops) of `iface` from `/proc/net/dev`.
fn parse_dev(text: &str, iface: &str) -> Option<RxCounters> {
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{iface}:")))?;
    let fields: Vec<u64> = line
        .split_once(':')?
        .1
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    // bytes packets errs drop ...
    Some(RxCounters {
        packets: *fields.get(1)?,
        dropped: *fields.get(3)?,
    })
}

const ETHTOOL_SGRO: u32 = 0x0000_002c;

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

fn set_gro(iface: &str, on: bool) -> Result<(), BedError> {
    let what = || format!("setting GRO on {iface}");
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io(what())(std::io::Error::last_os_error()));
    }
    // SAFETY: a fresh, valid fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let name = CString::new(iface).map_err(|_| BedError::Parse {
        what: "interface name".into(),
        text: iface.into(),
    })?;
    let mut value = EthtoolValue {
        cmd: ETHTOOL_SGRO,
        data: u32::from(on),
    };
    // SAFETY: ifreq is plain data; the name fits (IFNAMSIZ checked by the kernel's veth names
    // being shorter than 16), and ifru_data points at `value`, alive for the call.
    let rc = unsafe {
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (d, s) in ifr
            .ifr_name
            .iter_mut()
            .zip(name.as_bytes().iter().take(libc::IFNAMSIZ - 1))
        {
            *d = *s as libc::c_char;
        }
        ifr.ifr_ifru.ifru_data = (&mut value as *mut EthtoolValue).cast();
        libc::ioctl(fd.as_raw_fd(), libc::SIOCETHTOOL, &mut ifr)
    };
    if rc != 0 {
        return Err(io(what())(std::io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_dev() {
        let text = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0\nxgs12340: 5400 100 0 7 0 0 0 0 0 0 0 0 0 0 0 0\n";
        let c = parse_dev(text, "xgs12340").expect("parsed");
        assert_eq!((c.packets, c.dropped), (100, 7));
        assert!(parse_dev(text, "xgs1234").is_none());
        assert_eq!(
            parse_mac("02:1a:ff:00:00:09"),
            Some([2, 0x1a, 0xff, 0, 0, 9])
        );
        assert_eq!(parse_mac("02:1a"), None);
        let snmp = "Ip: Forwarding DefaultTTL\nIp: 1 64\nTcp: RtoAlgorithm RtoMin InSegs OutSegs InCsumErrors\nTcp: 1 200 5000 10 3\n";
        let t = parse_snmp_tcp(snmp).expect("parsed");
        assert_eq!((t.in_segs, t.in_csum_errors), (5000, 3));
    }
}
