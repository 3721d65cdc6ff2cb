//! Tiers chained for real: POP → regional → shield → origin, each a strata node. Every hop
//! adds its Cache-Status member and Via; Age stays correct end to end; a loop is refused
//! with 508; an origin group's secondary answers when the primary is down.

mod topo;

use http::StatusCode;
use std::time::Duration;
use topo::*;

fn tier_config(id: &str, dir: &std::path::Path, listen_port: u16, upstream: &str) -> String {
    format!(
        r#"{}
[[origins]]
id = "up"
url = "{upstream}"

[default_behavior]
origin = "up"
"#,
        node_section(id, "127.0.0.1", listen_port, dir)
    )
}

#[test]
fn every_hop_names_itself_and_age_holds_end_to_end() {
    scenario(60, async {
        let dir = tempfile::tempdir().unwrap();
        let origin = TestOrigin::start("origin", "127.0.0.1", Duration::ZERO).await;
        let shield = node(&tier_config(
            "shield",
            dir.path(),
            0,
            &format!("http://{}", origin.addr),
        ))
        .await;
        let regional = node(&tier_config(
            "regional",
            dir.path(),
            0,
            &format!("http://{}", shield.addr()),
        ))
        .await;
        let pop = node(&tier_config(
            "pop",
            dir.path(),
            0,
            &format!("http://{}", regional.addr()),
        ))
        .await;
        let c = client();

        let first = get(&c, &format!("http://{}/a", pop.addr()), &[]).await;
        assert_eq!(first.text(), "origin:/a");
        let cs = first.header("cache-status");
        let members: Vec<&str> = cs.split(", ").collect();
        assert_eq!(members.len(), 3, "{cs}");
        assert!(members[0].starts_with("shield; fwd=miss"), "{cs}");
        assert!(members[1].starts_with("regional; fwd=miss"), "{cs}");
        assert!(members[2].starts_with("pop; fwd=miss"), "{cs}");
        assert_eq!(
            first.header("via"),
            "1.1 shield (strata), 1.1 regional (strata), 1.1 pop (strata)"
        );
        // The origin saw the whole path in Via, and no peer marker.
        let seen = origin.seen.lock().unwrap()[0].clone();
        assert_eq!(
            seen.get("via").unwrap(),
            "1.1 pop (strata), 1.1 regional (strata), 1.1 shield (strata)"
        );
        assert!(seen.get("x-strata-peer").is_none());

        // Warm only the shield with another object, wait, then fetch it through the chain:
        // the POP's Age counts the time the object spent at the shield.
        get(&c, &format!("http://{}/b", shield.addr()), &[]).await;
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let aged = get(&c, &format!("http://{}/b", pop.addr()), &[]).await;
        let age: u64 = aged.header("age").parse().expect("an Age");
        assert!((2..=4).contains(&age), "Age {age}");
        let cs = aged.header("cache-status");
        assert!(cs.starts_with("shield; hit"), "{cs}");
        assert_eq!(origin.count(), 2);

        // A hit at the POP: its own member last, the upper tiers' as they were.
        let hit = get(&c, &format!("http://{}/a", pop.addr()), &[]).await;
        let cs = hit.header("cache-status");
        assert!(
            cs.starts_with("shield; fwd=miss") && cs.contains(", pop; hit; ttl="),
            "{cs}"
        );
        for n in [pop, regional, shield] {
            n.shutdown().await;
        }
    });
}

#[test]
fn a_loop_between_tiers_is_refused_with_508() {
    scenario(30, async {
        let dir = tempfile::tempdir().unwrap();
        let (pa, pb) = (free_port("127.0.0.1"), free_port("127.0.0.1"));
        let a = node(&tier_config(
            "node-a",
            dir.path(),
            pa,
            &format!("http://127.0.0.1:{pb}"),
        ))
        .await;
        let b = node(&tier_config(
            "node-b",
            dir.path(),
            pb,
            &format!("http://127.0.0.1:{pa}"),
        ))
        .await;
        let got = get(&client(), &format!("http://{}/x", a.addr()), &[]).await;
        assert_eq!(got.status, StatusCode::LOOP_DETECTED, "{}", got.text());
        a.shutdown().await;
        b.shutdown().await;
    });
}

#[test]
fn the_secondary_answers_when_the_primary_origin_is_stopped() {
    scenario(30, async {
        let dir = tempfile::tempdir().unwrap();
        let primary = TestOrigin::start("primary", "127.0.0.1", Duration::ZERO).await;
        let secondary = TestOrigin::start("secondary", "127.0.0.1", Duration::ZERO).await;
        let n = node(&format!(
            r#"{}
[[origins]]
id = "primary"
url = "http://{}"
connect_timeout = "500ms"

[[origins]]
id = "secondary"
url = "http://{}"

[[origin_groups]]
id = "site"
primary = "primary"
secondary = "secondary"

[default_behavior]
origin = "site"
"#,
            node_section("edge", "127.0.0.1", 0, dir.path()),
            primary.addr,
            secondary.addr
        ))
        .await;
        let c = client();
        let got = get(&c, &format!("http://{}/one", n.addr()), &[]).await;
        assert_eq!(got.text(), "primary:/one");
        primary.stop();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let got = get(&c, &format!("http://{}/two", n.addr()), &[]).await;
        assert_eq!(got.status, StatusCode::OK);
        assert_eq!(got.text(), "secondary:/two");
        assert_eq!(secondary.count(), 1);
        n.shutdown().await;
    });
}
