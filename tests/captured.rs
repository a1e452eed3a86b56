//! Golden tests: every v1 stream Skaffold really wrote (tests/fixtures/captured, from
//! public bug reports) folded through the real pipeline. The golden files hold the
//! transitions and the resulting metrics; they were reviewed by hand against the
//! fixtures (timestamps, statuses) when written.

mod support;

use std::sync::{Arc, Mutex};

use skaffold_exporter::core::{Event, Transition};
use skaffold_exporter::pipeline::{Built, Pipeline, TransitionObserver};
use skaffold_exporter::sink::exposition::{encode_openmetrics, openmetrics_to_prometheus};
use skaffold_exporter::source::json::{GatewayChunk, log_entry_from_json, parse_gateway_chunk};

struct Record(Arc<Mutex<Vec<String>>>);

impl TransitionObserver for Record {
    fn observe(&mut self, event: &Event, t: &Transition) {
        self.0
            .lock()
            .unwrap()
            .push(format!("{} {} -> {t:?}", event.at, event.kind.name()));
    }
}

fn fold_fixture(path: &std::path::Path) -> String {
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let Built {
        mut pipeline,
        registry,
        ..
    } = Pipeline::builder()
        .observer(Box::new(Record(log.clone())))
        .build()
        .expect("no OTLP to start");
    let mut skipped = Vec::new();
    for (i, rec) in doc["records"].as_array().unwrap().iter().enumerate() {
        if rec.get("buildState").is_some() {
            skipped.push(format!("record {i}: a GetState snapshot, not an event"));
            continue;
        }
        match parse_gateway_chunk(rec.clone()) {
            Ok(GatewayChunk::Result(v)) if v.get("event").is_some() => {
                pipeline.fold_entry(&log_entry_from_json(v).expect("fixture entry decodes"));
            }
            Ok(other) => skipped.push(format!("record {i}: not a v1 LogEntry ({})", short(&other))),
            Err(e) => skipped.push(format!("record {i}: {e}")),
        }
    }
    let metrics = openmetrics_to_prometheus(&encode_openmetrics(&registry));
    // Series order within a family follows a HashMap: sort.
    let mut metrics: Vec<String> = metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.ends_with(" 0"))
        .map(|l| format!("{l}\n"))
        .collect();
    metrics.sort();
    let metrics = metrics.concat();
    format!(
        "# transitions\n{}\n# not folded\n{}\n# metrics (non-zero samples)\n{metrics}",
        log.lock().unwrap().join("\n"),
        skipped.join("\n")
    )
}

fn short(c: &GatewayChunk) -> String {
    match c {
        GatewayChunk::Result(v) => v
            .as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>().join(","))
            .unwrap_or_default(),
        GatewayChunk::Error { code, message } => format!("error {code}: {message}"),
    }
}

#[test]
fn every_captured_v1_stream_matches_its_golden_file() {
    let dir = support::captured_dir();
    let mut n = 0;
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.contains("-v1-") {
            continue;
        }
        let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden/captured")
            .join(name.replace(".json", ".txt"));
        support::assert_golden(&golden, &fold_fixture(&path));
        n += 1;
    }
    assert_eq!(n, 4, "expected the four v1 captures");
}
