//! Bounded SYN floods from the attack namespace with `trafgen` (netsniff-ng).
//!
//! Why trafgen and not hping3: every flood here must stop by itself within a packet count
//! and a time limit. `hping3 --flood` ignores `-c` (3.0.0-alpha-2 sent 682,062 packets with
//! `-c 300000`), and hping3's paced mode (`-i u1`) manages ~14k packets/s, far from full
//! rate. `trafgen -n N` stops after N packets, `timeout -s INT` after the time limit
//! (trafgen prints its count on SIGINT), and one trafgen process sends 150-600k SYN/s
//! through the bed's bridge. The options `--no-sock-mem` and `-Q` keep it from tuning the
//! host's socket buffers and IRQ affinities.
//!
//! The generator runs on the outside's CPU ([`super::cpus`]; trafgen pins its sender
//! itself: `-P <n> 'cpu(<n-1>): {...}'`), at the lowest priority (`nice -n 19`): the
//! transport of every packet, the clients' included, runs as softirq work that often
//! lands in `ksoftirqd` at normal priority, and on a real network the wire does not wait
//! for the attacker's CPU. Its ring is small (`-S 64KiB`): each `sendto` that flushes the
//! ring is a stretch the kernel (PREEMPT_NONE here) does not preempt, not even for the
//! clients' real-time thread on the same CPU, so it is kept short.

use std::{
    fmt::Write as _,
    fs::File,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use super::E2eError;
use crate::netns::LanHost;

/// Where a flood's SYNs come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sources {
    /// One address of the attack host, at full rate.
    One(Ipv4Addr),
    /// `first` and the `count - 1` addresses after it (the last byte counting up), in turn.
    /// They must be configured on the attack host for the sources to be real.
    Range { first: Ipv4Addr, count: u8 },
    /// A random source address per packet inside `<first_octet>.0.0.0/8` (spoofed: 16.7
    /// million addresses, none configured anywhere).
    Random { first_octet: u8 },
}

#[derive(Clone, Debug)]
pub struct FloodSpec {
    pub sources: Sources,
    pub dst: Ipv4Addr,
    pub dst_port: u16,
    /// Ethernet addresses: the attack host's and the server's.
    pub src_mac: String,
    pub dst_mac: String,
    /// At most this many packets...
    pub max_packets: u64,
    /// ...and at most this long.
    pub max_duration: Duration,
    /// The CPU the generator sends from.
    pub cpu: usize,
}

/// The trafgen packet configuration: Ethernet, IPv4, TCP SYN with random source port and
/// sequence number (trafgen recomputes checksums for fields that change per packet).
pub fn trafgen_config(spec: &FloodSpec) -> Result<String, E2eError> {
    let saddr = match &spec.sources {
        Sources::One(a) => format!("sa={a}"),
        Sources::Range { first, count } => {
            let last = u16::from(first.octets()[3]) + u16::from(*count) - 1;
            if *count == 0 || last > 255 {
                return Err(E2eError::Setup(format!(
                    "a source range must stay within one /24: {first} + {count}"
                )));
            }
            format!("sa={first}, sa[3]=dinc({}, {last})", first.octets()[3])
        }
        Sources::Random { first_octet } => {
            format!("sa={first_octet}.0.0.0, sa[1]=drnd(), sa[2]=drnd(), sa[3]=drnd()")
        }
    };
    let mut cfg = String::new();
    let _ = writeln!(
        cfg,
        "cpu({}): {{ eth(da={}, sa={}), ipv4({saddr}, da={}, ttl=64), \
         tcp(sp=drnd(), dp={}, seq=drnd(), syn, win=64240) }}",
        spec.cpu, spec.dst_mac, spec.src_mac, spec.dst, spec.dst_port
    );
    Ok(cfg)
}

/// A running flood. Dropping it stops it.
pub struct Flood {
    child: Child,
    output: PathBuf,
    /// Wall clock (ms since the epoch) just before trafgen was started: the origin of
    /// "time from flood start to block".
    pub started_ms: u64,
    pub started: Instant,
}

/// What a flood sent.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FloodResult {
    pub packets: u64,
    pub secs: f64,
}

impl Flood {
    /// Starts trafgen on the attack host's interface; `dir` receives its config and output.
    pub fn start(
        atk: &LanHost,
        spec: &FloodSpec,
        dir: &Path,
        name: &str,
    ) -> Result<Flood, E2eError> {
        let cfg_path = dir.join(format!("{name}.trafgen"));
        std::fs::write(&cfg_path, trafgen_config(spec)?)
            .map_err(E2eError::io(format!("writing {}", cfg_path.display())))?;
        let output = dir.join(format!("{name}.out"));
        let out = File::create(&output)
            .map_err(E2eError::io(format!("creating {}", output.display())))?;
        let err = out
            .try_clone()
            .map_err(E2eError::io(format!("creating {}", output.display())))?;
        let secs = spec.max_duration.as_secs_f64();
        let started_ms = crate::model::now_ms();
        let started = Instant::now();
        let child = atk
            .ns
            .command("timeout")
            .args(["-s", "INT", "-k", "3", &format!("{secs:.1}")])
            .args([
                "nice",
                "-n",
                "19",
                "trafgen",
                "--no-sock-mem",
                "-Q",
                "-S",
                "64KiB",
            ])
            .args(["-P", &(spec.cpu + 1).to_string(), "-o", &atk.iface])
            .arg("-i")
            .arg(&cfg_path)
            .args(["-n", &spec.max_packets.to_string()])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|source| E2eError::Spawn {
                cmd: "timeout ... trafgen (netsniff-ng, installed by `cargo xtask setup`)".into(),
                source,
            })?;
        Ok(Flood {
            child,
            output,
            started_ms,
            started,
        })
    }

    /// Whether trafgen is still sending.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Ends the flood now (SIGINT: trafgen stops and prints its count) and reads its count.
    pub fn stop(mut self) -> Result<FloodResult, E2eError> {
        self.interrupt();
        self.wait()
    }

    /// Waits for the flood to stop by itself (count or time limit) and reads its count.
    pub fn wait(mut self) -> Result<FloodResult, E2eError> {
        let _ = self.child.wait();
        let secs = self.started.elapsed().as_secs_f64();
        let text = std::fs::read_to_string(&self.output).unwrap_or_default();
        let packets = parse_trafgen_packets(&text).ok_or_else(|| E2eError::Parse {
            what: format!("trafgen's output ({})", self.output.display()),
            reason: text.trim().chars().take(400).collect(),
        })?;
        Ok(FloodResult { packets, secs })
    }
}

impl Flood {
    /// SIGINT to `timeout`, which passes it on to trafgen; SIGKILL after 5 s.
    fn interrupt(&mut self) {
        super::stop_child(&mut self.child, libc::SIGINT, Duration::from_secs(5));
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.interrupt();
    }
}

/// `     1000000 packets outgoing` -> 1000000.
fn parse_trafgen_packets(text: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.trim_end().ends_with("packets outgoing"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(sources: Sources) -> FloodSpec {
        FloodSpec {
            sources,
            dst: Ipv4Addr::new(198, 18, 0, 1),
            dst_port: 80,
            src_mac: "ee:89:f9:b3:a3:a8".into(),
            dst_mac: "f6:5a:23:f4:b7:6f".into(),
            max_packets: 1000,
            max_duration: Duration::from_secs(1),
            cpu: 1,
        }
    }

    #[test]
    fn trafgen_configs() {
        let one =
            trafgen_config(&spec(Sources::One(Ipv4Addr::new(198, 18, 0, 3)))).expect("config");
        assert_eq!(
            one.trim(),
            "cpu(1): { eth(da=f6:5a:23:f4:b7:6f, sa=ee:89:f9:b3:a3:a8), ipv4(sa=198.18.0.3, \
             da=198.18.0.1, ttl=64), tcp(sp=drnd(), dp=80, seq=drnd(), syn, win=64240) }"
        );
        let many = trafgen_config(&spec(Sources::Range {
            first: Ipv4Addr::new(198, 19, 0, 1),
            count: 250,
        }))
        .expect("config");
        assert!(many.contains("sa=198.19.0.1, sa[3]=dinc(1, 250)"), "{many}");
        let random = trafgen_config(&spec(Sources::Random { first_octet: 10 })).expect("config");
        assert!(random.contains("sa=10.0.0.0, sa[1]=drnd(), sa[2]=drnd(), sa[3]=drnd()"));
        assert!(
            trafgen_config(&spec(Sources::Range {
                first: Ipv4Addr::new(198, 19, 0, 10),
                count: 250,
            }))
            .is_err(),
            "a range may not wrap past .255"
        );
    }

    #[test]
    fn trafgen_count() {
        let out = "     1 packets to schedule\n    54 bytes in total\nRunning! Hang up with ^C!\n\n\n     3648768 packets outgoing\n   197033472 bytes outgoing\n           5 sec, 982832 usec on CPU0 (3648768 packets)\n";
        assert_eq!(parse_trafgen_packets(out), Some(3_648_768));
        assert_eq!(parse_trafgen_packets("Syntax error"), None);
    }
}
