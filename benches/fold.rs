//! Quick throughput figures of the fold task alone (prints, asserts nothing): events/s
//! through decode + fold + Prometheus sink, and with replay de-duplication in front;
//! and the reader's decode of v1 messages (read in place, `source::grpc::decode_v1_raw`)
//! side by side with prost decoding the same bytes into the full message (what a bare
//! client does), best of five passes each.
//! The whole path over gRPC, side by side with a bare client: `cargo bench --bench
//! stream`.
//!
//!     cargo bench --bench fold

use std::time::Instant;

use skaffold_exporter::pipeline::Pipeline;
use skaffold_exporter::simulator::scenario::{Flavor, Script, Session};
use skaffold_exporter::source::{Delivery, SourceMessage};

fn session(iterations: usize) -> Script {
    let mut s = Script::new();
    for script in Session::new(Flavor::Normal, 7).take(iterations + 1) {
        s.steps.extend(script.steps);
    }
    s
}

fn main() {
    let entries = session(20_000).entries(1_700_000_000_000_000_000);
    let n = entries.len();
    decode_side_by_side(&entries);

    let mut pipeline = Pipeline::builder().build().expect("no OTLP").pipeline;
    let start = Instant::now();
    for e in &entries {
        pipeline.fold_entry(e);
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "fold (decode + fold + prometheus sink): {n} events in {secs:.3} s = {:.0} events/s, {:.2} us/event",
        n as f64 / secs,
        secs * 1e6 / n as f64
    );

    let events: Vec<_> = entries
        .iter()
        .filter_map(|e| skaffold_exporter::source::decode::decode_v1_full(e).ok())
        .collect();
    let mut pipeline = Pipeline::builder().build().expect("no OTLP").pipeline;
    let start = Instant::now();
    for e in &events {
        pipeline.fold_event(e);
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "fold_event (State::apply + Prometheus sink, decoded events): {:.2} us/event",
        secs * 1e6 / events.len() as f64
    );
    let mut state = skaffold_exporter::core::State::new();
    let start = Instant::now();
    let mut transitions = 0usize;
    for e in &events {
        transitions += state.apply(e).len();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "State::apply alone: {:.2} us/event ({:.2} transitions/event)",
        secs * 1e6 / events.len() as f64,
        transitions as f64 / events.len() as f64
    );

    let mut pipeline = Pipeline::builder().build().expect("no OTLP").pipeline;
    // The reader fingerprints and decodes; the fold gets the result.
    let messages: Vec<SourceMessage> = entries.iter().cloned().map(SourceMessage::v1).collect();
    let fps: Vec<u64> = messages.iter().map(|m| m.fingerprint).collect();
    filter_only(&fps);
    let many: Vec<u64> = (0..1_000_000u64)
        .map(|i| skaffold_exporter::source::fingerprint(&i.to_le_bytes()))
        .collect();
    filter_only(&many);
    pipeline.deliver(&Delivery::Subscribed { stream: 1 });
    let start = Instant::now();
    for m in messages {
        pipeline.deliver(&Delivery::Message(m));
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "deliver (+ replay de-duplication): {n} events in {secs:.3} s = {:.0} events/s",
        n as f64 / secs
    );
    let (held, bytes) = pipeline.dedup_size();
    println!(
        "de-duplication set: {held} events in {bytes} bytes ({:.1} bytes/event)",
        bytes as f64 / held as f64
    );
}

/// The reader's v1 decode against prost's, on the same encoded messages.
fn decode_side_by_side(entries: &[skaffold_exporter::pb::v1::LogEntry]) {
    use prost::Message as _;
    let bytes: Vec<Vec<u8>> = entries.iter().map(|e| e.encode_to_vec()).collect();
    let best = |f: &dyn Fn(&[u8]) -> usize| {
        (0..5)
            .map(|_| {
                let start = Instant::now();
                let kept: usize = bytes.iter().map(|b| f(b)).sum();
                std::hint::black_box(kept);
                start.elapsed().as_secs_f64() * 1e9 / bytes.len() as f64
            })
            .fold(f64::INFINITY, f64::min)
    };
    let prost = best(&|b| {
        skaffold_exporter::pb::v1::LogEntry::decode(b).map_or(0, |e| usize::from(e.event.is_some()))
    });
    let ours = best(&|b| {
        let m = skaffold_exporter::source::grpc::decode_v1_raw(b);
        usize::from(m.at.is_some())
    });
    println!(
        "v1 decode of {} messages: in place (reader) {ours:.0} ns/event, prost full message {prost:.0} ns/event, ratio {:.2}",
        bytes.len(),
        prost / ours
    );
}

#[allow(dead_code)]
fn filter_only(fps: &[u64]) {
    let mut f = skaffold_exporter::core::ReplayFilter::new();
    f.begin_stream();
    let start = Instant::now();
    for (i, fp) in fps.iter().enumerate() {
        f.admit(*fp, Some(i as i64));
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "filter alone: {:.0} ns/event over {}",
        secs * 1e9 / fps.len() as f64,
        fps.len()
    );
}
