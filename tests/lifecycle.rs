//! Starting and stopping: a node shut down while a request is in flight finishes it.

mod common;

use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_a_request_in_flight() {
    let origin = Origin::start().await;
    origin.route("/slow", |_, _| {
        Reply::ok("worth the wait").delay(Duration::from_millis(500))
    });
    let node = start_node(
        &origin,
        r#"
[[origins]]
id = "origin"
url = "{origin}"

[default_behavior]
origin = "origin"
cache_policy = "CachingOptimized"
"#,
    )
    .await;
    let addr = node.addr;

    let in_flight = tokio::spawn(async move {
        let resp = raw_request(
            addr,
            b"GET /slow HTTP/1.1\r\nHost: strata.test\r\nConnection: close\r\n\r\n",
        )
        .await;
        (resp.status, resp.text())
    });
    origin
        .wait_for_count("/slow", 1, Duration::from_secs(2))
        .await;
    node.shutdown().await;

    let (status, body) = in_flight.await.expect("viewer task");
    assert_eq!(status, 200);
    assert_eq!(body, "worth the wait");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "a stopped node no longer accepts connections"
    );
}
