//! The daemon's configuration file (`/etc/xdp-guard/xdp-guard.toml`, see
//! `configs/xdp-guard.toml` for the documented example).
//!
//! Every key is optional except `interface`: a missing key takes the value from the `Default`
//! impls below, which are the one place defaults are written down. Unknown keys are rejected
//! so a misspelt threshold cannot silently fall back to its default. [`Config::validate`]
//! reports every problem at once, each under its dotted key (`syn.rate`, `allowlist[2]`).

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use xdp_guard_common::config::RateParams;

use crate::paths;

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Interface the XDP program is attached to (the one Apache's clients arrive on).
    /// Required; there is no sensible default.
    pub interface: String,
    /// Directory for the controller's state, the sysctl backup and interface locks.
    pub state_dir: PathBuf,
    /// How the program is attached: native (driver) XDP, generic (skb) XDP, or auto.
    pub xdp_mode: XdpModeSetting,
    /// `true` drops over-limit SYNs and lets the controller block sources; `false` is monitor
    /// mode: would-be drops are counted, nothing is dropped and nothing is auto-blocked.
    pub enforce: bool,
    /// `true` detaches the program and removes its pins when the daemon exits; `false` leaves
    /// it attached and pinned so protection survives restarts and upgrades.
    pub detach_on_exit: bool,
    /// Destination TCP ports whose SYNs are rate limited. Empty means every port.
    pub protected_ports: Vec<u16>,
    pub syn: SynConfig,
    pub blocking: BlockingConfig,
    pub attack: AttackConfig,
    /// Sources never rate limited or blocked (CIDR prefixes; a bare address is one host).
    #[serde(deserialize_with = "net_list::deserialize")]
    pub allowlist: Vec<IpNet>,
    /// Networks the API and the controller refuse to block (operators' own addresses), in
    /// addition to loopback and the host's own addresses. Still rate limited.
    #[serde(deserialize_with = "net_list::deserialize")]
    pub admin_networks: Vec<IpNet>,
    pub api: ApiConfig,
    pub sysctl: SysctlConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            // Deliberately empty: validate() reports "interface: required".
            interface: String::new(),
            state_dir: PathBuf::from(paths::DEFAULT_STATE_DIR),
            xdp_mode: XdpModeSetting::default(),
            enforce: true,
            // Protection outlives the daemon unless the operator asks otherwise.
            detach_on_exit: false,
            // All ports.
            protected_ports: Vec::new(),
            syn: SynConfig::default(),
            blocking: BlockingConfig::default(),
            attack: AttackConfig::default(),
            allowlist: Vec::new(),
            admin_networks: Vec::new(),
            api: ApiConfig::default(),
            sysctl: SysctlConfig::default(),
        }
    }
}

/// How the XDP program is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpModeSetting {
    /// Native (driver) mode when the driver supports it, generic mode otherwise.
    #[default]
    Auto,
    /// Native mode only; fail if the driver lacks XDP support.
    Native,
    /// Generic (skb) mode: works on every driver, runs after the skb is allocated, slower.
    Generic,
}

/// `[syn]`: per-source SYN rate limiting in the XDP program.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SynConfig {
    /// Sustained SYNs per second allowed per source (IPv4 address or IPv6 prefix). Each CPU
    /// enforces it on its own share of a source's SYNs, so the effective limit lies between
    /// `rate` and `rate` x CPUs.
    pub rate: u32,
    /// SYNs a source may send back to back before `rate` applies (per CPU, like `rate`).
    pub burst: u32,
    /// IPv6 sources are accounted per prefix of this length, in bits.
    pub ipv6_prefix_len: u8,
    /// Controller tick: how often counters are read and decisions written back.
    #[serde(with = "duration_str")]
    pub tick: Duration,
    /// Capacity of the per-source LRU map, in sources.
    pub lru_entries: u32,
}

impl Default for SynConfig {
    fn default() -> Self {
        Self {
            // SYN/s per source: far above any browser (a handful of connections per page).
            rate: 100,
            // SYNs: two seconds' worth at the default rate.
            burst: 200,
            // Bits: one IPv6 /64 is one subscriber.
            ipv6_prefix_len: 64,
            tick: Duration::from_millis(250),
            // Sources.
            lru_entries: 65_536,
        }
    }
}

/// `[blocking]`: how the controller blocks sources that keep exceeding the limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BlockingConfig {
    /// Length of a first block.
    #[serde(with = "duration_str")]
    pub default_ttl: Duration,
    /// Factor applied per previous offence: ttl = default_ttl x escalation^offences, capped at
    /// `max_ttl`. 1.0 disables escalation.
    pub escalation: f64,
    /// Longest block escalation can reach.
    #[serde(with = "duration_str")]
    pub max_ttl: Duration,
    /// Consecutive ticks a source must be over the limit before it is blocked.
    pub over_limit_ticks: u32,
    /// After an operator unblocks a prefix, sources in it are not auto-blocked again for
    /// this long (the kernel still rate-limits them). 0s disables.
    #[serde(with = "duration_str")]
    pub unblock_grace: Duration,
    /// Capacity of the block map, in entries (a hash map, never evicted under floods).
    pub block_max_entries: u32,
    /// Broadest IPv4 prefix length the API accepts in a manual block, in bits.
    pub min_prefix_v4: u8,
    /// Broadest IPv6 prefix length the API accepts in a manual block, in bits.
    pub min_prefix_v6: u8,
}

impl Default for BlockingConfig {
    fn default() -> Self {
        Self {
            default_ttl: Duration::from_secs(10 * 60),
            // Each repeat offence doubles the block.
            escalation: 2.0,
            max_ttl: Duration::from_secs(24 * 60 * 60),
            // Ticks: 500 ms over the limit at the default tick, so one burst does not block.
            over_limit_ticks: 2,
            // A client unblocked by hand first sends the SYNs its kernel retransmitted while
            // it was blocked (1, 3, 7, 15, 31 s after each attempt) on top of new ones.
            unblock_grace: Duration::from_secs(60),
            // Entries: 2^21.
            block_max_entries: 2_097_152,
            // Bits: nothing broader than a /8 or a /32 can be blocked through the API.
            min_prefix_v4: 8,
            min_prefix_v6: 32,
        }
    }
}

/// `[attack]`: when the host counts as under attack (spoofed-flood detection, the sysctl
/// tuner) and when the attack is over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AttackConfig {
    /// New sources per second (sketch admissions plus flood-guard refusals) that mean a
    /// spoofed flood: too many one-off sources for per-source limits to help.
    pub new_sources_per_sec: u64,
    /// Total SYNs per second, all sources together, that mean "under attack".
    pub syn_rate_total: u64,
    /// Sockets in SYN_RECV that mean "under attack".
    pub syn_recv_threshold: u64,
    /// Listen-queue overflows per second that mean "under attack".
    pub listen_overflows_per_sec: u64,
    /// No trigger for this long means the attack is over (and tuned sysctls are restored).
    #[serde(with = "duration_str")]
    pub quiet_period: Duration,
    /// While a spoofed flood is seen: SYNs per second per CPU let through from sources the
    /// program does not track; clients that completed a handshake are tracked and pass.
    /// 0 turns the spoof guard off (every such SYN reaches the kernel and its syncookies).
    pub spoofed_syn_budget: u32,
}

impl Default for AttackConfig {
    fn default() -> Self {
        Self {
            // Sources/s.
            new_sources_per_sec: 5_000,
            // SYN/s.
            syn_rate_total: 20_000,
            // Sockets.
            syn_recv_threshold: 512,
            // Overflows/s: any overflow means Apache is dropping connections.
            listen_overflows_per_sec: 1,
            quiet_period: Duration::from_secs(60),
            // Off: dropping unknown sources also turns away new visitors; see the example
            // config for the trade.
            spoofed_syn_budget: 0,
        }
    }
}

/// `[api]`: the REST API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Address and port the API listens on.
    pub listen: SocketAddr,
    /// File holding the bearer token required for writes.
    pub token_file: PathBuf,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Write requests allowed per client address per minute.
    pub writes_per_minute: u32,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            // Loopback only.
            listen: paths::DEFAULT_API_LISTEN
                .parse()
                .expect("paths::DEFAULT_API_LISTEN is a valid socket address"),
            token_file: PathBuf::from(paths::DEFAULT_TOKEN_FILE),
            // Bytes: a block request is well under 1 KiB.
            max_body_bytes: 16_384,
            // Requests per minute per client address.
            writes_per_minute: 120,
        }
    }
}

/// `[sysctl]`: whether the daemon tunes kernel settings itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SysctlConfig {
    pub mode: SysctlMode,
}

impl Default for SysctlConfig {
    fn default() -> Self {
        Self {
            // The daemon never writes a sysctl unless the operator opts in.
            mode: SysctlMode::Manual,
        }
    }
}

/// What the daemon does with the sysctl tuner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SysctlMode {
    /// No audit, no changes.
    Off,
    /// Audit and report only; the operator applies and restores with the CLI.
    #[default]
    Manual,
    /// Apply the attack profile when an attack starts, restore the originals when it ends.
    Auto,
}

/// One thing wrong with a configuration, under its dotted key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key, e.g. `syn.rate` or `allowlist[2]`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not TOML, or a value of the wrong type, or an unknown key. `message` names the line,
    /// column and key.
    #[error("{}{message}", path_prefix(path.as_deref()))]
    Parse {
        path: Option<PathBuf>,
        message: String,
    },
    /// Every problem `validate()` found, one per line in Display.
    #[error("{}", list_problems(.0))]
    Invalid(Vec<Problem>),
}

fn path_prefix(path: Option<&Path>) -> String {
    path.map(|p| format!("{}: ", p.display()))
        .unwrap_or_default()
}

fn list_problems(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(Problem::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl Config {
    /// Parses and validates a configuration.
    pub fn from_toml_str(s: &str) -> Result<Config, ConfigError> {
        Self::parse(s, None)
    }

    /// Reads, parses and validates the configuration file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, Some(path))
    }

    fn parse(s: &str, path: Option<&Path>) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(s).map_err(|e| ConfigError::Parse {
            path: path.map(Path::to_path_buf),
            message: describe_toml_error(s, &e),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every value and reports every problem found, in key order.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut p = Problems::default();

        if self.interface.is_empty() {
            p.push("interface", "required");
        } else if let Err(why) = check_ifname(&self.interface) {
            p.push("interface", why);
        }
        p.absolute("state_dir", &self.state_dir);
        for (i, &port) in self.protected_ports.iter().enumerate() {
            let key = format!("protected_ports[{i}]");
            if port == 0 {
                p.push(key, "0 is not a port");
            } else if let Some(first) = self.protected_ports[..i].iter().position(|&q| q == port) {
                p.push(key, format!("{port} repeats protected_ports[{first}]"));
            }
        }

        let syn = &self.syn;
        p.at_least("syn.rate", syn.rate, 1);
        p.at_least("syn.burst", syn.burst, 1);
        p.within("syn.ipv6_prefix_len", syn.ipv6_prefix_len, 1, 128);
        p.duration_within(
            "syn.tick",
            syn.tick,
            Duration::from_millis(10),
            Duration::from_secs(10),
        );
        p.within("syn.lru_entries", syn.lru_entries, 1024, 16_777_216);

        let b = &self.blocking;
        if b.default_ttl < Duration::from_secs(1) {
            p.push(
                "blocking.default_ttl",
                format!(
                    "must be at least 1s, got {}",
                    duration_str::format(b.default_ttl)
                ),
            );
        }
        if !(b.escalation.is_finite() && b.escalation >= 1.0) {
            p.push(
                "blocking.escalation",
                format!("must be a number >= 1.0, got {}", b.escalation),
            );
        }
        if b.max_ttl < b.default_ttl {
            p.push(
                "blocking.max_ttl",
                format!(
                    "{} is shorter than blocking.default_ttl ({})",
                    duration_str::format(b.max_ttl),
                    duration_str::format(b.default_ttl)
                ),
            );
        }
        p.within("blocking.over_limit_ticks", b.over_limit_ticks, 1, 100);
        if b.unblock_grace > Duration::from_secs(86_400) {
            p.push(
                "blocking.unblock_grace",
                format!(
                    "must be at most 24h, got {}",
                    duration_str::format(b.unblock_grace)
                ),
            );
        }
        p.within(
            "blocking.block_max_entries",
            b.block_max_entries,
            1,
            16_777_216,
        );
        p.within("blocking.min_prefix_v4", b.min_prefix_v4, 0, 32);
        p.within("blocking.min_prefix_v6", b.min_prefix_v6, 0, 128);

        let a = &self.attack;
        p.at_least("attack.new_sources_per_sec", a.new_sources_per_sec, 1);
        p.at_least("attack.syn_rate_total", a.syn_rate_total, 1);
        p.at_least("attack.syn_recv_threshold", a.syn_recv_threshold, 1);
        p.at_least(
            "attack.listen_overflows_per_sec",
            a.listen_overflows_per_sec,
            1,
        );
        p.within(
            "attack.spoofed_syn_budget",
            a.spoofed_syn_budget,
            0,
            100_000_000,
        );
        if a.quiet_period < Duration::from_secs(1) {
            p.push(
                "attack.quiet_period",
                format!(
                    "must be at least 1s, got {}",
                    duration_str::format(a.quiet_period)
                ),
            );
        }

        p.networks("allowlist", &self.allowlist);
        p.networks("admin_networks", &self.admin_networks);

        p.absolute("api.token_file", &self.api.token_file);
        p.within("api.max_body_bytes", self.api.max_body_bytes, 64, 1_048_576);
        p.within(
            "api.writes_per_minute",
            self.api.writes_per_minute,
            1,
            100_000,
        );

        if p.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(p.0))
        }
    }

    /// The thresholds the XDP program enforces, for `RateParams::to_config`.
    pub fn rate_params(&self) -> RateParams {
        RateParams {
            syn_rate: self.syn.rate,
            syn_burst: self.syn.burst,
            enforce: self.enforce,
            ipv6_prefix_len: u32::from(self.syn.ipv6_prefix_len),
        }
    }
}

/// The rules of the kernel's `dev_valid_name()`.
fn check_ifname(name: &str) -> Result<(), String> {
    const IFNAMSIZ: usize = 16;
    if name.len() >= IFNAMSIZ {
        return Err(format!(
            "{name:?} is {} bytes long; interface names are at most {} bytes",
            name.len(),
            IFNAMSIZ - 1
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} is not a valid interface name"));
    }
    if let Some(c) = name
        .chars()
        .find(|&c| c == '/' || c == ':' || c == '\0' || c.is_whitespace())
    {
        return Err(format!(
            "{name:?} contains {c:?}, which interface names cannot"
        ));
    }
    Ok(())
}

/// Collects problems while `validate()` walks the config.
#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }

    fn at_least<T: PartialOrd + fmt::Display>(&mut self, key: &str, value: T, min: T) {
        if value < min {
            self.push(key, format!("must be at least {min}, got {value}"));
        }
    }

    fn within<T: PartialOrd + fmt::Display>(&mut self, key: &str, value: T, min: T, max: T) {
        if value < min || value > max {
            self.push(key, format!("must be between {min} and {max}, got {value}"));
        }
    }

    fn duration_within(&mut self, key: &str, value: Duration, min: Duration, max: Duration) {
        if value < min || value > max {
            self.push(
                key,
                format!(
                    "must be between {} and {}, got {}",
                    duration_str::format(min),
                    duration_str::format(max),
                    duration_str::format(value)
                ),
            );
        }
    }

    fn absolute(&mut self, key: &str, path: &Path) {
        if !path.is_absolute() {
            self.push(key, format!("{} is not an absolute path", path.display()));
        }
    }

    /// A prefix with host bits set is almost always a typo for a host or for the network;
    /// refusing it makes the operator say which.
    fn networks(&mut self, key: &str, nets: &[IpNet]) {
        for (i, net) in nets.iter().enumerate() {
            let canonical = net.trunc();
            if canonical != *net {
                self.push(
                    format!("{key}[{i}]"),
                    format!("{net}: host bits set; did you mean {canonical}?"),
                );
            }
        }
    }
}

/// One line naming where toml found the problem: `line 12, column 8, in `syn.tick`: ...`.
fn describe_toml_error(input: &str, err: &toml::de::Error) -> String {
    // toml only prints the key path when it has no source text to quote.
    let mut bare = err.clone();
    bare.set_input(None);
    let key = bare.to_string().lines().find_map(|line| {
        line.strip_prefix("in `")
            .and_then(|k| k.strip_suffix('`'))
            .map(str::to_owned)
    });

    let mut where_ = Vec::new();
    if let Some(span) = err.span() {
        let before = &input[..span.start.min(input.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
        where_.push(format!("line {line}, column {column}"));
    }
    if let Some(key) = key {
        where_.push(format!("in `{key}`"));
    }
    if where_.is_empty() {
        err.message().to_owned()
    } else {
        format!("{}: {}", where_.join(", "), err.message())
    }
}

/// Durations as humantime strings: "250ms", "10m", "24h".
mod duration_str {
    use std::{fmt, time::Duration};

    use serde::{Deserializer, Serializer, de};

    pub fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*value))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_str(DurationVisitor)
    }

    struct DurationVisitor;

    impl de::Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a duration string such as \"250ms\", \"60s\", \"10m\" or \"24h\"")
        }

        fn visit_str<E: de::Error>(self, s: &str) -> Result<Duration, E> {
            humantime::parse_duration(s)
                .map_err(|e| E::custom(format!("invalid duration {s:?}: {e}")))
        }
    }

    /// The largest single unit that expresses `d` exactly: 24h stays "24h" (humantime's
    /// `format_duration` would write "1day"), 90s stays "90s" (not "1m 30s").
    pub fn format(d: Duration) -> String {
        const UNITS: [(u128, &str); 6] = [
            (3_600_000_000_000, "h"),
            (60_000_000_000, "m"),
            (1_000_000_000, "s"),
            (1_000_000, "ms"),
            (1_000, "us"),
            (1, "ns"),
        ];
        let nanos = d.as_nanos();
        if nanos == 0 {
            return "0s".to_owned();
        }
        UNITS
            .iter()
            .find(|(size, _)| nanos.is_multiple_of(*size))
            .map(|(size, unit)| format!("{}{unit}", nanos / size))
            .unwrap_or_else(|| humantime::format_duration(d).to_string())
    }
}

/// Network lists: CIDR prefixes, or a bare address meaning that one host (/32 or /128).
mod net_list {
    use super::*;
    use serde::{Deserializer, de};

    /// One element, so an error points at the offending entry rather than the whole list.
    struct Entry(IpNet);

    impl<'de> Deserialize<'de> for Entry {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_str(EntryVisitor)
        }
    }

    struct EntryVisitor;

    impl de::Visitor<'_> for EntryVisitor {
        type Value = Entry;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a network such as \"192.0.2.0/24\" or \"2001:db8::/48\", or an address")
        }

        fn visit_str<E: de::Error>(self, s: &str) -> Result<Entry, E> {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map(Entry)
                .map_err(|_| {
                    E::custom(format!(
                        "invalid network {s:?}: expected e.g. \"192.0.2.0/24\", \"2001:db8::/48\" or an address"
                    ))
                })
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
        let entries = Vec::<Entry>::deserialize(d)?;
        Ok(entries.into_iter().map(|e| e.0).collect())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    const EXAMPLE: &str = include_str!("../../configs/xdp-guard.toml");

    fn problems(toml: &str) -> Vec<Problem> {
        match Config::from_toml_str(toml) {
            Err(ConfigError::Invalid(problems)) => problems,
            other => panic!("expected validation problems, got {other:?}"),
        }
    }

    fn parse_error(toml: &str) -> String {
        match Config::from_toml_str(toml) {
            Err(e @ ConfigError::Parse { .. }) => e.to_string(),
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    fn keys(problems: &[Problem]) -> Vec<&str> {
        problems.iter().map(|p| p.key.as_str()).collect()
    }

    #[test]
    fn example_parses_and_documents_the_defaults() {
        let example = Config::from_toml_str(EXAMPLE).unwrap();
        let default = Config::default();
        assert_eq!(example.interface, "eth0");
        // Section by section first, so a drift names the section.
        assert_eq!(example.state_dir, default.state_dir);
        assert_eq!(example.xdp_mode, default.xdp_mode);
        assert_eq!(example.enforce, default.enforce);
        assert_eq!(example.detach_on_exit, default.detach_on_exit);
        assert_eq!(example.protected_ports, default.protected_ports);
        assert_eq!(example.syn, default.syn);
        assert_eq!(example.blocking, default.blocking);
        assert_eq!(example.attack, default.attack);
        assert_eq!(example.allowlist, default.allowlist);
        assert_eq!(example.admin_networks, default.admin_networks);
        assert_eq!(example.api, default.api);
        assert_eq!(example.sysctl, default.sysctl);
        assert_eq!(
            example,
            Config {
                interface: "eth0".into(),
                ..default
            }
        );
    }

    /// Every key of the config is spelt out in the example (so it documents all of them), and
    /// the example has nothing the config lacks.
    #[test]
    fn example_sets_every_key() {
        fn dotted(table: &toml::Table, prefix: &str, out: &mut BTreeSet<String>) {
            for (k, v) in table {
                let key = format!("{prefix}{k}");
                match v {
                    toml::Value::Table(t) => dotted(t, &format!("{key}."), out),
                    _ => {
                        out.insert(key);
                    }
                }
            }
        }
        let mut in_example = BTreeSet::new();
        dotted(
            &EXAMPLE.parse::<toml::Table>().unwrap(),
            "",
            &mut in_example,
        );
        let serialized = toml::to_string(&Config::default()).unwrap();
        let mut in_config = BTreeSet::new();
        dotted(
            &serialized.parse::<toml::Table>().unwrap(),
            "",
            &mut in_config,
        );
        assert_eq!(in_example, in_config);
    }

    #[test]
    fn empty_file_requires_interface() {
        let err = Config::from_toml_str("").unwrap_err();
        assert_eq!(err.to_string(), "interface: required");
        assert_eq!(
            problems(""),
            vec![Problem {
                key: "interface".into(),
                message: "required".into()
            }]
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let toml = r#"
            interface = "an-interface-name-too-long"
            state_dir = "var/lib/xdp-guard"
            protected_ports = [80, 0, 443, 80]
            allowlist = ["10.0.0.0/8", "192.0.2.1/24"]
            admin_networks = ["2001:db8::1/64"]

            [syn]
            rate = 0
            burst = 0
            ipv6_prefix_len = 0
            tick = "1ms"
            lru_entries = 10

            [blocking]
            default_ttl = "1h"
            max_ttl = "10m"
            escalation = 0.5
            over_limit_ticks = 0
            unblock_grace = "25h"
            block_max_entries = 0
            min_prefix_v4 = 33
            min_prefix_v6 = 129

            [attack]
            new_sources_per_sec = 0
            syn_rate_total = 0
            syn_recv_threshold = 0
            listen_overflows_per_sec = 0
            quiet_period = "0s"
            spoofed_syn_budget = 100000001

            [api]
            token_file = "api.token"
            max_body_bytes = 10
            writes_per_minute = 0
        "#;
        let found = problems(toml);
        assert_eq!(
            keys(&found),
            [
                "interface",
                "state_dir",
                "protected_ports[1]",
                "protected_ports[3]",
                "syn.rate",
                "syn.burst",
                "syn.ipv6_prefix_len",
                "syn.tick",
                "syn.lru_entries",
                "blocking.escalation",
                "blocking.max_ttl",
                "blocking.over_limit_ticks",
                "blocking.unblock_grace",
                "blocking.block_max_entries",
                "blocking.min_prefix_v4",
                "blocking.min_prefix_v6",
                "attack.new_sources_per_sec",
                "attack.syn_rate_total",
                "attack.syn_recv_threshold",
                "attack.listen_overflows_per_sec",
                "attack.spoofed_syn_budget",
                "attack.quiet_period",
                "allowlist[1]",
                "admin_networks[0]",
                "api.token_file",
                "api.max_body_bytes",
                "api.writes_per_minute",
            ]
        );
        // Display: one `key: message` line per problem.
        let shown = ConfigError::Invalid(found.clone()).to_string();
        assert_eq!(shown.lines().count(), found.len());
        assert!(shown.contains("protected_ports[3]: 80 repeats protected_ports[0]"));
        assert!(shown.contains("syn.tick: must be between 10ms and 10s, got 1ms"));
        assert!(shown.contains("blocking.max_ttl: 10m is shorter than blocking.default_ttl (1h)"));
        assert!(shown.contains("syn.lru_entries: must be between 1024 and 16777216, got 10"));
    }

    #[test]
    fn zero_ttl_is_refused() {
        let found = problems("interface = \"eth0\"\n[blocking]\ndefault_ttl = \"0s\"\n");
        assert_eq!(keys(&found), ["blocking.default_ttl"]);
    }

    #[test]
    fn non_finite_escalation_is_refused() {
        for value in ["nan", "inf"] {
            let toml = format!("interface = \"eth0\"\n[blocking]\nescalation = {value}\n");
            assert_eq!(keys(&problems(&toml)), ["blocking.escalation"], "{value}");
        }
        // An integer is fine for a float key.
        let c = Config::from_toml_str("interface = \"eth0\"\n[blocking]\nescalation = 3\n");
        assert_eq!(c.unwrap().blocking.escalation, 3.0);
    }

    #[test]
    fn unknown_keys_are_named() {
        let top = parse_error("interface = \"eth0\"\nbogus = 1\n");
        assert!(top.contains("unknown field `bogus`"), "{top}");
        assert!(top.contains("line 2, column 1"), "{top}");

        let nested = parse_error("interface = \"eth0\"\n[syn]\nrat = 100\n");
        assert!(nested.contains("unknown field `rat`"), "{nested}");
        assert!(nested.contains("in `syn`"), "{nested}");
        assert!(nested.contains("line 3"), "{nested}");

        let section = parse_error("interface = \"eth0\"\n[sync]\nrate = 100\n");
        assert!(section.contains("unknown field `sync`"), "{section}");
    }

    #[test]
    fn bad_duration_names_the_key() {
        let e = parse_error("interface = \"eth0\"\n[syn]\ntick = \"10 parsecs\"\n");
        assert!(e.contains("in `syn.tick`"), "{e}");
        assert!(e.contains("line 3, column 8"), "{e}");
        assert!(e.contains("invalid duration \"10 parsecs\""), "{e}");
        // A bare number is not a duration either: the unit must be written.
        let e = parse_error("interface = \"eth0\"\n[blocking]\nmax_ttl = 3600\n");
        assert!(e.contains("in `blocking.max_ttl`"), "{e}");
        assert!(e.contains("duration string"), "{e}");
    }

    #[test]
    fn wrong_types_and_variants_name_the_key() {
        let e = parse_error("interface = \"eth0\"\nxdp_mode = \"turbo\"\n");
        assert!(e.contains("in `xdp_mode`"), "{e}");
        assert!(e.contains("unknown variant `turbo`"), "{e}");
        let e = parse_error("interface = \"eth0\"\n[sysctl]\nmode = \"on\"\n");
        assert!(e.contains("in `sysctl.mode`"), "{e}");
        let e = parse_error("interface = \"eth0\"\n[syn]\nrate = \"fast\"\n");
        assert!(e.contains("in `syn.rate`"), "{e}");
        let e = parse_error("interface = \"eth0\"\nprotected_ports = [80, 70000]\n");
        assert!(e.contains("in `protected_ports`"), "{e}");
        let e = parse_error("interface = \"eth0\"\nallowlist = [\"10.0.0.0/8\",\n  \"ten\"]\n");
        assert!(e.contains("line 3, column 3"), "{e}");
        assert!(e.contains("in `allowlist`"), "{e}");
        assert!(e.contains("invalid network \"ten\""), "{e}");
        let e = parse_error("interface = ");
        assert!(e.starts_with("line 1, column 13: "), "{e}");
    }

    #[test]
    fn host_bits_suggest_the_canonical_prefix() {
        let found = problems(
            r#"
            interface = "eth0"
            allowlist = ["10.0.0.0/8", "192.0.2.0/24", "10.1.2.3/8"]
            admin_networks = ["2001:db8::1/48"]
            "#,
        );
        assert_eq!(
            found,
            vec![
                Problem {
                    key: "allowlist[2]".into(),
                    message: "10.1.2.3/8: host bits set; did you mean 10.0.0.0/8?".into(),
                },
                Problem {
                    key: "admin_networks[0]".into(),
                    message: "2001:db8::1/48: host bits set; did you mean 2001:db8::/48?".into(),
                },
            ]
        );
    }

    #[test]
    fn bare_addresses_are_single_hosts() {
        let c = Config::from_toml_str(
            "interface = \"eth0\"\nallowlist = [\"192.0.2.7\", \"2001:db8::1\"]\n",
        )
        .unwrap();
        let expected: Vec<IpNet> = vec![
            "192.0.2.7/32".parse().unwrap(),
            "2001:db8::1/128".parse().unwrap(),
        ];
        assert_eq!(c.allowlist, expected);
    }

    #[test]
    fn interface_names_follow_the_kernel() {
        for good in [
            "eth0",
            "enp3s0f1",
            "veth-a.100",
            "br_lan",
            "wlan0123456789a",
        ] {
            assert_eq!(check_ifname(good), Ok(()), "{good}");
        }
        for bad in [
            ".",
            "..",
            "eth/0",
            "eth0:1",
            "eth 0",
            "eth0\t",
            "wlan0123456789ab",
        ] {
            let c = Config {
                interface: bad.into(),
                ..Config::default()
            };
            match c.validate() {
                Err(ConfigError::Invalid(p)) => assert_eq!(keys(&p), ["interface"], "{bad:?}"),
                other => panic!("{bad:?} accepted: {other:?}"),
            }
        }
    }

    #[test]
    fn serialize_then_parse_round_trips() {
        let custom = Config {
            interface: "enp3s0".into(),
            state_dir: "/srv/xdp-guard".into(),
            xdp_mode: XdpModeSetting::Generic,
            enforce: false,
            detach_on_exit: true,
            protected_ports: vec![80, 443],
            syn: SynConfig {
                rate: 50,
                burst: 75,
                ipv6_prefix_len: 56,
                tick: Duration::from_millis(1500),
                lru_entries: 131_072,
            },
            blocking: BlockingConfig {
                default_ttl: Duration::from_secs(90),
                escalation: 1.5,
                max_ttl: Duration::from_secs(7 * 24 * 3600),
                over_limit_ticks: 4,
                unblock_grace: Duration::from_secs(5),
                block_max_entries: 1_000_000,
                min_prefix_v4: 16,
                min_prefix_v6: 48,
            },
            attack: AttackConfig {
                new_sources_per_sec: 10_000,
                syn_rate_total: 50_000,
                syn_recv_threshold: 1024,
                listen_overflows_per_sec: 5,
                quiet_period: Duration::from_secs(300),
                spoofed_syn_budget: 2000,
            },
            allowlist: vec!["192.0.2.0/24".parse().unwrap()],
            admin_networks: vec![
                "198.51.100.7/32".parse().unwrap(),
                "2001:db8::/48".parse().unwrap(),
            ],
            api: ApiConfig {
                listen: "[::1]:9999".parse().unwrap(),
                token_file: "/run/secrets/xdp-guard".into(),
                max_body_bytes: 4096,
                writes_per_minute: 30,
            },
            sysctl: SysctlConfig {
                mode: SysctlMode::Auto,
            },
        };
        for config in [
            custom,
            Config {
                interface: "eth0".into(),
                ..Config::default()
            },
        ] {
            let text = toml::to_string(&config).unwrap();
            assert_eq!(Config::from_toml_str(&text).unwrap(), config, "{text}");
        }
    }

    #[test]
    fn durations_format_in_one_unit() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_secs(60), "1m"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_secs(600), "10m"),
            (Duration::from_secs(86_400), "24h"),
            (Duration::from_micros(1500), "1500us"),
            (Duration::from_nanos(7), "7ns"),
        ];
        for (d, text) in cases {
            assert_eq!(duration_str::format(d), text);
            assert_eq!(humantime::parse_duration(text).unwrap(), d, "{text}");
        }
    }

    #[test]
    fn rate_params_follow_syn_and_enforce() {
        let c = Config {
            enforce: false,
            syn: SynConfig {
                rate: 30,
                burst: 60,
                ipv6_prefix_len: 48,
                ..SynConfig::default()
            },
            ..Config::default()
        };
        assert_eq!(
            c.rate_params(),
            RateParams {
                syn_rate: 30,
                syn_burst: 60,
                enforce: false,
                ipv6_prefix_len: 48,
            }
        );
    }

    #[test]
    fn load_names_the_path() {
        let dir = std::env::temp_dir().join(format!("xdp-guard-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();

        let missing = dir.join("missing.toml");
        let e = Config::load(&missing).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }), "{e:?}");
        assert!(e.to_string().contains("missing.toml"), "{e}");

        let broken = dir.join("broken.toml");
        std::fs::write(&broken, "interface = \"eth0\"\n[syn]\nrate = -1\n").unwrap();
        let e = Config::load(&broken).unwrap_err();
        let shown = e.to_string();
        assert!(
            shown.starts_with(&format!("{}: line 3", broken.display())),
            "{shown}"
        );
        assert!(shown.contains("in `syn.rate`"), "{shown}");

        let good = dir.join("good.toml");
        std::fs::write(&good, EXAMPLE).unwrap();
        assert_eq!(Config::load(&good).unwrap().interface, "eth0");

        std::fs::remove_dir_all(&dir).unwrap();
    }
}
