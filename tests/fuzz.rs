//! A fuzz suite on the stable toolchain: deterministic, seeded mutation of real
//! Skaffold streams (the corpus is `tests/fixtures`), through the four ways bytes
//! enter the exporter:
//!
//! - `grpc_v1` / `grpc_v2`: a captured gRPC stream's messages (`v1.grpc.bin`,
//!   `v2.grpc.bin`), some mutated, through `decode_raw` as the gRPC source decodes;
//! - `gateway`: the captured gateway streams' lines through `decode_line`;
//! - `file`: whole `--event-log-file` files and captured documents, mutated, read by
//!   `replay`'s input reader.
//!
//! Each decoded sequence is folded into one pipeline per target, and the metrics are
//! scraped every few sequences. Asserted throughout (what the adversarial run of
//! issue 13 found held, kept so): nothing panics; every scrape parses as Prometheus
//! text; no sample is negative or NaN; no counter (`_total`, `_count`, `_sum`,
//! `_bucket`) ever decreases.
//!
//! Budget: `FUZZ_ITERATIONS` sequences per target (default 1,000: about half a minute in CI),
//! `FUZZ_SEED` (default fixed, so a CI failure reproduces). A nightly-length run:
//! `FUZZ_ITERATIONS=200000 FUZZ_SEED=$RANDOM cargo test --release --test fuzz -- --nocapture`
//! (the seed is printed; a failure names the target and iteration).

mod support;

use std::collections::HashMap;
use std::io::BufReader;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use skaffold_exporter::replay::{Format, Input, Replayer};
use skaffold_exporter::sink::DEFAULT_BUCKETS;
use skaffold_exporter::source::gateway::decode_line;
use skaffold_exporter::source::grpc::decode_raw;
use skaffold_exporter::source::{Api, SourceMessage};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn iterations() -> usize {
    std::env::var("FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

fn seed(target: &str) -> u64 {
    let base = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_f022);
    eprintln!(
        "fuzz {target}: FUZZ_SEED={base}, {} iterations",
        iterations()
    );
    base ^ twox(target.as_bytes())
}

fn twox(b: &[u8]) -> u64 {
    skaffold_exporter::source::fingerprint(b)
}

/// The messages of a `grpccapture` file (uvarint length + message).
fn frames(file: &str) -> Vec<Vec<u8>> {
    support::capture_frames(&fixtures().join("real").join(file))
}

fn lines(file: &str) -> Vec<Vec<u8>> {
    std::fs::read(fixtures().join("real").join(file))
        .unwrap()
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// Whole files of the corpus: event log files (v1, v2) and captured documents.
fn documents() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for dir in ["real", "skaffold-events", "captured"] {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(fixtures().join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let n = p.file_name().unwrap().to_string_lossy();
                n.ends_with(".json") || n.ends_with(".v2") || n.ends_with(".jsonl")
            })
            .collect();
        paths.sort();
        for p in paths {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            out.push((name, std::fs::read(&p).unwrap()));
        }
    }
    out
}

/// Byte- and token-level mutations (protobuf and JSON alike: both are bytes).
struct Mutator {
    rng: fastrand::Rng,
}

const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"\"",
    b"\\",
    b"null",
    b"-1",
    b"1e309",
    b"18446744073709551616",
    b"\"\\ud800\"",
    b"\xff\xfe",
    b"\n",
    b"\"In Progress\"",
    b"\"Failed\"",
    b"\"Complete\"",
    b"\"0001-01-01T00:00:00Z\"",
    b"\"9999-12-31T23:59:59.999999999Z\"",
    b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
    b"\x12\x00",
    b"\x1a\x00\x1a\x00\x1a\x00",
    b"\x0a\x80\x80\x80\x80\x10",
];

impl Mutator {
    fn mutate(&mut self, input: &mut Vec<u8>, donor: &[u8]) {
        for _ in 0..self.rng.usize(1..=6) {
            let len = input.len();
            let at = if len == 0 { 0 } else { self.rng.usize(0..len) };
            match self.rng.u8(0..9) {
                0 if len > 0 => input[at] ^= 1 << self.rng.u8(0..8),
                1 if len > 0 => input[at] = self.rng.u8(..),
                2 => {
                    let t = TOKENS[self.rng.usize(0..TOKENS.len())];
                    input.splice(at..at, t.iter().copied());
                }
                3 if len > 0 => {
                    let end = (at + self.rng.usize(1..=16)).min(len);
                    input.drain(at..end);
                }
                4 if len > 0 => {
                    let end = (at + self.rng.usize(1..=64)).min(len);
                    let chunk = input[at..end].to_vec();
                    let to = self.rng.usize(0..=len);
                    input.splice(to..to, chunk);
                }
                5 if !donor.is_empty() => {
                    let from = self.rng.usize(0..donor.len());
                    let end = (from + self.rng.usize(1..=128)).min(donor.len());
                    input.splice(at..at, donor[from..end].iter().copied());
                }
                6 => input.truncate(at),
                // Another digit: numbers, lengths and timestamps.
                7 if len > 0 && input[at].is_ascii_digit() => {
                    input[at] = b'0' + self.rng.u8(0..10);
                }
                _ => {}
            }
        }
    }
}

/// The invariants, checked on every scrape of one target's pipeline.
#[derive(Default)]
struct Checks {
    counters: HashMap<String, f64>,
    scrapes: usize,
}

impl Checks {
    fn scrape(&mut self, r: &Replayer, target: &str, iteration: usize) {
        self.scrapes += 1;
        let text = r.metrics_text(Format::Prometheus);
        for line in text.lines() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (series, value) = parse_sample(line)
                .unwrap_or_else(|| panic!("{target} #{iteration}: unparseable sample {line:?}"));
            assert!(
                !value.is_nan() && value >= 0.0,
                "{target} #{iteration}: {line}"
            );
            let name = series.split('{').next().unwrap_or_default();
            let counter = ["_total", "_count", "_sum", "_bucket"]
                .iter()
                .any(|s| name.ends_with(s));
            if counter && let Some(before) = self.counters.insert(series.to_owned(), value) {
                assert!(
                    value >= before,
                    "{target} #{iteration}: counter {series} went from {before} to {value}"
                );
            }
        }
    }
}

/// `name{label="value",...} number` → (series, number); `None` when malformed.
fn parse_sample(line: &str) -> Option<(&str, f64)> {
    let (series, value) = line.rsplit_once(' ')?;
    let name_end = series.find('{').unwrap_or(series.len());
    let name = &series[..name_end];
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
        || name.as_bytes()[0].is_ascii_digit()
    {
        return None;
    }
    if name_end < series.len() {
        labels_ok(&series[name_end..])?;
    }
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().ok()?,
    };
    Some((series, value))
}

/// `{a="x",b="y\"z"}`: names, quotes and escapes well-formed.
fn labels_ok(s: &str) -> Option<()> {
    let mut rest = s.strip_prefix('{')?.strip_suffix('}')?;
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"")?;
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return None;
        }
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => match chars.next()? {
                    (_, '\\' | '"' | 'n') => {}
                    _ => return None,
                },
                (_, '\n') => return None,
                (i, '"') => break i,
                _ => {}
            }
        };
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    Some(())
}

/// Folds what a source decoded, as the fold takes it.
fn fold(r: &mut Replayer, m: SourceMessage) {
    r.pipeline_mut().fold_payload(&m.payload.digest());
}

/// Runs `sequence` for each iteration (a sequence of inputs, some mutated), checking
/// the invariants every few sequences and at the end.
fn run_target(target: &str, mut sequence: impl FnMut(&mut Mutator, &mut Replayer)) {
    let mut m = Mutator {
        rng: fastrand::Rng::with_seed(seed(target)),
    };
    let mut r = Replayer::new(&DEFAULT_BUCKETS, 50);
    let mut checks = Checks::default();
    let n = iterations();
    for i in 0..n {
        sequence(&mut m, &mut r);
        if i % 25 == 0 {
            checks.scrape(&r, target, i);
        }
    }
    r.pipeline_mut().disconnected();
    checks.scrape(&r, target, n);
    eprintln!(
        "fuzz {target}: {n} sequences, {} events folded, {} scrapes checked",
        r.folded(),
        checks.scrapes
    );
    assert!(r.folded() > 0, "{target}: the corpus folds nothing");
}

/// A run of consecutive messages of a stream, about one in four mutated.
fn grpc(target: &str, api: Api, file: &str) {
    let corpus = frames(file);
    run_target(target, |m, r| {
        let start = m.rng.usize(0..corpus.len());
        let len = m.rng.usize(1..=16).min(corpus.len() - start);
        for msg in &corpus[start..start + len] {
            let mut bytes = msg.clone();
            if m.rng.u8(0..4) == 0 {
                let donor = &corpus[m.rng.usize(0..corpus.len())];
                m.mutate(&mut bytes, donor);
            }
            fold(r, decode_raw(api, bytes::Bytes::from(bytes)));
        }
    });
}

#[test]
fn fuzz_grpc_v1_decoder() {
    grpc("grpc_v1", Api::V1, "v1.grpc.bin");
}

#[test]
fn fuzz_grpc_v2_decoder() {
    grpc("grpc_v2", Api::V2, "v2.grpc.bin");
}

#[test]
fn fuzz_gateway_reader() {
    let v1 = lines("gateway-v1.jsonl");
    let v2 = lines("gateway-v2.jsonl");
    run_target("gateway", |m, r| {
        let (api, corpus) = if m.rng.bool() {
            (Api::V1, &v1)
        } else {
            (Api::V2, &v2)
        };
        let start = m.rng.usize(0..corpus.len());
        let len = m.rng.usize(1..=16).min(corpus.len() - start);
        for line in &corpus[start..start + len] {
            let mut bytes = line.clone();
            if m.rng.u8(0..4) == 0 {
                let donor = &corpus[m.rng.usize(0..corpus.len())];
                m.mutate(&mut bytes, donor);
            }
            // An error chunk ends the stream: the source reconnects; nothing to fold.
            if let Ok(Some(msg)) = decode_line(api, &bytes, false) {
                fold(r, msg);
            }
        }
    });
}

#[test]
fn fuzz_file_reader() {
    let docs = documents();
    assert!(docs.len() >= 10, "corpus: {}", docs.len());
    run_target("file", |m, r| {
        let (name, doc) = &docs[m.rng.usize(0..docs.len())];
        let mut bytes = doc.clone();
        let donor = &docs[m.rng.usize(0..docs.len())].1;
        // Several mutations over a whole file.
        for _ in 0..m.rng.usize(1..=4) {
            m.mutate(&mut bytes, donor);
        }
        let input = Input::from_reader(
            name,
            Box::new(BufReader::new(std::io::Cursor::new(bytes))),
            None,
            None,
        )
        .expect("reading from memory does not fail");
        input
            .feed(r, false, &AtomicBool::new(false), &mut ())
            .expect("reading from memory does not fail");
    });
}

#[test]
fn the_checks_catch_what_they_guard_against() {
    assert!(parse_sample("a_total{x=\"1\"} 2").is_some());
    assert!(parse_sample("a_total{x=\"1} 2").is_none());
    assert!(parse_sample("a_total{x=\"\\q\"} 2").is_none());
    assert!(parse_sample("1a 2").is_none());
    assert!(parse_sample("a two").is_none());
    let r = Replayer::new(&DEFAULT_BUCKETS, 50);
    let mut checks = Checks::default();
    checks.scrape(&r, "empty", 0);
    checks
        .counters
        .insert("skaffold_exporter_reconnects_total".into(), 5.0);
    let decreased = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        checks.scrape(&r, "decreasing", 1)
    }));
    assert!(decreased.is_err(), "a counter going down is caught");
}
