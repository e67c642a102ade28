//! Well-behaved clients in the `legit` namespace, and what they experienced.
//!
//! - [`Load`]: paced HTTP/1.0 requests for the default page, one new connection each, from
//!   several client addresses at a fixed rate per address (open loop: a slow answer does not
//!   delay the next request, so a flood cannot hide by slowing the client down). A request
//!   succeeds when the whole `200 OK` response arrives within [`LoadSpec::timeout`]; its
//!   latency runs from `connect()` to the end of the response.
//! - [`ab`]: ApacheBench, for the heavy client of scenario 4.
//! - [`hold_connections`]: keep-alive connections held open, for scenario 7.

use std::{
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpSocket,
};

use super::{E2eError, cpus};
use crate::netns::Netns;

#[derive(Clone, Debug)]
pub struct LoadSpec {
    pub sources: Vec<Ipv4Addr>,
    /// Requests per second from each source.
    pub per_source_rate: u32,
    /// Longest the load runs (it can be stopped earlier).
    pub duration: Duration,
    /// A request not answered completely within this is a failure.
    pub timeout: Duration,
    pub server: SocketAddrV4,
}

/// What the clients saw.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LegitStats {
    /// Requests the clients meant to start (rate x sources x the time they ran).
    pub planned: u64,
    /// Requests started: fewer than planned when the clients could not keep their pace
    /// (the machine was busy with something else).
    pub sent: u64,
    /// Requests answered with a complete 200 within the timeout.
    pub ok: u64,
    /// Latency of every request, failures counted as never answered (`None`): percentiles
    /// over all requests, so failures cannot flatter them.
    pub latencies: Vec<Option<Duration>>,
    /// When each request of `latencies` started, from the start of the load.
    pub started_at: Vec<Duration>,
}

impl LegitStats {
    pub fn success(&self) -> f64 {
        if self.sent == 0 {
            return 0.0;
        }
        self.ok as f64 / self.sent as f64
    }

    /// Whether the clients started (nearly) every request they meant to: when they did not,
    /// something else had the CPU and latency figures say as much about that as about the
    /// server.
    pub fn kept_pace(&self) -> bool {
        self.planned == 0 || self.sent as f64 >= 0.97 * self.planned as f64
    }

    /// Nearest-rank percentile (`p` in 0..=100) over all requests; `Some(None)` when it
    /// falls on a failed request, `None` without requests.
    pub fn percentile(&self, p: f64) -> Option<Option<Duration>> {
        percentile(&self.latencies, p)
    }

    /// `start_ms,latency_ms` per request (latency empty for a failure), by start time: the
    /// evidence behind the percentiles, kept in the run's directory.
    pub fn csv(&self) -> String {
        let mut rows: Vec<(Duration, Option<Duration>)> = self
            .started_at
            .iter()
            .copied()
            .zip(self.latencies.iter().copied())
            .collect();
        rows.sort_by_key(|r| r.0);
        let mut out = String::from("start_ms,latency_ms\n");
        for (at, latency) in rows {
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            out.push_str(&format!(
                "{:.3},{}\n",
                ms(at),
                latency.map_or(String::new(), |l| format!("{:.3}", ms(l)))
            ));
        }
        out
    }
}

/// Nearest-rank percentile; failures (`None`) sort after every latency.
pub fn percentile(samples: &[Option<Duration>], p: f64) -> Option<Option<Duration>> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(|a, b| match (a, b) {
        (Some(a), Some(b)) => a.cmp(b),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// A running load; [`Load::join`] waits for its end and the figures.
pub struct Load {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Result<LegitStats, E2eError>>>,
}

impl Load {
    /// Starts the clients in a thread that enters `ns`.
    pub fn start(ns: &Netns, spec: LoadSpec) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let ns_name = ns.name().to_string();
        let path = format!("/var/run/netns/{ns_name}");
        let handle = std::thread::spawn(move || {
            enter(&path, &ns_name)?;
            cpus::pin_current_thread(&cpus::outside())
                .map_err(E2eError::io("pinning the clients to the outside's CPU"))?;
            // The clients stand for other machines: the flood generator sharing their CPU
            // must not delay them (SCHED_FIFO, lowest real-time priority; they sleep on
            // timers and sockets, never spin).
            cpus::set_fifo().map_err(E2eError::io("making the clients SCHED_FIFO"))?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(E2eError::io("starting the client runtime"))?;
            Ok(rt.block_on(run_load(spec, flag)))
        });
        Load {
            stop,
            handle: Some(handle),
        }
    }

    /// Ends the load early (requests in flight still finish or time out).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    pub fn join(mut self) -> Result<LegitStats, E2eError> {
        self.handle
            .take()
            .ok_or_else(|| E2eError::Setup("the client thread was already joined".into()))?
            .join()
            .map_err(|_| E2eError::Setup("the client thread panicked".into()))?
    }
}

impl Drop for Load {
    /// A load abandoned on an error path stops at once instead of running out its time.
    fn drop(&mut self) {
        self.stop();
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// Moves the calling thread into the named network namespace (threads do not go back).
pub(super) fn enter_netns(name: &str) -> Result<(), E2eError> {
    enter(&format!("/var/run/netns/{name}"), name)
}

fn enter(path: &str, name: &str) -> Result<(), E2eError> {
    let f = std::fs::File::open(path).map_err(E2eError::io(format!("opening {path}")))?;
    // SAFETY: a valid namespace fd; CLONE_NEWNET affects only the calling thread.
    if unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) } != 0 {
        return Err(E2eError::Io {
            what: format!("entering namespace {name}"),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

async fn run_load(spec: LoadSpec, stop: Arc<AtomicBool>) -> LegitStats {
    let mut tasks = tokio::task::JoinSet::new();
    let period = Duration::from_secs_f64(1.0 / f64::from(spec.per_source_rate.max(1)));
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < spec.duration && !stop.load(Ordering::Relaxed) {
        interval.tick().await;
        for (i, src) in spec.sources.iter().enumerate() {
            // Spread the sources over the period instead of sending them in one burst.
            let offset = period.mul_f64(i as f64 / spec.sources.len() as f64);
            let (src, dst, timeout) = (*src, spec.server, spec.timeout);
            tasks.spawn(async move {
                tokio::time::sleep(offset).await;
                let at = start.elapsed();
                (at, fetch(src, dst, timeout).await)
            });
            sent += 1;
        }
    }
    let mut stats = LegitStats {
        sent,
        planned: (start.elapsed().min(spec.duration).as_secs_f64()
            * f64::from(spec.per_source_rate)
            * spec.sources.len() as f64)
            .round() as u64,
        ..LegitStats::default()
    };
    while let Some(result) = tasks.join_next().await {
        let (at, latency) = result.unwrap_or_default();
        if latency.is_some() {
            stats.ok += 1;
        }
        stats.latencies.push(latency);
        stats.started_at.push(at);
    }
    stats
}

const REQUEST: &[u8] = b"GET / HTTP/1.0\r\nHost: 198.18.0.1\r\nUser-Agent: xdp-guard-e2e\r\n\r\n";

/// One request on a new connection from `src`; its latency, or `None` on any failure.
async fn fetch(src: Ipv4Addr, dst: SocketAddrV4, timeout: Duration) -> Option<Duration> {
    let start = Instant::now();
    let attempt = async {
        let socket = TcpSocket::new_v4().ok()?;
        socket.bind(SocketAddr::new(src.into(), 0)).ok()?;
        let mut stream = socket.connect(dst.into()).await.ok()?;
        stream.write_all(REQUEST).await.ok()?;
        let mut response = Vec::with_capacity(16 * 1024);
        stream.read_to_end(&mut response).await.ok()?;
        complete_ok(&response).then_some(())
    };
    tokio::time::timeout(timeout, attempt).await.ok()??;
    Some(start.elapsed())
}

/// A `200` whose body is as long as its `Content-Length` says.
fn complete_ok(response: &[u8]) -> bool {
    let Some(split) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&response[..split]);
    let body_len = response.len() - split - 4;
    let mut lines = head.lines();
    let status_ok = lines
        .next()
        .is_some_and(|l| l.split_whitespace().nth(1) == Some("200"));
    let length = lines.find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())?
    });
    status_ok && length.is_none_or(|n| n == body_len)
}

/// What `ab` reported.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AbStats {
    pub requests: u64,
    pub complete: u64,
    pub failed: u64,
    pub non_2xx: u64,
    pub per_sec: f64,
    /// ab's "Percentage of the requests served within a certain time", in ms.
    pub p50_ms: Option<u64>,
    pub p99_ms: Option<u64>,
}

impl AbStats {
    pub fn ok(&self) -> u64 {
        self.complete.saturating_sub(self.failed + self.non_2xx)
    }
}

/// `ab -c concurrency -n requests` without keep-alive (a new connection per request), from
/// the `legit` namespace's primary address, bounded by `limit` seconds.
pub fn ab(
    ns: &Netns,
    url: &str,
    concurrency: u32,
    requests: u32,
    limit: Duration,
) -> Result<AbStats, E2eError> {
    let mut cmd = ns.command("timeout");
    cmd.args(["-k", "3", &format!("{}", limit.as_secs().max(1))])
        .args(["taskset", "-c", &cpus::list(&cpus::outside())])
        .args(["ab", "-q", "-s", "5", "-r"])
        .args(["-c", &concurrency.to_string(), "-n", &requests.to_string()])
        .arg(url);
    let line = super::display(&cmd);
    let out = cmd.output().map_err(|source| E2eError::Spawn {
        cmd: line.clone(),
        source,
    })?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut stats = parse_ab(&text).ok_or_else(|| E2eError::Parse {
        what: format!("the output of `{line}`"),
        reason: format!(
            "{}{}",
            text.chars().take(400).collect::<String>(),
            String::from_utf8_lossy(&out.stderr)
        ),
    })?;
    stats.requests = u64::from(requests);
    Ok(stats)
}

pub fn parse_ab(text: &str) -> Option<AbStats> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
    };
    let percentile = |p: &str| {
        text.lines()
            .find_map(|l| l.trim_start().strip_prefix(p))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    Some(AbStats {
        requests: 0,
        complete: field("Complete requests:")?.parse().ok()?,
        failed: field("Failed requests:")?.parse().ok()?,
        non_2xx: field("Non-2xx responses:")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        per_sec: field("Requests per second:")?.parse().ok()?,
        p50_ms: percentile("50%"),
        p99_ms: percentile("99%"),
    })
}

/// Keep-alive connections held open from the given addresses (`per_source` each) until
/// dropped. Each has made one request, so Apache keeps it in its keep-alive state.
pub struct HeldConnections {
    release: Option<mpsc::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

pub fn hold_connections(
    ns: &Netns,
    sources: &[Ipv4Addr],
    per_source: usize,
    server: SocketAddrV4,
) -> Result<HeldConnections, E2eError> {
    let (release, released) = mpsc::channel::<()>();
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), E2eError>>();
    let ns_name = ns.name().to_string();
    let sources = sources.to_vec();
    let handle = std::thread::spawn(move || {
        let opened = (|| {
            enter(&format!("/var/run/netns/{ns_name}"), &ns_name)?;
            let mut streams = Vec::new();
            for src in &sources {
                for _ in 0..per_source {
                    streams.push(keep_alive(*src, server)?);
                }
            }
            Ok(streams)
        })();
        match opened {
            Ok(streams) => {
                let _ = ready_tx.send(Ok(()));
                // Hold until released (the sender dropped or a message).
                let _ = released.recv();
                drop(streams);
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e));
            }
        }
    });
    ready_rx
        .recv()
        .map_err(|_| E2eError::Setup("the connection holder thread died".into()))??;
    Ok(HeldConnections {
        release: Some(release),
        handle: Some(handle),
    })
}

impl Drop for HeldConnections {
    fn drop(&mut self) {
        drop(self.release.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A connection from `src` that has made one HTTP/1.1 request and read its answer.
fn keep_alive(src: Ipv4Addr, server: SocketAddrV4) -> Result<TcpStream, E2eError> {
    use std::io::{Read as _, Write as _};
    let err = E2eError::io(format!("a keep-alive connection from {src}"));
    let socket = bound_socket(src).map_err(E2eError::io(format!("binding {src}")))?;
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: server.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*server.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: a valid socket and a sockaddr_in of the right length.
    let rc = unsafe {
        libc::connect(
            std::os::fd::AsRawFd::as_raw_fd(&socket),
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    let mut stream = TcpStream::from(socket);
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(E2eError::io("setting a read timeout"))?;
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {}\r\nUser-Agent: xdp-guard-e2e\r\n\r\n",
        server.ip()
    );
    stream
        .write_all(request.as_bytes())
        .map_err(E2eError::io(format!("writing from {src}")))?;
    // Read the headers, then exactly Content-Length bytes of body.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream
            .read(&mut chunk)
            .map_err(E2eError::io(format!("reading at {src}")))?;
        if n == 0 {
            return Err(E2eError::Setup(format!(
                "Apache closed the keep-alive connection from {src}"
            )));
        }
        buf.extend_from_slice(&chunk[..n]);
        if complete_ok(&buf) {
            return Ok(stream);
        }
    }
}

/// A TCP socket bound to `src` (port chosen by the kernel).
fn bound_socket(src: Ipv4Addr) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd as _;
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd we own.
    let socket = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(src).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: a valid socket and a sockaddr_in of the right length.
    let rc = unsafe {
        libc::bind(
            fd,
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Option<Duration> {
        Some(Duration::from_millis(n))
    }

    #[test]
    fn percentiles_count_failures_as_slowest() {
        let mut samples: Vec<Option<Duration>> = (1..=100).map(ms).collect();
        assert_eq!(percentile(&samples, 50.0), Some(ms(50)));
        assert_eq!(percentile(&samples, 99.0), Some(ms(99)));
        assert_eq!(percentile(&samples, 100.0), Some(ms(100)));
        samples[0] = None;
        samples[1] = None;
        assert_eq!(
            percentile(&samples, 99.0),
            Some(None),
            "2% failed: p99 is a failure"
        );
        assert_eq!(percentile(&samples, 50.0), Some(ms(52)));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[ms(7)], 99.0), Some(ms(7)));
    }

    #[test]
    fn success_rate() {
        let s = LegitStats {
            sent: 200,
            ok: 198,
            ..LegitStats::default()
        };
        assert!((s.success() - 0.99).abs() < 1e-9);
        assert_eq!(LegitStats::default().success(), 0.0);
    }

    #[test]
    fn complete_responses() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: x\r\n\r\nhello";
        assert!(complete_ok(ok));
        assert!(!complete_ok(&ok[..ok.len() - 1]), "short body");
        assert!(!complete_ok(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
        ));
        assert!(
            !complete_ok(b"HTTP/1.1 200 OK\r\nContent-Le"),
            "no end of headers"
        );
        assert!(complete_ok(b"HTTP/1.0 200 OK\r\n\r\nbody until close"));
    }

    #[test]
    fn ab_output() {
        let text = "Concurrency Level:      50\nTime taken for tests:   2.823 seconds\n\
            Complete requests:      20000\nFailed requests:        3\n\
            Non-2xx responses:      2\nRequests per second:    7085.72 [#/sec] (mean)\n\
            Percentage of the requests served within a certain time (ms)\n  50%      4\n  66%      5\n\
            \x20 99%     42\n 100%   1031 (longest request)\n";
        let s = parse_ab(text).expect("parses");
        assert_eq!((s.complete, s.failed, s.non_2xx), (20000, 3, 2));
        assert_eq!(s.ok(), 19995);
        assert!((s.per_sec - 7085.72).abs() < 1e-6);
        assert_eq!((s.p50_ms, s.p99_ms), (Some(4), Some(42)));
        assert_eq!(parse_ab("apr_socket_recv: Connection refused"), None);
    }
}
