//! sock_diag snapshots of real loopback connections made by this process, checked against
//! what was done to them and against `ss -tan` for the same port. Listing sockets needs no
//! privileges, so these run as any user. Other sockets on the machine are ignored by
//! looking only at this test's ports.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::FromRawFd;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use xdp_guard::tcpstate::{
    ClientCount, Filter, Snapshot, SockDiag, StateSet, TcpState, listen_counters, snapshot,
};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Connect `n` clients to `listener` and accept them, paired: (client, server side).
fn connect_pairs(listener: &TcpListener, n: usize) -> Vec<(TcpStream, TcpStream)> {
    let addr = listener.local_addr().expect("listener address");
    let clients: Vec<TcpStream> = (0..n)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    let mut servers: Vec<TcpStream> = (0..n)
        .map(|_| listener.accept().expect("accept").0)
        .collect();
    clients
        .into_iter()
        .map(|client| {
            let mine = client.local_addr().expect("client address");
            let at = servers
                .iter()
                .position(|s| s.peer_addr().expect("peer address") == mine)
                .expect("an accepted socket for every client");
            (client, servers.swap_remove(at))
        })
        .collect()
}

fn counts(pairs: &[(TcpState, u64)]) -> BTreeMap<TcpState, u64> {
    pairs.iter().copied().collect()
}

fn by_state(snap_counts: &xdp_guard::tcpstate::StateCounts) -> BTreeMap<TcpState, u64> {
    snap_counts.iter().collect()
}

/// States of the sockets whose remote end is `peer` (the client halves), via a raw dump.
fn remote_states(diag: &mut SockDiag, peer: SocketAddr) -> BTreeMap<TcpState, u64> {
    let mut out = BTreeMap::new();
    diag.for_each(StateSet::ALL, |r| {
        if r.remote == peer
            && let Some(state) = r.state()
        {
            *out.entry(state.netstat()).or_insert(0) += 1;
        }
    })
    .expect("sock_diag dump");
    out
}

/// Poll until `check` passes (TCP teardown on loopback is quick but asynchronous).
fn settle<T: PartialEq + std::fmt::Debug>(want: &T, mut get: impl FnMut() -> T) -> T {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = get();
        if got == *want || Instant::now() > deadline {
            return got;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// `ss -tan` state counts for an `ss` filter expression such as `sport = :8080`.
fn ss_states(filter: &str) -> BTreeMap<TcpState, u64> {
    let out = Command::new("ss")
        .args(["-tan", filter])
        .output()
        .expect("running ss (iproute2) to compare against");
    assert!(out.status.success(), "ss -tan {filter}: {out:?}");
    let text = String::from_utf8(out.stdout).expect("ss prints UTF-8");
    let mut states = BTreeMap::new();
    for line in text.lines().skip(1) {
        let name = line.split_whitespace().next().unwrap_or_default();
        let state = TcpState::from_name(name)
            .unwrap_or_else(|| panic!("unknown ss state {name:?} in {line:?}"));
        *states.entry(state.netstat()).or_insert(0) += 1;
    }
    states
}

fn port_snapshot(port: u16) -> Snapshot {
    snapshot(&Filter::local_port(port)).expect("snapshot")
}

#[test]
fn loopback_connections_and_closing_states_match_ss() {
    const N: usize = 6;
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let addr = listener.local_addr().expect("listener address");
    let port = addr.port();
    let mut pairs = connect_pairs(&listener, N);

    let snap = port_snapshot(port);
    assert_eq!(
        by_state(&snap.port_states),
        counts(&[(TcpState::Listen, 1), (TcpState::Established, N as u64)])
    );
    assert_eq!(
        snap.clients,
        [ClientCount {
            addr: LOCALHOST,
            connections: N as u64
        }]
    );
    assert!(snap.states.get(TcpState::Established) >= 2 * N as u64);
    assert!(
        snap.total > 2 * N as u64,
        "the listener and both halves of each pair"
    );
    assert_eq!(snap.syn_recv, snap.states.get(TcpState::SynRecv));
    let mut diag = SockDiag::open().expect("sock_diag socket");
    assert_eq!(
        remote_states(&mut diag, addr),
        counts(&[(TcpState::Established, N as u64)]),
        "the client halves"
    );

    // Pairs 0 and 1: the server closes first, then the client: the server is the active
    // closer and keeps TIME_WAIT. Pair 2: the client closes and the server does not, so
    // the server sits in CLOSE_WAIT and the client in FIN_WAIT2. Pair 3: the reverse.
    // Pairs 4 and 5 stay open.
    let (closed_both, rest) = pairs.split_at_mut(2);
    for (client, server) in closed_both.iter() {
        server.shutdown(Shutdown::Both).expect("server shutdown");
        // Wait for the FIN to reach the client (it reads EOF), so the server closed first.
        let mut byte = [0u8; 1];
        assert_eq!(
            std::io::Read::read(&mut &*client, &mut byte).expect("EOF"),
            0
        );
        client.shutdown(Shutdown::Both).expect("client shutdown");
    }
    rest[0]
        .0
        .shutdown(Shutdown::Write)
        .expect("client 2 shutdown");
    rest[1]
        .1
        .shutdown(Shutdown::Write)
        .expect("server 3 shutdown");

    let want_local = counts(&[
        (TcpState::Listen, 1),
        (TcpState::Established, 2),
        (TcpState::TimeWait, 2),
        (TcpState::CloseWait, 1),
        (TcpState::FinWait2, 1),
    ]);
    let got = settle(&want_local, || by_state(&port_snapshot(port).port_states));
    assert_eq!(got, want_local, "server halves (local port {port})");

    let want_remote = counts(&[
        (TcpState::Established, 2),
        (TcpState::CloseWait, 1),
        (TcpState::FinWait2, 1),
    ]);
    let got = settle(&want_remote, || remote_states(&mut diag, addr));
    assert_eq!(got, want_remote, "client halves (remote port {port})");

    let snap = diag.snapshot(&Filter::local_port(port)).expect("snapshot");
    // netstat counts TIME_WAIT and half-closed lines too: every non-LISTEN socket on :port.
    assert_eq!(
        snap.clients,
        [ClientCount {
            addr: LOCALHOST,
            connections: N as u64
        }]
    );
    assert!(snap.states.get(TcpState::TimeWait) >= 2);

    assert_eq!(
        ss_states(&format!("sport = :{port}")),
        by_state(&snap.port_states),
        "ss and sock_diag disagree for local port {port}"
    );
    assert_eq!(
        ss_states(&format!("dport = :{port}")),
        remote_states(&mut diag, addr),
        "ss and sock_diag disagree for remote port {port}"
    );
    drop(pairs);
}

#[test]
fn dual_stack_listener_reports_ipv4_clients_as_ipv4() {
    let listener = match TcpListener::bind("[::]:0") {
        Ok(l) => l,
        Err(e) => {
            eprintln!("skipping: no IPv6 listener ({e})");
            return;
        }
    };
    let port = listener.local_addr().expect("listener address").port();
    let v4 = match TcpStream::connect((Ipv4Addr::LOCALHOST, port)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("skipping: listener is IPv6-only ({e})");
            return;
        }
    };
    let v6 = TcpStream::connect(("::1", port)).expect("connect over ::1");
    let accepted = [
        listener.accept().expect("accept").0,
        listener.accept().expect("accept").0,
    ];

    let snap = port_snapshot(port);
    assert_eq!(
        by_state(&snap.port_states),
        counts(&[(TcpState::Listen, 1), (TcpState::Established, 2)])
    );
    let mut clients = snap.clients.clone();
    clients.sort_by_key(|c| c.addr);
    assert_eq!(
        clients,
        [
            ClientCount {
                addr: LOCALHOST,
                connections: 1
            },
            ClientCount {
                addr: "::1".parse().expect("address"),
                connections: 1
            },
        ]
    );
    drop((v4, v6, accepted));
}

/// A listener with an explicit accept backlog (std always asks for 128).
fn listener_with_backlog(backlog: i32) -> TcpListener {
    // SAFETY: plain socket calls on a descriptor this function owns; results checked.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let listener = TcpListener::from_raw_fd(fd);
        let mut sin: libc::sockaddr_in = std::mem::zeroed();
        sin.sin_family = libc::AF_INET as libc::sa_family_t;
        sin.sin_addr.s_addr = u32::from(Ipv4Addr::LOCALHOST).to_be();
        let rc = libc::bind(
            fd,
            (&raw const sin).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
        let rc = libc::listen(fd, backlog);
        assert_eq!(rc, 0, "listen: {}", std::io::Error::last_os_error());
        listener
    }
}

#[test]
fn full_accept_queue_leaves_clients_in_syn_sent_and_counts_an_overflow() {
    const CLIENTS: u64 = 3;
    // Backlog 1 admits a connection or two (kernels differ by one); with nobody accepting,
    // the SYNs after that are dropped and their clients stay in SYN_SENT, retransmitting.
    let listener = listener_with_backlog(1);
    let addr = listener.local_addr().expect("listener address");
    let before = listen_counters().expect("listen counters");
    let connectors: Vec<_> = (0..CLIENTS)
        .map(|_| thread::spawn(move || TcpStream::connect_timeout(&addr, Duration::from_secs(30))))
        .collect();

    let mut diag = SockDiag::open().expect("sock_diag socket");
    let client_halves = |diag: &mut SockDiag| {
        let states = remote_states(diag, addr);
        let established = states.get(&TcpState::Established).copied().unwrap_or(0);
        let syn_sent = states.get(&TcpState::SynSent).copied().unwrap_or(0);
        (established + syn_sent == CLIENTS && syn_sent > 0, states)
    };
    let mut last = BTreeMap::new();
    let ok = settle(&true, || {
        let (ok, states) = client_halves(&mut diag);
        last = states;
        ok
    });
    assert!(ok, "client halves towards {addr}: {last:?}");
    let overflowed = settle(&true, || {
        listen_counters()
            .expect("listen counters")
            .since(&before)
            .listen_overflows
            > 0
    });
    assert!(overflowed, "ListenOverflows did not move");

    // Accepting makes room; retransmitted SYNs get through.
    let accepted: Vec<TcpStream> = (0..CLIENTS)
        .map(|_| listener.accept().expect("accept").0)
        .collect();
    for connector in connectors {
        match connector.join().expect("connect thread") {
            Ok(stream) => drop(stream),
            Err(e) if e.kind() == ErrorKind::TimedOut => panic!("a connect never completed"),
            Err(e) => panic!("connect: {e}"),
        }
    }
    drop(accepted);
}
