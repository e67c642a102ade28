//! Live TCP state views, the memo's two netstat pipelines done through netlink sock_diag:
//!
//! - `netstat -nat | awk '{print $NF}' | sort | uniq -c` → [`Snapshot::states`];
//! - `netstat -nat | grep ":80" | awk '{print $5}' | ... | uniq -c | sort -n` →
//!   [`Snapshot::clients`] (per remote address, for sockets whose local port is 80);
//!
//! plus the listen-queue and syncookie counters of `/proc/net/netstat`
//! ([`listen_counters`]). The dump is aggregated while it is read, one reused buffer and no
//! allocation per socket, so it stays cheap with 100,000 sockets. Listing needs no
//! privileges.

mod counters;
mod netlink;
mod state;

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::Serialize;

pub use counters::{ListenCounters, PROC_NET_NETSTAT, listen_counters};
pub use netlink::{Family, RECV_BUFFER_BYTES, SockDiag, SockRecord};
pub use state::{StateCounts, StateSet, TcpState};

#[derive(Debug, thiserror::Error)]
pub enum TcpStateError {
    #[error("opening the NETLINK_SOCK_DIAG socket: {0}")]
    Socket(#[source] io::Error),
    #[error("sending the sock_diag dump request: {0}")]
    Send(#[source] io::Error),
    #[error("receiving the sock_diag dump: {0}")]
    Recv(#[source] io::Error),
    #[error("a sock_diag reply did not fit the {0}-byte receive buffer")]
    Truncated(usize),
    #[error("the kernel answered the sock_diag dump with an error: {0}")]
    Kernel(#[source] io::Error),
    #[error("malformed sock_diag reply at byte {offset}: {reason}")]
    Malformed { offset: usize, reason: &'static str },
    #[error("reading {}: {source}", path.display())]
    ReadProc {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("parsing /proc/net/netstat: {0}")]
    NetstatFormat(String),
}

/// What to look at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// The served port (Apache: 80): selects [`Snapshot::port_states`] and
    /// [`Snapshot::clients`]. `None` leaves both empty.
    pub port: Option<u16>,
    /// The states to dump at all; the kernel leaves the others out (`idiag_states`).
    pub states: StateSet,
}

impl Filter {
    /// Every state, with port views for `port`.
    pub fn local_port(port: u16) -> Filter {
        Filter {
            port: Some(port),
            states: StateSet::ALL,
        }
    }

    /// The same filter, dumping only `states`.
    pub fn with_states(self, states: StateSet) -> Filter {
        Filter { states, ..self }
    }
}

/// Connections from one remote address to the filtered port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ClientCount {
    /// IPv4 peers of dual-stack listeners are reported as IPv4, not `::ffff:a.b.c.d`.
    pub addr: IpAddr,
    pub connections: u64,
}

/// One pass over the namespace's TCP sockets.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// Sockets dumped (IPv4 and IPv6, in the filter's states).
    pub total: u64,
    /// All dumped sockets by state, netstat names, request sockets as SYN_RECV.
    pub states: StateCounts,
    /// Half-open connections in the whole namespace (`states["SYN_RECV"]`).
    pub syn_recv: u64,
    /// The filter's port.
    pub port: Option<u16>,
    /// Sockets whose local port is `port`, by state (LISTEN included).
    pub port_states: StateCounts,
    /// Remote addresses of the non-LISTEN sockets whose local port is `port`, most
    /// connections first (ties by address).
    pub clients: Vec<ClientCount>,
    /// Sockets in a state this build does not know (counted in `total` only).
    #[serde(skip_serializing_if = "is_zero")]
    pub unknown_states: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Aggregates records as the dump streams them.
#[derive(Debug)]
pub struct Tally {
    port: Option<u16>,
    total: u64,
    unknown_states: u64,
    states: StateCounts,
    port_states: StateCounts,
    clients: HashMap<IpAddr, u64>,
}

impl Tally {
    pub fn new(filter: &Filter) -> Tally {
        Tally {
            port: filter.port,
            total: 0,
            unknown_states: 0,
            states: StateCounts::default(),
            port_states: StateCounts::default(),
            clients: HashMap::new(),
        }
    }

    pub fn add(&mut self, record: &SockRecord) {
        self.total += 1;
        let Some(state) = record.state() else {
            self.unknown_states += 1;
            return;
        };
        self.states.add(state);
        if self.port != Some(record.local.port()) {
            return;
        }
        self.port_states.add(state);
        if state != TcpState::Listen {
            *self
                .clients
                .entry(record.remote.ip().to_canonical())
                .or_insert(0) += 1;
        }
    }

    pub fn finish(self) -> Snapshot {
        let mut clients: Vec<ClientCount> = self
            .clients
            .into_iter()
            .map(|(addr, connections)| ClientCount { addr, connections })
            .collect();
        clients.sort_unstable_by(|a, b| {
            b.connections
                .cmp(&a.connections)
                .then_with(|| a.addr.cmp(&b.addr))
        });
        Snapshot {
            total: self.total,
            syn_recv: self.states.get(TcpState::SynRecv),
            states: self.states,
            port: self.port,
            port_states: self.port_states,
            clients,
            unknown_states: self.unknown_states,
        }
    }
}

impl SockDiag {
    /// One snapshot on this socket (reusing its buffer).
    pub fn snapshot(&mut self, filter: &Filter) -> Result<Snapshot, TcpStateError> {
        let mut tally = Tally::new(filter);
        self.for_each(filter.states, |record| tally.add(record))?;
        Ok(tally.finish())
    }
}

/// States a socket reaches only after the three-way handshake: its peer answered our
/// SYN-ACK, so its address is not spoofed.
pub const HANDSHAKEN: [TcpState; 7] = [
    TcpState::Established,
    TcpState::FinWait1,
    TcpState::FinWait2,
    TcpState::TimeWait,
    TcpState::CloseWait,
    TcpState::LastAck,
    TcpState::Closing,
];

/// Remote addresses of the sockets past the handshake whose local port is in `ports` (every
/// port when it is empty), each once. TIME_WAIT keeps a closed connection's peer for 60 s,
/// so this also names the clients of the last minute.
pub fn handshaken_peers(ports: &[u16]) -> Result<Vec<IpAddr>, TcpStateError> {
    let mut peers = std::collections::HashSet::new();
    SockDiag::open()?.for_each(StateSet::of(&HANDSHAKEN), |r| {
        if ports.is_empty() || ports.contains(&r.local.port()) {
            peers.insert(r.remote.ip().to_canonical());
        }
    })?;
    Ok(peers.into_iter().collect())
}

/// One snapshot on a fresh socket. Callers that poll should keep a [`SockDiag`] and call
/// [`SockDiag::snapshot`] instead.
pub fn snapshot(filter: &Filter) -> Result<Snapshot, TcpStateError> {
    SockDiag::open()?.snapshot(filter)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    fn record(state: TcpState, local: &str, remote: &str) -> SockRecord {
        SockRecord {
            state_raw: state.kernel(),
            local: local.parse().expect("test address"),
            remote: remote.parse().expect("test address"),
            rqueue: 0,
            wqueue: 0,
            uid: 0,
            inode: 0,
        }
    }

    #[test]
    fn tally_counts_like_the_memo_pipelines() {
        let mut tally = Tally::new(&Filter::local_port(80));
        for r in [
            record(TcpState::Listen, "[::]:80", "[::]:0"),
            record(
                TcpState::Established,
                "[::ffff:10.0.0.1]:80",
                "[::ffff:192.0.2.7]:1",
            ),
            record(TcpState::TimeWait, "10.0.0.1:80", "192.0.2.7:2"),
            record(TcpState::NewSynRecv, "10.0.0.1:80", "198.51.100.3:3"),
            record(TcpState::Established, "[2001:db8::1]:80", "[2001:db8::9]:4"),
            record(TcpState::Established, "10.0.0.1:80", "198.51.100.3:5"),
            // Not port 80 locally: counted in `states` only, even with remote port 80.
            record(TcpState::Established, "10.0.0.1:40000", "192.0.2.7:80"),
            record(TcpState::Listen, "0.0.0.0:22", "0.0.0.0:0"),
        ] {
            tally.add(&r);
        }
        tally.add(&SockRecord {
            state_raw: 13,
            ..record(TcpState::Close, "0.0.0.0:9", "0.0.0.0:0")
        });
        let snap = tally.finish();

        assert_eq!(snap.total, 9);
        assert_eq!(snap.unknown_states, 1);
        assert_eq!(snap.states.get(TcpState::Established), 4);
        assert_eq!(snap.states.get(TcpState::Listen), 2);
        assert_eq!(snap.syn_recv, 1);
        assert_eq!(snap.port, Some(80));
        assert_eq!(snap.port_states.get(TcpState::Listen), 1);
        assert_eq!(snap.port_states.get(TcpState::Established), 3);
        assert_eq!(snap.port_states.get(TcpState::TimeWait), 1);
        assert_eq!(snap.port_states.get(TcpState::SynRecv), 1);
        let ip = |s: &str| s.parse::<IpAddr>().expect("test address");
        assert_eq!(
            snap.clients,
            [
                ClientCount {
                    addr: ip("192.0.2.7"),
                    connections: 2
                },
                ClientCount {
                    addr: ip("198.51.100.3"),
                    connections: 2
                },
                ClientCount {
                    addr: ip("2001:db8::9"),
                    connections: 1
                },
            ]
        );
    }

    #[test]
    fn no_port_no_port_views() {
        let mut tally = Tally::new(&Filter::default());
        tally.add(&record(TcpState::Established, "10.0.0.1:80", "192.0.2.7:1"));
        let snap = tally.finish();
        assert_eq!(snap.total, 1);
        assert_eq!(snap.port_states.total(), 0);
        assert!(snap.clients.is_empty());
    }

    #[test]
    fn snapshot_serialises_with_netstat_names() {
        let mut tally = Tally::new(&Filter::local_port(80));
        tally.add(&record(TcpState::SynRecv, "10.0.0.1:80", "192.0.2.7:1"));
        let json = serde_json::to_value(tally.finish()).expect("serialise");
        assert_eq!(
            json,
            serde_json::json!({
                "total": 1,
                "states": {"SYN_RECV": 1},
                "syn_recv": 1,
                "port": 80,
                "port_states": {"SYN_RECV": 1},
                "clients": [{"addr": "192.0.2.7", "connections": 1}],
            })
        );
    }

    #[test]
    fn live_snapshot_sees_a_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("local addr").port();
        let snap = snapshot(&Filter::local_port(port)).expect("snapshot");
        assert_eq!(snap.port_states.get(TcpState::Listen), 1);
        assert!(snap.clients.is_empty());

        // Kernel-side state filtering: only LISTEN sockets come back.
        let mut diag = SockDiag::open().expect("open");
        let listening = StateSet::of(&[TcpState::Listen]);
        let mut found = false;
        diag.for_each(listening, |r| {
            assert_eq!(r.state(), Some(TcpState::Listen));
            found |= r.local == SocketAddr::from(([127, 0, 0, 1], port));
        })
        .expect("dump");
        assert!(found);
    }
}
