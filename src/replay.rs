//! `skaffold-exporter replay FILE...`: folds Skaffold's event log files
//! (`--event-log-file`, its `.v2` sibling) and HTTP-gateway captures through the same
//! pipeline as a live stream, then prints the metrics (Prometheus or OpenMetrics
//! text) and a per-iteration summary table. This is how a team backfills history,
//! and how a bug report's stream is turned into numbers.
//!
//! Inputs are read line by line (JSON Lines) or as one document (a JSON array, or
//! the captured fixtures' `{"records": [...]}`), detected from their first line;
//! `-` is stdin. A malformed line, or one that parses but is rejected (unknown status,
//! missing field...), is reported as `file:line: ...` on stderr and counted; the rest
//! is still folded, and the exit code says some lines were bad (1). An input that
//! cannot be read (at all, or from some line on) fails the command (2), after what was
//! folded has been printed. The end of the inputs is the end of Skaffold's stream, as
//! when a live Skaffold disconnects.
//!
//! With `--otlp`, the spans are exported as the live exporter exports them (same
//! `OTEL_*` settings, same trees and ids for the same session).
//!
//! Each input is a Skaffold session of its own: after the first, the stream ends (as
//! at a disconnect) and the next input's first event starts a new run, so captures of
//! unrelated sessions never merge. Skaffold writes every event to both the v1 file
//! and its `.v2` sibling; when both `FILE` and `FILE.v2` are given, only `FILE.v2` is
//! folded, so nothing counts twice.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Read as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use prometheus_client::registry::Registry;
use serde_json::Value;

pub use crate::config::{Format, Output, ReplayArgs};
use crate::core::{Event, LoopKind, Outcome, Phase, Transition};
use crate::pipeline::{Built, Pipeline, Progress, TransitionObserver};
use crate::sink::exposition::{encode_openmetrics, openmetrics_to_prometheus};
use crate::sink::otlp_setup::{OtlpSettings, Telemetry, TelemetryError};
use crate::source::file::{
    Item, LineReader, Read, each_record, hint_from_name, item_from_bytes, oversize_line,
};
use crate::source::json::parse_json;
use crate::source::limits::MAX_JSON_BYTES;
use crate::source::{Api, Payload};

/// Spans queued for export by `replay --otlp`: a replay folds far faster than
/// Skaffold sends events, so it gets more room than the live exporter's queue.
pub const REPLAY_SPAN_QUEUE: usize = 16_384;

/// The OTLP settings of `replay --otlp`: the live exporter's, from the `OTEL_*`
/// variables read through `env`, spans only. An error when no traces endpoint is
/// configured (or tracing is turned off), since spans are what `--otlp` asks for.
pub fn otlp_settings(
    env: impl Fn(&str) -> Option<String>,
    pipeline_name: Option<String>,
    user_name: Option<String>,
) -> Result<OtlpSettings, String> {
    let mut s = OtlpSettings::from_env(env, false, pipeline_name, user_name)?;
    if s.traces.is_none() {
        return Err("replay --otlp exports spans, but no OTLP traces endpoint is configured: set OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (and neither OTEL_TRACES_EXPORTER=none nor OTEL_SDK_DISABLED=true)".into());
    }
    s.metrics = None;
    // A log file is history by definition: export every iteration of it.
    s.skip_history = false;
    s.span_queue = s.span_queue.max(REPLAY_SPAN_QUEUE);
    Ok(s)
}

// === summary ===

/// One dev-loop iteration in the summary.
#[derive(Debug, Clone, Default)]
struct Row {
    kind: Option<LoopKind>,
    result: Option<Outcome>,
    total: Option<f64>,
    /// The first failure in the iteration: the phase that failed, and Skaffold's
    /// error code.
    failed: Option<(Phase, Option<String>)>,
    build: Option<f64>,
    deploy: Option<f64>,
    status_check: Option<f64>,
    sync: Option<f64>,
    slowest: Option<(String, f64)>,
}

/// Collects per-iteration figures from the transitions.
#[derive(Debug, Default)]
pub struct Summary {
    run: u32,
    rows: BTreeMap<(u32, i64), Row>,
    /// The iteration running now (failures belong to it).
    current: Option<(u32, i64)>,
}

fn add(slot: &mut Option<f64>, d: Option<f64>) {
    if let Some(d) = d {
        *slot = Some(slot.unwrap_or(0.0) + d);
    }
}

impl Summary {
    fn observe(&mut self, t: &Transition) {
        match t {
            Transition::RunStarted { .. } => {
                self.run += 1;
                self.current = None;
            }
            Transition::Started {
                phase: Phase::DevLoop,
                iteration: Some(i),
                ..
            } => {
                // Events before any MetaEvent are run 1 (a later one starts run 2).
                self.run = self.run.max(1);
                let key = (self.run, *i);
                self.rows.entry(key).or_default();
                self.current = Some(key);
            }
            Transition::Failure { phase, code, .. } => {
                if let Some(row) = self.current.and_then(|k| self.rows.get_mut(&k))
                    && row.failed.is_none()
                {
                    row.failed = Some((*phase, code.clone()));
                }
            }
            Transition::Finished(f) => {
                let Some(iteration) = f.iteration else {
                    return;
                };
                self.run = self.run.max(1);
                let run = self.run;
                let d = f.duration_seconds();
                let row = self.rows.entry((run, iteration)).or_default();
                match f.phase {
                    Phase::DevLoop => {
                        row.kind = f.loop_kind;
                        row.result = Some(f.outcome);
                        row.total = d;
                        if f.outcome == Outcome::Failure && row.failed.is_none() {
                            let code = f.error.as_ref().and_then(|e| e.code.clone());
                            row.failed = Some((Phase::DevLoop, code));
                        }
                    }
                    Phase::Build => {
                        add(&mut row.build, d);
                        if let (Some(d), Some(a)) = (d, &f.subject)
                            && row.slowest.as_ref().is_none_or(|(_, s)| d > *s)
                        {
                            row.slowest = Some((a.clone(), d));
                        }
                    }
                    Phase::Deploy => add(&mut row.deploy, d),
                    Phase::StatusCheck => add(&mut row.status_check, d),
                    Phase::FileSync => add(&mut row.sync, d),
                    _ => {}
                }
            }
            _ => {}
        }
    }

    /// The table: one row per (run, iteration), durations in seconds from Skaffold's
    /// timestamps (phase columns are sums over the iteration; `-` = did not run). A
    /// failed iteration names the phase that failed first and Skaffold's error code
    /// (`-`: Skaffold sent none).
    pub fn table(&self) -> String {
        let secs = |v: Option<f64>| v.map_or("-".to_owned(), |s| format!("{s:.3}"));
        let mut rows = vec![
            [
                "run",
                "iteration",
                "kind",
                "result",
                "failed_phase",
                "error_code",
                "total_s",
                "build_s",
                "deploy_s",
                "status_check_s",
                "sync_s",
                "slowest_artifact",
            ]
            .map(str::to_owned),
        ];
        for ((run, iteration), r) in &self.rows {
            rows.push([
                run.to_string(),
                iteration.to_string(),
                r.kind.map_or("-", LoopKind::as_str).to_owned(),
                r.result.map_or("in-progress", Outcome::as_str).to_owned(),
                r.failed
                    .as_ref()
                    .filter(|_| r.result == Some(Outcome::Failure))
                    .map_or("-", |(p, _)| p.as_str())
                    .to_owned(),
                r.failed
                    .as_ref()
                    .filter(|_| r.result == Some(Outcome::Failure))
                    .and_then(|(_, c)| c.clone())
                    .unwrap_or_else(|| "-".to_owned()),
                secs(r.total),
                secs(r.build),
                secs(r.deploy),
                secs(r.status_check),
                secs(r.sync),
                r.slowest
                    .as_ref()
                    .map_or("-".to_owned(), |(a, d)| format!("{a} ({d:.3}s)")),
            ]);
        }
        let widths: Vec<usize> = (0..rows[0].len())
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for r in &rows {
            let cells: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
        if self.rows.is_empty() {
            out.push_str("(no dev-loop iteration in the input)\n");
        }
        out
    }
}

struct SummaryObserver(Arc<Mutex<Summary>>);

impl TransitionObserver for SummaryObserver {
    fn observe(&mut self, _event: &Event, t: &Transition) {
        if let Ok(mut s) = self.0.lock() {
            s.observe(t);
        }
    }
}

// === impl Replayer ===

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

    /// Everything read so far is folded.
    pub fn caught_up(&self) {
        if let Some(p) = &self.progress {
            p.connected.store(true, Ordering::Release);
            p.set_caught_up();
        }
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

    /// Folds one record read from `file` at `line` (1-based).
    pub fn feed(&mut self, file: &str, line: u64, item: Item) {
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
                    self.diagnostics
                        .push(format!("{file}:{line}: not folded: {why}"));
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

    /// An input begins. Inputs are separate Skaffold sessions (a v1 file and its
    /// `.v2` sibling are one, but only one of them is folded, see
    /// [`select_inputs`]): after the first, the stream ends as at a disconnect and the
    /// input's first event starts a run of its own, so sessions never merge.
    pub fn begin_input(&mut self) {
        if self.inputs > 0 {
            self.pipeline.begin_session();
        }
        self.inputs += 1;
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

    /// Records an input that could not be opened, or not read to its end (`why`): the
    /// command fails (exit 2) after printing what was folded.
    pub fn unreadable(&mut self, why: String) {
        self.unreadable += 1;
        self.diagnose(why);
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

    /// Adds a note (e.g. an input that was skipped).
    pub fn note(&mut self, text: String) {
        self.diagnose(text);
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

// === inputs ===

/// Largest JSON document read whole (an input that is not JSON Lines: a JSON array,
/// a `{"records": [...]}` capture). Its records are folded one at a time; each is
/// held to the limits of `source::limits`.
pub const MAX_DOCUMENT_BYTES: u64 = 64 * 1024 * 1024;

type Reader = LineReader<Box<dyn BufRead + Send>>;

/// An opened input, its first line already read.
pub struct Input {
    name: String,
    lines: Reader,
    path: Option<PathBuf>,
    size: Option<u64>,
    hint: Option<Api>,
    kind: InputKind,
    /// The file as opened (`--follow` notices when it is replaced or rewritten).
    watch: Option<FileWatch>,
}

enum InputKind {
    Empty,
    /// JSON Lines; the first line is kept for the reader.
    Lines {
        /// Blank lines before the first one.
        blank: u64,
        first: Vec<u8>,
        read: Read,
        api: Option<Api>,
    },
    /// One document, read whole (records parsed one at a time).
    Document {
        text: Vec<u8>,
        api: Option<Api>,
        error: Option<String>,
    },
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Input")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn bytes_api(bytes: &[u8], hint: Option<Api>) -> Option<Api> {
    match item_from_bytes(bytes, hint)? {
        Item::Message {
            api,
            payload: Payload::V1(_) | Payload::V2(_) | Payload::SkippedLog(_),
        } => Some(api),
        _ => None,
    }
}

/// What identifies the file an input was opened from: `--follow` starts over when
/// the path names another file (rotated: deleted or moved, and created again), when
/// the file shrank (truncated), or when it changed without growing (rewritten in
/// place with the same size).
#[derive(Debug, Clone, PartialEq)]
struct FileWatch {
    identity: (u64, u64, Option<std::time::SystemTime>),
    /// Modification time seen at `seen_at` bytes read.
    mtime: Option<std::time::SystemTime>,
    seen_at: u64,
}

#[cfg(unix)]
fn identity(m: &std::fs::Metadata) -> (u64, u64, Option<std::time::SystemTime>) {
    use std::os::unix::fs::MetadataExt as _;
    (m.dev(), m.ino(), m.created().ok())
}

#[cfg(not(unix))]
fn identity(m: &std::fs::Metadata) -> (u64, u64, Option<std::time::SystemTime>) {
    (0, 0, m.created().ok())
}

impl FileWatch {
    fn of(m: &std::fs::Metadata) -> Self {
        Self {
            identity: identity(m),
            mtime: m.modified().ok(),
            seen_at: 0,
        }
    }

    /// Why the input must be read again from the start, if it must; `read` bytes of
    /// it have been read (all there were, a moment ago).
    fn changed(&mut self, path: &std::path::Path, read: u64) -> Option<&'static str> {
        // Gone (rotated, not yet created again): wait.
        let m = std::fs::metadata(path).ok()?;
        if identity(&m) != self.identity {
            return Some("replaced by a new file");
        }
        if m.len() < read {
            return Some("truncated");
        }
        let mtime = m.modified().ok();
        if m.len() == read && self.seen_at == read && mtime != self.mtime {
            return Some("rewritten");
        }
        self.mtime = mtime;
        self.seen_at = read;
        None
    }
}

impl Input {
    /// Opens `name` (`-` = stdin) and looks at its first line.
    pub fn open(name: &str) -> anyhow::Result<Self> {
        let (reader, path, size, watch): (Box<dyn BufRead + Send>, _, _, _) = if name == "-" {
            (Box::new(BufReader::new(std::io::stdin())), None, None, None)
        } else {
            let f = File::open(name).with_context(|| format!("cannot open {name}"))?;
            let meta = f
                .metadata()
                .with_context(|| format!("cannot open {name}"))?;
            if meta.is_dir() {
                anyhow::bail!("cannot read {name}: it is a directory");
            }
            let size = meta.is_file().then_some(meta.len());
            (
                Box::new(BufReader::with_capacity(256 * 1024, f)),
                Some(PathBuf::from(name)),
                size,
                Some(FileWatch::of(&meta)),
            )
        };
        let mut input = Self::from_reader(name, reader, path, size)?;
        input.watch = watch;
        Ok(input)
    }

    /// An input over any reader (tests).
    pub fn from_reader(
        name: &str,
        reader: Box<dyn BufRead + Send>,
        path: Option<PathBuf>,
        size: Option<u64>,
    ) -> anyhow::Result<Self> {
        let hint = hint_from_name(name);
        let mut lines = LineReader::new(reader, MAX_JSON_BYTES);
        let mut first = Vec::new();
        let mut blank = 0u64;
        let read = loop {
            first.clear();
            let read = lines
                .read(&mut first)
                .with_context(|| format!("reading {name}"))?;
            if read == Read::Line && first.trim_ascii().is_empty() {
                blank += 1;
                continue;
            }
            break read;
        };
        // An over-long line the input ended in is an over-long line.
        let read = match (read, lines.take_unfinished()) {
            (Read::End, Some(n)) => Read::TooLong(n),
            (read, _) => read,
        };
        let trimmed = first.trim_ascii();
        let kind = if read == Read::End && trimmed.is_empty() {
            InputKind::Empty
        } else if matches!(read, Read::TooLong(_))
            || (trimmed.starts_with(b"{")
                && trimmed.ends_with(b"}")
                && parse_json(trimmed)
                    .map_or(true, |v| !v.get("records").is_some_and(Value::is_array)))
        {
            // JSON Lines: one record per line (a malformed or over-long first line is
            // reported as such, line by line).
            let api = bytes_api(trimmed, hint);
            InputKind::Lines {
                blank,
                first,
                read,
                api,
            }
        } else {
            // A document spread over lines (or a JSON array): read it whole.
            let mut text = first;
            let limit = MAX_DOCUMENT_BYTES.saturating_sub(text.len() as u64) + 1;
            lines
                .get_mut()
                .take(limit)
                .read_to_end(&mut text)
                .with_context(|| format!("reading {name}"))?;
            if text.len() as u64 > MAX_DOCUMENT_BYTES {
                InputKind::Document {
                    text: Vec::new(),
                    api: None,
                    error: Some(format!(
                        "{name}: malformed: a JSON document over {MAX_DOCUMENT_BYTES} bytes (write one record per line: JSON Lines have no size limit)"
                    )),
                }
            } else {
                let mut api = None;
                let _ = each_record(&text, |rec| {
                    if api.is_none() {
                        api = bytes_api(rec, hint);
                    }
                });
                InputKind::Document {
                    text,
                    api,
                    error: None,
                }
            }
        };
        Ok(Self {
            name: name.to_owned(),
            lines,
            path,
            size,
            hint,
            kind,
            watch: None,
        })
    }

    /// The API of the input's first decodable record.
    pub fn api(&self) -> Option<Api> {
        match &self.kind {
            InputKind::Lines { api, .. } | InputKind::Document { api, .. } => *api,
            InputKind::Empty => None,
        }
    }

    /// Feeds every record to `r`. With `follow`, keeps reading as the file grows
    /// until `stop` is set (and starts over when the file is replaced, truncated or
    /// rewritten). `progress` draws a bar on stderr. An error means the input could
    /// not be read from some line on; what was read before is folded.
    pub fn feed(
        self,
        r: &mut Replayer,
        follow: bool,
        stop: &AtomicBool,
        progress: bool,
    ) -> anyhow::Result<()> {
        let Input {
            name,
            mut lines,
            path,
            size,
            hint,
            kind,
            mut watch,
        } = self;
        r.begin_input();
        let (mut line_no, mut buf, first_read) = match kind {
            InputKind::Empty if !follow => return Ok(()),
            InputKind::Document { text, error, .. } => {
                if let Some(e) = error {
                    r.malformed += 1;
                    r.diagnose(e);
                }
                let mut i = 0u64;
                let parsed = each_record(&text, |rec| {
                    i += 1;
                    if let Some(item) = item_from_bytes(rec, hint) {
                        r.feed(&name, i, item);
                    }
                });
                if let Err(e) = parsed {
                    r.malformed += 1;
                    r.diagnose(format!(
                        "{name}:{}:{}: malformed: neither JSON Lines nor a JSON document: {e}",
                        e.line(),
                        e.column()
                    ));
                }
                return Ok(());
            }
            InputKind::Empty => (0, Vec::new(), None),
            InputKind::Lines {
                blank, first, read, ..
            } => (blank, first, Some(read)),
        };
        let bar = (progress && !follow)
            .then_some(size)
            .flatten()
            .filter(|n| *n > 0)
            .map(|n| {
                let bar = indicatif::ProgressBar::new(n);
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{msg} {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                bar.set_message(name.clone());
                bar
            });
        let mut offset = 0u64;
        let mut next = first_read;
        loop {
            let read = match next.take() {
                Some(read) => read,
                None => lines
                    .read(&mut buf)
                    .with_context(|| format!("reading {name}:{}", line_no + 1))?,
            };
            match read {
                Read::Line => {
                    line_no += 1;
                    offset += buf.len() as u64;
                    if let Some(item) = item_from_bytes(&buf, hint) {
                        r.feed(&name, line_no, item);
                    }
                    buf.clear();
                    if let Some(b) = &bar
                        && line_no.is_multiple_of(2048)
                    {
                        b.set_position(offset);
                    }
                }
                Read::TooLong(n) => {
                    line_no += 1;
                    offset += n;
                    r.feed(&name, line_no, oversize_line(hint, n));
                }
                Read::End => {
                    if follow {
                        r.caught_up();
                    }
                    if !follow || stop.load(Ordering::Acquire) {
                        if !buf.is_empty() {
                            line_no += 1;
                            if let Some(item) = item_from_bytes(&buf, hint) {
                                r.feed(&name, line_no, item);
                            }
                        }
                        if let Some(n) = lines.take_unfinished() {
                            line_no += 1;
                            r.feed(&name, line_no, oversize_line(hint, n));
                        }
                        break;
                    }
                    // Replaced (rotated), truncated or rewritten? Start over.
                    let pending = offset + buf.len() as u64;
                    if let (Some(p), Some(w)) = (&path, watch.as_mut())
                        && let Some(why) = w.changed(p, pending)
                        && let Ok(f) = File::open(p)
                        && let Ok(meta) = f.metadata()
                    {
                        r.note(format!("{name}: {why}; reading it again from the start"));
                        lines = LineReader::new(Box::new(BufReader::new(f)), MAX_JSON_BYTES);
                        watch = Some(FileWatch::of(&meta));
                        offset = 0;
                        line_no = 0;
                        buf.clear();
                        continue;
                    }
                    std::thread::sleep(FOLLOW_POLL);
                }
            }
        }
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        Ok(())
    }
}

/// How often `--follow` looks for more lines (and for a replaced file).
pub const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// Opens the inputs and drops each v1 file whose own `.v2` sibling is given too
/// (Skaffold writes every event to both; folding both would count everything twice).
/// An input that cannot be opened or read is reported (`r.unreadable()`), and the
/// others are still folded.
pub fn open_inputs(names: &[String], r: &mut Replayer) -> Vec<Input> {
    let mut inputs = Vec::new();
    for name in names {
        match Input::open(name) {
            Ok(i) => inputs.push(i),
            Err(e) => r.unreadable(format!("{e:#}")),
        }
    }
    select_inputs(inputs, r)
}

/// Drops an input `FILE` when `FILE.v2` is among the inputs (see [`open_inputs`]):
/// the two are one session, written twice. Every other input is kept, and folded
/// as a session of its own ([`Replayer::begin_input`]).
pub fn select_inputs(inputs: Vec<Input>, r: &mut Replayer) -> Vec<Input> {
    let sibling_given = |i: &Input| {
        i.path.is_some()
            && i.api() != Some(Api::V2)
            && inputs.iter().any(|o| {
                o.api() != Some(Api::V1)
                    && o.path.is_some()
                    && same_file(&o.name, &format!("{}.v2", i.name))
            })
    };
    let skip: Vec<bool> = inputs.iter().map(sibling_given).collect();
    inputs
        .into_iter()
        .zip(skip)
        .filter_map(|(i, skip)| {
            if skip {
                r.note(format!(
                    "{}: skipped: {}.v2 is given too (Skaffold writes every event to both files; only the .v2 one is folded)",
                    i.name, i.name
                ));
                return None;
            }
            Some(i)
        })
        .collect()
}

/// Whether two names are the same file (the same path, or the same file reached
/// through different paths).
fn same_file(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Runs `replay`: folds the inputs, prints, optionally serves. `setup` may add
/// observers to the pipeline first.
pub async fn run(
    args: ReplayArgs,
    setup: impl FnOnce(&mut Pipeline) + Send + 'static,
) -> anyhow::Result<ExitCode> {
    let buckets = args.metrics.buckets()?;
    let max_label_values = args.metrics.max_label_values()?;
    if args.follow && args.files.len() != 1 {
        anyhow::bail!("--follow reads one input; got {}", args.files.len());
    }
    let mut replayer = if args.otlp {
        let otlp = otlp_settings(
            |k| std::env::var(k).ok(),
            args.pipeline_name.clone(),
            args.user_name.clone(),
        )
        .map_err(anyhow::Error::msg)?;
        Replayer::with_otlp(&buckets, max_label_values, &otlp)?
    } else {
        Replayer::new(&buckets, max_label_values)
    };
    setup(replayer.pipeline_mut());
    let inputs = open_inputs(&args.files, &mut replayer);

    let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
    let mut server = None;
    if args.serve {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {} (--listen)", args.listen))?;
        let addr = listener.local_addr()?;
        let progress = Arc::new(Progress::default());
        progress.connected.store(true, Ordering::Release);
        replayer.set_progress(progress.clone());
        let shared = Arc::new(crate::server::http::Shared {
            registry: replayer.registry(),
            progress,
            upstream: None,
            wait_for_history: false,
        });
        server = Some(tokio::spawn(crate::server::http::serve(
            listener,
            shared,
            shutdown_rx,
        )));
        eprintln!("replay: serving http://{addr}/metrics");
    }

    let stop = Arc::new(AtomicBool::new(false));
    if args.follow {
        let stop = stop.clone();
        tokio::spawn(async move {
            crate::signal::shutdown_signal().await;
            stop.store(true, Ordering::Release);
        });
    }
    let progress = std::io::stderr().is_terminal();
    let follow = args.follow;
    let stop2 = stop.clone();
    let mut replayer = tokio::task::spawn_blocking(move || {
        let mut replayer = replayer;
        for input in inputs {
            if let Err(e) = input.feed(&mut replayer, follow, &stop2, progress) {
                replayer.unreadable(format!("{e:#}"));
            }
        }
        replayer
    })
    .await?;
    // What was read is folded (and printed) even when an input failed midway.
    replayer.finish().await;
    replayer.caught_up();

    for d in replayer.diagnostics() {
        eprintln!("{d}");
    }
    if replayer.diagnostics_omitted() > 0 {
        eprintln!(
            "replay: {} more notes not shown",
            replayer.diagnostics_omitted()
        );
    }
    eprintln!(
        "replay: {} records, {} events folded, {} not folded (see the notes), {} malformed, {} rejected",
        replayer.records(),
        replayer.folded(),
        replayer.skipped(),
        replayer.malformed(),
        replayer.rejected()
    );
    let text = replayer.metrics_text(Format::Prometheus);
    let spans_lost = if args.otlp {
        let get = |name: &str| sample(&text, name).unwrap_or(0.0);
        let dropped = get("skaffold_exporter_spans_dropped_total");
        let failed = get("skaffold_exporter_otlp_export_errors_total{signal=\"traces\"}");
        eprintln!(
            "replay: {} spans exported over OTLP",
            get("skaffold_exporter_spans_exported_total")
        );
        if dropped > 0.0 || failed > 0.0 {
            eprintln!(
                "replay: {dropped} spans dropped (OTLP export queue full), {failed} OTLP export requests failed"
            );
        }
        dropped > 0.0 || failed > 0.0
    } else {
        false
    };
    write_stdout(replayer.report(args.format, args.output).as_bytes())?;
    if replayer.unreadable > 0 {
        eprintln!(
            "replay: {} input(s) could not be read (whole or in part); what was read is folded above",
            replayer.unreadable
        );
        return Ok(ExitCode::from(2));
    }

    if let Some(server) = server {
        if !stop.load(Ordering::Acquire) {
            eprintln!("replay: still serving /metrics (ctrl-c to stop)");
            crate::signal::shutdown_signal().await;
        }
        let _ = shutdown.send(true);
        let _ = server.await;
    }
    Ok(
        if replayer.malformed() > 0 || replayer.rejected() > 0 || spans_lost {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        },
    )
}

/// Writes the report to stdout. A reader that went away (`| head`) ends the output
/// quietly, as command-line tools do; any other failure (a full disk, a closed
/// stdout) is an error, so no metrics are lost silently.
pub fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    match write_all_to_stdout(bytes) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("cannot write the report to stdout"),
    }
}

/// Whether the process started with stdout closed (see [`guard_stdio`]).
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Call first thing in `main`: notes whether the process was started with stdout
/// closed, so that a report written to it fails (exit 2) instead of vanishing. Rust
/// puts `/dev/null` on a standard descriptor the process started without (opened
/// read-write, which a shell's `>/dev/null` never does): that is how it is told
/// (Linux).
pub fn guard_stdio() {
    #[cfg(target_os = "linux")]
    {
        let null = std::fs::read_link("/proc/self/fd/1")
            .is_ok_and(|p| p == std::path::Path::new("/dev/null"));
        // `flags:` in octal; the access mode is its low two bits (2 = O_RDWR).
        let read_write = std::fs::read_to_string("/proc/self/fdinfo/1").is_ok_and(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("flags:"))
                .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
                .is_some_and(|f| f & 3 == 2)
        });
        STDOUT_CLOSED.store(null && read_write, Ordering::Release);
    }
}

fn write_all_to_stdout(bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    if STDOUT_CLOSED.load(Ordering::Acquire) {
        return Err(std::io::Error::other("stdout is closed"));
    }
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()
}

/// The value of the sample `series` (name and labels exactly as printed) in
/// Prometheus text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::DEFAULT_BUCKETS;
    use std::collections::HashMap;

    fn otlp(vars: &[(&str, &str)]) -> Result<OtlpSettings, String> {
        let m: HashMap<&str, &str> = vars.iter().copied().collect();
        otlp_settings(
            |k| m.get(k).map(|v| (*v).to_owned()),
            Some("shop".into()),
            None,
        )
    }

    #[test]
    fn otlp_is_the_live_exporters_spans_only() {
        let s = otlp(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_METRICS_EXPORTER", "otlp"),
        ])
        .unwrap();
        assert_eq!(s.traces.unwrap().url, "http://c:4317");
        assert!(s.metrics.is_none(), "replay pushes no metrics");
        assert_eq!(s.pipeline_name.as_deref(), Some("shop"));
        assert!(s.span_queue >= REPLAY_SPAN_QUEUE);
        for off in [
            &[][..],
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_TRACES_EXPORTER", "none"),
            ][..],
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_SDK_DISABLED", "true"),
            ][..],
        ] {
            let e = otlp(off).unwrap_err();
            assert!(e.contains("OTEL_EXPORTER_OTLP_ENDPOINT"), "{off:?}: {e}");
        }
        assert!(otlp(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon")]).is_err());
    }

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
    fn ready_once_caught_up() {
        let mut r = Replayer::new(&DEFAULT_BUCKETS, 200);
        let p = Arc::new(Progress::default());
        r.set_progress(p.clone());
        assert!(!p.ready());
        r.caught_up();
        assert!(p.ready(), "an empty input is folded too");
    }
}
