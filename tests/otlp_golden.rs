//! Golden span trees for every captured stream in tests/fixtures/captured (v1 and v2
//! gateway captures): each
//! stream is folded through the real pipeline with the span builder hooked in, then
//! Skaffold "disconnects" (the captures end there), and the resulting spans are
//! rendered as a tree. `UPDATE_GOLDEN=1` rewrites the files under tests/golden/spans.

mod support;

use std::path::{Path, PathBuf};

use skaffold_exporter::source::Api;
use skaffold_exporter::source::json::{
    GatewayChunk, detect_api, event_v2_from_json, log_entry_from_json, parse_gateway_chunk,
};

/// Folds a captured stream and returns the rendered span tree.
fn spans_of(path: &Path) -> String {
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let (mut pipeline, rx) = support::otlp::span_pipeline(100_000);
    for record in doc["records"].as_array().unwrap() {
        // State snapshots and error chunks carry no event.
        let Ok(GatewayChunk::Result(v)) = parse_gateway_chunk(record.clone()) else {
            continue;
        };
        if detect_api(&v) == Some(Api::V2) {
            if let Ok(event) = event_v2_from_json(v) {
                pipeline.fold_v2(&event);
            }
        } else if let Ok(entry) = log_entry_from_json(v) {
            pipeline.fold_entry(&entry);
        }
    }
    pipeline.disconnected();
    let spans: Vec<_> = rx.try_iter().collect();
    support::otlp::render(&support::otlp::to_proto(spans))
}

#[test]
fn every_captured_stream_has_a_reviewed_span_tree() {
    let mut n = 0;
    let mut files: Vec<PathBuf> = std::fs::read_dir(support::captured_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    for path in files {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let golden = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden/spans")
            .join(format!("{name}.txt"));
        support::assert_golden(&golden, &spans_of(&path));
        n += 1;
    }
    assert_eq!(n, 7, "four v1 and three v2 captures");
}

#[test]
fn folding_a_capture_twice_yields_the_same_ids() {
    let dir = support::captured_dir();
    let path = dir.join("skaffold-docs-api-md_v0.39-dev_http-v1-events-and-state.json");
    assert_eq!(spans_of(&path), spans_of(&path));
}

#[test]
fn the_docs_list_every_attribute_key_and_the_semconv_version() {
    use skaffold_exporter::sink::semconv;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/team.md")).unwrap();
    assert!(doc.contains("# Traces and team-wide metrics"));
    for key in semconv::ALL
        .iter()
        .chain([&semconv::EVENT_PORT_FORWARD, &semconv::EVENT_BUILD_CACHE])
    {
        assert!(doc.contains(&format!("`{key}`")), "{key} is not documented");
    }
    assert!(doc.contains(&format!("semantic conventions {}", semconv::VERSION)));
    assert!(doc.contains(semconv::SCHEMA_URL));
}
