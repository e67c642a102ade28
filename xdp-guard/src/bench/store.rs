//! Durable changes with a large blocklist: what one `Guard::block` (the API's `POST
//! /v1/blocklist`) costs with 100,000 blocks already saved, against the same call with none
//! saved, and against rewriting the whole state once (what every change cost before the
//! journal); and one `Guard::block_many` of 10,000 prefixes (`POST /v1/blocklist/batch`). The
//! guard runs on [`MemoryDataplane`], so the figures are the controller's and the store's.

use std::{
    net::Ipv4Addr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use super::Spread;
use crate::{
    controller::{Guard, MemoryDataplane, Settings},
    model::{BlockRecord, Origin},
    store::{State, Store},
};

#[derive(Clone, Debug)]
pub struct Options {
    /// Blocks saved before the measured calls.
    pub existing: u32,
    /// Measured calls per case.
    pub calls: u32,
    /// Whole-state rewrites timed, and batches.
    pub rewrites: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            existing: 100_000,
            calls: 2_000,
            rewrites: 5,
        }
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    pub existing: u32,
    pub calls: u32,
    /// Milliseconds per block call with nothing saved before.
    pub empty_ms: Spread,
    pub empty_p99_ms: f64,
    /// Milliseconds per block call with `existing` blocks saved.
    pub full_ms: Spread,
    pub full_p99_ms: f64,
    /// Milliseconds per `Guard::block_many` of [`BATCH`] new prefixes with `existing` saved.
    pub batch_ms: Spread,
    pub batch_runs: usize,
    /// Milliseconds to write the whole state of `existing` blocks as one snapshot.
    pub rewrite_ms: Spread,
    pub rewrite_runs: usize,
    pub snapshot_bytes: u64,
}

/// A temp directory for one case, removed on drop.
struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn dir(tag: &str) -> std::io::Result<Dir> {
    let d = std::env::temp_dir().join(format!("xg-bench-store-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d)?;
    Ok(Dir(d))
}

fn record(i: u32) -> BlockRecord {
    BlockRecord {
        cidr: ipnet::IpNet::from(ipnet::Ipv4Net::from(Ipv4Addr::from(0x0b00_0000 + i))),
        expires_at_ms: None,
        reason: "feed".into(),
        origin: Origin::Manual,
        offences: 0,
        created_at_ms: 1,
    }
}

/// A guard started on `state` (saved first, as a snapshot) in a fresh directory, and `n`
/// calls of `call` on it: the milliseconds of each.
fn timed_on(
    tag: &str,
    state: &State,
    n: u32,
    mut call: impl FnMut(&Guard, u32) -> Result<(), String>,
) -> Result<Vec<f64>, String> {
    let d = dir(tag).map_err(|e| e.to_string())?;
    let mut store = Store::new(d.0.join("state.json"));
    store.save(state).map_err(|e| e.to_string())?;
    let guard = Guard::new(
        Box::new(Arc::new(Mutex::new(MemoryDataplane::new()))),
        store,
        Settings::for_tests(&d.0),
        "native",
    )
    .map_err(|e| e.to_string())?;
    let mut ms = Vec::with_capacity(n as usize);
    for i in 0..n {
        let t = Instant::now();
        call(&guard, i)?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(ms)
}

const TTL: Option<Duration> = Some(Duration::from_secs(3600));

/// `calls` blocks of new /32s (from 12.0.0.0) through a guard started on `state`; the
/// milliseconds of each call.
fn block_calls(tag: &str, state: &State, calls: u32) -> Result<Vec<f64>, String> {
    timed_on(tag, state, calls, |guard, i| {
        let cidr = Ipv4Addr::from(0x0c00_0000 + i).to_string();
        guard
            .block(&cidr, TTL, None)
            .map(drop)
            .map_err(|e| format!("blocking {cidr}: {e}"))
    })
}

/// Prefixes per measured batch: the most one request takes.
pub const BATCH: u32 = crate::controller::MAX_BATCH as u32;

/// `runs` batches of [`BATCH`] new /32s (from 13.0.0.0) through a guard started on `state`;
/// the milliseconds of each. Only the call is timed, not building the list.
fn batch_calls(state: &State, runs: u32) -> Result<Vec<f64>, String> {
    let batches: Vec<Vec<String>> = (0..runs)
        .map(|run| {
            (0..BATCH)
                .map(|i| Ipv4Addr::from(0x0d00_0000 + run * BATCH + i).to_string())
                .collect()
        })
        .collect();
    timed_on("batch", state, runs, |guard, run| {
        guard
            .block_many(&batches[run as usize], TTL, None)
            .map(drop)
            .map_err(|e| format!("batch {run}: {e}"))
    })
}

fn p99(samples: &mut [f64]) -> f64 {
    samples.sort_by(|a, b| a.total_cmp(b));
    samples
        .get((samples.len().saturating_sub(1) as f64 * 0.99).round() as usize)
        .copied()
        .unwrap_or(f64::NAN)
}

pub fn run(opts: &Options) -> Result<Report, String> {
    let full = State {
        blocks: (0..opts.existing).map(record).collect(),
        ..State::default()
    };
    let mut empty = block_calls("empty", &State::default(), opts.calls)?;
    let mut with = block_calls("full", &full, opts.calls)?;
    let mut batch = batch_calls(&full, opts.rewrites as u32)?;

    let d = dir("rewrite").map_err(|e| e.to_string())?;
    let mut store = Store::new(d.0.join("state.json"));
    let mut rewrite = Vec::new();
    for _ in 0..opts.rewrites {
        let t = Instant::now();
        store.save(&full).map_err(|e| e.to_string())?;
        rewrite.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let snapshot_bytes = std::fs::metadata(store.path())
        .map(|m| m.len())
        .unwrap_or(0);
    Ok(Report {
        existing: opts.existing,
        calls: opts.calls,
        empty_p99_ms: p99(&mut empty),
        empty_ms: Spread::of(&mut empty),
        full_p99_ms: p99(&mut with),
        full_ms: Spread::of(&mut with),
        batch_ms: Spread::of(&mut batch),
        batch_runs: opts.rewrites,
        rewrite_ms: Spread::of(&mut rewrite),
        rewrite_runs: opts.rewrites,
        snapshot_bytes,
    })
}
