//! Namespace-wide listen-queue and syncookie counters from `/proc/net/netstat` (TcpExt).
//! The file is pairs of lines: `TcpExt: Name1 Name2 ...` then `TcpExt: 1 2 ...`.

use std::path::Path;

use serde::Serialize;

use super::TcpStateError;

pub const PROC_NET_NETSTAT: &str = "/proc/net/netstat";

/// Counters since boot (per network namespace). Subtract two readings with
/// [`ListenCounters::since`] for a rate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ListenCounters {
    /// Connections dropped because a listener's accept queue was full.
    pub listen_overflows: u64,
    /// Connection attempts dropped at a listener for any reason (includes overflows).
    pub listen_drops: u64,
    /// SYN-ACKs answered with a syncookie because a SYN queue was full.
    pub syncookies_sent: u64,
    /// Valid syncookies that came back in an ACK.
    pub syncookies_recv: u64,
    /// ACKs whose syncookie did not check out.
    pub syncookies_failed: u64,
}

const FIELDS: [&str; 5] = [
    "ListenOverflows",
    "ListenDrops",
    "SyncookiesSent",
    "SyncookiesRecv",
    "SyncookiesFailed",
];

impl ListenCounters {
    /// Parse the text of `/proc/net/netstat`.
    pub fn parse(text: &str) -> Result<ListenCounters, TcpStateError> {
        let format = |reason: String| TcpStateError::NetstatFormat(reason);
        let mut found: [Option<u64>; 5] = [None; 5];
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        while let Some(names) = lines.next() {
            let Some(values) = lines.next() else {
                return Err(format(format!("header line without values: {names:?}")));
            };
            let (Some((section, names)), Some((value_section, values))) =
                (names.split_once(':'), values.split_once(':'))
            else {
                return Err(format(format!("line without a section prefix: {names:?}")));
            };
            if section != value_section {
                return Err(format(format!(
                    "section {section:?} followed by values for {value_section:?}"
                )));
            }
            if section != "TcpExt" {
                continue;
            }
            let names: Vec<&str> = names.split_whitespace().collect();
            let values: Vec<&str> = values.split_whitespace().collect();
            if names.len() != values.len() {
                return Err(format(format!(
                    "TcpExt has {} names but {} values",
                    names.len(),
                    values.len()
                )));
            }
            for (name, value) in names.into_iter().zip(values) {
                if let Some(i) = FIELDS.iter().position(|f| *f == name) {
                    let parsed = value
                        .parse()
                        .map_err(|_| format(format!("TcpExt {name}: {value:?} is not a count")))?;
                    found[i] = Some(parsed);
                }
            }
        }
        let get = |i: usize| {
            found[i].ok_or_else(|| format(format!("TcpExt has no {} counter", FIELDS[i])))
        };
        Ok(ListenCounters {
            listen_overflows: get(0)?,
            listen_drops: get(1)?,
            syncookies_sent: get(2)?,
            syncookies_recv: get(3)?,
            syncookies_failed: get(4)?,
        })
    }

    /// Read and parse a netstat file (`/proc/<pid>/net/netstat` for another namespace).
    pub fn read(path: &Path) -> Result<ListenCounters, TcpStateError> {
        let text = std::fs::read_to_string(path).map_err(|source| TcpStateError::ReadProc {
            path: path.to_path_buf(),
            source,
        })?;
        ListenCounters::parse(&text)
    }

    /// What happened between `earlier` and `self` (saturating, should a counter reset).
    pub fn since(&self, earlier: &ListenCounters) -> ListenCounters {
        ListenCounters {
            listen_overflows: self
                .listen_overflows
                .saturating_sub(earlier.listen_overflows),
            listen_drops: self.listen_drops.saturating_sub(earlier.listen_drops),
            syncookies_sent: self.syncookies_sent.saturating_sub(earlier.syncookies_sent),
            syncookies_recv: self.syncookies_recv.saturating_sub(earlier.syncookies_recv),
            syncookies_failed: self
                .syncookies_failed
                .saturating_sub(earlier.syncookies_failed),
        }
    }
}

/// The counters of this process's network namespace.
pub fn listen_counters() -> Result<ListenCounters, TcpStateError> {
    ListenCounters::read(Path::new(PROC_NET_NETSTAT))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shortened from a 6.x kernel: the real file has ~120 TcpExt names.
    const SAMPLE: &str = "\
TcpExt: SyncookiesSent SyncookiesRecv SyncookiesFailed EmbryonicRsts PruneCalled ListenOverflows ListenDrops TCPBacklogDrop
TcpExt: 17 12 3 0 0 41 45 0
IpExt: InNoRoutes InTruncatedPkts InMcastPkts
IpExt: 0 0 118
MPTcpExt: MPCapableSYNRX
MPTcpExt: 0
";

    #[test]
    fn parses_the_tcpext_counters() {
        let c = ListenCounters::parse(SAMPLE).expect("parses");
        assert_eq!(
            c,
            ListenCounters {
                listen_overflows: 41,
                listen_drops: 45,
                syncookies_sent: 17,
                syncookies_recv: 12,
                syncookies_failed: 3,
            }
        );
    }

    #[test]
    fn since_subtracts_and_saturates() {
        let now = ListenCounters::parse(SAMPLE).expect("parses");
        let earlier = ListenCounters {
            listen_overflows: 40,
            listen_drops: 50,
            ..ListenCounters::default()
        };
        let d = now.since(&earlier);
        assert_eq!(d.listen_overflows, 1);
        assert_eq!(d.listen_drops, 0);
        assert_eq!(d.syncookies_sent, 17);
    }

    #[test]
    fn missing_counter_is_named() {
        let text = "TcpExt: SyncookiesSent SyncookiesRecv SyncookiesFailed ListenOverflows\n\
                    TcpExt: 1 2 3 4\n";
        let err = ListenCounters::parse(text).expect_err("ListenDrops is missing");
        assert!(err.to_string().contains("ListenDrops"), "{err}");
    }

    #[test]
    fn malformed_text_is_an_error() {
        for text in [
            "TcpExt: ListenOverflows\n",
            "TcpExt: ListenOverflows ListenDrops\nTcpExt: 1\n",
            "TcpExt: ListenOverflows\nIpExt: 1\n",
            "TcpExt: ListenOverflows\nTcpExt: lots\n",
            "no prefix here\nnor here\n",
        ] {
            assert!(ListenCounters::parse(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn reads_this_namespace() {
        // Every kernel with TCP has these; the values are whatever they are.
        listen_counters().expect("/proc/net/netstat has the TcpExt counters");
    }
}
