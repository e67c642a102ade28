//! The `xdp-guard` command line: argument definitions and the client subcommands.
//!
//! Everything except `run` and `detach` lives here. Most subcommands talk to the daemon's
//! REST API through [`Client`]; `sysctl`, `check-config`, `completions` and `man` work
//! locally (the sysctl ones need root on the host, where the API would add nothing).
//! `main.rs` parses [`Cli`], handles [`Command::Run`] and [`Command::Detach`] itself and
//! passes everything else to [`dispatch`].

mod client;
mod format;
mod top;
mod wire;

#[cfg(test)]
mod tests;

use std::{
    io::{self, Write},
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use clap::{
    Args, CommandFactory, Parser, Subcommand,
    builder::{PossibleValuesParser, TypedValueParser},
};

pub use client::{Client, encode_segment};
pub use format::{
    Align, CLIENTS_SHOWN, allowlist_table, audit_table, block_line, blocklist_table,
    connections_report, remaining, stats_report, table,
};
pub use top::{
    COLUMNS as TOP_COLUMNS, OffenderRow, SortKey, TopView, build_view, draw as draw_top,
    render_text, sort_offenders, sparkline,
};
pub use wire::{ClientCount, Connections, Health, Offender, Rates, Stats};

use crate::{
    config::{Config, ConfigError, XdpModeSetting},
    model, paths,
    sysctl::{self, Profile, SysctlError},
};

/// Block length `top` uses for the `b` key.
pub const TOP_BLOCK_TTL: Duration = Duration::from_secs(10 * 60);

/// XDP SYN-flood firewall: daemon, REST API client and live view.
#[derive(Debug, Parser)]
#[command(name = "xdp-guard", version, about, propagate_version = true)]
pub struct Cli {
    /// Base URL of the xdp-guard REST API (plain HTTP).
    #[arg(
        long,
        global = true,
        env = "XDP_GUARD_API",
        default_value = "http://127.0.0.1:9180",
        value_name = "URL"
    )]
    pub api: String,

    /// File holding the API bearer token (read only by commands that call /v1).
    #[arg(
        long,
        global = true,
        env = "XDP_GUARD_TOKEN_FILE",
        default_value = paths::DEFAULT_TOKEN_FILE,
        value_name = "PATH"
    )]
    pub token_file: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: attach the XDP program, the controller and the API.
    Run(RunArgs),
    /// Live view of the top SYN sources (full screen; --once prints one frame).
    Top(TopArgs),
    /// Block an address or prefix, or (--file) every prefix of a feed, all or nothing.
    Block(BlockArgs),
    /// Remove a block.
    Unblock {
        /// Address or prefix, exactly as blocked (e.g. 192.0.2.7 or 198.51.100.0/24).
        cidr: String,
    },
    /// Allowlist an address or prefix: never rate limited or blocked.
    Allow(AllowArgs),
    /// Remove an allowlist entry.
    Disallow {
        /// Address or prefix, exactly as allowlisted.
        cidr: String,
    },
    /// Show the blocklist (or, with --allow, the allowlist).
    List(ListArgs),
    /// Counters, rates and the attack state.
    Stats(JsonArg),
    /// TCP sockets by state and the busiest clients of a port (netstat | sort | uniq -c).
    Conns(ConnsArgs),
    /// Audit, apply or restore the kernel settings against SYN floods (local, needs root
    /// to change anything).
    Sysctl(SysctlArgs),
    /// Read and validate a configuration file.
    CheckConfig {
        #[arg(long, default_value = paths::DEFAULT_CONFIG, value_name = "PATH")]
        config: PathBuf,
    },
    /// Detach the XDP program from an interface and remove its pins (refused while a daemon
    /// guards the interface: its lock is looked for in the configured state_dir).
    Detach {
        #[arg(long, value_name = "IFACE")]
        iface: String,
        /// The daemon's configuration, read for its state_dir (where the lock is). A missing
        /// file means the default state_dir.
        #[arg(long, default_value = paths::DEFAULT_CONFIG, value_name = "PATH")]
        config: PathBuf,
        /// The daemon's state_dir, instead of reading it from --config.
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
    },
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff).
    Man,
}

/// `xdp-guard run`: what the daemon takes from the command line.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct RunArgs {
    /// Configuration file.
    #[arg(long, default_value = paths::DEFAULT_CONFIG, value_name = "PATH")]
    pub config: PathBuf,
    /// Interface to guard, overriding `interface` in the configuration.
    #[arg(long, value_name = "IFACE")]
    pub iface: Option<String>,
    /// XDP attach mode, overriding `xdp_mode` in the configuration.
    #[arg(long, value_name = "MODE", value_parser = xdp_mode_parser())]
    pub mode: Option<XdpModeSetting>,
}

fn xdp_mode_parser() -> impl TypedValueParser<Value = XdpModeSetting> {
    PossibleValuesParser::new(["auto", "native", "generic"]).map(|s| match s.as_str() {
        "native" => XdpModeSetting::Native,
        "generic" => XdpModeSetting::Generic,
        _ => XdpModeSetting::Auto,
    })
}

#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct TopArgs {
    /// Print one frame as plain text and exit (for scripts).
    #[arg(long)]
    pub once: bool,
    /// Refresh interval (100ms to 1h).
    #[arg(long, default_value = "1s", value_parser = parse_interval, value_name = "DURATION")]
    pub interval: Duration,
    /// Offenders shown.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub limit: u32,
    /// Initial sort order (the `s` key cycles it).
    #[arg(long, value_enum, default_value_t = SortKey::Rate)]
    pub sort: SortKey,
    /// With --once: print {"stats", "offenders"} as JSON.
    #[arg(long, requires = "once")]
    pub json: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct BlockArgs {
    /// Address or prefix (e.g. 192.0.2.7, 198.51.100.0/24, 2001:db8::/48).
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    pub cidr: Option<String>,
    /// A file of prefixes, one per line (`#` starts a comment), blocked in one request: all
    /// of them or, if one is refused, none.
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Block length ("90s", "10m", "2h"); permanent without it.
    #[arg(long, value_parser = parse_ttl, value_name = "DURATION")]
    pub ttl: Option<Duration>,
    /// Why, for the list and the logs.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct AllowArgs {
    /// Address or prefix.
    pub cidr: String,
    /// A note for the list.
    #[arg(long, value_name = "TEXT")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ListArgs {
    /// Show the allowlist instead of the blocklist.
    #[arg(long)]
    pub allow: bool,
    /// Print the API's JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct JsonArg {
    /// Print the API's JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ConnsArgs {
    /// The served port whose clients are listed (Apache: 80).
    #[arg(long, value_name = "N")]
    pub port: Option<u16>,
    /// Print the API's JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct SysctlArgs {
    #[command(subcommand)]
    pub action: SysctlAction,
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum SysctlAction {
    /// Compare the live values with a profile; changes nothing.
    Check {
        #[arg(long, default_value = "recommended", value_parser = profile_parser())]
        profile: Profile,
        /// Print the audit as JSON ({"entries": [...]}, as GET /v1/sysctl).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        tree: SysctlTree,
    },
    /// Apply a profile, saving the originals first.
    Apply {
        #[arg(long, default_value = "recommended", value_parser = profile_parser())]
        profile: Profile,
        #[command(flatten)]
        tree: SysctlTree,
        #[command(flatten)]
        backup: SysctlBackup,
    },
    /// Put back the originals saved by apply, then delete the backup.
    Restore {
        #[command(flatten)]
        tree: SysctlTree,
        #[command(flatten)]
        backup: SysctlBackup,
    },
}

/// Where the sysctl tree is; only tests point it elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct SysctlTree {
    #[arg(long, hide = true, default_value = paths::SYSCTL_ROOT)]
    pub root: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct SysctlBackup {
    /// File holding the original values.
    #[arg(long = "backup", value_name = "PATH", default_value_os_t = default_backup())]
    pub path: PathBuf,
}

fn default_backup() -> PathBuf {
    paths::sysctl_backup(Path::new(paths::DEFAULT_STATE_DIR))
}

fn profile_parser() -> impl TypedValueParser<Value = Profile> {
    PossibleValuesParser::new(Profile::ALL.map(Profile::name))
        .map(|s| s.parse::<Profile>().unwrap_or(Profile::Recommended))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (write e.g. 90s, 10m or 2h)"))
}

/// `--ttl`: whole seconds, at least one (the API takes `ttl_secs`).
pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_secs(1) {
        return Err("must be at least 1s".into());
    }
    if d.subsec_nanos() != 0 {
        return Err("must be a whole number of seconds".into());
    }
    Ok(d)
}

/// `top --interval`: between 100 ms and an hour.
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_millis(100) || d > Duration::from_secs(3600) {
        return Err("must be between 100ms and 1h".into());
    }
    Ok(d)
}

/// The prefixes of a feed file: one per line, `#` to the end of a line is a comment, blank
/// lines are skipped. Every line is checked here first, so a typo is named by its line and
/// nothing reaches the daemon.
pub fn read_feed(path: &std::path::Path) -> Result<Vec<String>, CliError> {
    let text = std::fs::read_to_string(path).map_err(|source| CliError::FeedFile {
        path: path.to_path_buf(),
        source,
    })?;
    let mut cidrs = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let entry = line.split('#').next().unwrap_or("").trim();
        if entry.is_empty() {
            continue;
        }
        crate::controller::parse_cidr(entry).map_err(|e| CliError::FeedLine {
            path: path.to_path_buf(),
            line: n + 1,
            reason: e.to_string(),
        })?;
        cidrs.push(entry.to_owned());
    }
    if cidrs.is_empty() || cidrs.len() > crate::controller::MAX_BATCH {
        return Err(CliError::FeedSize {
            path: path.to_path_buf(),
            count: cidrs.len(),
        });
    }
    Ok(cidrs)
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("invalid API URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error(
        "cannot read the API token from {}: {source}; pass --token-file or set XDP_GUARD_TOKEN_FILE",
        path.display()
    )]
    TokenFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "the API token file {} is empty; pass --token-file or set XDP_GUARD_TOKEN_FILE",
        path.display()
    )]
    EmptyToken { path: PathBuf },
    #[error("cannot reach the xdp-guard API at {url} (is the daemon running?)")]
    Unreachable { url: String },
    #[error("the xdp-guard API at {url} did not answer in time")]
    Timeout { url: String },
    /// The API answered with an error status: `422: <the server's message>`.
    #[error("{status}: {message}{}", hint(*status))]
    Api { status: u16, message: String },
    #[error("request to {url} failed: {source}")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("unexpected answer from {url}: {reason}")]
    Decode { url: String, reason: String },
    #[error("{}", describe_config_error(path, source))]
    Config {
        path: PathBuf,
        #[source]
        source: ConfigError,
    },
    #[error("sysctl: {0}")]
    Sysctl(#[from] SysctlError),
    #[error("top needs a terminal; use `xdp-guard top --once` in scripts")]
    NotATerminal,
    #[error("terminal: {0}")]
    Terminal(#[source] io::Error),
    #[error("writing output: {0}")]
    Output(#[source] io::Error),
    #[error("{}: {source}", path.display())]
    FeedFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} line {line}: {reason}; nothing was sent", path.display())]
    FeedLine {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error(
        "{} holds {count} prefixes; one request takes 1 to {}: split the file",
        path.display(),
        crate::controller::MAX_BATCH
    )]
    FeedSize { path: PathBuf, count: usize },
    /// `run` and `detach` belong to the daemon side; main.rs handles them.
    #[error("`xdp-guard {0}` is not handled by the CLI dispatcher")]
    NotHere(&'static str),
}

fn hint(status: u16) -> &'static str {
    match status {
        401 | 403 => " (check --token-file / XDP_GUARD_TOKEN_FILE)",
        _ => "",
    }
}

fn describe_config_error(path: &Path, e: &ConfigError) -> String {
    match e {
        // Read and Parse errors already name the path.
        ConfigError::Read { .. } | ConfigError::Parse { .. } => e.to_string(),
        ConfigError::Invalid(problems) => {
            let mut s = format!(
                "{}: {} problem{}",
                path.display(),
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            );
            for p in problems {
                s.push_str(&format!("\n  {p}"));
            }
            s
        }
    }
}

/// Runs a client subcommand. `run` and `detach` return [`CliError::NotHere`]: main.rs
/// matches them before calling this.
pub async fn dispatch(cli: Cli) -> Result<ExitCode, CliError> {
    match execute(cli).await {
        // `xdp-guard list | head`: the reader has gone, which is not an error.
        Err(CliError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        other => other,
    }
}

async fn execute(cli: Cli) -> Result<ExitCode, CliError> {
    let Cli {
        api,
        token_file,
        command,
    } = cli;
    let client = || Client::new(&api, token_file.clone());
    match command {
        Command::Run(_) => Err(CliError::NotHere("run")),
        Command::Detach { .. } => Err(CliError::NotHere("detach")),
        Command::Top(args) => top::run(&client()?, &args).await,
        Command::Block(args) => match (&args.file, &args.cidr) {
            (Some(file), _) => {
                let cidrs = read_feed(file)?;
                let records = client()?
                    .block_many(&cidrs, args.ttl, args.reason.as_deref())
                    .await?;
                emit(&format!(
                    "blocked {} prefixes from {}\n",
                    records.len(),
                    file.display()
                ))
            }
            (None, Some(cidr)) => {
                let record = client()?
                    .block(cidr, args.ttl, args.reason.as_deref())
                    .await?;
                emit(&block_line(&record, model::now_ms()))
            }
            // clap requires one of the two.
            (None, None) => Err(CliError::NotHere("block without a prefix")),
        },
        Command::Unblock { cidr } => {
            client()?.unblock(&cidr).await?;
            emit(&format!("unblocked {cidr}\n"))
        }
        Command::Allow(args) => {
            let record = client()?.allow(&args.cidr, args.note.as_deref()).await?;
            emit(&format!("allowlisted {}\n", record.cidr))
        }
        Command::Disallow { cidr } => {
            client()?.disallow(&cidr).await?;
            emit(&format!("removed {cidr} from the allowlist\n"))
        }
        Command::List(args) => {
            let client = client()?;
            match (args.allow, args.json) {
                (false, true) => emit_json(&client.get_raw("/v1/blocklist").await?),
                (true, true) => emit_json(&client.get_raw("/v1/allowlist").await?),
                (false, false) => emit(&blocklist_table(
                    &client.blocklist().await?,
                    model::now_ms(),
                )),
                (true, false) => emit(&allowlist_table(&client.allowlist().await?)),
            }
        }
        Command::Stats(JsonArg { json }) => {
            let client = client()?;
            if json {
                emit_json(&client.get_raw("/v1/stats").await?)
            } else {
                emit(&stats_report(&client.stats().await?))
            }
        }
        Command::Conns(args) => {
            let client = client()?;
            if args.json {
                emit_json(&client.get_raw(&Client::connections_path(args.port)).await?)
            } else {
                emit(&connections_report(&client.connections(args.port).await?))
            }
        }
        Command::Sysctl(SysctlArgs { action }) => sysctl_command(action),
        Command::CheckConfig { config } => check_config(&config),
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "xdp-guard", &mut out);
            emit_bytes(&out)
        }
        Command::Man => {
            let mut out = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut out)
                .map_err(CliError::Output)?;
            emit_bytes(&out)
        }
    }
}

fn sysctl_command(action: SysctlAction) -> Result<ExitCode, CliError> {
    match action {
        SysctlAction::Check {
            profile,
            json,
            tree,
        } => {
            let entries = sysctl::audit_profile(profile, &tree.root);
            if json {
                let body = serde_json::json!({ "entries": entries });
                emit(&format!("{body:#}\n"))
            } else {
                emit(&audit_table(&entries, profile))
            }
        }
        SysctlAction::Apply {
            profile,
            tree,
            backup,
        } => {
            let changes = sysctl::apply(profile, &tree.root, &backup.path)?;
            if changes.is_empty() {
                return emit(&format!(
                    "profile {profile} already in effect; nothing changed\n"
                ));
            }
            let mut out = String::new();
            for c in &changes {
                out.push_str(&format!("{}: {} -> {}\n", c.key, c.before, c.after));
            }
            out.push_str(&format!(
                "applied {profile}: {} setting{} changed; originals saved in {}\n",
                changes.len(),
                if changes.len() == 1 { "" } else { "s" },
                backup.path.display()
            ));
            emit(&out)
        }
        SysctlAction::Restore { tree, backup } => {
            let changes = sysctl::restore(&tree.root, &backup.path)?;
            let mut out = String::new();
            for c in &changes {
                out.push_str(&format!("{}: {} -> {}\n", c.key, c.before, c.after));
            }
            out.push_str(&format!(
                "restored {} setting{}; removed {}\n",
                changes.len(),
                if changes.len() == 1 { "" } else { "s" },
                backup.path.display()
            ));
            emit(&out)
        }
    }
}

fn check_config(path: &Path) -> Result<ExitCode, CliError> {
    let config = Config::load(path).map_err(|source| CliError::Config {
        path: path.to_owned(),
        source,
    })?;
    let ports = if config.protected_ports.is_empty() {
        "all".to_owned()
    } else {
        config
            .protected_ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mode = match config.xdp_mode {
        XdpModeSetting::Auto => "auto",
        XdpModeSetting::Native => "native",
        XdpModeSetting::Generic => "generic",
    };
    emit(&format!(
        "{}: OK\n  interface: {}\n  xdp_mode: {mode}\n  enforce: {}\n  protected ports: {ports}\n  \
         syn rate/burst: {}/{} per source\n  api: {}\n",
        path.display(),
        config.interface,
        config.enforce,
        config.syn.rate,
        config.syn.burst,
        config.api.listen,
    ))
}

fn emit(text: &str) -> Result<ExitCode, CliError> {
    emit_bytes(text.as_bytes())
}

fn emit_bytes(bytes: &[u8]) -> Result<ExitCode, CliError> {
    let mut out = io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(CliError::Output)?;
    Ok(ExitCode::SUCCESS)
}

/// The server's JSON as it came, ending in a newline.
fn emit_json(body: &str) -> Result<ExitCode, CliError> {
    let body = body.trim_end();
    emit(&format!("{body}\n"))
}
