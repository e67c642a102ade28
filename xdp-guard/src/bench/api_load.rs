//! API latency under load: the real router ([`crate::api::router`]) over a [`Guard`] on an
//! in-memory dataplane, served on loopback port 0, driven by `wrk` with the bearer token.
//! [`ApiServer`] also serves `xdp-guard conns` in the socket benchmark.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    process::Command,
    sync::{Arc, Mutex},
};

use super::{Spread, veth::BedError};
use crate::{
    api::{self, ApiSettings, ApiState},
    controller::{Guard, MemoryDataplane, Settings},
    store::Store,
};

const TOKEN: &str = "xg-bench-token-0123456789abcdef0123456789abcdef";

/// The API on `127.0.0.1:<port>` of the network namespace of the thread that starts it (its
/// runtime threads are created from there); stopped and cleaned up on drop.
pub struct ApiServer {
    pub addr: SocketAddr,
    pub token_file: PathBuf,
    dir: PathBuf,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn err(what: &str) -> impl FnOnce(String) -> BedError + '_ {
    move |text| BedError::Parse {
        what: what.into(),
        text,
    }
}

impl ApiServer {
    pub fn start(tag: &str) -> Result<Self, BedError> {
        let dir = std::env::temp_dir().join(format!("xg-bench-api-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| err("temp dir")(e.to_string()))?;
        let token_file = dir.join("token");
        std::fs::write(&token_file, TOKEN).map_err(|e| err("token file")(e.to_string()))?;
        let settings = Settings::for_tests(&dir);
        let sysctl_root = settings.sysctl_root.clone();
        let guard = Guard::new(
            Box::new(Arc::new(Mutex::new(MemoryDataplane::new()))),
            Store::new(dir.join("state.json")),
            settings,
            "native",
        )
        .map_err(|e| err("controller")(e.to_string()))?;
        let state = ApiState::new(
            Arc::new(guard),
            TOKEN.into(),
            ApiSettings {
                max_body_bytes: 16_384,
                writes_per_minute: 1_000_000,
                sysctl_root,
            },
        );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| err("tokio runtime")(e.to_string()))?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
            .map_err(|e| err("binding the API")(e.to_string()))?;
        let addr = listener
            .local_addr()
            .map_err(|e| err("API address")(e.to_string()))?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let _ = runtime.block_on(api::serve(listener, api::router(state), async move {
                let _ = rx.await;
            }));
        });
        Ok(Self {
            addr,
            token_file,
            dir,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    pub fn token(&self) -> &'static str {
        TOKEN
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[derive(Clone, Debug)]
pub struct Options {
    pub runs: usize,
    pub threads: u32,
    pub connections: u32,
    pub secs: u32,
    pub path: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            runs: 3,
            threads: 2,
            connections: 32,
            secs: 5,
            path: "/v1/stats".into(),
        }
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    pub machine: String,
    pub command: String,
    pub runs: usize,
    /// Microseconds, each over the runs.
    pub p50_us: Spread,
    pub p75_us: Spread,
    pub p90_us: Spread,
    pub p99_us: Spread,
    pub requests_per_sec: Spread,
    /// Non-2xx answers and socket errors wrk reported (should be 0).
    pub errors: u64,
}

/// `wrk` duration text (`123.45us`, `1.20ms`, `2.00s`) in microseconds.
fn micros(s: &str) -> Option<f64> {
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic())?);
    let v: f64 = num.parse().ok()?;
    Some(match unit {
        "us" => v,
        "ms" => v * 1e3,
        "s" => v * 1e6,
        "m" => v * 60e6,
        _ => return None,
    })
}

/// (p50, p75, p90, p99 in µs, requests/s, errors) from `wrk --latency` output.
fn parse_wrk(out: &str) -> Option<([f64; 4], f64, u64)> {
    let mut pct = [None; 4];
    let mut rps = None;
    let mut errors = 0;
    for line in out.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            [p, v] if p.ends_with('%') => {
                let i = match *p {
                    "50%" => 0,
                    "75%" => 1,
                    "90%" => 2,
                    "99%" => 3,
                    _ => continue,
                };
                pct[i] = micros(v);
            }
            ["Requests/sec:", v] => rps = v.parse().ok(),
            ["Non-2xx", "or", "3xx", "responses:", n] => errors += n.parse::<u64>().ok()?,
            ["Socket", "errors:", rest @ ..] => {
                for n in rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                {
                    errors += n;
                }
            }
            _ => {}
        }
    }
    Some(([pct[0]?, pct[1]?, pct[2]?, pct[3]?], rps?, errors))
}

pub fn run(opts: &Options) -> Result<Report, BedError> {
    let server = ApiServer::start("wrk")?;
    let url = format!("http://{}{}", server.addr, opts.path);
    let args = [
        format!("-t{}", opts.threads),
        format!("-c{}", opts.connections),
        format!("-d{}s", opts.secs),
        "--latency".into(),
        "-H".into(),
        format!("Authorization: Bearer {}", server.token()),
        url.clone(),
    ];
    let mut samples: [Vec<f64>; 5] = Default::default();
    let mut errors = 0;
    for _ in 0..opts.runs {
        let out = Command::new("wrk")
            .args(&args)
            .output()
            .map_err(|e| err("running wrk")(e.to_string()))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (p, rps, e) = parse_wrk(&text).ok_or_else(|| err("wrk output")(text.clone()))?;
        for (s, v) in samples.iter_mut().zip(p.iter().chain([rps].iter())) {
            s.push(*v);
        }
        errors += e;
    }
    let [p50, p75, p90, p99, rps] = samples;
    let spread = |mut v: Vec<f64>| Spread::of(&mut v);
    Ok(Report {
        machine: super::machine(),
        command: format!(
            "wrk -t{} -c{} -d{}s --latency -H 'Authorization: Bearer <token>' http://127.0.0.1:<port>{}",
            opts.threads, opts.connections, opts.secs, opts.path
        ),
        runs: opts.runs,
        p50_us: spread(p50),
        p75_us: spread(p75),
        p90_us: spread(p90),
        p99_us: spread(p99),
        requests_per_sec: spread(rps),
        errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_output() {
        let out = "Running 5s test @ http://127.0.0.1:4000/v1/stats\n  2 threads and 32 connections\n  Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency   310.12us  120.00us   5.01ms   90.00%\n    Req/Sec    50.00k     2.00k   55.00k    70.00%\n  Latency Distribution\n     50%  290.00us\n     75%  350.00us\n     90%  420.00us\n     99%    1.20ms\n  500000 requests in 5.00s, 100.00MB read\n  Socket errors: connect 0, read 2, write 0, timeout 1\nRequests/sec: 100000.00\nTransfer/sec:     20.00MB\n";
        let (p, rps, errors) = parse_wrk(out).expect("parsed");
        assert_eq!(p, [290.0, 350.0, 420.0, 1200.0]);
        assert_eq!(rps, 100_000.0);
        assert_eq!(errors, 3);
    }
}
