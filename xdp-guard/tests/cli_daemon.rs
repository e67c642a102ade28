//! The CLI binary against a real daemon in a test namespace, and the live `top` view driven
//! in tmux: keys sent, the pane captured, the offender seen and blocked from the view.

mod support;

use std::{path::Path, process::Output, time::Duration};

use xdp_guard::netns::{Lan, LanHost, leftovers};

use support::{bed::*, require_root};

/// The CLI, run in the server's network namespace (the API listens on its loopback).
fn cli(srv: &LanHost, token: &Path, args: &[&str]) -> Output {
    srv.ns
        .nsenter_command(BIN)
        .arg("--token-file")
        .arg(token)
        .args(args)
        .output()
        .expect("run the CLI")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn tmux(args: &[&str]) -> String {
    let out = std::process::Command::new("tmux")
        .args(args)
        .output()
        .expect("tmux (installed by `cargo xtask setup`)");
    String::from_utf8_lossy(&out.stdout).to_string()
}

struct TmuxSession(String);

impl Drop for TmuxSession {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .output();
    }
}

#[test]
fn cli_commands_and_top_in_tmux_against_a_live_daemon() {
    if !require_root() {
        return;
    }
    let lan = Lan::new(&[("csrv", "198.18.1.1/24"), ("catk", "198.18.1.2/24")]).expect("test LAN");
    let (srv, atk) = (&lan.hosts[0], &lan.hosts[1]);
    let names: Vec<String> = lan.hosts.iter().map(|h| h.ns.name().to_string()).collect();
    let work = WorkDir::new("cli");
    let token = work.token();
    let config = work.config(&format!(
        "interface = \"{}\"\nstate_dir = \"{}\"\ndetach_on_exit = true\n[syn]\nrate = 1000\nburst = 8\n[api]\ntoken_file = \"{}\"\n",
        srv.iface,
        work.state().display(),
        token.display()
    ));
    let daemon = Daemon::start(srv, &config, &work.log());
    wait_until("the API", Duration::from_secs(30), || {
        api(srv, &token, "/v1/stats").is_some()
    });

    // Every read command, human and --json.
    let out = cli(
        srv,
        &token,
        &[
            "block",
            "192.0.2.0/24",
            "--ttl",
            "10m",
            "--reason",
            "cli test",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let list = stdout(&cli(srv, &token, &["list"]));
    assert!(
        list.contains("192.0.2.0/24") && list.contains("cli test") && list.contains("manual"),
        "{list}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&cli(srv, &token, &["list", "--json"]).stdout).expect("list --json");
    assert_eq!(json["entries"][0]["cidr"], "192.0.2.0/24");
    let bad = cli(srv, &token, &["block", "10.1.2.3/8"]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(err.lines().count(), 1, "one clear line: {err}");
    assert!(err.contains("10.0.0.0/8"), "{err}");
    assert!(cli(srv, &token, &["allow", "198.18.1.99"]).status.success());
    assert!(stdout(&cli(srv, &token, &["list", "--allow"])).contains("198.18.1.99/32"));
    assert!(
        cli(srv, &token, &["disallow", "198.18.1.99"])
            .status
            .success()
    );
    let stats = stdout(&cli(srv, &token, &["stats"]));
    assert!(
        stats.contains("native") || stats.contains("generic"),
        "{stats}"
    );
    let stats: serde_json::Value =
        serde_json::from_slice(&cli(srv, &token, &["stats", "--json"]).stdout)
            .expect("stats --json");
    assert_eq!(stats["interface"], srv.iface.as_str());
    let conns: serde_json::Value =
        serde_json::from_slice(&cli(srv, &token, &["conns", "--port", "9180", "--json"]).stdout)
            .expect("conns --json");
    assert!(conns["states"].is_object(), "{conns}");
    assert!(
        cli(srv, &token, &["unblock", "192.0.2.0/24"])
            .status
            .success()
    );
    let again = cli(srv, &token, &["unblock", "192.0.2.0/24"]);
    assert!(
        !again.status.success() && String::from_utf8_lossy(&again.stderr).contains("404"),
        "{again:?}"
    );
    // A feed file: one batch request, all or nothing, through the real datapath and store.
    let feed = work.log().with_file_name("feed.txt");
    std::fs::write(&feed, "# feed\n203.0.113.0/25\n2001:db8:99::/48 # v6\n").expect("feed");
    let feed_arg = feed.display().to_string();
    let out = cli(srv, &token, &["block", "--file", &feed_arg, "--ttl", "10m"]);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("blocked 2 prefixes"), "{out:?}");
    std::fs::write(&feed, "203.0.113.128/25\n198.18.0.0/15\n").expect("feed");
    let refused = cli(srv, &token, &["block", "--file", &feed_arg]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && err.contains("entry 1 of the batch"),
        "{err}"
    );
    let list = stdout(&cli(srv, &token, &["list"]));
    assert!(
        list.contains("203.0.113.0/25")
            && list.contains("2001:db8:99::/48")
            && !list.contains("203.0.113.128/25"),
        "{list}"
    );
    for c in ["203.0.113.0/25", "2001:db8:99::/48"] {
        assert!(cli(srv, &token, &["unblock", c]).status.success());
    }

    // A tracked source below the block threshold, for `top` to show.
    let mut syns = atk
        .ns
        .command("timeout")
        .args([
            "60", "hping3", "-q", "-S", "-p", "80", "-i", "u20000", "-c", "3000", &srv.addr,
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("hping3");
    wait_until(
        "the source in `top --once`",
        Duration::from_secs(20),
        || stdout(&cli(srv, &token, &["top", "--once"])).contains("198.18.1.2"),
    );

    // The live view in tmux: the offender appears; `b` blocks the selected row.
    let session = TmuxSession(format!("xg-top-{}", std::process::id()));
    let command = format!(
        "nsenter --net=/var/run/netns/{} -- {} --token-file {} top --interval 500ms",
        srv.ns.name(),
        BIN,
        token.display()
    );
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &session.0,
        "-x",
        "160",
        "-y",
        "40",
        &command,
    ]);
    wait_until(
        "the offender on the tmux pane",
        Duration::from_secs(20),
        || tmux(&["capture-pane", "-p", "-t", &session.0]).contains("198.18.1.2"),
    );
    let pane = tmux(&["capture-pane", "-p", "-t", &session.0]);
    assert!(
        pane.contains("packets/s:") && pane.contains("attack: none") && pane.contains("ADDRESS"),
        "header: {pane}"
    );
    // Nothing is selected until the operator moves onto a row: `j`, then `b`.
    tmux(&["send-keys", "-t", &session.0, "j"]);
    tmux(&["send-keys", "-t", &session.0, "b"]);
    wait_until(
        "the block made from the view",
        Duration::from_secs(10),
        || blocked(srv, &token, "198.18.1.2/32"),
    );
    wait_until(
        "the view showing it blocked",
        Duration::from_secs(10),
        || {
            let p = tmux(&["capture-pane", "-p", "-t", &session.0]);
            p.contains("blocked 198.18.1.2/32 for")
        },
    );
    tmux(&["send-keys", "-t", &session.0, "u"]);
    wait_until(
        "the unblock made from the view",
        Duration::from_secs(10),
        || !blocked(srv, &token, "198.18.1.2/32"),
    );
    tmux(&["send-keys", "-t", &session.0, "q"]);
    drop(session);

    let _ = syns.kill();
    let _ = syns.wait();
    assert!(daemon.stop().success());
    assert!(
        !Path::new(&format!("/sys/fs/bpf/xdp-guard/{}", srv.iface)).exists(),
        "pins removed"
    );
    drop(lan);
    let left = leftovers();
    for n in names {
        assert!(!left.contains(&n), "namespace {n} left behind");
    }
}
