//! The node as operators run it — the real binary under signals: SIGHUP reloads (a broken
//! file changes nothing), SIGTERM drains in-flight requests and exits 0, SIGUSR1 reopens the
//! access log after a rotation, and the access log has one well-formed line per request.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use support::*;

/// A `strata serve --config` process on fixed loopback ports.
struct Proc {
    child: Child,
    viewer: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    config: PathBuf,
}

impl Proc {
    async fn start(config_path: &Path, viewer: u16, admin: u16) -> Proc {
        let child = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["serve", "--config"])
            .arg(config_path)
            .env(TOKEN_ENV, TOKEN)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the strata binary starts");
        let p = Proc {
            child,
            viewer: format!("127.0.0.1:{viewer}").parse().unwrap(),
            admin: format!("127.0.0.1:{admin}").parse().unwrap(),
            config: config_path.to_path_buf(),
        };
        wait_ready(p.admin).await;
        p
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped.
        let rc = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Waits for the process to exit; returns its exit code.
    async fn exit_code(mut self) -> i32 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            if tokio::time::Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the node did not exit");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_config(dir: &Path, origin: &str, viewer: u16, admin: u16, extra: &str) -> PathBuf {
    let text = config(
        origin,
        &dir.join("store"),
        &format!("127.0.0.1:{viewer}"),
        extra,
    )
    .replace(
        "admin_listen = \"127.0.0.1:0\"",
        &format!("admin_listen = \"127.0.0.1:{admin}\""),
    );
    let path = dir.join("strata.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn is_hit(g: &Got) -> bool {
    g.header("x-cache").starts_with("Hit")
}

async fn reloads(admin: std::net::SocketAddr, result: &str) -> f64 {
    let page = admin_get(admin, "/metrics").await.body;
    let want = format!("strata_config_reloads_total{{result=\"{result}\"}} ");
    page.lines()
        .find_map(|l| l.strip_prefix(want.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(-1.0)
}

#[tokio::test]
async fn sighup_applies_a_new_behaviour_and_a_broken_file_changes_nothing() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (vp, ap) = (free_port(), free_port());
    let path = write_config(dir.path(), &origin.url(), vp, ap, "");
    let node = Proc::start(&path, vp, ap).await;

    get(node.viewer, "/live/a", &[]).await;
    assert!(is_hit(&get(node.viewer, "/live/a", &[]).await));

    // A new behaviour: /live/* is no longer cached.
    let behaviour = "\n[[behaviors]]\npath = \"/live/*\"\norigin = \"origin\"\ncache_policy = \"CachingDisabled\"\n";
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace(
            "[default_behavior]",
            &format!("{behaviour}\n[default_behavior]"),
        ),
    )
    .unwrap();
    node.signal(libc::SIGHUP);
    let admin = node.admin;
    eventually("the reload is counted", || async move {
        reloads(admin, "ok").await == 1.0
    })
    .await;
    let before = origin.count("/live/a");
    let r = get(node.viewer, "/live/a", &[]).await;
    assert!(
        !is_hit(&r),
        "the new behaviour bypasses the cache: {:?}",
        r.headers
    );
    assert_eq!(origin.count("/live/a"), before + 1);
    // The cache survived the reload.
    get(node.viewer, "/other", &[]).await;
    assert!(is_hit(&get(node.viewer, "/other", &[]).await));

    // A broken file: refused, the running config stays (and so does the new behaviour).
    std::fs::write(&path, "[node]\nlisen = \"oops\"\n").unwrap();
    node.signal(libc::SIGHUP);
    eventually("the refusal is counted", || async move {
        reloads(admin, "error").await == 1.0
    })
    .await;
    assert!(is_hit(&get(node.viewer, "/other", &[]).await));
    let before = origin.count("/live/a");
    get(node.viewer, "/live/a", &[]).await;
    assert_eq!(
        origin.count("/live/a"),
        before + 1,
        "still the reloaded behaviour"
    );
    assert_eq!(admin_get(node.admin, "/readyz").await.status, 200);
    let _ = &node.config;
}

#[tokio::test]
async fn sigterm_under_load_finishes_every_in_flight_response_and_exits_0() {
    // Every origin response takes 400ms, so requests are in flight when SIGTERM lands.
    let origin = Origin::with(Arc::new(|_| Vec::new()), Duration::from_millis(400)).await;
    let dir = tempfile::tempdir().unwrap();
    let (vp, ap) = (free_port(), free_port());
    let path = write_config(dir.path(), &origin.url(), vp, ap, "");
    let node = Proc::start(&path, vp, ap).await;
    let viewer = node.viewer;

    let mut load = tokio::task::JoinSet::new();
    for i in 0..40 {
        load.spawn(async move {
            send(
                http::Method::GET,
                &format!("http://{viewer}/slow/{i}"),
                &[],
                None,
            )
            .await
        });
    }
    eventually("requests reach the origin", || async {
        origin.total() >= 20
    })
    .await;
    node.signal(libc::SIGTERM);
    let mut ok = 0;
    while let Some(r) = load.join_next().await {
        let r = r.unwrap().expect("an in-flight request completes");
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.body.starts_with("body of /slow/"), "{}", r.body);
        ok += 1;
    }
    assert_eq!(ok, 40);
    assert_eq!(node.exit_code().await, 0);
    // Stopped: the port no longer accepts.
    assert!(
        send(http::Method::GET, &format!("http://{viewer}/x"), &[], None)
            .await
            .is_err()
    );
}

/// Warm restart needs the disk store (branch `disk`). Until `DiskStore` is in main the node
/// runs on the memory store, which cannot be warm; remove the `ignore` when it merges.
#[tokio::test]

async fn sigterm_checkpoints_and_the_next_start_is_warm() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (vp, ap) = (free_port(), free_port());
    let path = write_config(dir.path(), &origin.url(), vp, ap, "");
    let node = Proc::start(&path, vp, ap).await;
    for i in 0..50 {
        get(node.viewer, &format!("/warm/{i}"), &[]).await;
    }
    node.signal(libc::SIGTERM);
    assert_eq!(node.exit_code().await, 0);
    let node = Proc::start(&path, vp, ap).await;
    for i in 0..50 {
        assert!(
            is_hit(&get(node.viewer, &format!("/warm/{i}"), &[]).await),
            "/warm/{i}"
        );
    }
    assert_eq!(origin.total(), 50);
}

fn log_lines(path: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

#[tokio::test]
async fn the_access_log_has_a_line_per_request_and_survives_rotation() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let (vp, ap) = (free_port(), free_port());
    let extra = format!(
        "\n[access_log]\npath = \"{}\"\nformat = \"cloudfront\"\n",
        log.display()
    );
    let path = write_config(dir.path(), &origin.url(), vp, ap, &extra);
    // An ordered behaviour, so that the lines name more than the default.
    let text = std::fs::read_to_string(&path).unwrap();
    let behaviour = "[[behaviors]]\npath = \"/logged/4*\"\norigin = \"origin\"\n\n";
    std::fs::write(
        &path,
        text.replace(
            "[default_behavior]",
            &format!("{behaviour}[default_behavior]"),
        ),
    )
    .unwrap();
    let node = Proc::start(&path, vp, ap).await;

    for i in 0..10 {
        get(
            node.viewer,
            &format!("/logged/{}?v=1", i % 5),
            &[("user-agent", "test agent/1.0")],
        )
        .await;
    }
    // Refused before it is routed (a loop through this node): its line still names the
    // behaviour its path routes to.
    let looped = get(
        node.viewer,
        "/logged/4?v=1",
        &[("via", "1.1 ops-node (strata)")],
    )
    .await;
    assert_eq!(looped.status, 508);
    let log2 = log.clone();
    eventually("eleven lines", || {
        let log = log2.clone();
        async move { log_lines(&log).len() == 11 }
    })
    .await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.starts_with("#Version: 1.0\n#Fields: date time x-edge-location"),
        "{text}"
    );
    let fields = strata::access_log::FIELDS;
    // Lines of requests served by different worker threads within one flush of the writer
    // are not ordered among themselves (as CloudFront's are not): each path's two requests
    // must show one miss and one hit, in whatever order.
    let mut results: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (i, line) in log_lines(&log).iter().enumerate() {
        assert_eq!(line.len(), fields.len(), "line {i}: {line:?}");
        let f = |name: &str| line[fields.iter().position(|x| *x == name).unwrap()].as_str();
        assert_eq!(f("x-edge-location"), "ops-node");
        assert_eq!(f("cs-method"), "GET");
        assert!(f("cs-uri-stem").starts_with("/logged/"));
        assert_eq!(f("cs-uri-query"), "v=1");
        let behaviour = if f("cs-uri-stem") == "/logged/4" {
            "/logged/4*"
        } else {
            "default"
        };
        assert_eq!(f("x-strata-behavior"), behaviour, "line {i}");
        if f("sc-status") == "508" {
            assert_eq!(f("x-edge-result-type"), "Error");
            assert_eq!(f("cs(User-Agent)"), "-");
            continue;
        }
        assert_eq!(f("sc-status"), "200");
        assert_eq!(f("cs(User-Agent)"), "test%20agent/1.0");
        results
            .entry(f("cs-uri-stem").to_string())
            .or_default()
            .push(f("x-edge-result-type").to_string());
        assert_eq!(f("x-edge-request-id").len(), 32, "line {i}");
        assert!(f("time-taken").parse::<f64>().is_ok());
        assert!(f("sc-bytes").parse::<u64>().unwrap() > 0);
        assert_eq!(f("date").len(), 10);
    }
    assert_eq!(results.len(), 5, "{results:?}");
    for (path, mut r) in results {
        r.sort();
        assert_eq!(r, ["Hit", "Miss"], "{path}");
    }

    // Rotation: rename, SIGUSR1, and new lines go to a new file.
    let rotated = dir.path().join("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    node.signal(libc::SIGUSR1);
    let log2 = log.clone();
    eventually("the log is reopened", || {
        let log = log2.clone();
        async move { log.exists() }
    })
    .await;
    for _ in 0..3 {
        get(node.viewer, "/after-rotation", &[]).await;
    }
    let log2 = log.clone();
    eventually("three lines in the new file", || {
        let log = log2.clone();
        async move { log_lines(&log).len() == 3 }
    })
    .await;
    assert_eq!(
        log_lines(&rotated).len(),
        11,
        "the rotated file is complete"
    );
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .starts_with("#Version: 1.0"));
}

#[tokio::test]
async fn the_json_access_log_is_one_object_per_request() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.json");
    let extra = format!(
        "\n[access_log]\npath = \"{}\"\nformat = \"json\"\n",
        log.display()
    );
    let node = start(&config(
        &origin.url(),
        &dir.path().join("store"),
        "127.0.0.1:0",
        &extra,
    ))
    .await;
    get(node.addr(), "/j", &[]).await;
    get(node.addr(), "/j", &[]).await;
    node.shutdown().await; // flushes the log
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["x-edge-result-type"], "Miss");
    assert_eq!(lines[1]["x-edge-result-type"], "Hit");
    assert_eq!(lines[1]["cs-uri-stem"], "/j");
}
