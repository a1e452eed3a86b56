//! The HTTP server as scrapers and attackers meet it, over real sockets: content
//! negotiation with `Accept` weights, gzip, the process metrics and build info, the
//! header-read timeout and the connection limit (slowloris), the warning for a
//! non-loopback `--listen`, and the log on stderr (`--log-format json`, no colour when
//! piped, `RUST_LOG=debug` without dependency noise).

mod support;

use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use skaffold_exporter::app;
use skaffold_exporter::pipeline::Progress;
use skaffold_exporter::server::http::{Limits, Shared, serve_with};
use support::child::Exporter;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A raw HTTP/1.1 GET with extra header lines; returns the head (lowercase) and the raw
/// body.
async fn get(addr: SocketAddr, path: &str, headers: &str) -> (String, Vec<u8>) {
    let (head, body) = support::raw_get(addr, path, headers).await;
    (head.to_lowercase(), body)
}

/// The value of header `name` (lowercase) in `head`.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_honour_accept_weights_and_gzip() {
    let exp = app::start(support::settings("127.0.0.1:1".parse().unwrap()))
        .await
        .unwrap();
    let a = exp.http_addr;
    let ctype = |head: &str| header(head, "content-type").unwrap_or_default().to_owned();
    // Prometheus 3's default header: OpenMetrics.
    let (head, _) = get(a, "/metrics", "Accept: application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1\r\n").await;
    assert!(
        ctype(&head).starts_with("application/openmetrics-text"),
        "{head}"
    );
    // Text weighted above OpenMetrics: text.
    let (head, body) = get(
        a,
        "/metrics",
        "Accept: application/openmetrics-text;q=0.2,text/plain;q=0.9\r\n",
    )
    .await;
    assert!(
        ctype(&head).starts_with("text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(!String::from_utf8_lossy(&body).contains("# EOF"));
    // q=0 excludes OpenMetrics even though it is named first.
    let (head, _) = get(
        a,
        "/metrics",
        "Accept: application/openmetrics-text;q=0, */*\r\n",
    )
    .await;
    assert!(ctype(&head).starts_with("text/plain"), "{head}");
    // Both excluded: 406.
    let (head, _) = get(
        a,
        "/metrics",
        "Accept: text/plain;q=0, application/openmetrics-text;q=0\r\n",
    )
    .await;
    assert!(head.starts_with("http/1.1 406"), "{head}");
    assert_eq!(header(&head, "vary"), None, "not a /metrics answer");

    // gzip when asked, identical once decompressed; never when refused.
    let (plain_head, plain) = get(a, "/metrics", "").await;
    assert_eq!(header(&plain_head, "content-encoding"), None);
    let (head, zipped) = get(a, "/metrics", "Accept-Encoding: gzip, deflate\r\n").await;
    assert_eq!(header(&head, "content-encoding"), Some("gzip"), "{head}");
    assert_eq!(
        header(&head, "vary"),
        Some("accept, accept-encoding"),
        "{head}"
    );
    let mut text = String::new();
    flate2::read::GzDecoder::new(&zipped[..])
        .read_to_string(&mut text)
        .unwrap();
    assert!(
        zipped.len() * 3 < text.len(),
        "{} vs {}",
        zipped.len(),
        text.len()
    );
    // The process metrics change between scrapes; the families are the same.
    let families = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| l.starts_with("# TYPE"))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        families(&text),
        families(&String::from_utf8(plain).unwrap())
    );
    let (head, _) = get(a, "/metrics", "Accept-Encoding: gzip;q=0, identity\r\n").await;
    assert_eq!(header(&head, "content-encoding"), None, "{head}");

    // The process metrics and the build info.
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        // CPU time may still be under one clock tick.
        let least = if name == "process_cpu_seconds_total" {
            0.0
        } else {
            1.0
        };
        assert!(
            support::sample(&text, name, &[]).is_some_and(|v| v >= least),
            "{name}:\n{text}"
        );
    }
    assert_eq!(
        support::sample(
            &text,
            "skaffold_exporter_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    exp.shutdown().await;
}

/// Serves an empty registry with `limits` on a free port.
async fn server(limits: Limits) -> (SocketAddr, tokio::sync::watch::Sender<bool>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shared = Arc::new(Shared {
        registry: Arc::new(Registry::default()),
        progress: Arc::new(Progress::default()),
        upstream: None,
        wait_for_history: false,
    });
    let (stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(serve_with(listener, shared, rx, limits));
    (addr, stop)
}

/// Opens a connection and sends the start of a request, never its end.
async fn partial(addr: SocketAddr) -> tokio::net::TcpStream {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_request_is_closed_after_the_header_read_timeout() {
    let (addr, _stop) = server(Limits {
        max_connections: 64,
        header_read_timeout: Duration::from_millis(300),
    })
    .await;
    let mut s = partial(addr).await;
    let mut buf = [0u8; 256];
    // Closed by the server (EOF or reset) well within 5 s, instead of held forever.
    let r = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("the server closes a connection that never finishes its headers");
    assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_healthz_answer_while_partial_requests_are_held() {
    // In process, with a small limit: more partial connections than the limit.
    let (addr, _stop) = server(Limits {
        max_connections: 16,
        header_read_timeout: Duration::from_secs(60),
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..50 {
        held.push(partial(addr).await);
    }
    for path in ["/metrics", "/healthz", "/metrics"] {
        let (head, _) = get(addr, path, "").await;
        assert!(head.starts_with("http/1.1 200"), "{path}: {head}");
    }
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_keeps_answering_past_its_file_descriptor_limit() {
    // The attack of issue 13 item 9, scaled down: the exporter runs with 256 file
    // descriptors and is sent 400 partial requests, held open.
    let exp = Exporter::start(
        &["--skaffold-addr", "127.0.0.1:1", "--listen", "127.0.0.1:0"],
        |c| {
            use std::os::unix::process::CommandExt as _;
            // SAFETY: only an async-signal-safe system call between fork and exec.
            unsafe {
                c.pre_exec(|| {
                    let limit = rustix::process::Rlimit {
                        current: Some(256),
                        maximum: Some(256),
                    };
                    rustix::process::setrlimit(rustix::process::Resource::Nofile, limit)
                        .map_err(std::io::Error::from)
                });
            }
        },
    );
    let addr = exp.http_addr().await;
    let mut held = Vec::new();
    for _ in 0..400 {
        held.push(partial(addr).await);
    }
    for _ in 0..3 {
        for path in ["/metrics", "/healthz"] {
            let (head, body) = get(addr, path, "").await;
            assert!(
                head.starts_with("http/1.1 200"),
                "{path}: {head}\n{}",
                exp.log()
            );
            if path == "/metrics" {
                let text = String::from_utf8(body).unwrap();
                let max = support::sample(&text, "process_max_fds", &[]);
                assert_eq!(max, Some(256.0), "{text}");
            }
        }
    }
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_loopback_listen_address_is_warned_about() {
    let mut exp = Exporter::start(
        &["--skaffold-addr", "127.0.0.1:1", "--listen", "0.0.0.0:0"],
        |_| {},
    );
    exp.wait_for_log("non-loopback").await;
    exp.signal(rustix::process::Signal::TERM);
    exp.exit_within(Duration::from_secs(5)).await;
    let mut exp = Exporter::start(
        &["--skaffold-addr", "127.0.0.1:1", "--listen", "127.0.0.1:0"],
        |_| {},
    );
    exp.http_addr().await;
    exp.signal(rustix::process::Signal::TERM);
    exp.exit_within(Duration::from_secs(5)).await;
    assert!(!exp.log().contains("non-loopback"), "{}", exp.log());
    // Piped stderr: no colour codes.
    assert!(!exp.log().contains('\u{1b}'), "{}", exp.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_at_debug_carry_only_our_crate_below_warn() {
    let mut exp = Exporter::start(
        &[
            "--skaffold-addr",
            "127.0.0.1:1",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ],
        |c| {
            c.env("RUST_LOG", "debug");
        },
    );
    // Retries against a closed port are logged at debug by our crate.
    exp.wait_for_log("Still cannot reach Skaffold").await;
    let (_, _) = get(exp.http_addr().await, "/metrics", "").await;
    exp.signal(rustix::process::Signal::TERM);
    exp.exit_within(Duration::from_secs(5)).await;
    let lines = exp.lines();
    assert!(lines.len() > 3, "{lines:?}");
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let level = v["level"].as_str().unwrap();
        let target = v["target"].as_str().unwrap();
        assert!(
            target.starts_with("skaffold_exporter") || matches!(level, "WARN" | "ERROR"),
            "a dependency below warn: {line}"
        );
        assert!(v["fields"]["message"].is_string(), "{line}");
    }
    assert!(
        lines.iter().any(|l| l.contains("\"level\":\"DEBUG\"")),
        "{lines:?}"
    );
}
