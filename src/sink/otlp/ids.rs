//! Trace and span ids, derived from what Skaffold sent (the run's MetaEvent
//! timestamp, the iteration, the phase, the subject and its occurrence), so folding
//! the same event log again yields the same ids.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanId, TraceId};
use sha2::{Digest, Sha256};

use crate::core::Nanos;

/// A 16-byte trace id, as the hex string exemplars carry.
pub type TraceHex = String;

fn digest(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"skaffold-exporter/trace-ids/v1");
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    h.finalize().into()
}

/// The trace id of `iteration` (-1: spans outside any iteration) of the run that
/// started at `run_at` (Skaffold's MetaEvent timestamp).
pub fn trace_id(run_at: Nanos, iteration: i64) -> TraceId {
    let d = digest(&[&run_at.to_be_bytes(), &iteration.to_be_bytes()]);
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    if b == [0; 16] {
        b[15] = 1;
    }
    TraceId::from_bytes(b)
}

/// The span id of the `occurrence`-th span of `phase`/`subject` in `trace`.
pub fn span_id(trace: TraceId, phase: &str, subject: Option<&str>, occurrence: u32) -> SpanId {
    let d = digest(&[
        &trace.to_bytes(),
        phase.as_bytes(),
        subject.unwrap_or("\u{0}").as_bytes(),
        &occurrence.to_be_bytes(),
    ]);
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    if b == [0; 8] {
        b[7] = 1;
    }
    SpanId::from_bytes(b)
}

pub(super) fn time(at: Nanos) -> SystemTime {
    if at >= 0 {
        UNIX_EPOCH + Duration::from_nanos(at as u64)
    } else {
        UNIX_EPOCH
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_deterministic_and_distinct() {
        let a = trace_id(1, 0);
        assert_eq!(a, trace_id(1, 0));
        assert_ne!(a, trace_id(1, 1));
        assert_ne!(a, trace_id(2, 0));
        let s = span_id(a, "build", Some("web"), 0);
        assert_eq!(s, span_id(a, "build", Some("web"), 0));
        assert_ne!(s, span_id(a, "build", Some("web"), 1));
        assert_ne!(s, span_id(a, "build", Some("app"), 0));
        assert_ne!(
            span_id(a, "build", None, 0),
            span_id(a, "build", Some(""), 0)
        );
    }
}
