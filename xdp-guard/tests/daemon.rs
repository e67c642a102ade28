//! The daemon in a network namespace, attached natively to its veth, against real traffic:
//! a SYN flood from one namespace, a well-behaved client in another. The flooder is blocked
//! after two over-limit ticks while the client keeps connecting; the daemon is SIGKILLed
//! mid-flood and restarted without losing the block, and the pinned program keeps dropping
//! in between; the sysctl tuner applies and restores inside the server's namespace only.

mod support;

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use xdp_guard::netns::{Lan, leftovers};
use xdp_guard_common::stats;

use support::{bed::*, require_root};

#[test]
fn flood_blocked_client_unharmed_survives_sigkill_and_tunes_sysctls() {
    if !require_root() {
        return;
    }
    let lan = Lan::new(&[
        ("srv", "198.18.0.1/24"),
        ("atk", "198.18.0.2/24"),
        ("cli", "198.18.0.3/24"),
    ])
    .expect("test LAN");
    let (srv, atk, cli) = (&lan.hosts[0], &lan.hosts[1], &lan.hosts[2]);
    let names: Vec<String> = lan.hosts.iter().map(|h| h.ns.name().to_string()).collect();
    let work = WorkDir::new("daemon");
    let token = work.token();
    let config = work.config(&format!(
        r#"interface = "{iface}"
state_dir = "{state}"
xdp_mode = "native"
detach_on_exit = false
protected_ports = [80]
[syn]
rate = 50
burst = 100
tick = "250ms"
[blocking]
default_ttl = "10m"
over_limit_ticks = 2
[attack]
syn_rate_total = 1000
quiet_period = "2s"
[api]
listen = "127.0.0.1:9180"
token_file = "{token}"
[sysctl]
mode = "auto"
"#,
        iface = srv.iface,
        state = work.state().display(),
        token = token.display()
    ));
    let log = work.log();
    let synack_before = read_sysctl(srv, "net.ipv4.tcp_synack_retries");
    let host_synack =
        std::fs::read_to_string("/proc/sys/net/ipv4/tcp_synack_retries").expect("host sysctl");

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let server = spawn_server(srv, stop.clone());
    let server_addr: SocketAddr = format!("{}:80", srv.addr).parse().expect("addr");
    let client_stop = Arc::new(AtomicBool::new(false));
    let client = spawn_client(
        cli,
        server_addr,
        client_stop.clone(),
        ok.clone(),
        failed.clone(),
    );

    let daemon = Daemon::start(srv, &config, &log);
    wait_until("the API", Duration::from_secs(30), || {
        api(srv, &token, "/v1/stats").is_some()
    });
    assert_eq!(
        api(srv, &token, "/v1/stats").expect("stats")["xdp_mode"],
        "native"
    );

    // 1. The flood: blocked after exactly the configured two over-limit ticks.
    let mut hping = flood(&atk.ns, &srv.addr, 400_000);
    wait_until("the attacker's block", Duration::from_secs(20), || {
        blocked(srv, &token, "198.18.0.2/32")
    });
    let entries = api(srv, &token, "/v1/blocklist").expect("blocklist");
    let entry = entries["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|b| b["cidr"] == "198.18.0.2/32")
        .expect("entry")
        .clone();
    assert_eq!(entry["origin"], "auto");
    assert!(
        entry["reason"]
            .as_str()
            .unwrap_or("")
            .ends_with("for 2 ticks"),
        "{entry}"
    );
    assert!(
        !blocked(srv, &token, "198.18.0.3/32"),
        "the client is never blocked"
    );
    wait_until(
        "the under-attack sysctl profile",
        Duration::from_secs(10),
        || read_sysctl(srv, "net.ipv4.tcp_synack_retries") == "2",
    );

    // 2. SIGKILL mid-flood: the pinned program keeps dropping with no daemon at all.
    daemon.kill9();
    let gap_start = pinned_stats(&srv.iface)[stats::DROP_BLOCKLIST];
    let ok_before_gap = ok.load(Ordering::Relaxed);
    wait_until(
        "drops while the daemon is dead",
        Duration::from_secs(10),
        || pinned_stats(&srv.iface)[stats::DROP_BLOCKLIST] > gap_start + 1000,
    );
    wait_until(
        "client connections while the daemon is dead",
        Duration::from_secs(10),
        || ok.load(Ordering::Relaxed) > ok_before_gap + 5,
    );

    // 3. Restart: the block is still there, adopted from the pins and the state file.
    let daemon = Daemon::start(srv, &config, &log);
    wait_until("the API after restart", Duration::from_secs(30), || {
        api(srv, &token, "/v1/stats").is_some()
    });
    assert!(
        blocked(srv, &token, "198.18.0.2/32"),
        "no block lost across SIGKILL"
    );
    let after_restart = pinned_stats(&srv.iface)[stats::DROP_BLOCKLIST];
    wait_until("drops after restart", Duration::from_secs(10), || {
        pinned_stats(&srv.iface)[stats::DROP_BLOCKLIST] > after_restart + 1000
    });

    // A second instance on the same interface is refused, and the first keeps serving.
    let second = srv
        .ns
        .nsenter_command(BIN)
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .expect("second instance");
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("already running on"), "{err}");
    assert!(
        api(srv, &token, "/v1/stats").is_some(),
        "the first instance is undisturbed"
    );
    // Nor can `detach` pull the program from under it: the lock is found through the
    // daemon's config (its state_dir is not the default one).
    let detach = || {
        srv.ns
            .nsenter_command(BIN)
            .args(["detach", "--iface", &srv.iface, "--config"])
            .arg(&config)
            .output()
            .expect("xdp-guard detach")
    };
    let refused = detach();
    assert!(!refused.status.success(), "{refused:?}");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("already running on"), "{err}");
    assert!(
        api(srv, &token, "/v1/stats").is_some() && blocked(srv, &token, "198.18.0.2/32"),
        "still attached and blocking after the refused detach"
    );

    // SIGHUP: a new allowlist entry from the file, state kept.
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        text.replacen(
            "protected_ports = [80]",
            "protected_ports = [80]\nallowlist = [\"198.18.0.3\"]",
            1,
        ),
    )
    .expect("config");
    daemon.signal(libc::SIGHUP);
    wait_until("the reloaded allowlist", Duration::from_secs(10), || {
        api(srv, &token, "/v1/allowlist")
            .and_then(|v| v["entries"].as_array().cloned())
            .is_some_and(|e| {
                e.iter()
                    .any(|a| a["cidr"] == "198.18.0.3/32" && a["origin"] == "config")
            })
    });
    assert!(
        blocked(srv, &token, "198.18.0.2/32"),
        "reload keeps the blocks"
    );

    // 4. Quiet again: the flood stops, the tuner restores the namespace's sysctls.
    let _ = hping.kill();
    let _ = hping.wait();
    wait_until(
        "sysctls restored after the quiet period",
        Duration::from_secs(20),
        || read_sysctl(srv, "net.ipv4.tcp_synack_retries") == synack_before,
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/tcp_synack_retries").expect("host"),
        host_synack,
        "host untouched"
    );

    let status = daemon.stop();
    assert!(
        status.success(),
        "clean exit: {status:?}; log: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // The client stops first: a connect after the server is gone would be our own doing.
    client_stop.store(true, Ordering::Relaxed);
    let _ = client.join();
    stop.store(true, Ordering::Relaxed);
    let _ = server.join();
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("client: {ok} connections, {failed} failed");
    assert!(ok >= 10, "the client kept connecting throughout: {ok}");
    assert_eq!(failed, 0, "the well-behaved client never failed to connect");

    // 5. detach_on_exit = false: protection outlives the daemon until `xdp-guard detach`.
    let pins = PathBuf::from(format!("/sys/fs/bpf/xdp-guard/{}", srv.iface));
    assert!(pins.exists(), "pins kept after a clean exit");
    let link = srv
        .ns
        .exec(&["ip", "link", "show", "dev", &srv.iface])
        .expect("ip link");
    assert!(
        String::from_utf8_lossy(&link.stdout).contains("xdp"),
        "still attached"
    );
    let detached = detach();
    assert!(detached.status.success(), "{detached:?}");
    assert!(!pins.exists(), "pins removed by detach");
    let link = srv
        .ns
        .exec(&["ip", "link", "show", "dev", &srv.iface])
        .expect("ip link");
    assert!(
        !String::from_utf8_lossy(&link.stdout).contains("xdp"),
        "detached"
    );
    drop(lan);
    let left = leftovers();
    for n in names {
        assert!(!left.contains(&n), "namespace {n} left behind");
    }
}
