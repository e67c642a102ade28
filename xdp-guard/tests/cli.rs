//! The CLI's API client against a stub of the REST API on 127.0.0.1:0. The stub serves the
//! server's own types (a real `Guard` over the in-memory dataplane, `controller::Offender`,
//! a `tcpstate::Snapshot` tallied from socket records, a sysctl audit), so these tests fail
//! if the client's view of the JSON drifts from what the daemon sends. No root needed.
#![allow(clippy::unwrap_used)]

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Json, Router,
    extract::{OriginalUri, Path as UrlPath, Query, Request, State},
    http::{StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{delete, get, post},
};
use serde::Deserialize;
use serde_json::json;
use xdp_guard::{
    cli::{self, CliError, Client, SortKey},
    controller::{Guard, GuardError, MemoryDataplane, Offender, Settings},
    model::{self, Origin},
    store::Store,
    sysctl,
    tcpstate::{Filter, SockRecord, Tally, TcpState},
};

const TOKEN: &str = "test-token-1234";

struct Stub {
    guard: Guard,
    sysctl_root: PathBuf,
    /// Raw paths of the DELETE requests, to check the CIDR's encoding on the wire.
    deletes: Mutex<Vec<String>>,
}

type Shared = Arc<Stub>;

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn guard_error(e: GuardError) -> Response {
    let status = match e {
        GuardError::NotFound(_) => StatusCode::NOT_FOUND,
        GuardError::Persist(_) | GuardError::Datapath(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    error(status, e.to_string())
}

async fn require_token(req: Request, next: Next) -> Response {
    let ok = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {TOKEN}"));
    if ok {
        next.run(req).await
    } else {
        error(StatusCode::UNAUTHORIZED, "missing or invalid bearer token")
    }
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<usize>,
}

#[derive(Deserialize)]
struct Port {
    port: Option<u16>,
}

#[derive(Deserialize)]
struct BlockBody {
    cidr: String,
    ttl_secs: Option<u64>,
    reason: Option<String>,
}

#[derive(Deserialize)]
struct BlockBatchBody {
    cidrs: Vec<String>,
    ttl_secs: Option<u64>,
    reason: Option<String>,
}

#[derive(Deserialize)]
struct AllowBody {
    cidr: String,
    note: Option<String>,
}

fn offenders() -> Vec<Offender> {
    vec![
        Offender {
            source: "192.0.2.7/32".parse().unwrap(),
            syn_rate: 950.0,
            syns: 12_000,
            dropped: 9_000,
            blocked: true,
            blocked_until_ms: Some(model::now_ms() + 600_000),
            history: vec![100.0, 500.0, 950.0],
        },
        Offender {
            source: "2001:db8:1::/64".parse().unwrap(),
            syn_rate: 20.5,
            syns: 40_000,
            dropped: 0,
            blocked: false,
            blocked_until_ms: None,
            history: vec![20.0, 21.0],
        },
    ]
}

fn snapshot(port: Option<u16>) -> xdp_guard::tcpstate::Snapshot {
    let filter = match port {
        Some(p) => Filter::local_port(p),
        None => Filter::default(),
    };
    let mut tally = Tally::new(&filter);
    let record = |state: TcpState, local: &str, remote: &str| SockRecord {
        state_raw: state.kernel(),
        local: local.parse().unwrap(),
        remote: remote.parse().unwrap(),
        rqueue: 0,
        wqueue: 0,
        uid: 0,
        inode: 0,
    };
    let mut records = vec![
        record(TcpState::Listen, "0.0.0.0:80", "0.0.0.0:0"),
        record(TcpState::Listen, "0.0.0.0:22", "0.0.0.0:0"),
        record(TcpState::Established, "10.0.0.1:22", "192.0.2.50:5000"),
    ];
    for i in 0..5 {
        records.push(record(
            TcpState::NewSynRecv,
            "10.0.0.1:80",
            &format!("192.0.2.7:{}", 1000 + i),
        ));
    }
    for i in 0..3 {
        records.push(record(
            TcpState::TimeWait,
            "10.0.0.1:80",
            &format!("198.51.100.3:{}", 2000 + i),
        ));
    }
    records.push(record(
        TcpState::Established,
        "[::ffff:10.0.0.1]:80",
        "[::ffff:198.51.100.3]:3000",
    ));
    for r in &records {
        tally.add(r);
    }
    tally.finish()
}

fn router(stub: Shared) -> Router {
    let v1 = Router::new()
        .route(
            "/stats",
            get(|State(s): State<Shared>| async move { Json(s.guard.stats()) }),
        )
        .route(
            "/offenders",
            get(|Query(q): Query<Limit>| async move {
                let mut list = offenders();
                list.truncate(q.limit.unwrap_or(50));
                Json(json!({ "offenders": list }))
            }),
        )
        .route(
            "/blocklist",
            get(|State(s): State<Shared>| async move {
                Json(json!({ "entries": s.guard.blocklist() }))
            })
            .post(
                |State(s): State<Shared>, Json(b): Json<BlockBody>| async move {
                    let ttl = b.ttl_secs.map(Duration::from_secs);
                    match s.guard.block(&b.cidr, ttl, b.reason) {
                        Ok(r) => (StatusCode::CREATED, Json(r)).into_response(),
                        Err(e) => guard_error(e),
                    }
                },
            ),
        )
        .route(
            "/blocklist/batch",
            post(
                |State(s): State<Shared>, Json(b): Json<BlockBatchBody>| async move {
                    let ttl = b.ttl_secs.map(Duration::from_secs);
                    match s.guard.block_many(&b.cidrs, ttl, b.reason) {
                        Ok(r) => {
                            (StatusCode::CREATED, Json(json!({ "entries": r }))).into_response()
                        }
                        Err(e) => guard_error(e),
                    }
                },
            ),
        )
        .route(
            "/blocklist/{cidr}",
            delete(
                |State(s): State<Shared>,
                 OriginalUri(uri): OriginalUri,
                 UrlPath(cidr): UrlPath<String>| async move {
                    s.deletes.lock().unwrap().push(uri.path().to_owned());
                    match s.guard.unblock(&cidr) {
                        Ok(_) => StatusCode::NO_CONTENT.into_response(),
                        Err(e) => guard_error(e),
                    }
                },
            ),
        )
        .route(
            "/allowlist",
            get(|State(s): State<Shared>| async move {
                Json(json!({ "entries": s.guard.allowlist() }))
            })
            .post(
                |State(s): State<Shared>, Json(b): Json<AllowBody>| async move {
                    match s.guard.allow(&b.cidr, b.note) {
                        Ok(r) => (StatusCode::CREATED, Json(r)).into_response(),
                        Err(e) => guard_error(e),
                    }
                },
            ),
        )
        .route(
            "/allowlist/{cidr}",
            delete(
                |State(s): State<Shared>,
                 OriginalUri(uri): OriginalUri,
                 UrlPath(cidr): UrlPath<String>| async move {
                    s.deletes.lock().unwrap().push(uri.path().to_owned());
                    match s.guard.disallow(&cidr) {
                        Ok(_) => StatusCode::NO_CONTENT.into_response(),
                        Err(e) => guard_error(e),
                    }
                },
            ),
        )
        .route(
            "/connections",
            get(|Query(q): Query<Port>| async move { Json(snapshot(q.port)) }),
        )
        .route(
            "/sysctl",
            get(|State(s): State<Shared>| async move {
                Json(json!({ "entries": sysctl::audit(&s.sysctl_root) }))
            }),
        )
        .route_layer(middleware::from_fn(require_token));
    Router::new()
        .route(
            "/healthz",
            get(|| async {
                Json(json!({"status": "ok", "interface": "test0", "xdp_mode": "generic"}))
            }),
        )
        .route("/metrics", get(|| async { "xdp_guard_packets_total 42\n" }))
        .nest("/v1", v1)
        .with_state(stub)
}

struct Server {
    url: String,
    stub: Shared,
    dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn serve(name: &str) -> Server {
    let dir = std::env::temp_dir().join(format!("xdp-guard-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sysctl_root = dir.join("sys");
    let key = sysctl_root.join("net/ipv4/tcp_syncookies");
    std::fs::create_dir_all(key.parent().unwrap()).unwrap();
    std::fs::write(&key, "1\n").unwrap();

    let guard = Guard::new(
        Box::new(MemoryDataplane::new()),
        Store::new(dir.join("state.json")),
        Settings::for_tests(&dir),
        "generic",
    )
    .unwrap();
    let stub = Arc::new(Stub {
        guard,
        sysctl_root,
        deletes: Mutex::new(Vec::new()),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let app = router(Arc::clone(&stub));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server {
        url: format!("http://{addr}"),
        stub,
        dir,
    }
}

fn token_file(dir: &Path, token: &str) -> PathBuf {
    let file = dir.join("api.token");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    file
}

#[tokio::test]
async fn health_needs_no_token_but_v1_does() {
    let server = serve("health").await;
    let missing = server.dir.join("no-such.token");
    let client = Client::new(&server.url, &missing).unwrap();
    let health = client.health().await.unwrap();
    assert_eq!(health.status, "ok");
    assert_eq!(health.interface, "test0");
    assert_eq!(health.xdp_mode, "generic");
    assert!(client.metrics().await.unwrap().contains("packets_total"));

    let e = client.stats().await.unwrap_err();
    assert!(matches!(e, CliError::TokenFile { .. }), "{e:?}");
    let shown = e.to_string();
    assert!(shown.contains(&missing.display().to_string()), "{shown}");
    assert!(shown.contains("--token-file"), "{shown}");
    assert!(shown.contains("XDP_GUARD_TOKEN_FILE"), "{shown}");
    assert_eq!(shown.lines().count(), 1);

    let wrong = Client::new(&server.url, token_file(&server.dir, "nope")).unwrap();
    assert_eq!(
        wrong.stats().await.unwrap_err().to_string(),
        "401: missing or invalid bearer token (check --token-file / XDP_GUARD_TOKEN_FILE)"
    );
}

#[tokio::test]
async fn block_list_unblock_round_trip() {
    let server = serve("block").await;
    let client = Client::new(&server.url, token_file(&server.dir, TOKEN)).unwrap();
    assert!(client.blocklist().await.unwrap().is_empty());

    let b = client
        .block(
            "198.51.100.0/24",
            Some(Duration::from_secs(600)),
            Some("scanner"),
        )
        .await
        .unwrap();
    assert_eq!(b.cidr.to_string(), "198.51.100.0/24");
    assert_eq!(b.origin, Origin::Manual);
    assert_eq!(b.reason, "scanner");
    let ttl = b.expires_at_ms.unwrap() - b.created_at_ms;
    assert_eq!(ttl, 600_000);
    assert_eq!(
        cli::block_line(&b, b.created_at_ms),
        "blocked 198.51.100.0/24 for 10m (scanner)\n"
    );
    let p = client.block("192.0.2.7", None, None).await.unwrap();
    assert_eq!(p.expires_at_ms, None);
    assert_eq!(p.reason, "manual");

    let list = client.blocklist().await.unwrap();
    assert_eq!(list.len(), 2);
    let text = cli::blocklist_table(&list, b.created_at_ms);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "CIDR             ORIGIN  EXPIRES  OFFENCES  REASON"
    );
    assert_eq!(
        lines[1],
        "192.0.2.7/32     manual  never           0  manual"
    );
    assert_eq!(
        lines[2],
        "198.51.100.0/24  manual  10m             0  scanner"
    );

    let raw: serde_json::Value =
        serde_json::from_str(&client.get_raw("/v1/blocklist").await.unwrap()).unwrap();
    assert_eq!(raw["entries"].as_array().unwrap().len(), 2);

    client.unblock("198.51.100.0/24").await.unwrap();
    let e = client.unblock("198.51.100.0/24").await.unwrap_err();
    assert_eq!(e.to_string(), "404: 198.51.100.0/24 is not in the list");
    assert_eq!(client.blocklist().await.unwrap().len(), 1);

    // The prefix went over the wire as one path segment.
    let deletes = server.stub.deletes.lock().unwrap().clone();
    assert_eq!(deletes[0], "/v1/blocklist/198.51.100.0%2F24");
}

#[tokio::test]
async fn refused_blocks_are_one_line() {
    let server = serve("refused").await;
    let client = Client::new(&server.url, token_file(&server.dir, TOKEN)).unwrap();
    let e = client.block("10.0.0.0/7", None, None).await.unwrap_err();
    assert!(matches!(e, CliError::Api { status: 422, .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "422: 10.0.0.0/7 is broader than /8, the broadest IPv4 prefix accepted"
    );
    let e = client.block("10.1.2.3/24", None, None).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "422: 10.1.2.3/24 has host bits set; the prefix is 10.1.2.0/24"
    );
    let e = client.block("127.0.0.1", None, None).await.unwrap_err();
    assert!(
        e.to_string()
            .starts_with("422: 127.0.0.1/32 covers loopback"),
        "{e}"
    );
}

#[tokio::test]
async fn allowlist_round_trip() {
    let server = serve("allow").await;
    let client = Client::new(&server.url, token_file(&server.dir, TOKEN)).unwrap();
    let a = client.allow("2001:db8::/48", Some("office")).await.unwrap();
    assert_eq!(a.note, "office");
    let list = client.allowlist().await.unwrap();
    assert_eq!(list.len(), 1);
    let text = cli::allowlist_table(&list);
    assert!(text.starts_with("CIDR           ORIGIN  ADDED"), "{text}");
    assert!(text.contains("2001:db8::/48  manual  "), "{text}");
    assert!(text.trim_end().ends_with("office"), "{text}");

    // Blocking inside an allowlisted prefix is refused with the server's reason.
    let e = client.block("2001:db8::/64", None, None).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "422: 2001:db8::/64 overlaps the allowlist entry 2001:db8::/48; remove that first"
    );

    client.disallow("2001:db8::/48").await.unwrap();
    assert!(client.allowlist().await.unwrap().is_empty());
    let e = client.disallow("2001:db8::/48").await.unwrap_err();
    assert_eq!(e.to_string(), "404: 2001:db8::/48 is not in the list");
    let deletes = server.stub.deletes.lock().unwrap().clone();
    assert_eq!(deletes[0], "/v1/allowlist/2001:db8::%2F48");
}

#[tokio::test]
async fn stats_parse_and_read_as_key_value_lines() {
    let server = serve("stats").await;
    let client = Client::new(&server.url, token_file(&server.dir, TOKEN)).unwrap();
    client.block("192.0.2.0/24", None, None).await.unwrap();
    let stats = client.stats().await.unwrap();
    assert_eq!(stats.interface, "test0");
    assert_eq!(stats.xdp_mode, "generic");
    assert!(stats.enforce);
    assert_eq!(stats.blocklist_size, 1);
    assert_eq!(stats.sysctl_profile, "unchanged");
    assert_eq!(stats.attack_state, model::AttackState::None);
    // Every datapath counter, by name.
    assert_eq!(stats.counters.len(), xdp_guard_common::stats::NAMES.len());

    let text = cli::stats_report(&stats);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "interface:        test0");
    assert_eq!(lines[1], "xdp mode:         generic");
    assert_eq!(
        lines[2],
        "mode:             enforcing (over-limit SYNs are dropped)"
    );
    assert_eq!(lines[3], "attack state:     none");
    assert_eq!(lines[4], "spoof guard:      off");
    assert!(!stats.spoof_guard);
    assert!(lines.contains(&"packets/s:        0.0"), "{text}");
    assert!(lines.contains(&"blocklist:        1 entry"), "{text}");
    assert!(lines.contains(&"counters:"), "{text}");
    assert!(
        lines
            .iter()
            .any(|l| l.trim_start().starts_with("dropped_blocklist ")),
        "{text}"
    );
}

#[tokio::test]
async fn offenders_feed_top_once() {
    let server = serve("top").await;
    let client = Client::new(&server.url, token_file(&server.dir, TOKEN)).unwrap();
    let offenders = client.offenders(10).await.unwrap();
    assert_eq!(offenders.len(), 2);
    assert_eq!(offenders[0].source.to_string(), "192.0.2.7/32");
    assert_eq!(offenders[0].history, [100.0, 500.0, 950.0]);
    assert!(offenders[0].blocked);
    assert_eq!(client.offenders(1).await.unwrap().len(), 1);

    let stats = client.stats().await.unwrap();
    let view = cli::build_view(
        Some(&stats),
        &offenders,
        SortKey::Total,
        10,
        model::now_ms(),
    );
    let text = cli::render_text(&view);
    assert!(!text.contains('\x1b'));
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("interface: test0  XDP: generic  mode: enforce"),
        "{text}"
    );
    assert!(lines[1].contains("sort: total"), "{text}");
    assert!(lines[3].starts_with("ADDRESS"), "{text}");
    // Sorted by total: the IPv6 prefix first.
    assert!(lines[4].starts_with("2001:db8:1::/64 "), "{text}");
    assert!(lines[5].starts_with("192.0.2.7 "), "{text}");
    assert!(
        lines[5].contains("yes, 9m 5") || lines[5].contains("yes, 10m"),
        "{text}"
    );
    assert!(lines[5].ends_with("▂▅█"), "{text}");
}

#[tokio::test]
async fn connections_read_like_the_memo_pipelines() {
    let server = serve("conns").await;
    let client = Client::new(&server.url, token_file(&server.dir, TOKEN)).unwrap();
    let conns = client.connections(Some(80)).await.unwrap();
    assert_eq!(conns.total, 12);
    assert_eq!(conns.syn_recv, 5);
    assert_eq!(conns.port, Some(80));
    assert_eq!(conns.clients.len(), 2);
    let text = cli::connections_report(&conns);
    assert_eq!(
        text,
        "\
TCP sockets by state (12 total):
      2 ESTABLISHED
      2 LISTEN
      3 TIME_WAIT
      5 SYN_RECV

Port 80 sockets: 5 SYN_RECV, 3 TIME_WAIT, 1 ESTABLISHED, 1 LISTEN
Clients of port 80 (2 addresses):
      4 198.51.100.3
      5 192.0.2.7
"
    );

    let all = client.connections(None).await.unwrap();
    assert_eq!(all.port, None);
    assert!(all.clients.is_empty());
    assert!(
        cli::connections_report(&all).ends_with("(pass --port N to see the clients of a port)\n")
    );
}

#[tokio::test]
async fn sysctl_audit_parses() {
    let server = serve("sysctl").await;
    let client = Client::new(&server.url, token_file(&server.dir, TOKEN)).unwrap();
    let entries = client.sysctl().await.unwrap();
    assert_eq!(entries.len(), sysctl::SETTINGS.len());
    let cookies = entries
        .iter()
        .find(|e| e.key == "net.ipv4.tcp_syncookies")
        .unwrap();
    assert_eq!(cookies.current.as_deref(), Some("1"));
    assert_eq!(cookies.status, sysctl::Status::Ok);
    let text = cli::audit_table(&entries, sysctl::Profile::Recommended);
    assert!(text.starts_with("KEY "), "{text}");
}

#[tokio::test]
async fn dispatch_runs_client_commands() {
    let server = serve("dispatch").await;
    let token = token_file(&server.dir, TOKEN);
    let run = |args: &[&str]| {
        let mut argv = vec![
            "xdp-guard".to_owned(),
            "--api".to_owned(),
            server.url.clone(),
            "--token-file".to_owned(),
            token.display().to_string(),
        ];
        argv.extend(args.iter().map(|s| (*s).to_owned()));
        <cli::Cli as clap::Parser>::try_parse_from(argv).unwrap()
    };
    cli::dispatch(run(&["block", "203.0.113.0/24", "--ttl", "90s"]))
        .await
        .unwrap();
    assert_eq!(server.stub.guard.blocklist().len(), 1);
    let e = cli::dispatch(run(&["block", "0.0.0.0/0"]))
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("422: 0.0.0.0/0 is broader than /8"),
        "{e}"
    );
    cli::dispatch(run(&["unblock", "203.0.113.0/24"]))
        .await
        .unwrap();
    assert!(server.stub.guard.blocklist().is_empty());
    // A feed: all of it, or (one prefix refused) none of it.
    let feed = server.dir.join("feed.txt");
    std::fs::write(
        &feed,
        "# feed\n198.51.100.0/25\n198.51.100.128/25 # second half\n",
    )
    .unwrap();
    cli::dispatch(run(&[
        "block",
        "--file",
        &feed.display().to_string(),
        "--ttl",
        "1h",
    ]))
    .await
    .unwrap();
    assert_eq!(server.stub.guard.blocklist().len(), 2);
    std::fs::write(&feed, "203.0.113.0/24\n0.0.0.0/0\n").unwrap();
    let e = cli::dispatch(run(&["block", "--file", &feed.display().to_string()]))
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("422: entry 1 of the batch: 0.0.0.0/0 is broader than /8"),
        "{e}"
    );
    assert_eq!(server.stub.guard.blocklist().len(), 2);
    for c in ["198.51.100.0/25", "198.51.100.128/25"] {
        cli::dispatch(run(&["unblock", c])).await.unwrap();
    }
    assert!(server.stub.guard.blocklist().is_empty());
    cli::dispatch(run(&["allow", "192.0.2.1", "--note", "me"]))
        .await
        .unwrap();
    assert_eq!(server.stub.guard.allowlist().len(), 1);
    cli::dispatch(run(&["disallow", "192.0.2.1"]))
        .await
        .unwrap();
    assert!(server.stub.guard.allowlist().is_empty());
}
