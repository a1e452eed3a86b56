//! Traces: one trace per dev-loop iteration, built from the fold's transitions and
//! exported over OTLP. `ids` derives trace and span ids, `builder` turns transitions
//! into spans (which are open, and when finished ones leave), `span` says what each
//! span carries (name, attributes, status), `export` queues and sends them.
//!
//! [`SpanBuilder`] is pure (no I/O, no clock): transitions in, finished
//! [`SpanData`](opentelemetry_sdk::trace::SpanData) out, with Skaffold's timestamps as start and end times and ids derived from the
//! Skaffold run (its MetaEvent timestamp), the iteration, the phase, the subject and
//! its occurrence. Folding the same event log again (an exporter restart receives
//! Skaffold's replay) therefore yields the same trace and span ids.
//!
//! What leaves, and when: the builder holds the finished children of an iteration
//! until its root is ready and releases the whole trace at once, so stopping the
//! exporter mid-iteration never leaves children whose parent never arrives (the
//! next exporter rebuilds the whole iteration from Skaffold's replay). Since that
//! replay also rebuilds the iterations the previous exporter already sent, the live
//! exporter skips the iterations that ended (by Skaffold's clock) before it started
//! ([`SpanBuilder::skip_iterations_ended_before`]): a restart never makes the store
//! receive the same span id twice.
//!
//! [`SpanSink`] owns a builder and a bounded queue to one export thread; the fold only
//! ever `try_send`s, so a slow or absent collector never blocks it: a full queue drops
//! spans and counts them (`skaffold_exporter_spans_dropped_total`). The export thread
//! sends batches ([`MAX_BATCH`] spans, or what arrived within [`BATCH_DELAY`] of the
//! first), retries a failed batch with backoff for [`RETRY_FOR`] (spans arriving
//! meanwhile wait in the queue), and counts every failed request in
//! `skaffold_exporter_otlp_export_errors_total{signal="traces"}` and a batch it gives
//! up on in `skaffold_exporter_spans_dropped_total`.
//!
//! Export runs on a dedicated OS thread, never on a tokio worker: the gRPC (tonic)
//! exporter is driven through a handle to the application's tokio runtime, so it has
//! a reactor (the known opentelemetry-rust pitfall), and the blocking HTTP client runs
//! outside any runtime, as it must.

mod builder;
mod export;
mod ids;
mod span;

pub use builder::{SpanBuilder, SpanConfig};
pub use export::{
    BATCH_DELAY, Driver, FAILURES_LOGGED, MAX_BATCH, OtlpStats, RETRY_FOR, SIGNALS,
    SKAFFOLD_GONE_AFTER, SpanSink, error_chain, spawn_exporter,
};
pub use ids::{TraceHex, span_id, trace_id};
pub use span::{EndReason, result_value};
