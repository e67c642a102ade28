//! Linux TCP states (`include/net/tcp_states.h`) under the names netstat prints, and the
//! state bitmask sock_diag filters on in the kernel (`idiag_states`).

use serde::{Serialize, Serializer, ser::SerializeMap};

/// A TCP socket state, numbered as the kernel numbers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[repr(u8)]
pub enum TcpState {
    /// Open: data flows both ways.
    #[serde(rename = "ESTABLISHED")]
    Established = 1,
    /// Active open: our SYN is out, waiting for the SYN-ACK.
    #[serde(rename = "SYN_SENT")]
    SynSent = 2,
    /// Passive open: a SYN came in and our SYN-ACK went out; waiting for the client's ACK.
    /// A SYN flood is a pile of these that never complete.
    #[serde(rename = "SYN_RECV")]
    SynRecv = 3,
    /// We closed first (active close): our FIN is out, waiting for its ACK.
    #[serde(rename = "FIN_WAIT1")]
    FinWait1 = 4,
    /// Our FIN was acknowledged; waiting for the peer's FIN. Orphaned sockets leave this
    /// state after `tcp_fin_timeout`.
    #[serde(rename = "FIN_WAIT2")]
    FinWait2 = 5,
    /// The active closer after sending the last ACK. It lingers 2×MSL (60 s on Linux) so
    /// that delayed segments of the old connection die before the same address/port pair is
    /// reused, and so the last ACK can be re-sent if the peer's FIN is retransmitted. Cheap
    /// (a small timewait socket), a problem only in the tens of thousands.
    #[serde(rename = "TIME_WAIT")]
    TimeWait = 6,
    /// Not connected (closed, or bound and never used; `ss` prints UNCONN).
    #[serde(rename = "CLOSE")]
    Close = 7,
    /// The peer closed first (its FIN arrived); waiting for our application to close.
    /// Many of these mean the application is not closing its sockets.
    #[serde(rename = "CLOSE_WAIT")]
    CloseWait = 8,
    /// The passive closer sent its FIN after CLOSE_WAIT; waiting for the final ACK.
    #[serde(rename = "LAST_ACK")]
    LastAck = 9,
    /// Accepting connections.
    #[serde(rename = "LISTEN")]
    Listen = 10,
    /// Simultaneous close: both sides sent FIN and ours is not yet acknowledged.
    #[serde(rename = "CLOSING")]
    Closing = 11,
    /// The kernel's lightweight request socket for a half-open connection (since Linux 4.4).
    /// netstat and `/proc/net/tcp` show it as SYN_RECV, and so does every count here.
    #[serde(rename = "NEW_SYN_RECV")]
    NewSynRecv = 12,
}

impl TcpState {
    /// Every state, in kernel order.
    pub const ALL: [TcpState; 12] = [
        TcpState::Established,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::FinWait1,
        TcpState::FinWait2,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::Listen,
        TcpState::Closing,
        TcpState::NewSynRecv,
    ];

    /// The state for a kernel state number (`idiag_state`); `None` for numbers this build
    /// does not know (such as TCP_BOUND_INACTIVE, 13, which is never requested).
    pub fn from_kernel(raw: u8) -> Option<TcpState> {
        TcpState::ALL.get(usize::from(raw).wrapping_sub(1)).copied()
    }

    /// The kernel state number.
    pub fn kernel(self) -> u8 {
        self as u8
    }

    /// The state netstat reports: NEW_SYN_RECV counts as SYN_RECV.
    pub fn netstat(self) -> TcpState {
        match self {
            TcpState::NewSynRecv => TcpState::SynRecv,
            other => other,
        }
    }

    /// netstat's name for the state (`TIME_WAIT`, `SYN_RECV`, ...).
    pub fn name(self) -> &'static str {
        match self {
            TcpState::Established => "ESTABLISHED",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::FinWait1 => "FIN_WAIT1",
            TcpState::FinWait2 => "FIN_WAIT2",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::Listen => "LISTEN",
            TcpState::Closing => "CLOSING",
            TcpState::NewSynRecv => "NEW_SYN_RECV",
        }
    }

    /// The state for a netstat name; also accepts `ss` names (`ESTAB`, `SYN-RECV`,
    /// `FIN-WAIT-1`, `UNCONN`, ...).
    pub fn from_name(name: &str) -> Option<TcpState> {
        let found = TcpState::ALL.into_iter().find(|s| s.name() == name);
        found.or(match name {
            "ESTAB" => Some(TcpState::Established),
            "SYN-SENT" => Some(TcpState::SynSent),
            "SYN-RECV" => Some(TcpState::SynRecv),
            "FIN-WAIT-1" => Some(TcpState::FinWait1),
            "FIN-WAIT-2" => Some(TcpState::FinWait2),
            "TIME-WAIT" => Some(TcpState::TimeWait),
            "UNCONN" => Some(TcpState::Close),
            "CLOSE-WAIT" => Some(TcpState::CloseWait),
            "LAST-ACK" => Some(TcpState::LastAck),
            _ => None,
        })
    }
}

impl std::fmt::Display for TcpState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of states, as the kernel's `idiag_states` bitmask (bit N = state N).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StateSet(u32);

impl StateSet {
    /// Every state this module knows.
    pub const ALL: StateSet = StateSet(0x1ffe);

    pub const fn empty() -> StateSet {
        StateSet(0)
    }

    pub fn of(states: &[TcpState]) -> StateSet {
        states.iter().fold(StateSet::empty(), |set, &s| set.with(s))
    }

    /// The set plus `state`. SYN_RECV and NEW_SYN_RECV always travel together, so asking
    /// for either gets the half-open sockets whichever way the kernel labels them.
    pub fn with(self, state: TcpState) -> StateSet {
        let bits = match state.netstat() {
            TcpState::SynRecv => {
                1 << TcpState::SynRecv.kernel() | 1 << TcpState::NewSynRecv.kernel()
            }
            other => 1 << other.kernel(),
        };
        StateSet(self.0 | bits)
    }

    pub fn contains(self, state: TcpState) -> bool {
        self.0 & 1 << state.kernel() != 0
    }

    /// The `idiag_states` value to send.
    pub fn kernel_mask(self) -> u32 {
        self.0
    }
}

impl Default for StateSet {
    fn default() -> StateSet {
        StateSet::ALL
    }
}

/// A histogram of states, netstat-style: NEW_SYN_RECV is counted as SYN_RECV. Serialises
/// as `{"ESTABLISHED": 27, "TIME_WAIT": 811, ...}` with the states that occur, in kernel
/// order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateCounts([u64; 13]);

impl StateCounts {
    pub fn add(&mut self, state: TcpState) {
        self.0[usize::from(state.netstat().kernel())] += 1;
    }

    /// Sockets in `state` (NEW_SYN_RECV reads the SYN_RECV count).
    pub fn get(&self, state: TcpState) -> u64 {
        self.0[usize::from(state.netstat().kernel())]
    }

    /// The states that occur, with their counts, in kernel order.
    pub fn iter(&self) -> impl Iterator<Item = (TcpState, u64)> + '_ {
        TcpState::ALL
            .into_iter()
            .filter(|s| s.netstat() == *s)
            .map(|s| (s, self.get(s)))
            .filter(|&(_, n)| n > 0)
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

impl Serialize for StateCounts {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.iter().count()))?;
        for (state, count) in self.iter() {
            map.serialize_entry(state.name(), &count)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_numbers_round_trip() {
        for s in TcpState::ALL {
            assert_eq!(TcpState::from_kernel(s.kernel()), Some(s));
            assert_eq!(TcpState::from_name(s.name()), Some(s));
        }
        assert_eq!(TcpState::from_kernel(0), None);
        assert_eq!(TcpState::from_kernel(13), None);
        assert_eq!(TcpState::Established.kernel(), 1);
        assert_eq!(TcpState::NewSynRecv.kernel(), 12);
    }

    #[test]
    fn serde_names_match_netstat_names() {
        for s in TcpState::ALL {
            let json = serde_json::to_string(&s).expect("serialise");
            assert_eq!(json, format!("\"{}\"", s.name()));
        }
    }

    #[test]
    fn ss_names_are_understood() {
        assert_eq!(TcpState::from_name("ESTAB"), Some(TcpState::Established));
        assert_eq!(TcpState::from_name("TIME-WAIT"), Some(TcpState::TimeWait));
        assert_eq!(TcpState::from_name("FIN-WAIT-2"), Some(TcpState::FinWait2));
        assert_eq!(TcpState::from_name("UNCONN"), Some(TcpState::Close));
        assert_eq!(TcpState::from_name("nonsense"), None);
    }

    #[test]
    fn syn_recv_brings_new_syn_recv_along() {
        let set = StateSet::of(&[TcpState::SynRecv]);
        assert_eq!(set.kernel_mask(), 1 << 3 | 1 << 12);
        assert_eq!(StateSet::of(&[TcpState::NewSynRecv]), set);
        assert!(set.contains(TcpState::NewSynRecv));
        assert!(!set.contains(TcpState::Listen));
        let all = StateSet::of(&TcpState::ALL);
        assert_eq!(all, StateSet::ALL);
        assert_eq!(StateSet::default(), StateSet::ALL);
    }

    #[test]
    fn histogram_folds_new_syn_recv_and_serialises_by_name() {
        let mut counts = StateCounts::default();
        counts.add(TcpState::NewSynRecv);
        counts.add(TcpState::SynRecv);
        counts.add(TcpState::TimeWait);
        assert_eq!(counts.get(TcpState::SynRecv), 2);
        assert_eq!(counts.get(TcpState::NewSynRecv), 2);
        assert_eq!(counts.total(), 3);
        let json = serde_json::to_string(&counts).expect("serialise");
        assert_eq!(json, r#"{"SYN_RECV":2,"TIME_WAIT":1}"#);
    }
}
