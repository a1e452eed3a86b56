//! The fold of a replay ([`Replayer`]): one pipeline fed record by record from the
//! inputs, with what went wrong where (`file:line` notes, counts of malformed,
//! rejected and skipped records, unreadable inputs), and the report printed at the
//! end: the summary table and the metrics text.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use prometheus_client::registry::Registry;

use super::summary::{Summary, SummaryObserver};
use crate::config::{Format, Output};
use crate::pipeline::{Built, Pipeline, Progress};
use crate::sink::exposition::{encode_openmetrics, openmetrics_to_prometheus};
use crate::sink::otlp_setup::{OtlpSettings, Telemetry, TelemetryError};
use crate::source::Payload;
use crate::source::file::Item;
use crate::source::file::input::Records;

/// Most `file:line` notes kept (and printed); more are counted.
pub const MAX_DIAGNOSTICS: usize = 1000;

/// The fold of a replay: pipeline, registry, summary, and what went wrong where.
pub struct Replayer {
    registry: Arc<Registry>,
    pipeline: Pipeline,
    summary: Arc<Mutex<Summary>>,
    records: u64,
    malformed: u64,
    rejected: u64,
    /// Records read and understood but not folded, each with a note saying why.
    skipped: u64,
    /// Inputs begun so far (each is a session of its own).
    inputs: u64,
    /// Inputs that could not be opened, or not read to their end.
    unreadable: u64,
    diagnostics: Vec<String>,
    diagnostics_omitted: u64,
    /// The OTLP pieces to shut down at the end (`--otlp`).
    telemetry: Option<Telemetry>,
    /// Readiness for `--serve`.
    progress: Option<Arc<Progress>>,
}

impl std::fmt::Debug for Replayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replayer")
            .field("records", &self.records)
            .field("malformed", &self.malformed)
            .field("rejected", &self.rejected)
            .field("skipped", &self.skipped)
            .finish_non_exhaustive()
    }
}

impl Replayer {
    /// A replayer with the given histogram buckets and label cap.
    pub fn new(buckets: &[f64], max_label_values: usize) -> Self {
        Self::build(buckets, max_label_values, None).expect("no OTLP, nothing can fail")
    }

    /// A replayer that also exports spans as `otlp` says, exactly as the live
    /// exporter does (call inside the tokio runtime). Call [`Replayer::finish`] at
    /// the end.
    pub fn with_otlp(
        buckets: &[f64],
        max_label_values: usize,
        otlp: &OtlpSettings,
    ) -> Result<Self, TelemetryError> {
        Self::build(buckets, max_label_values, Some(otlp))
    }

    fn build(
        buckets: &[f64],
        max_label_values: usize,
        otlp: Option<&OtlpSettings>,
    ) -> Result<Self, TelemetryError> {
        let summary = Arc::new(Mutex::new(Summary::default()));
        let mut builder = Pipeline::builder()
            .buckets(buckets)
            .max_label_values(max_label_values)
            .observer(Box::new(SummaryObserver(summary.clone())));
        if let Some(o) = otlp {
            builder = builder.otlp(o);
        }
        let Built {
            pipeline,
            registry,
            telemetry,
        } = builder.build()?;
        let telemetry = otlp.is_some().then_some(telemetry);
        Ok(Self {
            registry: Arc::new(registry),
            pipeline,
            summary,
            records: 0,
            malformed: 0,
            rejected: 0,
            skipped: 0,
            inputs: 0,
            unreadable: 0,
            diagnostics: Vec::new(),
            diagnostics_omitted: 0,
            telemetry,
            progress: None,
        })
    }

    /// Reports readiness through `progress` (`/readyz` under `--serve`): ready once
    /// the input has been folded (with `--follow`: each time it has caught up).
    pub fn set_progress(&mut self, progress: Arc<Progress>) {
        self.progress = Some(progress);
    }

    /// The inputs are over: Skaffold's stream ended, as at a disconnect (a derived
    /// iteration whose phases all ended completes; spans still open end with result
    /// `error`). With OTLP, the spans are then flushed and the exporter shut down,
    /// waiting at most the shutdown timeout.
    pub async fn finish(&mut self) {
        self.pipeline.disconnected();
        if let Some(t) = self.telemetry.take() {
            crate::sink::otlp_setup::shutdown(
                self.pipeline.take_spans(),
                t.meter_provider,
                t.shutdown_timeout,
            )
            .await;
        }
    }

    /// The pipeline, to add observers (e.g. spans) before feeding.
    pub fn pipeline_mut(&mut self) -> &mut Pipeline {
        &mut self.pipeline
    }

    /// The registry (to serve `/metrics` while replaying).
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }

    /// Records read so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Malformed records so far.
    pub fn malformed(&self) -> u64 {
        self.malformed
    }

    /// Records that were decoded but rejected (unknown status, missing field...) so
    /// far.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Records read but not folded, each with a note saying why (records that are not
    /// events, such as a captured `/v1/state` answer; a v1.22 `Build` task that names
    /// no artifact).
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Events folded so far.
    pub fn folded(&self) -> u64 {
        self.pipeline.folded()
    }

    /// `file:line` notes, in input order.
    pub fn diagnostics(&self) -> &[String] {
        &self.diagnostics
    }

    /// Inputs that could not be opened or read to their end, so far.
    pub fn unreadable_count(&self) -> u64 {
        self.unreadable
    }

    /// Keeps a note, up to [`MAX_DIAGNOSTICS`] of them (then only counts them: a
    /// file of millions of bad lines must not fill memory with notes).
    fn diagnose(&mut self, note: String) {
        if self.diagnostics.len() < MAX_DIAGNOSTICS {
            self.diagnostics.push(note);
        } else {
            self.diagnostics_omitted += 1;
        }
    }

    /// Notes beyond [`MAX_DIAGNOSTICS`], counted only.
    pub fn diagnostics_omitted(&self) -> u64 {
        self.diagnostics_omitted
    }

    /// The summary table.
    pub fn summary_table(&self) -> String {
        self.summary.lock().map(|s| s.table()).unwrap_or_default()
    }

    /// The metrics in `format`.
    pub fn metrics_text(&self, format: Format) -> String {
        let om = encode_openmetrics(&self.registry);
        match format {
            Format::Openmetrics => om,
            Format::Prometheus => openmetrics_to_prometheus(&om),
        }
    }

    /// What `replay` prints to stdout.
    pub fn report(&self, format: Format, output: Output) -> String {
        let mut out = String::new();
        if output != Output::Metrics {
            out.push_str(&self.summary_table());
        }
        if output == Output::Both {
            out.push('\n');
        }
        if output != Output::Summary {
            out.push_str(&self.metrics_text(format));
        }
        out
    }
}

impl Records for Replayer {
    /// An input begins. Inputs are separate Skaffold sessions (a v1 file and its
    /// `.v2` sibling are one, but only one of them is folded, see
    /// [`select_inputs`](crate::source::file::input::select_inputs)): after the first,
    /// the stream ends as at a disconnect and the input's first event starts a run of
    /// its own, so sessions never merge.
    fn begin_input(&mut self) {
        if self.inputs > 0 {
            self.pipeline.begin_session();
        }
        self.inputs += 1;
    }

    /// Folds one record read from `file` at `line` (1-based).
    fn feed(&mut self, file: &str, line: u64, item: Item) {
        self.records += 1;
        match item {
            Item::Message { payload, .. } => {
                if let Payload::Invalid(e) = &payload {
                    self.malformed += 1;
                    self.diagnose(format!("{file}:{line}: malformed: {e}"));
                }
                let before = self.pipeline.invalid_count();
                self.pipeline.fold_payload(&payload);
                if !matches!(payload, Payload::Invalid(_))
                    && self.pipeline.invalid_count() > before
                {
                    self.rejected += 1;
                    let why = self.pipeline.last_invalid().unwrap_or("invalid event");
                    let note = format!("{file}:{line}: skipped (counted as invalid): {why}");
                    self.diagnose(note);
                }
                if let Some(why) = self.pipeline.take_not_folded() {
                    self.skipped += 1;
                    self.diagnose(format!("{file}:{line}: not folded: {why}"));
                }
            }
            Item::StreamEnded { code, message } => self.diagnose(format!(
                "{file}:{line}: the captured stream ended with a gateway error (gRPC code {code}): {message}"
            )),
            Item::NotAnEvent(what) => {
                self.skipped += 1;
                self.diagnose(format!("{file}:{line}: not folded: {what}"));
            }
        }
    }

    fn malformed_input(&mut self, note: String) {
        self.malformed += 1;
        self.diagnose(note);
    }

    /// Adds a note (e.g. an input that was skipped).
    fn note(&mut self, text: String) {
        self.diagnose(text);
    }

    /// Records an input that could not be opened, or not read to its end (`why`): the
    /// command fails (exit 2) after printing what was folded.
    fn unreadable(&mut self, why: String) {
        self.unreadable += 1;
        self.diagnose(why);
    }

    /// Everything read so far is folded.
    fn caught_up(&mut self) {
        if let Some(p) = &self.progress {
            p.connected.store(true, Ordering::Release);
            p.set_caught_up();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::DEFAULT_BUCKETS;
    use crate::source::file::item_from_bytes;

    #[test]
    fn rejected_records_are_counted_apart_from_malformed_ones() {
        let mut r = Replayer::new(&DEFAULT_BUCKETS, 200);
        let line = |l: &str| item_from_bytes(l.as_bytes(), None).unwrap();
        r.feed(
            "f",
            1,
            line(r#"{"timestamp":"2023-11-14T22:13:20Z","event":{"buildEvent":{"artifact":"a","status":"Exploded"}}}"#),
        );
        r.feed("f", 2, line("not json"));
        r.feed(
            "f",
            3,
            line(r#"{"timestamp":"2023-11-14T22:13:21Z","event":{"buildEvent":{"artifact":"a","status":"In Progress"}}}"#),
        );
        assert_eq!((r.records(), r.malformed(), r.rejected()), (3, 1, 1));
        assert!(r.diagnostics()[0].starts_with("f:1: skipped (counted as invalid)"));
        assert!(r.diagnostics()[1].starts_with("f:2: malformed"));
    }

    #[test]
    fn not_folded_notes_are_capped_like_the_others() {
        let mut r = Replayer::new(&DEFAULT_BUCKETS, 200);
        let task = |i: usize, status: &str, s: usize| {
            let l = format!(
                r#"{{"result":{{"timestamp":"2021-04-07T17:{:02}:{:02}Z","taskEvent":{{"id":"Build-{i}","task":"Build","iteration":{i},"status":"{status}"}}}}}}"#,
                s / 60 % 60,
                s % 60
            );
            item_from_bytes(l.as_bytes(), None).unwrap()
        };
        // A Skaffold v1.22 session: every Build task ends without per-artifact
        // events, so each end is a "not folded" note.
        let builds = MAX_DIAGNOSTICS + 7;
        for i in 0..builds {
            r.feed("f", 2 * i as u64 + 1, task(i, "InProgress", 2 * i));
            r.feed("f", 2 * i as u64 + 2, task(i, "Succeeded", 2 * i + 1));
        }
        assert_eq!(r.skipped(), builds as u64, "every one is counted");
        assert_eq!(r.diagnostics().len(), MAX_DIAGNOSTICS);
        assert_eq!(r.diagnostics_omitted(), 7);
        assert!(
            r.diagnostics()
                .iter()
                .all(|d| d.contains(": not folded: Build task")),
            "{:?}",
            &r.diagnostics()[..3]
        );
        assert!(r.diagnostics()[0].starts_with("f:2: not folded"));
    }

    #[test]
    fn ready_once_caught_up() {
        let mut r = Replayer::new(&DEFAULT_BUCKETS, 200);
        let p = Arc::new(Progress::default());
        r.set_progress(p.clone());
        assert!(!p.ready());
        r.caught_up();
        assert!(p.ready(), "an empty input is folded too");
    }
}
