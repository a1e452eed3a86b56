//! Hostile input costs bounded memory (issue 13 item 1, 2): each case runs in a child
//! process (this test binary again, one case) that reports its own peak RSS (`VmHWM`
//! from /proc/self/status) before and after the case; the growth must stay under
//! [`BUDGET_KIB`], where decoding used to take 17-34 times the input (1-3 GB).

mod support;

use std::io::{BufReader, Read as _};
use std::process::Command;
use std::sync::atomic::AtomicBool;

use skaffold_exporter::replay::{Input, Replayer};
use skaffold_exporter::sink::DEFAULT_BUCKETS;
use skaffold_exporter::source::gateway::decode_line;
use skaffold_exporter::source::grpc::decode_raw;
use skaffold_exporter::source::{Api, Payload};

/// Most a hostile message may add to the peak (KiB). Decoding one message at the
/// limits takes a few MiB; the cases' inputs are 8-100 MB.
const BUDGET_KIB: u64 = 48 * 1024;

/// Resets the peak to the current RSS (Linux 4.0+), so what built the input is not
/// counted.
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").expect("resetting VmHWM");
}

/// A protobuf length-delimited field.
fn len_field(number: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 12);
    for mut v in [u64::from(number << 3 | 2), payload.len() as u64] {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    out.extend_from_slice(payload);
    out
}

/// `n` empty `suggestions` (field 3 of ActionableErr): 2 bytes each on the wire.
fn suggestions(n: usize) -> Vec<u8> {
    [0x1a, 0x00].repeat(n)
}

/// Runs one case in a child process; returns how much it raised the peak RSS (KiB).
fn peak_growth(case: &str) -> u64 {
    let test = if case == "unchecked_prost" {
        "child_unchecked"
    } else {
        "child_process_entry"
    };
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env("HOSTILE_CASE", case)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{case}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |k: &str| -> u64 {
        stdout
            .lines()
            .find_map(|l| l.split_once(k).map(|(_, v)| v))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("{case}: no {k} in {stdout}"))
    };
    let growth = field("GROWTH_KIB=");
    eprintln!("{case}: peak RSS grew by {growth} KiB");
    growth
}

fn assert_bounded(case: &str) {
    let growth = peak_growth(case);
    assert!(
        growth < BUDGET_KIB,
        "{case}: the peak RSS grew by {growth} KiB (budget {BUDGET_KIB} KiB)"
    );
}

fn invalid(p: &Payload) -> String {
    match p {
        Payload::Invalid(e) => e.to_string(),
        other => panic!("expected an invalid message, got {other:?}"),
    }
}

/// The child's side: builds the input, notes the peak, runs the case, reports.
#[test]
fn child_process_entry() {
    let Ok(case) = std::env::var("HOSTILE_CASE") else {
        return;
    };
    let mut before = 0;
    let mut mark = || {
        reset_peak();
        before = support::vm_hwm_kib("self");
    };
    match case.as_str() {
        // 4 MiB of empty repeated messages, under the byte cap: 2M values.
        "grpc_v1_suggestions" => {
            let err = len_field(5, &suggestions(2_000_000));
            let bytes = len_field(2, &len_field(2, &err));
            mark();
            let m = decode_raw(Api::V1, bytes::Bytes::from(bytes));
            assert!(invalid(&m.payload).contains("values"), "{m:?}");
        }
        "grpc_v2_suggestions" => {
            let err = len_field(6, &suggestions(2_000_000));
            let bytes = len_field(6, &err);
            mark();
            let m = decode_raw(Api::V2, bytes::Bytes::from(bytes));
            assert!(invalid(&m.payload).contains("values"), "{m:?}");
        }
        // One gateway line of `[0,0,...]`, just under the 8 MiB JSON cap, then one
        // over it.
        "gateway_zeros" => {
            let body = "0,".repeat(4_000_000);
            let line =
                format!(r#"{{"result":{{"event":{{"buildEvent":{{"artifact":[{body}0]}}}}}}}}"#);
            let big = format!(r#"{{"result":[{body}{body}0]}}"#);
            mark();
            let m = decode_line(Api::V1, line.as_bytes(), false)
                .unwrap()
                .unwrap();
            assert!(invalid(&m.payload).contains("values"), "{m:?}");
            let m = decode_line(Api::V1, big.as_bytes(), false)
                .unwrap()
                .unwrap();
            assert!(invalid(&m.payload).contains("bytes"), "{m:?}");
        }
        // `replay` of a 100 MB line of `[0,0,...]` between two good lines.
        "replay_long_line" => {
            let good = r#"{"timestamp":"2023-11-14T22:13:20Z","event":{"buildEvent":{"artifact":"a","status":"In Progress"}}}"#;
            let mut text = String::with_capacity(100_000_100);
            text.push_str(good);
            text.push('\n');
            text.push('[');
            while text.len() < 100_000_000 {
                text.push_str("0,");
            }
            text.push_str("0]\n");
            text.push_str(&good.replace("In Progress", "Complete"));
            text.push('\n');
            let file = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(file.path(), &text).unwrap();
            drop(text);
            // What the file took to write is not the replay's: mark after.
            mark();
            let mut r = Replayer::new(&DEFAULT_BUCKETS, 200);
            let input = Input::open(file.path().to_str().unwrap()).unwrap();
            input
                .feed(&mut r, false, &AtomicBool::new(false), &mut ())
                .unwrap();
            assert_eq!((r.records(), r.malformed(), r.folded()), (3, 1, 2));
            assert!(
                r.diagnostics()[0].contains(":2: malformed")
                    && r.diagnostics()[0].contains("line too long"),
                "{:?}",
                r.diagnostics()
            );
        }
        // `replay /dev/zero` (or stdin from it): one endless line, read and dropped.
        "replay_zeros" => {
            mark();
            let zeros = std::io::repeat(0).take(120 * 1024 * 1024);
            let input =
                Input::from_reader("/dev/zero", Box::new(BufReader::new(zeros)), None, None)
                    .unwrap();
            let mut r = Replayer::new(&DEFAULT_BUCKETS, 200);
            input
                .feed(&mut r, false, &AtomicBool::new(false), &mut ())
                .unwrap();
            assert_eq!((r.records(), r.malformed()), (1, 1));
        }
        // A JSON document of half a million bad records: each is reported, the notes kept
        // are bounded.
        "replay_document_of_junk" => {
            // Pretty-printed: the first line (`[`) makes it a document.
            let doc = format!("[\n{}0\n]\n", "0,".repeat(500_000));
            let file = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(file.path(), doc.as_bytes()).unwrap();
            drop(doc);
            mark();
            let mut r = Replayer::new(&DEFAULT_BUCKETS, 200);
            Input::open(file.path().to_str().unwrap())
                .unwrap()
                .feed(&mut r, false, &AtomicBool::new(false), &mut ())
                .unwrap();
            assert_eq!(r.malformed(), 500_001);
            assert!(r.diagnostics().len() <= skaffold_exporter::replay::MAX_DIAGNOSTICS);
        }
        other => panic!("unknown case {other}"),
    }
    let after = support::vm_hwm_kib("self");
    println!("GROWTH_KIB={}", after.saturating_sub(before));
}

#[test]
fn a_grpc_v1_message_of_empty_repeated_messages_is_refused_before_decoding() {
    assert_bounded("grpc_v1_suggestions");
}

#[test]
fn a_grpc_v2_message_of_empty_repeated_messages_is_refused_before_decoding() {
    assert_bounded("grpc_v2_suggestions");
}

#[test]
fn a_gateway_line_of_zeros_is_refused_before_parsing() {
    assert_bounded("gateway_zeros");
}

#[test]
fn replay_skips_a_100_mb_line_and_folds_the_lines_after_it() {
    assert_bounded("replay_long_line");
}

#[test]
fn replay_of_dev_zero_reads_in_bounded_memory() {
    assert_bounded("replay_zeros");
}

#[test]
fn replay_of_a_document_of_junk_keeps_bounded_notes() {
    assert_bounded("replay_document_of_junk");
}

/// The budget is tight enough to catch the amplification it guards against: the same
/// message decoded without the checks (prost straight away) blows it.
#[test]
fn the_budget_catches_unbounded_decoding() {
    if std::env::var("HOSTILE_CASE").is_ok() {
        return;
    }
    let growth = peak_growth("unchecked_prost");
    assert!(
        growth > BUDGET_KIB,
        "unchecked decoding grew only {growth} KiB"
    );
}

/// Decoding without the limits, for [`the_budget_catches_unbounded_decoding`].
#[test]
fn child_unchecked() {
    if std::env::var("HOSTILE_CASE").as_deref() != Ok("unchecked_prost") {
        return;
    }
    use prost::Message as _;
    let err = len_field(5, &suggestions(2_000_000));
    let bytes = len_field(2, &len_field(2, &err));
    reset_peak();
    let before = support::vm_hwm_kib("self");
    let entry = skaffold_exporter::pb::v1::LogEntry::decode(bytes.as_slice()).unwrap();
    let after = support::vm_hwm_kib("self");
    assert!(entry.event.is_some());
    println!("GROWTH_KIB={}", after.saturating_sub(before));
}

/// A gateway line over the 8 MiB limit is skipped up to its newline and counted; the
/// stream goes on and the lines after it are folded (it used to fail the stream).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_skips_an_over_long_line_and_reads_on() {
    use tokio::io::AsyncWriteExt as _;
    if std::env::var("HOSTILE_CASE").is_ok() {
        return;
    }
    let fixture = format!(
        "{}/tests/fixtures/real/gateway-v1.jsonl",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(fixture).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let long = format!("{{\"result\":[{}0]}}", "0,".repeat(5 * 1024 * 1024));
    let body = format!(
        "{}\n{long}\n{}\n",
        lines[..3].join("\n"),
        lines[3..].join("\n")
    );
    let gw = support::raw_http_server(move |mut s| {
        let body = body.clone();
        async move {
            // The stream stays open after the body, as Skaffold's does.
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
            let _ = s.write_all(head.as_bytes()).await;
            for chunk in body.as_bytes().chunks(64 * 1024) {
                let _ = s
                    .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                    .await;
                let _ = s.write_all(chunk).await;
                let _ = s.write_all(b"\r\n").await;
            }
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
        }
    })
    .await;
    let settings = support::settings(gw);
    let source = skaffold_exporter::config::SourceSettings {
        api: Api::V1,
        skaffold_http: Some(format!("http://{gw}").parse().unwrap()),
    };
    let exp = skaffold_exporter::app::start_with(settings, source)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let text = support::http_get(exp.http_addr, "/metrics", None).await.2;
        let events = support::events_total(&text);
        let undecodable = text
            .lines()
            .any(|l| l == "skaffold_exporter_invalid_events_total{reason=\"undecodable\"} 1");
        if events == lines.len() as f64 && undecodable {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "events {events} of {}, undecodable counted: {undecodable}",
            lines.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
