//! The SYN-flood generator: `xdp-guard-ebpf/src/flood.rs` run through BPF_PROG_TEST_RUN with
//! live frames. One syscall sends up to [`FloodSpec::per_call`] frames: the kernel copies the
//! template SYN into page-pool pages, runs the program on each (new source address, optional
//! random source port, checksums updated) and redirects it into a veth of the calling thread's
//! network namespace, whose peer receives it like traffic from a wire.
//!
//! The receiving veth needs NAPI to take redirected frames: an XDP program attached in native
//! mode, or GRO enabled ([`super::veth::Bed::set_gro`]); without either every frame is dropped
//! at the sender.
//!
//! Every flood is bounded by a frame count and a duration, and stops by itself at whichever
//! comes first (or earlier, when the caller's stop flag is set).

use std::{
    ffi::CString,
    mem::size_of,
    net::Ipv4Addr,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use aya::{
    Ebpf,
    maps::{Array, MapError},
    programs::{ProgramError, TestRun, TestRunAttrs, TestRunOptions, Xdp},
};
use ipnet::Ipv4Net;

use super::objects::FLOOD_OBJECT;
use crate::frames::{Frame, L3};

const PROGRAM: &str = "xdp_flood";
const CONFIG_MAP: &str = "FLOOD_CONFIG";
const SOURCES_MAP: &str = "FLOOD_SOURCES";
/// Capacity of the source list (`LIST_MAX_ENTRIES` in the program).
pub const LIST_MAX: usize = 65_536;
/// The kernel's largest live-frames batch.
pub const MAX_BATCH: u32 = 256;

const MODE_FIXED: u32 = 0;
const MODE_LIST: u32 = 1;
const MODE_RANDOM: u32 = 2;

/// Mirror of `FloodConfig` in the program (same field order; sizes checked on both sides).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct FloodConfig {
    ifindex: u32,
    mode: u32,
    base: u32,
    host_mask: u32,
    list_len: u32,
    random_sport: u32,
}

const _: () = assert!(size_of::<FloodConfig>() == 24);

// SAFETY: repr(C), u32 fields only, no padding.
unsafe impl aya::Pod for FloodConfig {}

/// Where the spoofed sources come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sources {
    Fixed(Ipv4Addr),
    /// Cycled through in order (per CPU); at most [`LIST_MAX`].
    List(Vec<Ipv4Addr>),
    /// A uniformly random address inside the prefix for every frame.
    Random(Ipv4Net),
}

impl Sources {
    fn first(&self) -> Ipv4Addr {
        match self {
            Self::Fixed(a) => *a,
            Self::List(l) => l.first().copied().unwrap_or(Ipv4Addr::UNSPECIFIED),
            Self::Random(n) => n.network(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct FloodSpec {
    pub sources: Sources,
    /// A random TCP source port per frame (otherwise the template's, 40000).
    pub random_sport: bool,
    /// The receiving interface's MAC: a frame for another MAC is dropped by the IP layer
    /// before netfilter sees it.
    pub dst_mac: [u8; 6],
    pub dst: Ipv4Addr,
    pub dport: u16,
    /// Frames per live-frames batch (1..=[`MAX_BATCH`]).
    pub batch: u32,
    /// Frames per TEST_RUN syscall; the stop flag and the deadline are checked between calls.
    pub per_call: u32,
    pub max_frames: u64,
    pub max_duration: Duration,
}

impl FloodSpec {
    /// A SYN flood to `dst:dport` bounded by `max_frames` and `max_duration`.
    pub fn new(
        sources: Sources,
        dst_mac: [u8; 6],
        dst: Ipv4Addr,
        dport: u16,
        max_frames: u64,
        max_duration: Duration,
    ) -> Self {
        Self {
            sources,
            random_sport: true,
            dst_mac,
            dst,
            dport,
            batch: 64,
            per_call: 1 << 18,
            max_frames,
            max_duration,
        }
    }

    /// The template SYN (valid checksums) the program rewrites.
    pub fn template(&self) -> Vec<u8> {
        let mut frame = Frame::syn4(self.sources.first(), self.dport);
        if let L3::V4 { dst, .. } = &mut frame.l3 {
            *dst = self.dst;
        }
        let mut bytes = frame.bytes();
        bytes[..6].copy_from_slice(&self.dst_mac);
        bytes
    }
}

/// What a flood sent: frames the program ran on (redirected; the receiver may still drop
/// some when its ring is full, counted as its `rx_dropped`).
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct FloodOutcome {
    pub frames: u64,
    pub secs: f64,
    pub calls: u64,
}

impl FloodOutcome {
    pub fn mpps(&self) -> f64 {
        if self.secs > 0.0 {
            self.frames as f64 / self.secs / 1e6
        } else {
            0.0
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FloodError {
    #[error("loading the flood generator: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("flood generator program: {0}")]
    Program(#[from] ProgramError),
    #[error("flood generator map: {0}")]
    Map(#[from] MapError),
    #[error("the flood generator object has no {0}")]
    Missing(&'static str),
    #[error("no interface {name} in this network namespace: {source}")]
    Iface {
        name: String,
        source: std::io::Error,
    },
    #[error("source list of {0} entries (at most {LIST_MAX}, at least 1)")]
    SourceList(usize),
    #[error("batch size {0} (1..={MAX_BATCH})")]
    Batch(u32),
}

/// A loaded, configured generator. Create and run it on a thread inside the attacker's
/// network namespace: the interface index and the redirect are resolved there.
pub struct Generator {
    ebpf: Ebpf,
    template: Vec<u8>,
    spec: FloodSpec,
}

fn ifindex(name: &str) -> Result<u32, FloodError> {
    let err = |source| FloodError::Iface {
        name: name.into(),
        source,
    };
    let c = CString::new(name).map_err(|_| {
        err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "NUL in name",
        ))
    })?;
    // SAFETY: a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    Ok(index)
}

impl Generator {
    /// Load the program and point it at `iface` (in the calling thread's namespace).
    pub fn new(iface: &str, spec: FloodSpec) -> Result<Self, FloodError> {
        if spec.batch == 0 || spec.batch > MAX_BATCH {
            return Err(FloodError::Batch(spec.batch));
        }
        let mut ebpf = Ebpf::load(FLOOD_OBJECT)?;
        let program: &mut Xdp = ebpf
            .program_mut(PROGRAM)
            .ok_or(FloodError::Missing(PROGRAM))?
            .try_into()?;
        program.load()?;
        let mut cfg = FloodConfig {
            ifindex: ifindex(iface)?,
            random_sport: u32::from(spec.random_sport),
            ..Default::default()
        };
        match &spec.sources {
            Sources::Fixed(a) => {
                cfg.mode = MODE_FIXED;
                cfg.base = u32::from_ne_bytes(a.octets());
            }
            Sources::List(list) => {
                if list.is_empty() || list.len() > LIST_MAX {
                    return Err(FloodError::SourceList(list.len()));
                }
                let mut map: Array<_, u32> = Array::try_from(
                    ebpf.map_mut(SOURCES_MAP)
                        .ok_or(FloodError::Missing(SOURCES_MAP))?,
                )?;
                for (i, a) in list.iter().enumerate() {
                    map.set(i as u32, u32::from_ne_bytes(a.octets()), 0)?;
                }
                cfg.mode = MODE_LIST;
                cfg.list_len = list.len() as u32;
            }
            Sources::Random(net) => {
                cfg.mode = MODE_RANDOM;
                cfg.base = u32::from_ne_bytes(net.network().octets());
                cfg.host_mask = u32::from_ne_bytes(net.hostmask().octets());
            }
        }
        let mut map: Array<_, FloodConfig> = Array::try_from(
            ebpf.map_mut(CONFIG_MAP)
                .ok_or(FloodError::Missing(CONFIG_MAP))?,
        )?;
        map.set(0, cfg, 0)?;
        Ok(Self {
            ebpf,
            template: spec.template(),
            spec,
        })
    }

    /// Send until the frame budget or the duration is spent, or `stop` is set.
    pub fn run(&mut self, stop: &AtomicBool) -> Result<FloodOutcome, FloodError> {
        let program: &mut Xdp = self
            .ebpf
            .program_mut(PROGRAM)
            .ok_or(FloodError::Missing(PROGRAM))?
            .try_into()?;
        let started = Instant::now();
        let mut out = FloodOutcome::default();
        while out.frames < self.spec.max_frames
            && started.elapsed() < self.spec.max_duration
            && !stop.load(Ordering::Relaxed)
        {
            let n = (self.spec.max_frames - out.frames).min(u64::from(self.spec.per_call)) as u32;
            program.test_run(TestRunOptions {
                data_in: Some(&self.template),
                repeat: n,
                attrs: TestRunAttrs::new().xdp_live_frames(self.spec.batch),
                ..Default::default()
            })?;
            out.frames += u64::from(n);
            out.calls += 1;
        }
        out.secs = started.elapsed().as_secs_f64();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::checksum;

    /// The template is a well-formed SYN: IPv4 header checksum verifies.
    #[test]
    fn template_checksums() {
        let spec = FloodSpec::new(
            Sources::Random("100.64.0.0/10".parse().expect("prefix")),
            [2, 0, 0, 0, 0, 9],
            Ipv4Addr::new(198, 18, 0, 1),
            80,
            1,
            Duration::from_secs(1),
        );
        let t = spec.template();
        assert_eq!(t.len(), 54);
        assert_eq!(&t[..6], &[2, 0, 0, 0, 0, 9]);
        assert_eq!(checksum(&[&t[14..34]]), 0);
        assert_eq!(&t[26..30], &[100, 64, 0, 0]);
        assert_eq!(&t[30..34], &[198, 18, 0, 1]);
    }
}
