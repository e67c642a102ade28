//! A NETLINK_SOCK_DIAG client: one `SOCK_DIAG_BY_FAMILY` dump request per address family,
//! the multi-part reply read into one reused buffer and handed record by record to the
//! caller, who aggregates as it reads. No allocation per socket.
//!
//! Layouts are the uapi ones (`linux/netlink.h`, `linux/inet_diag.h`), read and written
//! byte by byte in native order (ports and addresses in network order) so nothing here
//! depends on struct alignment.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::TcpStateError;
use super::state::{StateSet, TcpState};

/// Receive buffer size. The kernel sizes dump datagrams to the reader's buffer up to a cap
/// (32 KiB today), so this never truncates and is allocated once per [`SockDiag`].
pub const RECV_BUFFER_BYTES: usize = 1 << 20;

const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x01;
const NLM_F_DUMP: u16 = 0x100 | 0x200; // NLM_F_ROOT | NLM_F_MATCH
/// `linux/sock_diag.h`.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `struct inet_diag_req_v2`: family, protocol, ext, pad, states, inet_diag_sockid (48).
const INET_DIAG_REQ_V2_LEN: usize = 56;
/// `struct inet_diag_msg`: family, state, timer, retrans, inet_diag_sockid (48), expires,
/// rqueue, wqueue, uid, inode.
const INET_DIAG_MSG_LEN: usize = 72;
const REQUEST_LEN: usize = NLMSG_HDRLEN + INET_DIAG_REQ_V2_LEN;

/// Which address family to dump. Dual-stack sockets (an Apache listening on `[::]:80`) are
/// in the IPv6 dump, with IPv4 peers as v4-mapped addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Inet,
    Inet6,
}

impl Family {
    fn raw(self) -> u8 {
        match self {
            Family::Inet => libc::AF_INET as u8,
            Family::Inet6 => libc::AF_INET6 as u8,
        }
    }
}

/// One TCP socket from the dump. Copied out of the receive buffer; everything is by value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockRecord {
    /// The kernel state number (`idiag_state`); see [`SockRecord::state`].
    pub state_raw: u8,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// For LISTEN sockets the current accept-queue length; otherwise unread bytes.
    pub rqueue: u32,
    /// For LISTEN sockets the accept-queue limit (backlog); otherwise unsent bytes.
    pub wqueue: u32,
    pub uid: u32,
    pub inode: u32,
}

impl SockRecord {
    pub fn state(&self) -> Option<TcpState> {
        TcpState::from_kernel(self.state_raw)
    }
}

/// Where a reply datagram left the dump.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Progress {
    /// More datagrams follow.
    More,
    /// NLMSG_DONE seen: the dump is complete.
    Done,
}

/// The dump request for one family: `nlmsghdr` followed by `inet_diag_req_v2`.
pub(crate) fn dump_request(family: Family, states: StateSet, seq: u32) -> [u8; REQUEST_LEN] {
    let mut req = [0u8; REQUEST_LEN];
    req[0..4].copy_from_slice(&(REQUEST_LEN as u32).to_ne_bytes());
    req[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req[8..12].copy_from_slice(&seq.to_ne_bytes());
    // nlmsg_pid 0: the kernel fills in our port id.
    req[16] = family.raw();
    req[17] = libc::IPPROTO_TCP as u8;
    // idiag_ext 0: no extra attributes; the fixed part has all we count.
    req[20..24].copy_from_slice(&states.kernel_mask().to_ne_bytes());
    // inet_diag_sockid all zero: a dump, not a lookup.
    req
}

fn ne_u16(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn be_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn ne_u32(b: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&b[at..at + 4]);
    u32::from_ne_bytes(word)
}

fn ip_at(family: u8, b: &[u8], at: usize) -> Option<IpAddr> {
    match i32::from(family) {
        libc::AF_INET => Some(IpAddr::V4(Ipv4Addr::new(
            b[at],
            b[at + 1],
            b[at + 2],
            b[at + 3],
        ))),
        libc::AF_INET6 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&b[at..at + 16]);
            Some(IpAddr::V6(Ipv6Addr::from(octets)))
        }
        _ => None,
    }
}

/// Decode an `inet_diag_msg` payload (attributes after the fixed part are ignored).
/// `offset` is where the payload starts in the datagram, for the error.
pub(crate) fn parse_inet_diag_msg(
    payload: &[u8],
    offset: usize,
) -> Result<SockRecord, TcpStateError> {
    if payload.len() < INET_DIAG_MSG_LEN {
        return Err(TcpStateError::Malformed {
            offset,
            reason: "inet_diag_msg shorter than 72 bytes",
        });
    }
    let family = payload[0];
    let (Some(src), Some(dst)) = (ip_at(family, payload, 8), ip_at(family, payload, 24)) else {
        return Err(TcpStateError::Malformed {
            offset,
            reason: "inet_diag_msg with an address family other than AF_INET/AF_INET6",
        });
    };
    Ok(SockRecord {
        state_raw: payload[1],
        local: SocketAddr::new(src, be_u16(payload, 4)),
        remote: SocketAddr::new(dst, be_u16(payload, 6)),
        rqueue: ne_u32(payload, 56),
        wqueue: ne_u32(payload, 60),
        uid: ne_u32(payload, 64),
        inode: ne_u32(payload, 68),
    })
}

/// Walk the netlink messages of one reply datagram, calling `visit` for every socket.
/// Messages with another sequence number (left over from an earlier request) are skipped.
pub(crate) fn parse_datagram<F: FnMut(&SockRecord)>(
    buf: &[u8],
    seq: u32,
    visit: &mut F,
) -> Result<Progress, TcpStateError> {
    let mut at = 0;
    while at < buf.len() {
        if buf.len() - at < NLMSG_HDRLEN {
            return Err(TcpStateError::Malformed {
                offset: at,
                reason: "trailing bytes shorter than a netlink header",
            });
        }
        let len = ne_u32(buf, at) as usize;
        if len < NLMSG_HDRLEN {
            return Err(TcpStateError::Malformed {
                offset: at,
                reason: "nlmsg_len shorter than the netlink header",
            });
        }
        if len > buf.len() - at {
            return Err(TcpStateError::Malformed {
                offset: at,
                reason: "message runs past the end of the datagram",
            });
        }
        let kind = ne_u16(buf, at + 4);
        let msg_seq = ne_u32(buf, at + 8);
        let payload_at = at + NLMSG_HDRLEN;
        let payload = &buf[payload_at..at + len];
        if msg_seq == seq {
            match kind {
                SOCK_DIAG_BY_FAMILY => visit(&parse_inet_diag_msg(payload, payload_at)?),
                NLMSG_DONE => {
                    // The payload is an int: 0, or a negative errno if the dump failed late.
                    if payload.len() >= 4 {
                        let status = ne_u32(payload, 0) as i32;
                        if status < 0 {
                            return Err(TcpStateError::Kernel(io::Error::from_raw_os_error(
                                -status,
                            )));
                        }
                    }
                    return Ok(Progress::Done);
                }
                NLMSG_ERROR => {
                    if payload.len() < 4 {
                        return Err(TcpStateError::Malformed {
                            offset: payload_at,
                            reason: "NLMSG_ERROR without an error code",
                        });
                    }
                    let errno = ne_u32(payload, 0) as i32;
                    // 0 is an acknowledgement, not an error.
                    if errno != 0 {
                        return Err(TcpStateError::Kernel(io::Error::from_raw_os_error(
                            errno.saturating_neg(),
                        )));
                    }
                }
                // NLMSG_NOOP and anything newer carry no sockets.
                _ => {}
            }
        }
        // Messages are padded to 4 bytes; the last one may end the datagram unpadded.
        at = (at + len).next_multiple_of(4).min(buf.len());
    }
    Ok(Progress::More)
}

/// A NETLINK_SOCK_DIAG socket with its receive buffer, reused across dumps. Keep one
/// around for repeated snapshots (the controller, a benchmark); [`super::snapshot`] opens a
/// fresh one per call.
pub struct SockDiag {
    fd: OwnedFd,
    buf: Vec<u8>,
    seq: u32,
    /// A dump ended early (error, or a visitor panicked): unread replies may still be
    /// queued, so the next dump starts on a fresh socket.
    dirty: bool,
}

impl SockDiag {
    /// Open the socket with a [`RECV_BUFFER_BYTES`] receive buffer. Listing sockets needs
    /// no privileges.
    pub fn open() -> Result<SockDiag, TcpStateError> {
        SockDiag::with_buffer(RECV_BUFFER_BYTES)
    }

    /// Open with a receive buffer of `bytes` (at least 64 KiB, so no datagram is cut).
    pub fn with_buffer(bytes: usize) -> Result<SockDiag, TcpStateError> {
        Ok(SockDiag {
            fd: open_socket()?,
            buf: vec![0; bytes.max(64 << 10)],
            seq: 0,
            dirty: false,
        })
    }

    /// Dump the TCP sockets of one family in `states` (filtered by the kernel), calling
    /// `visit` for each. Returns how many were visited.
    pub fn dump<F: FnMut(&SockRecord)>(
        &mut self,
        family: Family,
        states: StateSet,
        mut visit: F,
    ) -> Result<u64, TcpStateError> {
        if self.dirty {
            self.fd = open_socket()?;
        }
        self.dirty = true;
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        send_request(&self.fd, &dump_request(family, states, seq))?;
        let mut seen = 0u64;
        let mut counting = |record: &SockRecord| {
            seen += 1;
            visit(record);
        };
        loop {
            let Some(len) = recv_datagram(&self.fd, &mut self.buf)? else {
                continue;
            };
            if parse_datagram(&self.buf[..len], seq, &mut counting)? == Progress::Done {
                break;
            }
        }
        self.dirty = false;
        Ok(seen)
    }

    /// Dump IPv4 then IPv6 TCP sockets in `states`. Returns how many were visited.
    pub fn for_each<F: FnMut(&SockRecord)>(
        &mut self,
        states: StateSet,
        mut visit: F,
    ) -> Result<u64, TcpStateError> {
        let v4 = self.dump(Family::Inet, states, &mut visit)?;
        let v6 = self.dump(Family::Inet6, states, &mut visit)?;
        Ok(v4 + v6)
    }
}

fn open_socket() -> Result<OwnedFd, TcpStateError> {
    // SAFETY: plain socket(2); the result is checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(TcpStateError::Socket(io::Error::last_os_error()));
    }
    // SAFETY: fd is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn kernel_address() -> libc::sockaddr_nl {
    // SAFETY: sockaddr_nl is plain data; all-zero is valid (pid 0 = the kernel).
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr
}

fn send_request(fd: &OwnedFd, req: &[u8]) -> Result<(), TcpStateError> {
    let addr = kernel_address();
    loop {
        // SAFETY: req and addr outlive the call; lengths are theirs.
        let sent = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                req.as_ptr().cast(),
                req.len(),
                0,
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(TcpStateError::Send(err));
        }
        if sent as usize != req.len() {
            return Err(TcpStateError::Send(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("sent {sent} of {} bytes", req.len()),
            )));
        }
        return Ok(());
    }
}

/// Receive one datagram into `buf`. `None` for a datagram that did not come from the
/// kernel (ignored).
fn recv_datagram(fd: &OwnedFd, buf: &mut [u8]) -> Result<Option<usize>, TcpStateError> {
    let mut from = kernel_address();
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; the fields that matter are set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&raw mut from).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_nl>() as libc::socklen_t;
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    let len = loop {
        // SAFETY: msg points at `from` and `iov`, which point at live, writable memory of
        // the lengths given.
        let len = unsafe { libc::recvmsg(fd.as_raw_fd(), &raw mut msg, 0) };
        if len >= 0 {
            break len as usize;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(TcpStateError::Recv(err));
        }
    };
    if msg.msg_flags & libc::MSG_TRUNC != 0 {
        return Err(TcpStateError::Truncated(buf.len()));
    }
    if len == 0 {
        return Err(TcpStateError::Recv(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "empty datagram before NLMSG_DONE",
        )));
    }
    if from.nl_pid != 0 {
        return Ok(None);
    }
    Ok(Some(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEQ: u32 = 7;

    /// An `nlmsghdr` of `kind` around `payload`, padded to 4 bytes.
    fn message(kind: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&((NLMSG_HDRLEN + payload.len()) as u32).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(&0x2u16.to_ne_bytes()); // NLM_F_MULTI
        out.extend_from_slice(&seq.to_ne_bytes());
        out.extend_from_slice(&4242u32.to_ne_bytes());
        out.extend_from_slice(payload);
        out.resize(out.len().next_multiple_of(4), 0);
        out
    }

    /// An `inet_diag_msg` as the kernel writes it, plus one trailing attribute.
    fn diag_msg(state: TcpState, local: SocketAddr, remote: SocketAddr) -> Vec<u8> {
        let mut p = vec![0u8; INET_DIAG_MSG_LEN];
        p[0] = match local {
            SocketAddr::V4(_) => libc::AF_INET as u8,
            SocketAddr::V6(_) => libc::AF_INET6 as u8,
        };
        p[1] = state.kernel();
        p[4..6].copy_from_slice(&local.port().to_be_bytes());
        p[6..8].copy_from_slice(&remote.port().to_be_bytes());
        for (at, ip) in [(8, local.ip()), (24, remote.ip())] {
            match ip {
                IpAddr::V4(v4) => p[at..at + 4].copy_from_slice(&v4.octets()),
                IpAddr::V6(v6) => p[at..at + 16].copy_from_slice(&v6.octets()),
            }
        }
        p[56..60].copy_from_slice(&3u32.to_ne_bytes());
        p[60..64].copy_from_slice(&511u32.to_ne_bytes());
        p[64..68].copy_from_slice(&33u32.to_ne_bytes());
        p[68..72].copy_from_slice(&123456u32.to_ne_bytes());
        // An INET_DIAG_SHUTDOWN attribute, as the kernel appends one: must be skipped.
        p.extend_from_slice(&[5, 0, 8, 0, 0, 0, 0, 0]);
        p
    }

    fn done(seq: u32) -> Vec<u8> {
        message(NLMSG_DONE, seq, &0i32.to_ne_bytes())
    }

    fn error(seq: u32, errno: i32) -> Vec<u8> {
        // nlmsgerr: error code, then the offending request's header.
        let mut payload = (-errno).to_ne_bytes().to_vec();
        payload.extend_from_slice(&[0u8; NLMSG_HDRLEN]);
        message(NLMSG_ERROR, seq, &payload)
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    fn collect(buf: &[u8]) -> (Result<Progress, TcpStateError>, Vec<SockRecord>) {
        let mut seen = Vec::new();
        let result = parse_datagram(buf, SEQ, &mut |r: &SockRecord| seen.push(*r));
        (result, seen)
    }

    #[test]
    fn request_layout() {
        let req = dump_request(Family::Inet6, StateSet::ALL, 9);
        assert_eq!(req.len(), 72);
        assert_eq!(ne_u32(&req, 0), 72);
        assert_eq!(ne_u16(&req, 4), SOCK_DIAG_BY_FAMILY);
        assert_eq!(ne_u16(&req, 6), 0x301);
        assert_eq!(ne_u32(&req, 8), 9);
        assert_eq!(req[16], libc::AF_INET6 as u8);
        assert_eq!(req[17], 6);
        assert_eq!(ne_u32(&req, 20), 0x1ffe);
        assert!(req[24..].iter().all(|&b| b == 0));
    }

    #[test]
    fn decodes_v4_and_v6_records() {
        let mut buf = message(
            SOCK_DIAG_BY_FAMILY,
            SEQ,
            &diag_msg(
                TcpState::Established,
                addr("10.0.0.1:80"),
                addr("192.0.2.7:51000"),
            ),
        );
        buf.extend(message(
            SOCK_DIAG_BY_FAMILY,
            SEQ,
            &diag_msg(
                TcpState::NewSynRecv,
                addr("[2001:db8::1]:443"),
                addr("[::ffff:198.51.100.3]:40000"),
            ),
        ));
        let (result, seen) = collect(&buf);
        assert_eq!(result.expect("parses"), Progress::More);
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].state(), Some(TcpState::Established));
        assert_eq!(seen[0].local, addr("10.0.0.1:80"));
        assert_eq!(seen[0].remote, addr("192.0.2.7:51000"));
        assert_eq!(
            (seen[0].rqueue, seen[0].wqueue, seen[0].uid, seen[0].inode),
            (3, 511, 33, 123456)
        );
        assert_eq!(seen[1].state(), Some(TcpState::NewSynRecv));
        assert_eq!(seen[1].local, addr("[2001:db8::1]:443"));
        assert_eq!(seen[1].remote, addr("[::ffff:198.51.100.3]:40000"));
    }

    #[test]
    fn multipart_reply_ends_at_done() {
        // Datagram 1: two records, no DONE. Datagram 2: a record then DONE, then a stray
        // record after DONE that must not be visited.
        let record = |port: u16| {
            message(
                SOCK_DIAG_BY_FAMILY,
                SEQ,
                &diag_msg(
                    TcpState::TimeWait,
                    addr("127.0.0.1:8080"),
                    SocketAddr::new([127, 0, 0, 1].into(), port),
                ),
            )
        };
        let mut first = record(1);
        first.extend(record(2));
        let mut second = record(3);
        second.extend(done(SEQ));
        second.extend(record(4));

        let mut ports = Vec::new();
        let mut visit = |r: &SockRecord| ports.push(r.remote.port());
        assert_eq!(
            parse_datagram(&first, SEQ, &mut visit).expect("first part"),
            Progress::More
        );
        assert_eq!(
            parse_datagram(&second, SEQ, &mut visit).expect("second part"),
            Progress::Done
        );
        assert_eq!(ports, [1, 2, 3]);
    }

    #[test]
    fn other_sequence_numbers_are_skipped() {
        let mut buf = message(
            SOCK_DIAG_BY_FAMILY,
            SEQ - 1,
            &diag_msg(TcpState::Listen, addr("0.0.0.0:80"), addr("0.0.0.0:0")),
        );
        buf.extend(done(SEQ - 1));
        buf.extend(message(1, SEQ, &[])); // NLMSG_NOOP
        buf.extend(done(SEQ));
        let (result, seen) = collect(&buf);
        assert_eq!(result.expect("parses"), Progress::Done);
        assert!(seen.is_empty());
    }

    #[test]
    fn nlmsg_error_is_an_error_and_ack_is_not() {
        let (result, _) = collect(&error(SEQ, libc::EPERM));
        match result {
            Err(TcpStateError::Kernel(e)) => assert_eq!(e.raw_os_error(), Some(libc::EPERM)),
            other => panic!("expected a kernel error, got {other:?}"),
        }
        let mut acked = error(SEQ, 0);
        acked.extend(done(SEQ));
        assert_eq!(collect(&acked).0.expect("ack"), Progress::Done);
    }

    #[test]
    fn done_with_negative_status_is_an_error() {
        let buf = message(NLMSG_DONE, SEQ, &(-libc::ENOBUFS).to_ne_bytes());
        match collect(&buf).0 {
            Err(TcpStateError::Kernel(e)) => assert_eq!(e.raw_os_error(), Some(libc::ENOBUFS)),
            other => panic!("expected a kernel error, got {other:?}"),
        }
    }

    #[test]
    fn truncated_message_reports_its_offset() {
        let one = message(
            SOCK_DIAG_BY_FAMILY,
            SEQ,
            &diag_msg(
                TcpState::Established,
                addr("127.0.0.1:1"),
                addr("127.0.0.1:2"),
            ),
        );
        let mut buf = one.clone();
        buf.extend_from_slice(&one[..40]);
        let (result, seen) = collect(&buf);
        assert_eq!(
            seen.len(),
            1,
            "the complete record before the cut is visited"
        );
        match result {
            Err(TcpStateError::Malformed { offset, reason }) => {
                assert_eq!(offset, one.len());
                assert!(reason.contains("past the end"), "{reason}");
            }
            other => panic!("expected malformed, got {other:?}"),
        }

        // A header cut short.
        let (result, _) = collect(&one[..10]);
        assert!(matches!(
            result,
            Err(TcpStateError::Malformed { offset: 0, .. })
        ));

        // nlmsg_len claiming less than a header.
        let mut tiny = done(SEQ);
        tiny[0..4].copy_from_slice(&8u32.to_ne_bytes());
        assert!(matches!(
            collect(&tiny).0,
            Err(TcpStateError::Malformed { offset: 0, .. })
        ));

        // A well-framed message whose inet_diag_msg is too short.
        let short = message(SOCK_DIAG_BY_FAMILY, SEQ, &[0u8; 40]);
        match collect(&short).0 {
            Err(TcpStateError::Malformed { offset, reason }) => {
                assert_eq!(offset, NLMSG_HDRLEN);
                assert!(reason.contains("inet_diag_msg"), "{reason}");
            }
            other => panic!("expected malformed, got {other:?}"),
        }
    }

    #[test]
    fn unknown_family_is_malformed() {
        let mut payload = diag_msg(
            TcpState::Established,
            addr("127.0.0.1:1"),
            addr("127.0.0.1:2"),
        );
        payload[0] = 1; // AF_UNIX
        let buf = message(SOCK_DIAG_BY_FAMILY, SEQ, &payload);
        assert!(matches!(
            collect(&buf).0,
            Err(TcpStateError::Malformed { offset: 16, .. })
        ));
    }
}
