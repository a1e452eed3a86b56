//! Traces and the OTLP metrics push, end to end: the simulator (a real gRPC Skaffold)
//! streams a scripted session with known timestamps into the real exporter
//! (`app::start_all`), which exports to an in-process OTLP collector.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::metrics::v1::{AggregationTemporality, Metric, metric};
use opentelemetry_proto::tonic::trace::v1::Span;
use skaffold_exporter::app::{self, Running};
use skaffold_exporter::config::SourceSettings;
use skaffold_exporter::pb::enums::StatusCode as C;
use skaffold_exporter::simulator::Simulator;
use skaffold_exporter::simulator::scenario::Script;
use skaffold_exporter::sink::DEFAULT_BUCKETS;
use skaffold_exporter::sink::otlp_setup::{Endpoint, OtlpSettings, Protocol};
use support::http_get;
use support::otlp::{Collector, attr, attrs, dead_port, render, value};
use support::sessions::{Session, T0, v1_lines};

fn otlp(traces: Option<Endpoint>, metrics: Option<Endpoint>) -> OtlpSettings {
    OtlpSettings {
        traces,
        metrics,
        timeout: Some(Duration::from_millis(500)),
        metric_interval: Some(Duration::from_millis(200)),
        pipeline_name: Some("shop".into()),
        os_user: Some("alice".into()),
        span_queue: 2048,
        shutdown_timeout: Duration::from_secs(2),
        ..Default::default()
    }
}

fn grpc(c: &Collector) -> Option<Endpoint> {
    Some(Endpoint {
        url: format!("http://{}", c.addr),
        protocol: Protocol::Grpc,
    })
}

fn http(c: &Collector, path: &str) -> Option<Endpoint> {
    Some(Endpoint {
        url: format!("http://{}/{path}", c.addr),
        protocol: Protocol::HttpProtobuf,
    })
}

async fn start(sim: SocketAddr, o: OtlpSettings) -> Running {
    app::start_all(support::settings(sim), SourceSettings::default(), o)
        .await
        .expect("exporter starts")
}

/// The v1 session with overlapping builds and rollouts: initial loop (2 builds,
/// deploy, status check with 2 resources, port forwards announced after the loop
/// ended, as Skaffold v1 does), a sync-only iteration, a failed build, a failed deploy.
fn session() -> Script {
    Session {
        concurrent: true,
        ..Session::v1()
    }
    .script()
}

/// Spans the session yields: 4 roots; 2 builds, deploy, status check, 2 rollouts;
/// 1 sync; 1 build; 1 deploy.
const SESSION_SPANS: usize = 4 + 6 + 1 + 1 + 1;

fn emit_all(sim: &Simulator, script: &Script) -> BTreeSet<u64> {
    let entries = script.entries(T0);
    let stamps = entries
        .iter()
        .map(|e| {
            let t = e.timestamp.unwrap();
            (t.seconds * 1_000_000_000 + i64::from(t.nanos)) as u64
        })
        .collect();
    for e in entries {
        sim.emit(e);
    }
    stamps
}

fn golden(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/spans")
        .join(name)
}

async fn metrics_text(addr: SocketAddr) -> String {
    http_get(addr, "/metrics", Some("application/openmetrics-text"))
        .await
        .2
}

fn series_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l[series.len()..].trim().split(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_collector_receives_one_trace_per_iteration_with_skaffold_timestamps() {
    let collector = Collector::grpc().await;
    let sim = Simulator::new();
    let (addr, _stop) = support::serve_skaffold(&sim).await;
    let running = start(addr, otlp(grpc(&collector), None)).await;
    let stamps = emit_all(&sim, &session());
    let spans = collector
        .wait_spans(SESSION_SPANS, Duration::from_secs(15))
        .await;
    assert_eq!(spans.len(), SESSION_SPANS, "{}", render(&spans));

    // Every start and end is one of Skaffold's event timestamps.
    for s in &spans {
        assert!(stamps.contains(&s.start_time_unix_nano), "{} start", s.name);
        assert!(stamps.contains(&s.end_time_unix_nano), "{} end", s.name);
    }
    // One trace per iteration, each with exactly one SERVER root named `<ACTION> shop`.
    let mut by_trace: BTreeMap<Vec<u8>, Vec<&Span>> = BTreeMap::new();
    for s in &spans {
        by_trace.entry(s.trace_id.clone()).or_default().push(s);
    }
    assert_eq!(by_trace.len(), 4);
    let mut roots: Vec<(String, String, String)> = by_trace
        .values()
        .map(|spans| {
            let roots: Vec<&&Span> = spans
                .iter()
                .filter(|s| s.parent_span_id.is_empty())
                .collect();
            assert_eq!(roots.len(), 1);
            let r = roots[0];
            assert_eq!(r.kind, 2, "root is SERVER");
            for c in spans.iter().filter(|s| !s.parent_span_id.is_empty()) {
                assert_eq!(c.kind, 1, "{} is INTERNAL", c.name);
            }
            (
                attr(r, "skaffold.iteration").unwrap(),
                r.name.clone(),
                attr(r, "cicd.pipeline.result").unwrap(),
            )
        })
        .collect();
    roots.sort();
    assert_eq!(
        roots,
        [
            ("0".into(), "RUN shop".into(), "success".into()),
            ("1".into(), "SYNC shop".into(), "success".into()),
            ("2".into(), "RUN shop".into(), "failure".into()),
            ("3".into(), "RUN shop".into(), "failure".into()),
        ]
    );
    // Rollouts hang under the status check; the failed build carries Skaffold's code.
    let find = |name: &str| spans.iter().find(|s| s.name == name).unwrap();
    let check = find("status check");
    let rollout = find("rollout default:deployment/web");
    assert_eq!(rollout.parent_span_id, check.span_id);
    assert_eq!(
        attr(rollout, "k8s.namespace.name").as_deref(),
        Some("default")
    );
    assert_eq!(attr(rollout, "k8s.deployment.name").as_deref(), Some("web"));
    let failed = spans
        .iter()
        .find(|s| s.name == "build app" && attr(s, "skaffold.iteration").as_deref() == Some("2"))
        .unwrap();
    assert_eq!(failed.status.as_ref().unwrap().code, 2);
    assert_eq!(
        attr(failed, "error.type").as_deref(),
        Some("BUILD_USER_ERROR")
    );
    assert_eq!(
        failed.status.as_ref().unwrap().message,
        "docker build returned exit code 1"
    );
    // Port forwards announced after iteration 0 ended are events of its root.
    let root0 = spans
        .iter()
        .find(|s| {
            s.parent_span_id.is_empty() && attr(s, "skaffold.iteration").as_deref() == Some("0")
        })
        .unwrap();
    assert_eq!(root0.events.len(), 2);
    assert_eq!(
        value(&root0.events[0].attributes[0].value),
        "9000",
        "{:?}",
        root0.events
    );

    // The whole tree, reviewed once (UPDATE_GOLDEN=1 rewrites it).
    support::assert_golden(&golden("scripted-session.txt"), &render(&spans));

    // Exemplars on /metrics carry the trace ids of the spans.
    let text = metrics_text(running.http_addr).await;
    let trace0 = root0
        .trace_id
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    assert!(
        text.lines()
            .any(|l| l.starts_with("skaffold_build_duration_seconds_bucket")
                && l.contains(&format!("# {{trace_id=\"{trace0}\"}}"))),
        "no exemplar with {trace0}:\n{text}"
    );
    // Counted once the collector answered the request.
    let deadline = Instant::now() + Duration::from_secs(5);
    while series_value(
        &metrics_text(running.http_addr).await,
        "skaffold_exporter_spans_exported_total",
    ) != Some(SESSION_SPANS as f64)
    {
        assert!(
            Instant::now() < deadline,
            "spans_exported_total never reached {SESSION_SPANS}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.shutdown().await;
    collector.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_protobuf_collector_receives_the_same_spans_and_the_metrics() {
    let collector = Collector::http().await;
    let sim = Simulator::new();
    let (addr, _stop) = support::serve_skaffold(&sim).await;
    let running = start(
        addr,
        otlp(
            http(&collector, "v1/traces"),
            http(&collector, "v1/metrics"),
        ),
    )
    .await;
    emit_all(&sim, &session());
    let spans = collector
        .wait_spans(SESSION_SPANS, Duration::from_secs(15))
        .await;
    // Same ids and tree as over gRPC: the ids depend only on Skaffold's events.
    support::assert_golden(&golden("scripted-session.txt"), &render(&spans));
    assert!(
        collector
            .received
            .lock()
            .unwrap()
            .content_types
            .iter()
            .all(|c| c == "application/x-protobuf")
    );

    // Metrics: wait for a push that has seen the whole session.
    let text = metrics_text(running.http_addr).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let (resource, metrics) = loop {
        let last = collector.received.lock().unwrap().metrics.last().cloned();
        if let Some(req) = last {
            let rm = &req.resource_metrics[0];
            let metrics: Vec<Metric> = rm
                .scope_metrics
                .iter()
                .flat_map(|s| s.metrics.clone())
                .collect();
            let done = metrics.iter().any(|m| {
                m.name == "skaffold.deploys"
                    && counter_points(m).get("result=failure").copied() == Some(1.0)
            });
            if done {
                break (attrs(&rm.resource.as_ref().unwrap().attributes), metrics);
            }
        }
        assert!(
            Instant::now() < deadline,
            "no complete metrics push arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Resource.
    assert_eq!(resource["service.name"], "\"skaffold\"");
    assert_eq!(resource["deployment.environment.name"], "\"development\"");
    assert_eq!(resource["service.instance.id"].len(), 38);
    assert!(resource.contains_key("user.hash"));
    assert!(!resource.contains_key("user.name"));
    assert!(resource.contains_key("vcs.repository.name"), "{resource:?}");
    // Names after Prometheus' OTLP translation are exactly the /metrics names.
    let om_names: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let (name, ty) = l.split_once(' ')?;
            let name = if ty == "counter" {
                format!("{name}_total")
            } else {
                name.to_owned()
            };
            (name.starts_with("skaffold_") && !name.starts_with("skaffold_exporter_"))
                .then_some(name)
        })
        .collect();
    let otlp_names: BTreeSet<String> = metrics
        .iter()
        .filter(|m| !m.name.starts_with("skaffold_exporter"))
        .map(prometheus_name)
        .collect();
    assert_eq!(otlp_names, om_names);
    // Values, buckets and temporality.
    let get = |name: &str| metrics.iter().find(|m| m.name == name).unwrap();
    let builds = counter_points(get("skaffold.builds"));
    assert_eq!(builds["artifact=app,result=failure"], 1.0);
    assert_eq!(builds["artifact=app,result=success"], 1.0);
    assert_eq!(builds["artifact=web,result=success"], 1.0);
    assert_eq!(
        builds["artifact=web,result=failure"], 0.0,
        "pre-created at 0"
    );
    assert_eq!(
        Some(1.0),
        series_value(
            &text,
            "skaffold_builds_total{artifact=\"app\",result=\"failure\"}"
        )
    );
    match &get("skaffold.build.duration").data {
        Some(metric::Data::Histogram(h)) => {
            assert_eq!(
                h.aggregation_temporality,
                AggregationTemporality::Cumulative as i32
            );
            let p = h
                .data_points
                .iter()
                .find(|p| attrs(&p.attributes)["artifact"] == "\"web\"")
                .unwrap();
            assert_eq!(p.explicit_bounds, DEFAULT_BUCKETS.to_vec());
            assert_eq!(p.count, 1);
            assert!((p.sum.unwrap() - 1.205).abs() < 1e-9, "{:?}", p.sum);
        }
        other => panic!("{other:?}"),
    }
    match &get("skaffold.dev_loops").data {
        Some(metric::Data::Sum(s)) => {
            assert!(s.is_monotonic);
            assert_eq!(
                s.aggregation_temporality,
                AggregationTemporality::Cumulative as i32
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(get("skaffold.build.duration").unit, "s");
    // Rollouts: the resource's namespace, kind and name as attributes of their own,
    // beside Skaffold's string (the labels /metrics has).
    match &get("skaffold.resource_rollout.duration").data {
        Some(metric::Data::Histogram(h)) => {
            let mut points: Vec<BTreeMap<String, String>> =
                h.data_points.iter().map(|p| attrs(&p.attributes)).collect();
            points.sort();
            let want = |name: &str| {
                BTreeMap::from([
                    ("kind".to_owned(), "\"Deployment\"".to_owned()),
                    ("name".to_owned(), format!("\"{name}\"")),
                    ("namespace".to_owned(), "\"default\"".to_owned()),
                    (
                        "resource".to_owned(),
                        format!("\"default:deployment/{name}\""),
                    ),
                    ("result".to_owned(), "\"success\"".to_owned()),
                ])
            };
            assert_eq!(points, vec![want("app"), want("web")]);
        }
        other => panic!("{other:?}"),
    }
    let syncs = counter_points(get("skaffold.synced_files"));
    assert_eq!(syncs["image=web"], 3.0);
    // The exporter's own labelled families are pushed too, with the /metrics values.
    let events = counter_points(get("skaffold_exporter.events"));
    assert_eq!(
        Some(events["event=build"]),
        series_value(&text, "skaffold_exporter_events_total{event=\"build\"}")
    );
    let invalid = counter_points(get("skaffold_exporter.invalid_events"));
    assert_eq!(invalid["reason=unknown_status"], 0.0, "pre-created at 0");
    running.shutdown().await;
    collector.stop();
}

/// `name` as Prometheus' OTLP receiver translates it (dots → `_`, unit `s` →
/// `_seconds`, monotonic sums → `_total`; `{annotation}` units are dropped).
fn prometheus_name(m: &Metric) -> String {
    let mut n = m.name.replace('.', "_");
    if m.unit == "s" {
        n.push_str("_seconds");
    }
    if let Some(metric::Data::Sum(s)) = &m.data
        && s.is_monotonic
    {
        n.push_str("_total");
    }
    n
}

fn counter_points(m: &Metric) -> BTreeMap<String, f64> {
    let points = match &m.data {
        Some(metric::Data::Sum(s)) => &s.data_points,
        Some(metric::Data::Gauge(g)) => &g.data_points,
        other => panic!("{} is not a sum: {other:?}", m.name),
    };
    points
        .iter()
        .map(|p| {
            let labels: Vec<String> = attrs(&p.attributes)
                .into_iter()
                .map(|(k, v)| format!("{k}={}", v.trim_matches('"')))
                .collect();
            let v = match p.value {
                Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(
                    i,
                )) => i as f64,
                Some(
                    opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsDouble(d),
                ) => d,
                None => f64::NAN,
            };
            (labels.join(","), v)
        })
        .collect()
}

/// (trace id, span id, parent id, name, start, end).
type Identity = (Vec<u8>, Vec<u8>, Vec<u8>, String, u64, u64);

fn ids(spans: &[Span]) -> BTreeSet<Identity> {
    spans
        .iter()
        .map(|s| {
            (
                s.trace_id.clone(),
                s.span_id.clone(),
                s.parent_span_id.clone(),
                s.name.clone(),
                s.start_time_unix_nano,
                s.end_time_unix_nano,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_after_an_exporter_restart_yields_identical_ids() {
    let sim = Simulator::new();
    let (addr, _stop) = support::serve_skaffold(&sim).await;
    emit_all(&sim, &session());

    let first = Collector::grpc().await;
    let running = start(addr, otlp(grpc(&first), None)).await;
    let a = first
        .wait_spans(SESSION_SPANS, Duration::from_secs(15))
        .await;
    running.shutdown().await;

    // A new exporter process learns the same session from Skaffold's replay.
    let second = Collector::grpc().await;
    let running = start(addr, otlp(grpc(&second), None)).await;
    let b = second
        .wait_spans(SESSION_SPANS, Duration::from_secs(15))
        .await;
    running.shutdown().await;
    assert_eq!(a.len(), SESSION_SPANS);
    assert_eq!(ids(&a), ids(&b));
    first.stop();
    second.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_down_leaves_metrics_intact_counts_losses_and_shuts_down_in_time() {
    let sim = Simulator::new();
    let (addr, _stop) = support::serve_skaffold(&sim).await;
    let dead = dead_port().await;
    let mut o = otlp(
        Some(Endpoint {
            url: format!("http://{dead}"),
            protocol: Protocol::Grpc,
        }),
        Some(Endpoint {
            url: format!("http://{dead}"),
            protocol: Protocol::Grpc,
        }),
    );
    o.span_queue = 2;
    o.shutdown_timeout = Duration::from_secs(1);
    let running = start(addr, o).await;
    // Several sessions' worth, so the tiny queue overflows while exports fail.
    // Each session starts with a MetaEvent: five Skaffold runs in one log. The
    // first one's spans make the first batch; the others come once that batch
    // failed and waits for its retry (sent all at once, on a busy machine every
    // span could make it into the first batch, and nothing would overflow).
    for e in session().entries(T0) {
        sim.emit(e);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while series_value(
        &metrics_text(running.http_addr).await,
        "skaffold_exporter_otlp_export_errors_total{signal=\"traces\"}",
    )
    .unwrap_or(0.0)
        < 1.0
    {
        assert!(
            Instant::now() < deadline,
            "the first span export never failed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for k in 1..5 {
        for e in session().entries(T0 + k * 100_000_000_000) {
            sim.emit(e);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    let text = loop {
        let text = metrics_text(running.http_addr).await;
        let dropped = series_value(&text, "skaffold_exporter_spans_dropped_total").unwrap_or(0.0);
        let errors = series_value(
            &text,
            "skaffold_exporter_otlp_export_errors_total{signal=\"traces\"}",
        )
        .unwrap_or(0.0);
        let metric_errors = series_value(
            &text,
            "skaffold_exporter_otlp_export_errors_total{signal=\"metrics\"}",
        )
        .unwrap_or(0.0);
        let folded = series_value(
            &text,
            "skaffold_dev_loops_total{kind=\"sync\",result=\"success\"}",
        ) == Some(5.0);
        if dropped > 0.0 && errors > 0.0 && metric_errors > 0.0 && folded {
            break text;
        }
        assert!(Instant::now() < deadline, "counters did not rise:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // /metrics is unaffected: 5 runs of the session.
    assert_eq!(
        series_value(
            &text,
            "skaffold_builds_total{artifact=\"app\",result=\"failure\"}"
        ),
        Some(5.0)
    );
    assert_eq!(
        series_value(
            &text,
            "skaffold_dev_loops_total{kind=\"sync\",result=\"success\"}"
        ),
        Some(5.0)
    );
    let t = Instant::now();
    running.shutdown().await;
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "shutdown took {:?}",
        t.elapsed()
    );
}

/// The OTLP HTTP exporter reports every transport failure as "network error": the
/// log names the endpoint and the real cause, for both signals (the real binary, its
/// stderr; nothing listens on the endpoint's port).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_http_endpoint_is_logged_with_the_cause() {
    let dead = dead_port().await;
    let sim = Simulator::new();
    let (skaffold, _stop) = support::serve_skaffold(&sim).await;
    let exp = support::child::Exporter::otlp_http(skaffold, dead, 200).await;
    // Live timestamps: the spans are exported, not skipped as history.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    for e in session().entries(now) {
        sim.emit(e);
    }
    for signal in ["traces", "metrics"] {
        exp.wait_for_log(&format!(
            "OTLP {signal} export to http://{dead}/v1/{signal} failed"
        ))
        .await;
    }
    for signal in ["traces", "metrics"] {
        let logged = exp.lines();
        let line = logged
            .iter()
            .find(|l| l.contains(&format!("OTLP {signal} export to")))
            .unwrap();
        // reqwest's chain: error sending request for url (...): client error
        // (Connect): tcp connect error: Connection refused (os error 111)
        assert!(
            line.contains("network error: error sending request for url")
                && line.to_lowercase().contains("connection refused"),
            "{line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_left_open_when_skaffold_disconnects_end_with_result_error() {
    let collector = Collector::grpc().await;
    let sim = Simulator::new();
    let (addr, stop) = support::serve_skaffold(&sim).await;
    let running = start(addr, otlp(grpc(&collector), None)).await;
    let mut s = Script::new();
    s.meta(0, "v2.16.1")
        .dev_loop(10, 0, "In Progress")
        .build(10, "web", "In Progress", C::Ok)
        .build(5, "app", "In Progress", C::Ok)
        .build(1000, "app", "Complete", C::Ok);
    let stamps: Vec<u64> = emit_all(&sim, &s).into_iter().collect();
    let last = *stamps.last().unwrap();
    // Wait until the exporter folded the completed build (its span waits for the
    // root: children never leave before it), then Skaffold goes away.
    let deadline = Instant::now() + Duration::from_secs(10);
    while series_value(
        &metrics_text(running.http_addr).await,
        "skaffold_builds_total{artifact=\"app\",result=\"success\"}",
    ) != Some(1.0)
    {
        assert!(Instant::now() < deadline, "the build never arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(collector.spans().is_empty(), "a child left before its root");
    let _ = stop.send(true);
    sim.abort_streams();
    let spans = collector.wait_spans(3, Duration::from_secs(10)).await;
    let web = spans.iter().find(|s| s.name == "build web").unwrap();
    assert_eq!(web.end_time_unix_nano, last);
    assert_eq!(
        attr(web, "cicd.pipeline.task.run.result").as_deref(),
        Some("error")
    );
    assert_eq!(
        attr(web, "skaffold.span.end_reason").as_deref(),
        Some("disconnected")
    );
    assert_eq!(web.status.as_ref().unwrap().code, 2);
    let root = spans.iter().find(|s| s.parent_span_id.is_empty()).unwrap();
    assert_eq!(attr(root, "cicd.pipeline.result").as_deref(), Some("error"));
    assert_eq!(root.end_time_unix_nano, last);
    running.shutdown().await;
    collector.stop();
}

/// The session as Skaffold's `--event-log-file` writes it (v1 only).
fn event_log_file(dir: &Path, script: &Script) -> std::path::PathBuf {
    let path = dir.join("events.json");
    std::fs::write(&path, v1_lines(script, T0).join("\n") + "\n").unwrap();
    path
}

/// Runs `skaffold-exporter replay ARGS` with `env` (and no other OTLP variables).
async fn replay_cli(args: Vec<String>, env: Vec<(&'static str, String)>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_skaffold-exporter"));
        cmd.arg("replay").args(args);
        for (k, _) in std::env::vars() {
            if k.starts_with("OTEL_") || k.starts_with("SKAFFOLD_EXPORTER_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(env);
        let out = cmd.output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_otlp_exports_the_live_exporters_span_trees_with_the_same_ids() {
    // Live: the session streamed by Skaffold into the exporter.
    let live_collector = Collector::grpc().await;
    let sim = Simulator::new();
    let (addr, _stop) = support::serve_skaffold(&sim).await;
    let running = start(addr, otlp(grpc(&live_collector), None)).await;
    emit_all(&sim, &session());
    let live = live_collector
        .wait_spans(SESSION_SPANS, Duration::from_secs(15))
        .await;
    running.shutdown().await;

    // Replayed: the same session from Skaffold's event log file, the collector set
    // through the standard variables only.
    let dir = tempfile::tempdir().unwrap();
    let file = event_log_file(dir.path(), &session());
    let collector = Collector::grpc().await;
    let (code, stdout, stderr) = replay_cli(
        vec![
            "--otlp".into(),
            "--pipeline-name".into(),
            "shop".into(),
            "--output".into(),
            "metrics".into(),
            file.display().to_string(),
        ],
        vec![
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://{}", collector.addr),
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".into()),
        ],
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    // Everything was flushed before the command returned.
    let replayed = collector.spans();
    assert_eq!(replayed.len(), SESSION_SPANS, "{}", render(&replayed));
    assert_eq!(render(&replayed), render(&live));
    assert_eq!(ids(&replayed), ids(&live));
    support::assert_golden(&golden("scripted-session.txt"), &render(&replayed));
    assert!(
        stderr.contains(&format!("replay: {SESSION_SPANS} spans exported over OTLP")),
        "{stderr}"
    );
    assert_eq!(
        series_value(&stdout, "skaffold_exporter_spans_exported_total"),
        Some(SESSION_SPANS as f64)
    );
    // Nothing is pushed but spans.
    assert!(collector.received.lock().unwrap().metrics.is_empty());
    collector.stop();
    live_collector.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_otlp_ends_spans_left_open_as_at_a_disconnect_and_needs_an_endpoint() {
    // A session cut short: Skaffold's log ends with builds still running.
    let mut s = Script::new();
    s.meta(0, "v2.16.1")
        .dev_loop(10, 0, "In Progress")
        .build(10, "web", "In Progress", C::Ok)
        .build(5, "app", "In Progress", C::Ok)
        .build(1000, "app", "Complete", C::Ok);
    let last = (T0 + 1_025_000_000) as u64;
    let dir = tempfile::tempdir().unwrap();
    let file = event_log_file(dir.path(), &s);
    let collector = Collector::http().await;
    let (code, _, stderr) = replay_cli(
        vec!["--otlp".into(), file.display().to_string()],
        vec![
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                format!("http://{}/v1/traces", collector.addr),
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".into()),
        ],
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    let spans = collector.spans();
    assert_eq!(spans.len(), 3, "{}", render(&spans));
    let web = spans.iter().find(|s| s.name == "build web").unwrap();
    assert_eq!(web.end_time_unix_nano, last);
    assert_eq!(
        attr(web, "skaffold.span.end_reason").as_deref(),
        Some("disconnected")
    );
    let root = spans.iter().find(|s| s.parent_span_id.is_empty()).unwrap();
    assert_eq!(attr(root, "cicd.pipeline.result").as_deref(), Some("error"));
    assert_eq!(root.end_time_unix_nano, last);
    collector.stop();

    // --otlp without an endpoint is a clear error, not a silent no-op.
    let (code, _, stderr) =
        replay_cli(vec!["--otlp".into(), file.display().to_string()], vec![]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("OTEL_EXPORTER_OTLP_ENDPOINT"), "{stderr}");
}

/// `o` as the binary sets it: what ended before the exporter started is history
/// (`skip_history`, set from the environment).
fn live(o: OtlpSettings) -> OtlpSettings {
    OtlpSettings {
        skip_history: true,
        ..o
    }
}

/// Every metrics push `c` received: the resource's `service.instance.id` and the
/// points of the run counters (`skaffold.builds{artifact=app,result=failure}`, ...).
fn run_pushes(c: &Collector) -> Vec<(String, BTreeMap<String, f64>)> {
    let received = c.received.lock().unwrap();
    received
        .metrics
        .iter()
        .flat_map(|req| &req.resource_metrics)
        .map(|rm| {
            let id = attrs(&rm.resource.as_ref().unwrap().attributes)["service.instance.id"]
                .trim_matches('"')
                .to_owned();
            let mut points = BTreeMap::new();
            for m in rm.scope_metrics.iter().flat_map(|s| &s.metrics) {
                if ["skaffold.builds", "skaffold.deploys", "skaffold.dev_loops"]
                    .contains(&m.name.as_str())
                {
                    for (k, v) in counter_points(m) {
                        points.insert(format!("{}{{{k}}}", m.name), v);
                    }
                }
            }
            (id, points)
        })
        .collect()
}

/// The instance ids of `pushes`, in order of first appearance.
fn instance_ids(pushes: &[(String, BTreeMap<String, f64>)]) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for (id, _) in pushes {
        if !ids.contains(id) {
            ids.push(id.clone());
        }
    }
    ids
}

/// The last push of instance `id`.
fn last_of<'a>(
    pushes: &'a [(String, BTreeMap<String, f64>)],
    id: &str,
) -> &'a BTreeMap<String, f64> {
    &pushes.iter().rev().find(|(i, _)| i == id).unwrap().1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_exporter_continues_its_runs_series_and_never_resends_an_ended_run() {
    const APP_FAILED: &str = "skaffold.builds{artifact=app,result=failure}";
    let sim = Simulator::new();
    let (addr, _stop) = support::serve_skaffold(&sim).await;
    // Run 1, a minute ago: history when the first exporter starts.
    let now = skaffold_exporter::catch_up::now_nanos();
    for e in session().entries(now - 60_000_000_000) {
        sim.emit(e);
    }
    let first = Collector::grpc().await;
    let settings = support::settings(addr);
    let a = app::start_all(
        settings.clone(),
        SourceSettings::default(),
        live(otlp(None, grpc(&first))),
    )
    .await
    .expect("exporter starts");
    // A second exporter of the same Skaffold, running at the same time: ids of its
    // own (two writers on one series would interleave their values).
    let beside = Collector::grpc().await;
    let c = app::start_all(
        settings.clone(),
        SourceSettings::default(),
        live(otlp(None, grpc(&beside))),
    )
    .await
    .expect("a second exporter starts");
    // /metrics waits until the replay is folded: never a part of the history.
    let text = metrics_text(a.http_addr).await;
    assert_eq!(
        series_value(
            &text,
            "skaffold_builds_total{artifact=\"app\",result=\"failure\"}"
        ),
        Some(1.0)
    );
    // Run 2 starts while the exporter runs (a config reload): run 1 ends after
    // the exporter started, so it sends run 1's last values; run 2 is a series set
    // of its own that counts from zero.
    let mut reload = Script::new();
    reload
        .meta(0, "v2.16.1")
        .dev_loop(10, 0, "In Progress")
        .build(10, "app", "In Progress", C::Ok)
        .build(100, "app", "Failed", C::BuildUserError)
        .dev_loop(10, 0, "Failed");
    let run2_at = skaffold_exporter::catch_up::now_nanos();
    for e in reload.entries(run2_at) {
        sim.emit(e);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let p = run_pushes(&first);
        let ids = instance_ids(&p);
        if ids.len() == 2 && last_of(&p, &ids[1]).get(APP_FAILED) == Some(&1.0) {
            break;
        }
        assert!(Instant::now() < deadline, "no push of run 2: {ids:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while instance_ids(&run_pushes(&beside)).len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the second exporter pushed no run 2"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.shutdown().await;
    a.shutdown().await;
    let a_pushes = run_pushes(&first);
    let ids = instance_ids(&a_pushes);
    assert_eq!(ids.len(), 2, "one id per run: {ids:?}");
    let (run1, run2) = (&ids[0], &ids[1]);
    assert_eq!(last_of(&a_pushes, run1).get(APP_FAILED), Some(&1.0));
    assert_eq!(
        last_of(&a_pushes, run1).get("skaffold.deploys{result=failure}"),
        Some(&1.0)
    );
    assert_eq!(
        last_of(&a_pushes, run2).get("skaffold.deploys{result=failure}"),
        Some(&0.0)
    );
    // Skaffold's clock passes run 2's last event before the restart.
    let wait = (run2_at + 300_000_000 - skaffold_exporter::catch_up::now_nanos()).max(0);
    tokio::time::sleep(Duration::from_nanos(wait as u64)).await;

    let c_ids = instance_ids(&run_pushes(&beside));
    assert!(
        c_ids.iter().all(|id| !ids.contains(id)),
        "exporters running at once share an id: {ids:?} {c_ids:?}"
    );

    // The first exporter again, a new process on another --listen port (the
    // settings ask for port 0): the same sidecar, as its slot is free again. It
    // re-folds both runs from the replay.
    let second = Collector::grpc().await;
    let b = app::start_all(
        settings,
        SourceSettings::default(),
        live(otlp(None, grpc(&second))),
    )
    .await
    .expect("the restarted exporter starts");
    let text = metrics_text(b.http_addr).await;
    assert_eq!(
        series_value(
            &text,
            "skaffold_builds_total{artifact=\"app\",result=\"failure\"}"
        ),
        Some(2.0),
        "/metrics counts per process, both runs"
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while run_pushes(&second).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the restarted exporter pushed nothing"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    b.shutdown().await;
    let b_pushes = run_pushes(&second);
    // Run 1 ended before the restart: the exporter running then sent it.
    assert!(
        b_pushes.iter().all(|(id, _)| id == run2),
        "only run 2, under its id {run2}: {:?}",
        instance_ids(&b_pushes)
    );
    // Run 2 goes on: its first push already holds everything pushed before, so
    // Prometheus sees no counter reset.
    let before = last_of(&a_pushes, run2);
    for (_, points) in &b_pushes {
        assert_eq!(points, before, "a push below (or beside) the last one");
    }
    first.stop();
    second.stop();
    beside.stop();
}

/// An exporter started beside a Skaffold that has played one failed iteration and
/// keeps sending `chatter` every 30 ms; returns it with its first `/metrics` scrape
/// and how long that scrape waited (it waits until the replay is folded, at most
/// `catch_up::BOUND`). The chatter, the collector and the server stop with `Beside`.
async fn beside_chatter(chatter: fn(&mut Script)) -> Beside {
    let sim = Simulator::new();
    sim.enable_v2();
    let (addr, stop) = support::serve_skaffold(&sim).await;
    let now = skaffold_exporter::catch_up::now_nanos();
    let mut s = Script::new();
    s.meta(0, "v2.16.1")
        .dev_loop(10, 0, "In Progress")
        .build(10, "app", "In Progress", C::Ok)
        .build(300, "app", "Failed", C::BuildUserError)
        .dev_loop(10, 0, "Failed");
    for e in s.events_v2(now - 1_000_000_000) {
        sim.emit_v2(e);
    }
    let task = {
        let sim = sim.clone();
        tokio::spawn(async move {
            loop {
                let mut line = Script::new();
                chatter(&mut line);
                for e in line.events_v2(skaffold_exporter::catch_up::now_nanos()) {
                    sim.emit_v2(e);
                }
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        })
    };
    let collector = Collector::grpc().await;
    let started = Instant::now();
    let exporter = start(addr, live(otlp(None, grpc(&collector)))).await;
    let text = metrics_text(exporter.http_addr).await;
    let waited = started.elapsed();
    assert_eq!(
        series_value(&text, "skaffold_exporter_connected"),
        Some(1.0),
        "{text}"
    );
    Beside {
        exporter,
        text,
        waited,
        chatter: task,
        collector,
        _stop: stop,
    }
}

struct Beside {
    exporter: Running,
    text: String,
    waited: Duration,
    chatter: tokio::task::JoinHandle<()>,
    collector: Collector,
    _stop: tokio::sync::watch::Sender<bool>,
}

impl Beside {
    async fn stop(self) {
        self.chatter.abort();
        self.exporter.shutdown().await;
        self.collector.stop();
    }
}

/// A stream whose events never pause (a port-forward event every 30 ms, closer
/// than the ordering window) never reports its replay folded (`/readyz` stays 503).
/// `/metrics` and the metrics push must not wait for that forever: the gate opens
/// `catch_up::BOUND` after the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_never_pauses_holds_metrics_back_only_until_the_bound() {
    let b = beside_chatter(|s| {
        s.port(0, 9000, "web");
    })
    .await;
    // Held back until the bound (the exporter started after `waited` began counting,
    // so this holds however slow the machine), and not forever: the scrape answered
    // (`http_get` fails after 15 s, three times the bound).
    assert!(
        b.waited >= skaffold_exporter::catch_up::BOUND,
        "/metrics answered after {:?}",
        b.waited
    );
    assert!(!b.exporter.progress.ready(), "the stream paused after all");
    assert!(
        b.exporter.progress.history_folded.is_open(),
        "the push is held back"
    );
    b.stop().await;
}

/// Log lines are only counted: an application that logs every 30 ms does not keep
/// the stream from pausing, so the replay is reported folded one window after its
/// last event, long before the bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steadily_logging_application_holds_nothing_back() {
    let b = beside_chatter(|s| {
        s.app_log(0, "web-1", "GET / 200");
    })
    .await;
    // The replay is reported folded (a stream that never pauses never is, see
    // above), however long the loaded machine takes to get there.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !b.exporter.progress.ready() {
        assert!(
            Instant::now() < deadline,
            "the replay was never reported folded (/metrics answered after {:?})",
            b.waited
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(b.exporter.progress.history_folded.is_open());
    assert_eq!(
        series_value(
            &b.text,
            "skaffold_dev_loops_total{kind=\"initial\",result=\"failure\"}"
        ),
        Some(1.0),
        "{}",
        b.text
    );
    b.stop().await;
}
