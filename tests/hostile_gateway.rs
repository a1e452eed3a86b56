//! A "gateway" that answers every request 200 with an HTML page (a proxy's login
//! page, a wrong port): the exporter counts the junk lines as invalid and keeps backing
//! off (issue 13 item 10). The first junk line used to reset the backoff, so it polled
//! every 250 ms forever. Real sockets; what is asserted is the gap between consecutive
//! requests once the backoff has had time to grow (a slow machine only makes gaps
//! longer, so the bound cannot flake).

mod support;

use std::time::{Duration, Instant};

use skaffold_exporter::app;
use skaffold_exporter::config::{Settings, SourceSettings};
use skaffold_exporter::source::Api;
use tokio::io::AsyncWriteExt;

const PAGE: &str = "<!doctype html>\n<html><head><title>Sign in</title></head>\n<body><form action=\"/login\"></form></body>\n</html>\n";

/// Serves the HTML page to every request (one request per connection); sends the
/// time of each request.
async fn html_gateway() -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<Instant>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let addr = support::raw_http_server(move |mut s| {
        let _ = tx.send(Instant::now());
        async move {
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{PAGE}",
                PAGE.len()
            );
            let _ = s.write_all(resp.as_bytes()).await;
            let _ = s.shutdown().await;
        }
    })
    .await;
    (addr, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_html_gateway_is_polled_with_growing_backoff() {
    let (gw, mut requests) = html_gateway().await;
    let (min, max) = (Duration::from_millis(20), Duration::from_millis(320));
    let settings = Settings {
        backoff: (min, max),
        ..support::settings(gw)
    };
    let source = SourceSettings {
        api: Api::V2,
        skaffold_http: Some(format!("http://{gw}").parse().unwrap()),
    };
    let exp = app::start_with(settings, source).await.unwrap();
    // Delays 20, 40, 80, 160, then 320 ms (jitter keeps each above half its ceiling):
    // from the 6th gap on, every gap is at least max / 2. Without the fix every gap is
    // about `min`.
    let mut at = Vec::new();
    while at.len() < 9 {
        let t = tokio::time::timeout(Duration::from_secs(20), requests.recv())
            .await
            .expect("the exporter keeps polling")
            .unwrap();
        at.push(t);
    }
    let gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps[5..].iter().all(|g| *g >= max / 2),
        "the backoff must grow: gaps {gaps:?}"
    );
    let text = support::sessions::scrape(exp.http_addr).await;
    exp.shutdown().await;
    // Each distinct junk line was counted once (sent again, the same bytes are a
    // replay, skipped as such).
    let invalid: f64 = text
        .lines()
        .filter(|l| l.starts_with("skaffold_exporter_invalid_events_total{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    assert_eq!(invalid, 4.0, "{text}");
}
