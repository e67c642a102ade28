//! The API's JSON as the client reads it. The server's types (`StatsSnapshot`, `Offender`,
//! `tcpstate::Snapshot`) are built for serialising only (borrowed names, kernel-ordered
//! histograms), so the client has owned mirrors of them here; `tests/cli.rs` serves the
//! server's own types to keep the two in step. Blocklist, allowlist and sysctl entries use
//! the model types directly.

use std::{collections::BTreeMap, net::IpAddr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::{
    model::{AllowRecord, AttackState, BlockRecord},
    sysctl::AuditEntry,
};

/// `GET /healthz`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub interface: String,
    pub xdp_mode: String,
}

/// `GET /v1/stats` (the server's `StatsSnapshot`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub interface: String,
    pub xdp_mode: String,
    /// `false`: monitor mode, would-be drops are only counted.
    pub enforce: bool,
    /// Datapath counters by name (`xdp_guard_common::stats::NAMES`).
    pub counters: BTreeMap<String, u64>,
    pub rates: Rates,
    pub blocklist_size: usize,
    pub allowlist_size: usize,
    pub tracked_sources: usize,
    pub attack_state: AttackState,
    /// The spoof guard limits SYNs from untracked sources (absent from older daemons).
    #[serde(default)]
    pub spoof_guard: bool,
    pub sysctl_profile: String,
    pub syn_recv: u64,
    pub tick_duration_ms: f64,
    pub ticks: u64,
    pub uptime_secs: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Rates {
    pub packets_per_sec: f64,
    pub syns_per_sec: f64,
    pub dropped_per_sec: f64,
    pub new_sources_per_sec: f64,
}

/// One tracked source of `GET /v1/offenders`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Offender {
    pub source: IpNet,
    pub syn_rate: f64,
    pub syns: u64,
    pub dropped: u64,
    pub blocked: bool,
    pub blocked_until_ms: Option<u64>,
    /// Recent SYN/s samples, oldest first.
    #[serde(default)]
    pub history: Vec<f32>,
}

/// `GET /v1/connections` (the server's `tcpstate::Snapshot`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connections {
    pub total: u64,
    /// Sockets by netstat state name.
    pub states: BTreeMap<String, u64>,
    pub syn_recv: u64,
    pub port: Option<u16>,
    pub port_states: BTreeMap<String, u64>,
    /// Most connections first.
    pub clients: Vec<ClientCount>,
    #[serde(default)]
    pub unknown_states: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientCount {
    pub addr: IpAddr,
    pub connections: u64,
}

#[derive(Deserialize)]
pub(super) struct OffenderList {
    pub offenders: Vec<Offender>,
}

#[derive(Deserialize)]
pub(super) struct BlockList {
    pub entries: Vec<BlockRecord>,
}

#[derive(Deserialize)]
pub(super) struct AllowList {
    pub entries: Vec<AllowRecord>,
}

#[derive(Deserialize)]
pub(super) struct AuditList {
    pub entries: Vec<AuditEntry>,
}

/// The body of every API error.
#[derive(Deserialize)]
pub(super) struct ErrorBody {
    pub error: String,
}

#[derive(Serialize)]
pub(super) struct BlockRequest<'a> {
    pub cidr: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
}

#[derive(Serialize)]
pub(super) struct BlockBatchRequest<'a> {
    pub cidrs: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
}

#[derive(Serialize)]
pub(super) struct AllowRequest<'a> {
    pub cidr: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<&'a str>,
}
