//! The deployment files are checked, not just shipped: the Kubernetes manifests pass the
//! Kubernetes JSON schemas (`kubernetes-validate --strict`, installed by `.ci/run`; this test
//! fails, never skips, when it is missing), the config each ConfigMap carries resolves, and
//! the Grafana dashboard and alert rules use only metrics the node exports.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn manifests() -> Vec<PathBuf> {
    let dir = root().join("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "expected the namespace and three tiers");
    files
}

fn validator() -> Command {
    let found = Command::new("kubernetes-validate")
        .arg("--version")
        .output();
    match found {
        Ok(o) if o.status.success() => Command::new("kubernetes-validate"),
        _ => panic!(
            "kubernetes-validate is not installed: `pip install kubernetes-validate` \
             (.ci/run installs it before the tests)"
        ),
    }
}

#[test]
fn kubernetes_manifests_pass_the_schemas() {
    let out = validator()
        .args(["--strict", "--quiet"])
        .args(manifests())
        .output()
        .expect("kubernetes-validate runs");
    assert!(
        out.status.success(),
        "manifests are invalid:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_validator_rejects_a_broken_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: x}\nspec:\n  replicas: three\n  serviceName: x\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    spec:\n      containers: [{name: c, image: i, portz: []}]\n",
    )
    .unwrap();
    let out = validator().arg("--strict").arg(&bad).output().unwrap();
    assert!(!out.status.success(), "a broken manifest passed");
}

/// The TOML under `strata.toml: |` in a ConfigMap.
fn embedded_config(manifest: &Path) -> Option<String> {
    let text = std::fs::read_to_string(manifest).unwrap();
    let mut lines = text.lines().skip_while(|l| l.trim() != "strata.toml: |");
    lines.next()?;
    let body: Vec<&str> = lines
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect();
    Some(body.join("\n"))
}

#[test]
fn every_tier_config_resolves_and_the_tiers_chain() {
    let mut origins = Vec::new();
    for m in manifests() {
        let Some(toml) = embedded_config(&m) else {
            continue;
        };
        let toml = toml.replace("@POD_IP@", "10.0.0.7");
        let r = strata::config::Resolved::from_toml(&toml, &m.display().to_string())
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            r.file.node.admin_token_env.is_some(),
            "{}: no admin token",
            m.display()
        );
        assert!(r
            .file
            .cluster
            .as_ref()
            .and_then(|c| c.peers_dns.clone())
            .is_some());
        origins.push((
            m.file_stem().unwrap().to_string_lossy().into_owned(),
            r.file.origins[0].url.clone(),
        ));
    }
    let origin_of = |tier: &str| {
        origins
            .iter()
            .find(|(t, _)| t == tier)
            .map(|(_, u)| u.clone())
            .unwrap()
    };
    assert!(origin_of("pop").contains("strata-regional"));
    assert!(origin_of("regional").contains("strata-shield"));
    assert!(!origin_of("shield").contains("strata-"));
}

#[test]
fn the_systemd_unit_runs_serve_and_reloads_with_sighup() {
    let unit = std::fs::read_to_string(root().join("deploy/systemd/strata.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/strata serve --config"));
    assert!(unit.contains("ExecReload=/bin/kill -HUP $MAINPID"));
    assert!(unit.contains("KillSignal=SIGTERM"));
}

/// Metric names used in a PromQL text (`strata_…`), without the `_bucket` etc. suffixes.
fn metric_names(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("strata_") {
        let start = i + pos;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let preceded =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        if !preceded {
            out.push(text[start..end].to_string());
        }
        i = end;
    }
    out.sort();
    out.dedup();
    out
}

#[test]
fn dashboard_and_alerts_use_only_exported_metrics() {
    let dash =
        std::fs::read_to_string(root().join("deploy/grafana/strata-dashboard.json")).unwrap();
    let _: serde_json::Value = serde_json::from_str(&dash).expect("the dashboard is JSON");
    let alerts =
        std::fs::read_to_string(root().join("deploy/prometheus/strata-alerts.yml")).unwrap();
    // Every family the node registers, from a rendered page with one sample in each.
    let m = strata::metrics::Metrics::new();
    m.peer_requests
        .get_or_create(&strata::metrics::PeerLabels {
            peer: "p".into(),
            result: "hit",
        })
        .inc();
    m.origin("o", Some(200));
    let page = m.render(Default::default());
    let exported: Vec<&str> = page
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    for name in metric_names(&dash).into_iter().chain(metric_names(&alerts)) {
        let base = ["_total", "_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(&name);
        assert!(
            exported.contains(&base),
            "{name} is not a metric strata exports"
        );
    }
}
