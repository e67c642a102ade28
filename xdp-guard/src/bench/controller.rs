//! The controller's read of the per-source counters: 1,000,000 sources in the LRU per-CPU
//! map, read and summed over CPUs with `BPF_MAP_LOOKUP_BATCH` (what every controller tick
//! does) versus key by key (`get_next_key` + lookup per entry).
//!
//! The map is filled by the program itself: one BPF_PROG_TEST_RUN per distinct source with
//! admission at the first SYN and no flood-guard cap, so every entry is a real one.

use std::{
    path::PathBuf,
    sync::{
        Barrier,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use aya::{
    maps::MapData,
    programs::{TestRun, TestRunOptions},
};
use xdp_guard_common::{
    config::{GuardConfig, RateParams},
    maps::{self, SourceKey, SynCounter},
};

use super::{Spread, datapath::BenchError};
use crate::{
    bpf::{Datapath, LoadOptions, SourceTotals, batch, sum_source},
    controller::{Guard, Settings},
    frames::Frame,
    store::Store,
};

/// A bpffs directory of this process for the map pins, removed on drop (the raw read below
/// needs the per-source map's fd, which `Datapath` keeps to itself).
struct PinDir(PathBuf);

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The same `BPF_MAP_LOOKUP_BATCH` walk as `Datapath::sources_batched`, summed straight into
/// one vector preallocated for 2^20 entries. Returns the totals and the time spent inside the
/// syscalls.
fn raw_batched(
    map: &MapData,
    ncpus: usize,
    batch: u32,
) -> std::io::Result<(Vec<(SourceKey, SourceTotals)>, Duration)> {
    let mut out = Vec::with_capacity(1 << 20);
    let in_kernel = batch::walk_percpu(map, ncpus, batch, |k: &SourceKey, v: &[SynCounter]| {
        out.push((*k, sum_source(v.iter())))
    })?;
    Ok((out, in_kernel))
}

#[derive(Clone, Debug)]
pub struct Options {
    pub sources: u32,
    /// Capacity of the per-source map (above `sources`: an LRU map evicts before it is full).
    pub map_entries: u32,
    pub batched_runs: usize,
    pub key_by_key_runs: usize,
    /// Seconds of ticking per map size and way of reading (see [`TickWait`]).
    pub tick_secs: f64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            sources: 1_000_000,
            map_entries: 1_048_576,
            batched_runs: 7,
            key_by_key_runs: 3,
            tick_secs: 4.0,
        }
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    pub machine: String,
    pub possible_cpus: usize,
    pub requested: u32,
    /// Entries found by the reads (sources the LRU kept).
    pub entries: usize,
    pub fill_secs: f64,
    /// Milliseconds per full read and sum.
    pub batched_ms: Spread,
    pub batched_runs: usize,
    /// The same batched walk without an allocation per entry (see [`raw_batched`]): whole
    /// read and sum, and the part of it spent inside the syscalls.
    pub raw_batched_ms: Spread,
    pub raw_in_kernel_ms: Spread,
    pub key_by_key_ms: Spread,
    pub key_by_key_runs: usize,
    /// API calls during controller ticks: at this map and at the default 65,536 entries, with
    /// the counters read outside and under the guard's lock.
    pub ticks: Vec<TickWait>,
}

/// The `n`-th distinct source: 10.0.0.0/8 and up, never a special address.
fn source(n: u32) -> [u8; 4] {
    (0x0a00_0000u32 + n).to_be_bytes()
}

pub fn run(opts: &Options) -> Result<Report, BenchError> {
    let pins = PinDir(PathBuf::from(format!(
        "/sys/fs/bpf/xg-bench-{}",
        std::process::id()
    )));
    std::fs::create_dir_all(&pins.0)
        .map_err(|e| BenchError::Baseline(format!("{}: {e}", pins.0.display())))?;
    let mut dp = Datapath::load(&LoadOptions {
        syn_counters_max_entries: opts.map_entries,
        pin_maps: Some(pins.0.clone()),
        ..LoadOptions::default()
    })?;
    let counters = MapData::from_pin(pins.0.join(maps::SYN_COUNTERS))
        .map_err(|e| BenchError::Bpf(e.into()))?;
    let started = Instant::now();
    fill(&mut dp, opts.sources)?;
    let fill_secs = started.elapsed().as_secs_f64();

    let mut entries = 0;
    let mut batched = Vec::new();
    for _ in 0..opts.batched_runs {
        let t = Instant::now();
        let all = dp.sources_batched()?;
        batched.push(t.elapsed().as_secs_f64() * 1e3);
        entries = all.len();
    }
    let ncpus = aya::util::nr_cpus().map_err(|(_, e)| BenchError::Baseline(e.to_string()))?;
    let (mut raw, mut raw_kernel) = (Vec::new(), Vec::new());
    for _ in 0..opts.batched_runs {
        let t = Instant::now();
        let (all, in_kernel) = raw_batched(&counters, ncpus, 4096)
            .map_err(|e| BenchError::Baseline(format!("BPF_MAP_LOOKUP_BATCH: {e}")))?;
        raw.push(t.elapsed().as_secs_f64() * 1e3);
        raw_kernel.push(in_kernel.as_secs_f64() * 1e3);
        entries = entries.max(all.len());
    }
    let mut key_by_key = Vec::new();
    for _ in 0..opts.key_by_key_runs {
        let t = Instant::now();
        let all = dp.sources()?;
        key_by_key.push(t.elapsed().as_secs_f64() * 1e3);
        entries = entries.max(all.len());
    }
    drop(counters);

    let mut ticks = tick_waits(dp, entries, opts.tick_secs)?;
    // The daemon's default map size, 65,536 sources (an LRU evicts before it is full).
    let mut small = Datapath::load(&LoadOptions {
        syn_counters_max_entries: maps::SYN_COUNTERS_MAX_ENTRIES,
        ..LoadOptions::default()
    })?;
    let n = maps::SYN_COUNTERS_MAX_ENTRIES * 15 / 16;
    fill(&mut small, n)?;
    let found = small.sources_batched()?.len();
    ticks.extend(tick_waits(small, found, opts.tick_secs)?);
    Ok(Report {
        machine: super::machine(),
        possible_cpus: ncpus,
        requested: opts.sources,
        entries,
        fill_secs,
        batched_ms: Spread::of(&mut batched),
        batched_runs: opts.batched_runs,
        raw_batched_ms: Spread::of(&mut raw),
        raw_in_kernel_ms: Spread::of(&mut raw_kernel),
        key_by_key_ms: Spread::of(&mut key_by_key),
        key_by_key_runs: opts.key_by_key_runs,
        ticks,
    })
}

/// `n` distinct sources in the per-source map, put there by the program itself (admission
/// at the first SYN, no flood-guard cap).
fn fill(dp: &mut Datapath, n: u32) -> Result<(), BenchError> {
    let base = RateParams {
        syn_rate: 100,
        syn_burst: 200,
        enforce: true,
        ipv6_prefix_len: 64,
    }
    .to_config(0x5eed);
    dp.set_config(GuardConfig {
        sketch_admit: 1,
        guard_max_new: u32::MAX,
        ..base
    })?;
    dp.set_ports(&[])?;
    let mut frame = Frame::syn4(std::net::Ipv4Addr::new(10, 0, 0, 0), 80).bytes();
    let prog = dp.program()?;
    for i in 0..n {
        // The program does not check the IPv4 checksum: only the source changes.
        frame[26..30].copy_from_slice(&source(i));
        prog.test_run(TestRunOptions {
            data_in: Some(&frame),
            repeat: 1,
            ..Default::default()
        })?;
    }
    Ok(())
}

/// How long API calls wait for the controller, for one map size and one way of ticking.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TickWait {
    pub entries: usize,
    /// `true`: the tick reads and aggregates the counters before it takes the guard's lock
    /// (the daemon's way); `false`: it reads them under that lock (the baseline).
    pub reads_outside_lock: bool,
    pub ticks: usize,
    pub tick_ms: Spread,
    /// Of each tick, the time it held the guard's lock.
    pub locked_ms: Spread,
    /// Calls completed: one every millisecond from another CPU, `Guard::blocklist`, what
    /// `GET /v1/blocks` does (the guard's lock and a copy of the list).
    pub calls: usize,
    /// Calls that took over a millisecond (each waited for a tick).
    pub slow_calls: usize,
    pub longest_call_ms: f64,
}

/// A [`Guard`] over `dp`, ticking on the daemon's 250 ms schedule for `secs` seconds on this
/// thread, while a thread on CPU 0 calls it once a millisecond; then the same with the
/// counters read under the lock.
fn tick_waits(dp: Datapath, entries: usize, secs: f64) -> Result<Vec<TickWait>, BenchError> {
    let dir = std::env::temp_dir().join(format!("xg-bench-ticks-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)
        .map_err(|e| BenchError::Baseline(format!("{}: {e}", dir.display())))?;
    let result = (|| {
        let guard = Guard::new(
            Box::new(dp),
            Store::new(dir.join("state.json")),
            Settings::for_tests(&dir),
            "native",
        )
        .map_err(|e| BenchError::Baseline(format!("controller: {e}")))?;
        let outside = tick_wait(&guard, entries, true, secs)?;
        let guard = guard.without_reader();
        let under = tick_wait(&guard, entries, false, secs)?;
        Ok(vec![outside, under])
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn tick_wait(
    guard: &Guard,
    entries: usize,
    reads_outside_lock: bool,
    secs: f64,
) -> Result<TickWait, BenchError> {
    const TICK: Duration = Duration::from_millis(250);
    // The first tick creates a track per source; the daemon is past that.
    guard.tick();
    let stop = AtomicBool::new(false);
    // The caller starts on this (SCHED_FIFO) thread's CPU: it moves to CPU 0 before the
    // ticks can keep it from running.
    let moved = Barrier::new(2);
    let (mut tick_ms, mut locked_ms) = (Vec::new(), Vec::new());
    let waits = std::thread::scope(|s| {
        let caller = s.spawn(|| {
            let _ = super::pin_to_cpu(0);
            moved.wait();
            let mut waits = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                std::hint::black_box(guard.blocklist());
                waits.push(t.elapsed().as_secs_f64() * 1e3);
                std::thread::sleep(Duration::from_millis(1));
            }
            waits
        });
        moved.wait();
        let started = Instant::now();
        let mut next = started;
        while started.elapsed().as_secs_f64() < secs {
            let report = guard.tick();
            tick_ms.push(report.duration.as_secs_f64() * 1e3);
            locked_ms.push(report.locked.as_secs_f64() * 1e3);
            next += TICK;
            if let Some(rest) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(rest);
            }
        }
        stop.store(true, Ordering::Relaxed);
        caller.join()
    })
    .map_err(|_| BenchError::Baseline("the API-call thread panicked".into()))?;
    if waits.is_empty() {
        return Err(BenchError::Baseline(
            "no API call completed during the ticks".into(),
        ));
    }
    Ok(TickWait {
        entries,
        reads_outside_lock,
        ticks: tick_ms.len(),
        tick_ms: Spread::of(&mut tick_ms),
        locked_ms: Spread::of(&mut locked_ms),
        calls: waits.len(),
        slow_calls: waits.iter().filter(|ms| **ms > 1.0).count(),
        longest_call_ms: waits.iter().copied().fold(0.0, f64::max),
    })
}
