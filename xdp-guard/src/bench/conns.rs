//! The memo's pipelines against the project's sock_diag view, on a namespace holding
//! `sockets` established TCP connections to port 80 (plus the listener).
//!
//! A server and a client namespace joined by a veth (both `xg-*`, removed on drop): the
//! clients' ends live in the client namespace, so the server's table holds exactly one socket
//! per connection, like an Apache host's. The server never accepts: with a backlog of 65,535
//! the established connections wait in the listener's accept queue, full sockets in the
//! table, and this process holds one descriptor. The client ends are held by helper processes
//! ([`hold_clients`], `xdp-guard-bench conns-client`) of at most [`PER_HELPER`] connections
//! each: the limit of open files here is 20,000 per process and cannot be raised without
//! CAP_SYS_RESOURCE. Helpers exit when their stdin closes or after a deadline. The client
//! namespace gets the whole port range for its ephemeral ports. Every method runs inside the
//! server namespace, in turn, the same number of times.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    mem::size_of,
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    os::fd::{AsRawFd as _, FromRawFd as _},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::{
    Spread,
    api_load::ApiServer,
    veth::{BedError, in_ns},
};
use crate::{
    netns::{Netns, veth_pair},
    tcpstate::{self, Filter},
};

const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);

pub const NETSTAT_PIPELINE: &str = "netstat -nat | awk '{print $NF}' | sort | uniq -c | sort -n";
pub const SS: &str = "ss -tan";
pub const SNAPSHOT: &str = "xdp_guard::tcpstate::snapshot (in process)";
pub const CONNS: &str = "xdp-guard conns --port 80 (CLI -> API -> sock_diag)";
/// Diagnostic: the same dump asking only for SYN_RECV sockets (none here), so the kernel walks
/// its table and returns nothing: the floor of any sock_diag view.
pub const WALK_ONLY: &str = "sock_diag dump of SYN_RECV only (table walk, nothing returned)";

/// Connections per helper process (the open-files limit here is 20,000).
pub const PER_HELPER: usize = 15_000;
/// A helper's connections close after this long whatever happens to the benchmark.
const HELPER_MAX_SECS: u64 = 600;

#[derive(Clone, Debug)]
pub struct Options {
    pub sockets: usize,
    pub runs: usize,
    /// The binary with the `conns-client` helper command (the benchmark binary itself).
    pub helper: Option<PathBuf>,
    /// The `xdp-guard` binary: `xdp-guard conns --port 80` is timed end to end against the
    /// API served inside the namespace. `None`: only the library call is timed.
    pub cli: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            sockets: 50_000,
            runs: 5,
            helper: std::env::current_exe().ok(),
            cli: None,
        }
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Method {
    pub name: String,
    pub ms: Spread,
    /// For in-process methods: CPU time of the calling thread in the kernel, and in user
    /// space (getrusage), milliseconds per run, median.
    pub sys_ms: Option<f64>,
    pub user_ms: Option<f64>,
    /// ESTABLISHED sockets the method reported (a check that it saw the whole table).
    pub established_seen: u64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    pub machine: String,
    pub connections: usize,
    pub open_secs: f64,
    pub runs: usize,
    pub methods: Vec<Method>,
}

fn io(what: &str) -> impl FnOnce(std::io::Error) -> BedError + '_ {
    move |source| BedError::Io {
        what: what.into(),
        source,
    }
}

/// (user, system) CPU time of the calling thread, in milliseconds.
fn thread_cpu_ms() -> (f64, f64) {
    // SAFETY: getrusage writes into a zeroed rusage.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut ru);
        ru
    };
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
    (ms(ru.ru_utime), ms(ru.ru_stime))
}

/// Raise the soft limit of open files to the hard one.
fn nofile_to_hard() -> std::io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into `lim`; setrlimit reads it.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        lim.rlim_cur = lim.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(lim.rlim_cur)
}

/// One connection from `from` (port chosen at connect time: `IP_BIND_ADDRESS_NO_PORT`, so
/// the kernel only needs the 4-tuple to be unique and does not search the bind table).
fn connect_from(from: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let last = || std::io::Error::last_os_error();
    // SAFETY: socket(2); the fd is owned by `stream` right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(last());
    }
    // SAFETY: a fresh fd that nothing else owns.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    // SAFETY: valid fd, option value and length.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(last());
    }
    let sin = |a: Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(a.octets()),
        },
        sin_zero: [0; 8],
    };
    let local = sin(from, 0);
    // SAFETY: a valid sockaddr_in and its length.
    if unsafe {
        libc::bind(
            fd,
            (&local as *const libc::sockaddr_in).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    } != 0
    {
        return Err(last());
    }
    let SocketAddr::V4(to) = to else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "IPv4 only",
        ));
    };
    let remote = sin(*to.ip(), to.port());
    // SAFETY: as above.
    if unsafe {
        libc::connect(
            fd,
            (&remote as *const libc::sockaddr_in).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    } != 0
    {
        return Err(last());
    }
    Ok(stream)
}

/// The `conns-client` helper: open `count` connections from `from` to `to`, print
/// `ready <count>`, and hold them until stdin closes or `max_secs` pass.
pub fn hold_clients(
    from: Ipv4Addr,
    to: SocketAddr,
    count: usize,
    max_secs: u64,
) -> std::io::Result<()> {
    nofile_to_hard()?;
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        held.push(connect_from(from, to)?);
    }
    let mut stdout = std::io::stdout();
    writeln!(stdout, "ready {}", held.len())?;
    stdout.flush()?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        let _ = tx.send(());
    });
    let _ = rx.recv_timeout(Duration::from_secs(max_secs));
    drop(held);
    Ok(())
}

/// Helper processes holding client connections; closing their stdin (drop) ends them.
struct Helpers(Vec<Child>);

impl Drop for Helpers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            drop(c.stdin.take());
        }
        for c in &mut self.0 {
            let _ = c.wait();
        }
    }
}

/// Run a shell pipeline (from a thread inside the namespace, so the shell and everything it
/// starts are in it too) and return its output and wall time.
fn shell(line: &str) -> Result<(String, f64), BedError> {
    let mut c = Command::new("sh");
    c.args(["-c", line]);
    timed(c)
}

/// The count on the `ESTABLISHED` line of `uniq -c`-style output.
fn established(out: &str) -> u64 {
    out.lines()
        .find(|l| l.trim_end().ends_with("ESTABLISHED"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn timed(mut command: Command) -> Result<(String, f64), BedError> {
    let t = Instant::now();
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(io("spawning"))?;
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        stdout.read_to_string(&mut out).map_err(io("reading"))?;
    }
    child.wait().map_err(io("waiting"))?;
    Ok((out, t.elapsed().as_secs_f64() * 1e3))
}

pub fn run(opts: &Options) -> Result<Report, BedError> {
    let helper = opts.helper.clone().ok_or_else(|| BedError::Parse {
        what: "the conns-client helper".into(),
        text: "no benchmark binary to run it from".into(),
    })?;
    let server = Netns::new("cs")?;
    let client = Netns::new("cc")?;
    veth_pair(&server, "198.18.1.1/24", &client, "198.18.1.2/24")?;
    client.exec(&[
        "sysctl",
        "-q",
        "-w",
        "net.ipv4.ip_local_port_range=1024 65535",
    ])?;
    server.exec(&["sysctl", "-q", "-w", "net.core.somaxconn=65535"])?;
    server.exec(&["sysctl", "-q", "-w", "net.ipv4.tcp_max_syn_backlog=65535"])?;

    let listener = in_ns(&server, || {
        let l = TcpListener::bind((SERVER, 80)).map_err(io("listening on port 80"))?;
        // std listens with a backlog of 128; a second listen(2) raises it. Nothing accepts:
        // the established connections wait in this queue.
        // SAFETY: a valid listening socket.
        if unsafe { libc::listen(l.as_raw_fd(), 65_535) } != 0 {
            return Err(io("listen")(std::io::Error::last_os_error()));
        }
        Ok(l)
    })?;
    let n = opts.sockets.min(65_000);
    let started = Instant::now();
    let mut helpers = Helpers(Vec::new());
    let mut left = n;
    while left > 0 {
        let count = left.min(PER_HELPER);
        // One client address per helper (198.18.1.2, .3, ...).
        let from = Ipv4Addr::new(198, 18, 1, 2 + helpers.0.len() as u8);
        if !helpers.0.is_empty() {
            client.exec(&["ip", "addr", "add", &format!("{from}/24"), "dev", "veth0"])?;
        }
        let child = in_ns(&client, || {
            Command::new(&helper)
                .args([
                    "conns-client",
                    "--from",
                    &from.to_string(),
                    "--to",
                    &SocketAddr::from((SERVER, 80)).to_string(),
                    "--count",
                    &count.to_string(),
                    "--max-secs",
                    &HELPER_MAX_SECS.to_string(),
                ])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(io("starting a conns-client helper"))
        })?;
        helpers.0.push(child);
        let Some(child) = helpers.0.last_mut() else {
            break;
        };
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            BufReader::new(out)
                .read_line(&mut line)
                .map_err(io("reading a helper"))?;
        }
        if line.trim() != format!("ready {count}") {
            return Err(BedError::Parse {
                what: "a conns-client helper".into(),
                text: format!("said {line:?} instead of `ready {count}`"),
            });
        }
        left -= count;
    }
    let open_secs = started.elapsed().as_secs_f64();

    let runs = opts.runs;
    let cli = opts.cli.clone();
    let methods = in_ns(&server, move || {
        // The API `xdp-guard conns` asks, served inside the namespace.
        let api = match &cli {
            Some(_) => Some(ApiServer::start("conns")?),
            None => None,
        };
        // The measuring thread and the commands it starts compete with other work on the
        // machine alike: realtime for all of them (children inherit the policy).
        let _ = super::realtime(0, 40);
        let mut netstat = (Vec::new(), 0);
        let mut ss = (Vec::new(), 0);
        let mut snap = (Vec::new(), 0);
        let mut conns = (Vec::new(), 0);
        let mut walk = (Vec::new(), 0);
        let mut snap_cpu = (Vec::new(), Vec::new());
        let syn_recv_only = Filter::local_port(80)
            .with_states(tcpstate::StateSet::of(&[tcpstate::TcpState::SynRecv]));
        for _ in 0..runs {
            let (out, ms) = shell(NETSTAT_PIPELINE)?;
            netstat.0.push(ms);
            netstat.1 = established(&out);
            let (out, ms) = shell(SS)?;
            ss.0.push(ms);
            ss.1 = out.lines().filter(|l| l.starts_with("ESTAB")).count() as u64;
            let (u0, s0) = thread_cpu_ms();
            let t = Instant::now();
            let s = tcpstate::snapshot(&Filter::local_port(80)).map_err(|e| BedError::Parse {
                what: "tcpstate::snapshot".into(),
                text: e.to_string(),
            })?;
            snap.0.push(t.elapsed().as_secs_f64() * 1e3);
            let (u1, s1) = thread_cpu_ms();
            snap_cpu.0.push(u1 - u0);
            snap_cpu.1.push(s1 - s0);
            snap.1 = s.states.get(tcpstate::TcpState::Established);
            let t = Instant::now();
            let s = tcpstate::snapshot(&syn_recv_only).map_err(|e| BedError::Parse {
                what: "tcpstate::snapshot".into(),
                text: e.to_string(),
            })?;
            walk.0.push(t.elapsed().as_secs_f64() * 1e3);
            walk.1 = s.states.get(tcpstate::TcpState::Established);
            if let (Some(bin), Some(api)) = (&cli, &api) {
                let mut c = Command::new(bin);
                c.args(["conns", "--port", "80"])
                    .env("XDP_GUARD_API", format!("http://{}", api.addr))
                    .env("XDP_GUARD_TOKEN_FILE", &api.token_file);
                let (out, ms) = timed(c)?;
                conns.0.push(ms);
                conns.1 = established(&out);
            }
        }
        let method = |name: &str, (mut v, seen): (Vec<f64>, u64)| Method {
            name: name.into(),
            ms: Spread::of(&mut v),
            sys_ms: None,
            user_ms: None,
            established_seen: seen,
        };
        let (mut user, mut sys) = snap_cpu;
        let mut methods = vec![
            method(NETSTAT_PIPELINE, netstat),
            method(SS, ss),
            Method {
                user_ms: Some(Spread::of(&mut user).median),
                sys_ms: Some(Spread::of(&mut sys).median),
                ..method(SNAPSHOT, snap)
            },
        ];
        if cli.is_some() {
            methods.push(method(CONNS, conns));
        }
        methods.push(method(WALK_ONLY, walk));
        Ok(methods)
    })?;
    drop(helpers);
    drop(listener);
    Ok(Report {
        machine: super::machine(),
        connections: n,
        open_secs,
        runs,
        methods,
    })
}
