//! The one test support module: golden files, fixtures, metric scraping and HTTP
//! (here), child exporters (`child`), the scripted sessions (`sessions`), every
//! source at once (`every_source`), and an OTLP collector with span rendering
//! (`otlp`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub mod child;
pub mod every_source;
pub mod otlp;
pub mod sessions;

/// Peak resident memory (VmHWM, KiB) of process `pid` (`"self"` for this one).
pub fn vm_hwm_kib(pid: impl std::fmt::Display) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

/// The messages of a gRPC capture (each a varint length, then the message), as
/// `grpccapture` writes them.
pub fn capture_frames(path: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut buf = bytes.as_slice();
    let mut out = Vec::new();
    while !buf.is_empty() {
        let len = prost::encoding::decode_varint(&mut buf).expect("frame length") as usize;
        assert!(len <= buf.len(), "{}: truncated frame", path.display());
        out.push(buf[..len].to_vec());
        buf = &buf[len..];
    }
    out
}

/// Compares `actual` with the golden file; rewrites it when UPDATE_GOLDEN=1.
#[track_caller]
pub fn assert_golden(path: &Path, actual: &str) {
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "missing golden file {} ({e}); run with UPDATE_GOLDEN=1 and review it",
            path.display()
        )
    });
    if expected != actual {
        panic!(
            "golden mismatch for {}\n--- expected ---\n{expected}\n--- actual ---\n{actual}\n(UPDATE_GOLDEN=1 rewrites; review the diff)",
            path.display()
        );
    }
}

/// The captured Skaffold streams vendored in `tests/fixtures/captured` (each file
/// names its origin: the public bug report or doc it was copied from).
pub fn captured_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/captured")
}

/// Value of the first sample of `name` whose labels contain every `labels` pair
/// (Prometheus text format).
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            let (series, _) = l.rsplit_once(' ').unwrap_or((l, ""));
            let metric = series.split('{').next().unwrap_or_default();
            metric == name
                && labels
                    .iter()
                    .all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse().ok()))
}

/// `text` without the process metrics (`process_*`), which change at every scrape
/// (CPU time, memory), so that scrapes of a settled exporter compare equal.
pub fn without_process_metrics(text: &str) -> String {
    text.lines()
        .filter(|l| {
            let name = l
                .strip_prefix("# HELP ")
                .or_else(|| l.strip_prefix("# TYPE "))
                .or_else(|| l.strip_prefix("# UNIT "))
                .unwrap_or(l);
            !name.starts_with("process_")
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Number of series of `name`.
pub fn series_count(text: &str, name: &str) -> usize {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .count()
}

/// A raw HTTP/1.1 GET over a real socket with extra header lines (each ending in
/// `\r\n`); returns the head and the raw body. The server must answer within 15 s
/// (`/metrics` may wait up to 5 s for a replay to be folded).
pub async fn raw_get(addr: std::net::SocketAddr, path: &str, headers: &str) -> (String, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(15), s.read_to_end(&mut raw))
        .await
        .expect("answered within 15 s")
        .unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| {
            panic!(
                "GET {path}: no HTTP response head in {:?}",
                String::from_utf8_lossy(&raw)
            )
        });
    (
        String::from_utf8_lossy(&raw[..split]).into_owned(),
        raw[split + 4..].to_vec(),
    )
}

/// GET over a real socket; returns (status, content-type, body).
pub async fn http_get(
    addr: std::net::SocketAddr,
    path: &str,
    accept: Option<&str>,
) -> (u16, String, String) {
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    let (head, body) = raw_get(addr, path, &accept).await;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let ctype = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_default();
    (status, ctype, String::from_utf8_lossy(&body).into_owned())
}

/// Exporter settings for tests: defaults, any free port, fast reconnects.
pub fn settings(skaffold: std::net::SocketAddr) -> skaffold_exporter::config::Settings {
    skaffold_exporter::config::Settings {
        skaffold_addr: skaffold.to_string(),
        listen: "127.0.0.1:0".parse().unwrap(),
        backoff: (
            std::time::Duration::from_millis(10),
            std::time::Duration::from_millis(100),
        ),
        ..Default::default()
    }
}

/// Serves `sim` on a free loopback port; dropping the sender keeps it running, sending
/// `true` stops it.
pub async fn serve_skaffold(
    sim: &skaffold_exporter::simulator::Simulator,
) -> (std::net::SocketAddr, tokio::sync::watch::Sender<bool>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(sim.clone().serve(listener, rx));
    (addr, stop)
}

/// Asserts a sample is present and equal to `expected` (within 1e-6).
#[track_caller]
pub fn close(actual: Option<f64>, expected: f64) {
    let a = actual.expect("sample present");
    assert!((a - expected).abs() < 1e-6, "expected {expected}, got {a}");
}

/// Asserts that no `skaffold_exporter_invalid_events_total` series is above zero.
#[track_caller]
pub fn assert_no_invalid_events(text: &str, what: &str) {
    let invalid: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("skaffold_exporter_invalid_events_total{") && !l.ends_with(" 0"))
        .collect();
    assert!(invalid.is_empty(), "{what}: {invalid:?}");
}

/// Each `skaffold_exporter_events_total` sample (series and value), sorted: what was
/// folded, by event.
pub fn events_folded(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("skaffold_exporter_events_total{"))
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

/// The sum of `skaffold_exporter_events_total`: how many events were folded.
pub fn events_total(text: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with("skaffold_exporter_events_total{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// A hand-written HTTP server on a free loopback port (a hostile gateway): for each
/// connection it reads the request head, then hands the socket to `respond`.
pub async fn raw_http_server<F, Fut>(respond: F) -> std::net::SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let respond = std::sync::Arc::new(respond);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let respond = respond.clone();
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                respond(s).await;
            });
        }
    });
    addr
}
