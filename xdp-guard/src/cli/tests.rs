//! Argument parsing and human output.
#![allow(clippy::unwrap_used)]

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use clap::{CommandFactory, Parser, error::ErrorKind};

use super::*;
use crate::{
    model::{AllowRecord, AttackState, BlockRecord, Origin},
    sysctl::{AuditEntry, Rule, Scope, Status},
};

fn parse(args: &[&str]) -> Cli {
    let argv = std::iter::once("xdp-guard").chain(args.iter().copied());
    Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn parse_err(args: &[&str]) -> clap::Error {
    let argv = std::iter::once("xdp-guard").chain(args.iter().copied());
    match Cli::try_parse_from(argv) {
        Ok(cli) => panic!("{args:?} parsed: {cli:?}"),
        Err(e) => e,
    }
}

#[test]
fn command_definition_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn every_subcommand_parses() {
    let cases: &[&[&str]] = &[
        &["run"],
        &["top"],
        &["top", "--once", "--json"],
        &["block", "192.0.2.7"],
        &["unblock", "192.0.2.7"],
        &["allow", "10.0.0.0/8", "--note", "office"],
        &["disallow", "10.0.0.0/8"],
        &["list"],
        &["list", "--allow", "--json"],
        &["stats"],
        &["stats", "--json"],
        &["conns"],
        &["conns", "--port", "80", "--json"],
        &["sysctl", "check"],
        &["sysctl", "check", "--json", "--profile", "under-attack"],
        &["sysctl", "apply"],
        &["sysctl", "restore"],
        &["check-config"],
        &["detach", "--iface", "eth0"],
        &["completions", "bash"],
        &["man"],
    ];
    for args in cases {
        parse(args);
    }
}

#[test]
fn global_defaults_and_overrides() {
    let cli = parse(&["stats"]);
    // The environment may set these; only check when it does not.
    if std::env::var_os("XDP_GUARD_API").is_none() {
        assert_eq!(cli.api, "http://127.0.0.1:9180");
    }
    if std::env::var_os("XDP_GUARD_TOKEN_FILE").is_none() {
        assert_eq!(cli.token_file, PathBuf::from(paths::DEFAULT_TOKEN_FILE));
    }
    // Global options go before or after the subcommand.
    let cli = parse(&["--api", "http://10.0.0.1:1", "stats", "--token-file", "/t"]);
    assert_eq!(cli.api, "http://10.0.0.1:1");
    assert_eq!(cli.token_file, PathBuf::from("/t"));
}

#[test]
fn run_args() {
    let Command::Run(args) = parse(&["run"]).command else {
        panic!("not run");
    };
    assert_eq!(
        args,
        RunArgs {
            config: PathBuf::from(paths::DEFAULT_CONFIG),
            iface: None,
            mode: None,
        }
    );
    let Command::Run(args) = parse(&[
        "run", "--config", "/c.toml", "--iface", "eth1", "--mode", "generic",
    ])
    .command
    else {
        panic!("not run");
    };
    assert_eq!(args.config, PathBuf::from("/c.toml"));
    assert_eq!(args.iface.as_deref(), Some("eth1"));
    assert_eq!(args.mode, Some(XdpModeSetting::Generic));
    for (name, mode) in [
        ("auto", XdpModeSetting::Auto),
        ("native", XdpModeSetting::Native),
    ] {
        let Command::Run(args) = parse(&["run", "--mode", name]).command else {
            panic!("not run");
        };
        assert_eq!(args.mode, Some(mode));
    }
    assert_eq!(
        parse_err(&["run", "--mode", "turbo"]).kind(),
        ErrorKind::InvalidValue
    );
}

#[test]
fn ttl_is_a_human_duration() {
    let Command::Block(args) = parse(&["block", "192.0.2.7", "--ttl", "10m"]).command else {
        panic!("not block");
    };
    assert_eq!(args.ttl, Some(Duration::from_secs(600)));
    assert_eq!(args.reason, None);
    for (text, secs) in [
        ("90s", 90),
        ("2h", 7200),
        ("1h 30m", 5400),
        ("1day", 86_400),
    ] {
        let Command::Block(args) = parse(&["block", "x", "--ttl", text]).command else {
            panic!("not block");
        };
        assert_eq!(args.ttl, Some(Duration::from_secs(secs)), "{text}");
    }
    let Command::Block(args) = parse(&["block", "x", "--reason", "scanner"]).command else {
        panic!("not block");
    };
    assert_eq!(args.ttl, None);
    assert_eq!(args.reason.as_deref(), Some("scanner"));
}

#[test]
fn block_takes_a_prefix_or_a_file_not_both() {
    let Command::Block(args) = parse(&["block", "--file", "feed.txt", "--ttl", "1h"]).command
    else {
        panic!("not block");
    };
    assert_eq!(args.cidr, None);
    assert_eq!(args.file.as_deref(), Some(std::path::Path::new("feed.txt")));
    assert_eq!(
        parse_err(&["block", "192.0.2.1", "--file", "feed.txt"]).kind(),
        ErrorKind::ArgumentConflict
    );
    assert_eq!(
        parse_err(&["block"]).kind(),
        ErrorKind::MissingRequiredArgument
    );
}

#[test]
fn a_feed_file_is_checked_line_by_line_before_anything_is_sent() {
    let dir = std::env::temp_dir().join(format!("xg-feed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("feed.txt");
    std::fs::write(
        &file,
        "# scanners, from the weekly list\n192.0.2.7\n\n  198.51.100.0/24  # a /24\n2001:db8::/48\n",
    )
    .expect("write");
    assert_eq!(
        read_feed(&file).expect("feed"),
        ["192.0.2.7", "198.51.100.0/24", "2001:db8::/48"]
    );
    std::fs::write(&file, "192.0.2.7\n# ok\n198.51.100.1/24\n").expect("write");
    let e = read_feed(&file).expect_err("host bits");
    let msg = e.to_string();
    assert!(
        msg.contains("feed.txt line 3")
            && msg.contains("198.51.100.0/24")
            && msg.contains("nothing was sent"),
        "{msg}"
    );
    std::fs::write(&file, "# nothing\n").expect("write");
    assert!(matches!(
        read_feed(&file),
        Err(CliError::FeedSize { count: 0, .. })
    ));
    let missing = dir.join("missing.txt");
    assert!(
        read_feed(&missing)
            .expect_err("missing")
            .to_string()
            .contains("missing.txt")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_durations_are_clap_errors_naming_the_flag() {
    for (args, needle) in [
        (
            &["block", "x", "--ttl", "10 parsecs"][..],
            "unknown time unit",
        ),
        (&["block", "x", "--ttl", "600"][..], "time unit needed"),
        (&["block", "x", "--ttl", "0s"][..], "at least 1s"),
        (
            &["block", "x", "--ttl", "1500ms"][..],
            "whole number of seconds",
        ),
        (&["top", "--interval", "soon"][..], "expected number"),
        (&["top", "--interval", "10ms"][..], "between 100ms and 1h"),
    ] {
        let e = parse_err(args);
        assert_eq!(e.kind(), ErrorKind::ValueValidation, "{args:?}");
        let shown = e.to_string();
        let flag = args[args.len() - 2];
        assert!(shown.contains(flag), "{args:?}: {shown}");
        assert!(shown.contains(needle), "{args:?}: {shown}");
    }
}

#[test]
fn top_args() {
    let Command::Top(args) = parse(&["top"]).command else {
        panic!("not top");
    };
    assert_eq!(
        args,
        TopArgs {
            once: false,
            interval: Duration::from_secs(1),
            limit: 20,
            sort: SortKey::Rate,
            json: false,
        }
    );
    let Command::Top(args) = parse(&[
        "top",
        "--once",
        "--interval",
        "250ms",
        "--limit",
        "5",
        "--sort",
        "dropped",
    ])
    .command
    else {
        panic!("not top");
    };
    assert!(args.once);
    assert_eq!(args.interval, Duration::from_millis(250));
    assert_eq!(args.limit, 5);
    assert_eq!(args.sort, SortKey::Dropped);
    // --json is for --once only; the full-screen view has no JSON form.
    assert_eq!(
        parse_err(&["top", "--json"]).kind(),
        ErrorKind::MissingRequiredArgument
    );
    assert_eq!(
        parse_err(&["top", "--sort", "name"]).kind(),
        ErrorKind::InvalidValue
    );
    assert_eq!(
        parse_err(&["top", "--limit", "0"]).kind(),
        ErrorKind::ValueValidation
    );
}

#[test]
fn list_conns_and_stats_args() {
    let Command::List(args) = parse(&["list"]).command else {
        panic!("not list");
    };
    assert!(!args.allow && !args.json);
    let Command::List(args) = parse(&["list", "--allow"]).command else {
        panic!("not list");
    };
    assert!(args.allow);
    let Command::Conns(args) = parse(&["conns", "--port", "80"]).command else {
        panic!("not conns");
    };
    assert_eq!(args.port, Some(80));
    assert_eq!(
        parse_err(&["conns", "--port", "70000"]).kind(),
        ErrorKind::ValueValidation
    );
    let Command::Stats(JsonArg { json }) = parse(&["stats", "--json"]).command else {
        panic!("not stats");
    };
    assert!(json);
    let Command::Allow(args) = parse(&["allow", "192.0.2.0/24"]).command else {
        panic!("not allow");
    };
    assert_eq!(args.cidr, "192.0.2.0/24");
    assert_eq!(args.note, None);
    assert_eq!(
        parse_err(&["block"]).kind(),
        ErrorKind::MissingRequiredArgument
    );
    assert_eq!(
        parse_err(&["detach"]).kind(),
        ErrorKind::MissingRequiredArgument
    );
}

#[test]
fn sysctl_args() {
    let Command::Sysctl(SysctlArgs { action }) = parse(&["sysctl", "check"]).command else {
        panic!("not sysctl");
    };
    assert_eq!(
        action,
        SysctlAction::Check {
            profile: Profile::Recommended,
            json: false,
            tree: SysctlTree {
                root: PathBuf::from("/proc/sys")
            },
        }
    );
    let Command::Sysctl(SysctlArgs { action }) = parse(&[
        "sysctl",
        "apply",
        "--profile",
        "under-attack",
        "--root",
        "/tmp/sys",
        "--backup",
        "/tmp/b.json",
    ])
    .command
    else {
        panic!("not sysctl");
    };
    assert_eq!(
        action,
        SysctlAction::Apply {
            profile: Profile::UnderAttack,
            tree: SysctlTree {
                root: PathBuf::from("/tmp/sys")
            },
            backup: SysctlBackup {
                path: PathBuf::from("/tmp/b.json")
            },
        }
    );
    let Command::Sysctl(SysctlArgs { action }) = parse(&["sysctl", "restore"]).command else {
        panic!("not sysctl");
    };
    assert_eq!(
        action,
        SysctlAction::Restore {
            tree: SysctlTree {
                root: PathBuf::from("/proc/sys")
            },
            backup: SysctlBackup {
                path: PathBuf::from("/var/lib/xdp-guard/sysctl-backup.json")
            },
        }
    );
    assert_eq!(
        parse_err(&["sysctl", "apply", "--profile", "yolo"]).kind(),
        ErrorKind::InvalidValue
    );
    assert_eq!(
        parse_err(&["sysctl"]).kind(),
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    // --root is for tests: not in the help.
    let mut cmd = Cli::command();
    let help = cmd
        .find_subcommand_mut("sysctl")
        .unwrap()
        .find_subcommand_mut("check")
        .unwrap()
        .render_help()
        .to_string();
    assert!(!help.contains("--root"), "{help}");
    assert!(help.contains("--profile"), "{help}");
}

#[test]
fn check_config_and_completions_args() {
    let Command::CheckConfig { config } = parse(&["check-config"]).command else {
        panic!("not check-config");
    };
    assert_eq!(config, PathBuf::from(paths::DEFAULT_CONFIG));
    let Command::CheckConfig { config } = parse(&["check-config", "--config", "/x.toml"]).command
    else {
        panic!("not check-config");
    };
    assert_eq!(config, PathBuf::from("/x.toml"));
    let Command::Completions { shell } = parse(&["completions", "zsh"]).command else {
        panic!("not completions");
    };
    assert_eq!(shell, clap_complete::Shell::Zsh);
    assert_eq!(
        parse_err(&["completions", "cmd.exe"]).kind(),
        ErrorKind::InvalidValue
    );
    let Command::Detach {
        iface,
        config,
        state_dir,
    } = parse(&["detach", "--iface", "eth0"]).command
    else {
        panic!("not detach");
    };
    assert_eq!(iface, "eth0");
    assert_eq!(config, std::path::Path::new(paths::DEFAULT_CONFIG));
    assert_eq!(state_dir, None);
    let Command::Detach { state_dir, .. } =
        parse(&["detach", "--iface", "eth0", "--state-dir", "/srv/xg"]).command
    else {
        panic!("not detach");
    };
    assert_eq!(state_dir.as_deref(), Some(std::path::Path::new("/srv/xg")));
}

#[test]
fn completions_and_man_page_render() {
    let mut out = Vec::new();
    clap_complete::generate(
        clap_complete::Shell::Bash,
        &mut Cli::command(),
        "xdp-guard",
        &mut out,
    );
    let script = String::from_utf8(out).unwrap();
    assert!(script.contains("xdp-guard"));
    assert!(script.contains("check-config"));
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut out)
        .unwrap();
    let man = String::from_utf8(out).unwrap();
    assert!(man.starts_with(".ie"), "{}", &man[..80.min(man.len())]);
    assert!(man.contains("xdp\\-guard"));
}

#[tokio::test]
async fn run_and_detach_are_not_dispatched() {
    let e = dispatch(parse(&["run"])).await.unwrap_err();
    assert!(matches!(e, CliError::NotHere("run")), "{e:?}");
    let e = dispatch(parse(&["detach", "--iface", "eth0"]))
        .await
        .unwrap_err();
    assert!(matches!(e, CliError::NotHere("detach")), "{e:?}");
}

#[tokio::test]
async fn unreachable_api_is_one_line() {
    // A port nothing listens on: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let api = format!("http://127.0.0.1:{port}");
    let client = Client::with_token(&api, "t").unwrap();
    let e = client.stats().await.unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("cannot reach the xdp-guard API at {api} (is the daemon running?)")
    );
}

#[test]
fn config_errors_name_the_path_and_every_problem() {
    let dir = std::env::temp_dir().join(format!("xdp-guard-cli-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(&file, "interface = \"\"\n[syn]\nrate = 0\n").unwrap();
    let e = check_config(&file).unwrap_err().to_string();
    let lines: Vec<&str> = e.lines().collect();
    assert_eq!(lines[0], format!("{}: 2 problems", file.display()), "{e}");
    assert!(lines[1].starts_with("  interface: "), "{e}");
    assert!(lines[2].starts_with("  syn.rate: "), "{e}");
    let e = check_config(&dir.join("missing.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.toml"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

const NOW: u64 = 1_700_000_000_000;

fn block(
    cidr: &str,
    expires: Option<u64>,
    origin: Origin,
    offences: u32,
    reason: &str,
) -> BlockRecord {
    BlockRecord {
        cidr: cidr.parse().unwrap(),
        expires_at_ms: expires,
        reason: reason.into(),
        origin,
        offences,
        created_at_ms: NOW - 1000,
    }
}

#[test]
fn remaining_time() {
    assert_eq!(remaining(None, NOW), "never");
    assert_eq!(remaining(Some(NOW), NOW), "expired");
    assert_eq!(remaining(Some(NOW - 5), NOW), "expired");
    assert_eq!(remaining(Some(NOW + 598_000), NOW), "9m 58s");
    // Rounded up: a live entry never shows 0s.
    assert_eq!(remaining(Some(NOW + 1), NOW), "1s");
    assert_eq!(remaining(Some(NOW + 7_200_000), NOW), "2h");
}

#[test]
fn blocklist_is_an_aligned_table() {
    let entries = [
        block(
            "192.0.2.7/32",
            Some(NOW + 598_000),
            Origin::Auto,
            2,
            "over 100 SYN/s",
        ),
        block("198.51.100.0/24", None, Origin::Manual, 0, "scanner"),
        block(
            "2001:db8::/48",
            Some(NOW + 7_200_000),
            Origin::Config,
            11,
            "",
        ),
    ];
    let text = blocklist_table(&entries, NOW);
    let expected = "\
CIDR             ORIGIN  EXPIRES  OFFENCES  REASON
192.0.2.7/32     auto    9m 58s          2  over 100 SYN/s
198.51.100.0/24  manual  never           0  scanner
2001:db8::/48    config  2h             11
";
    assert_eq!(text, expected);
    assert_eq!(blocklist_table(&[], NOW), "the blocklist is empty\n");
}

#[test]
fn allowlist_table_lists_notes() {
    let entries = [AllowRecord {
        cidr: "10.0.0.0/8".parse().unwrap(),
        origin: Origin::Config,
        note: "configuration".into(),
        created_at_ms: 0,
    }];
    assert_eq!(
        allowlist_table(&entries),
        "CIDR        ORIGIN  ADDED                 NOTE\n\
         10.0.0.0/8  config  1970-01-01T00:00:00Z  configuration\n"
    );
    assert_eq!(allowlist_table(&[]), "the allowlist is empty\n");
}

#[test]
fn block_confirmation() {
    let b = block(
        "192.0.2.7/32",
        Some(NOW + 600_000),
        Origin::Manual,
        0,
        "manual",
    );
    assert_eq!(
        block_line(&b, NOW),
        "blocked 192.0.2.7/32 for 10m (manual)\n"
    );
    let b = block("192.0.2.7/32", None, Origin::Manual, 0, "scanner");
    assert_eq!(
        block_line(&b, NOW),
        "blocked 192.0.2.7/32 permanently (scanner)\n"
    );
}

#[test]
fn generic_table_alignment() {
    let t = table(
        &[
            ("A", Align::Left),
            ("NUM", Align::Right),
            ("Z", Align::Left),
        ],
        &[
            vec!["x".into(), "1".into(), "".into()],
            vec!["long".into(), "12345".into(), "é".into()],
        ],
    );
    assert_eq!(t, "A       NUM  Z\nx         1\nlong  12345  é\n");
}

fn stats() -> Stats {
    let mut counters = BTreeMap::new();
    counters.insert("packets".to_owned(), 1_000_000);
    counters.insert("syns".to_owned(), 5_000);
    counters.insert("dropped_rate".to_owned(), 42);
    counters.insert("something_new".to_owned(), 7);
    Stats {
        interface: "eth0".into(),
        xdp_mode: "generic".into(),
        enforce: false,
        counters,
        rates: Rates {
            packets_per_sec: 1234.56,
            syns_per_sec: 45.67,
            dropped_per_sec: 0.0,
            new_sources_per_sec: 3.0,
        },
        blocklist_size: 1,
        allowlist_size: 2,
        tracked_sources: 17,
        attack_state: AttackState::Spoofed,
        spoof_guard: true,
        sysctl_profile: "under_attack".into(),
        syn_recv: 300,
        tick_duration_ms: 0.4242,
        ticks: 99,
        uptime_secs: 3_723,
    }
}

#[test]
fn stats_are_key_value_lines() {
    let text = stats_report(&stats());
    let expected = "\
interface:        eth0
xdp mode:         generic
mode:             monitor only (would-be drops are counted, nothing is dropped)
attack state:     spoofed
spoof guard:      on (SYNs from untracked sources limited)
sysctl profile:   under_attack
uptime:           1h 2m 3s
packets/s:        1235
SYN/s:            45.7
drops/s:          0.0
new sources/s:    3.0
blocklist:        1 entry
allowlist:        2 entries
tracked sources:  17
SYN_RECV sockets: 300
controller tick:  0.42 ms (tick 99)
counters:
  packets        1000000
  dropped_rate        42
  syns              5000
  something_new        7
";
    assert_eq!(text, expected);
}

fn connections() -> Connections {
    let states = [
        ("ESTABLISHED", 27),
        ("TIME_WAIT", 811),
        ("LISTEN", 4),
        ("SYN_RECV", 4),
        ("CLOSE_WAIT", 1),
    ];
    let clients = [
        ("192.0.2.7", 600),
        ("198.51.100.3", 12),
        ("2001:db8::9", 12),
        ("203.0.113.5", 1),
    ];
    Connections {
        total: 847,
        states: states.iter().map(|(s, n)| ((*s).to_owned(), *n)).collect(),
        syn_recv: 4,
        port: Some(80),
        port_states: [("ESTABLISHED".to_owned(), 20), ("LISTEN".to_owned(), 1)]
            .into_iter()
            .collect(),
        clients: clients
            .iter()
            .map(|(a, n)| ClientCount {
                addr: a.parse().unwrap(),
                connections: *n,
            })
            .collect(),
        unknown_states: 0,
    }
}

#[test]
fn conns_is_the_memo_pipelines() {
    let text = connections_report(&connections());
    let expected = "\
TCP sockets by state (847 total):
      1 CLOSE_WAIT
      4 LISTEN
      4 SYN_RECV
     27 ESTABLISHED
    811 TIME_WAIT

Port 80 sockets: 20 ESTABLISHED, 1 LISTEN
Clients of port 80 (4 addresses):
      1 203.0.113.5
     12 198.51.100.3
     12 2001:db8::9
    600 192.0.2.7
";
    assert_eq!(text, expected);

    // Only the busiest are listed; the heading says how many there are.
    let mut many = connections();
    many.clients = (0..50u8)
        .map(|i| ClientCount {
            addr: std::net::IpAddr::from([192, 0, 2, i]),
            connections: 100 - u64::from(i),
        })
        .collect();
    let text = connections_report(&many);
    assert!(
        text.contains("Clients of port 80 (top 20 of 50 addresses):\n"),
        "{text}"
    );
    assert!(text.ends_with("    100 192.0.2.0\n"), "{text}");
    assert!(!text.contains("192.0.2.20\n"), "{text}");

    let no_port = Connections {
        port: None,
        port_states: BTreeMap::new(),
        clients: vec![],
        ..connections()
    };
    assert!(
        connections_report(&no_port).ends_with("(pass --port N to see the clients of a port)\n")
    );
}

fn audit_entry(
    key: &str,
    current: Option<&str>,
    rec: Option<&str>,
    rule: Rule,
    status: Status,
) -> AuditEntry {
    AuditEntry {
        key: key.into(),
        current: current.map(str::to_owned),
        recommended: rec.map(str::to_owned),
        rule,
        scope: Scope::PerNetns,
        status,
        why: "Half-open connections are answered with syncookies once the SYN queue \
              overflows, so a flood cannot fill it; 2 would send cookies always and \
              disable TCP options."
            .into(),
        error: None,
    }
}

#[test]
fn sysctl_check_table_explains_what_differs() {
    let mut unreadable = audit_entry(
        "net.core.somaxconn",
        None,
        Some("4096"),
        Rule::AtLeast,
        Status::Unreadable,
    );
    unreadable.error = Some("permission denied".into());
    let entries = [
        audit_entry(
            "net.ipv4.tcp_syncookies",
            Some("0"),
            Some("1"),
            Rule::Exact,
            Status::Differs,
        ),
        audit_entry(
            "net.ipv4.tcp_max_syn_backlog",
            Some("4096"),
            Some("4096"),
            Rule::AtLeast,
            Status::Ok,
        ),
        audit_entry(
            "net.ipv4.tcp_tw_recycle",
            None,
            None,
            Rule::NeverSet,
            Status::Removed,
        ),
        unreadable,
    ];
    let text = audit_table(&entries, Profile::Recommended);
    let expected = "\
KEY                           CURRENT  RECOMMENDED  STATUS
net.ipv4.tcp_syncookies       0        1            differs
    Half-open connections are answered with syncookies once the SYN queue
    overflows, so a flood cannot fill it; 2 would send cookies always and
    disable TCP options.
net.ipv4.tcp_max_syn_backlog  4096     >= 4096      ok
net.ipv4.tcp_tw_recycle       -        (never set)  removed
net.core.somaxconn            -        >= 4096      unreadable
    permission denied

1 of 4 settings differ from the recommended profile; `xdp-guard sysctl apply
--profile recommended` (as root) changes them and `xdp-guard sysctl restore`
puts the originals back.
";
    assert_eq!(text, expected);
    for line in text.lines().filter(|l| !l.starts_with("net.")) {
        assert!(line.chars().count() <= 78, "{line}");
    }
    let all_ok = audit_table(&entries[1..3], Profile::UnderAttack);
    assert!(all_ok.ends_with("\nEvery setting present satisfies the under-attack profile.\n"));
}

#[test]
fn sysctl_check_runs_against_a_tree() {
    // A tree with one key: the rest are reported absent, nothing fails.
    let dir = std::env::temp_dir().join(format!("xdp-guard-cli-sysctl-{}", std::process::id()));
    let key = dir.join("net/ipv4/tcp_syncookies");
    std::fs::create_dir_all(key.parent().unwrap()).unwrap();
    std::fs::write(&key, "0\n").unwrap();
    let entries = sysctl::audit_profile(Profile::Recommended, &dir);
    let text = audit_table(&entries, Profile::Recommended);
    let line = text
        .lines()
        .find(|l| l.starts_with("net.ipv4.tcp_syncookies "))
        .unwrap();
    assert!(line.ends_with("differs"), "{line}");
    assert!(text.contains(" absent\n"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}
