//! What the daemon keeps about blocks and allows, as the API, the store and the CLI see it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Who put an entry there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// An operator, through the API or CLI.
    Manual,
    /// The controller, for a source over its SYN rate.
    Auto,
    /// The configuration file.
    Config,
}

/// Milliseconds since the Unix epoch: what the store and the API carry.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

pub fn now_ms() -> u64 {
    unix_ms(SystemTime::now())
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRecord {
    pub cidr: IpNet,
    /// Wall-clock expiry; `None` for a permanent block.
    pub expires_at_ms: Option<u64>,
    pub reason: String,
    pub origin: Origin,
    /// Offences of this source when the block was made (0 for a first offence).
    pub offences: u32,
    pub created_at_ms: u64,
}

impl BlockRecord {
    pub fn expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|e| e <= now_ms)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllowRecord {
    pub cidr: IpNet,
    pub origin: Origin,
    #[serde(default)]
    pub note: String,
    pub created_at_ms: u64,
}

/// Offence history of a source: how escalation remembers repeat offenders.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offence {
    pub count: u32,
    pub last_at_ms: u64,
}

/// Attack state as the controller sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttackState {
    #[default]
    None,
    /// Identifiable sources over their rate: per-source blocking handles it.
    PerSource,
    /// Many sources, each under the limit, at a high new-source rate: per-source blocking
    /// cannot help; syncookies are forced and the datapath's flood guard holds the LRU.
    Spoofed,
}

impl AttackState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::PerSource => "per_source",
            Self::Spoofed => "spoofed",
        }
    }
}
