//! The exporter's own metrics in the OTLP push: observable instruments, built from
//! the contract's table (`sink::contract::OWN`), that read the values `/metrics`
//! shows ([`SelfMetrics`], [`OtlpStats`]): the gauges as they are, the counters as
//! counted inside one Skaffold run ([`SelfWindow`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use opentelemetry::KeyValue;
use opentelemetry::metrics::Meter;

use crate::sink::SelfMetrics;
use crate::sink::contract::{Kind, OWN, Own};
use crate::sink::otlp::{OtlpStats, SIGNALS};

/// The exporter's own counters, by (family, label value; "" when the family has no
/// label).
pub type Counts = HashMap<(Own, &'static str), u64>;

/// Reads every self-metric counter that exists (as `/metrics` shows it).
fn read_counts(own: &SelfMetrics, stats: &OtlpStats) -> Counts {
    let mut c = Counts::new();
    c.insert((Own::Reconnects, ""), own.reconnects.get());
    c.insert((Own::ReplayedSkipped, ""), own.replayed_skipped.get());
    c.insert((Own::FoldStalls, ""), own.fold_stalls.get());
    c.insert((Own::SpansExported, ""), stats.spans_exported.get());
    c.insert((Own::SpansDropped, ""), stats.spans_dropped.get());
    for signal in SIGNALS {
        let label = Own::OtlpExportErrors.label(signal);
        let n = stats.export_errors.get_or_create(&label).get();
        c.insert((Own::OtlpExportErrors, signal), n);
    }
    // The labelled families: their label values are bounded, known sets, so each
    // existing series is read with `Family::get`.
    for (family, series, values) in own.labelled() {
        for value in values {
            if let Some(n) = series.get(&family.label(value)) {
                c.insert((family, value), n.get());
            }
        }
    }
    c
}

/// The exporter's own counters as one run's series show them: what happened from
/// the run's start to its end (frozen then), so the runs' series add up to the
/// process's counts and no event is counted in two of them.
#[derive(Debug, Clone)]
pub struct SelfWindow(Arc<Mutex<WindowState>>);

#[derive(Debug)]
struct WindowState {
    own: SelfMetrics,
    stats: OtlpStats,
    start: Counts,
    end: Option<Counts>,
}

/// `c` without the MetaEvent being folded: the fold counts an event
/// (`skaffold_exporter_events_total`) before it applies it, so when a run starts its
/// MetaEvent is already counted, and it belongs to the new run.
fn before_meta(mut c: Counts) -> Counts {
    if let Some(n) = c.get_mut(&(Own::Events, "meta")) {
        *n = n.saturating_sub(1);
    }
    c
}

impl SelfWindow {
    /// A window opening now; `at_run_start`: while the fold handles the run's
    /// MetaEvent.
    pub fn open(own: &SelfMetrics, stats: &OtlpStats, at_run_start: bool) -> Self {
        let mut start = read_counts(own, stats);
        if at_run_start {
            start = before_meta(start);
        }
        SelfWindow(Arc::new(Mutex::new(WindowState {
            own: own.clone(),
            stats: stats.clone(),
            start,
            end: None,
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WindowState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Closes the window when the next run starts (while the fold handles its
    /// MetaEvent): later reads give the counts of now.
    pub fn close(&self) {
        let mut st = self.lock();
        if st.end.is_none() {
            st.end = Some(before_meta(read_counts(&st.own, &st.stats)));
        }
    }

    /// Every counter that exists, as counted inside the window.
    pub fn counts(&self) -> Counts {
        let st = self.lock();
        let now = match &st.end {
            Some(end) => end.clone(),
            None => read_counts(&st.own, &st.stats),
        };
        now.into_iter()
            .map(|(key, n)| {
                let before = st.start.get(&key).copied().unwrap_or(0);
                (key, n.saturating_sub(before))
            })
            .collect()
    }
}

/// Mirrors the exporter's own metrics that OTLP carries (those of the contract's
/// table with an OTLP name, except the ones `stats` does not count) as observable
/// instruments: the gauges as `/metrics` shows them, the counters as counted inside
/// `window` (one run).
pub fn mirror_self_metrics(meter: &Meter, own: &SelfMetrics, window: &SelfWindow) {
    for (&family, s) in Own::ALL.iter().zip(OWN) {
        let Some(name) = s.otel_name else {
            continue;
        };
        let o = own.clone();
        match (s.kind, family) {
            (Kind::Counter, _) => {
                let w = window.clone();
                let key = s.labels.first().copied();
                let _ = meter
                    .u64_observable_counter(name)
                    .with_description(s.help)
                    .with_unit(s.otel_unit)
                    .with_callback(move |obs| {
                        for ((f, value), count) in w.counts() {
                            if f == family {
                                let attrs: Vec<KeyValue> =
                                    key.map(|k| KeyValue::new(k, value)).into_iter().collect();
                                obs.observe(count, &attrs);
                            }
                        }
                    })
                    .build();
            }
            (_, Own::LastEventTimestamp) => {
                let _ = meter
                    .f64_observable_gauge(name)
                    .with_description(s.help)
                    .with_unit(s.otel_unit)
                    .with_callback(move |obs| obs.observe(o.last_event_timestamp.get(), &[]))
                    .build();
            }
            (_, Own::Connected | Own::FoldStalled) => {
                let g = if family == Own::Connected {
                    o.connected
                } else {
                    o.fold_stalled
                };
                let _ = meter
                    .i64_observable_gauge(name)
                    .with_description(s.help)
                    .with_unit(s.otel_unit)
                    .with_callback(move |obs| obs.observe(g.get(), &[]))
                    .build();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    fn event(own: &SelfMetrics, event: &'static str) -> Counter {
        own.events.get_or_create(&Own::Events.label(event)).clone()
    }

    fn meta(own: &SelfMetrics) {
        event(own, "meta").inc();
    }

    #[test]
    fn each_run_counts_the_exporters_own_counters_from_its_meta_event_to_the_next() {
        let own = SelfMetrics::default();
        let stats = OtlpStats::default();
        let build = || event(&own, "build").inc();
        // Run 1: its MetaEvent is counted by the fold just before the run starts.
        meta(&own);
        let run1 = SelfWindow::open(&own, &stats, true);
        build();
        build();
        stats.spans_exported.inc_by(5);
        // Run 2 starts: run 1 ends with the counts of now, without run 2's MetaEvent.
        meta(&own);
        run1.close();
        let run2 = SelfWindow::open(&own, &stats, true);
        build();
        stats.spans_exported.inc_by(3);
        own.reconnects.inc();
        let key = |n, l| (n, l);
        let (a, b) = (run1.counts(), run2.counts());
        assert_eq!(a[&key(Own::Events, "meta")], 1);
        assert_eq!(a[&key(Own::Events, "build")], 2);
        assert_eq!(a[&key(Own::SpansExported, "")], 5);
        assert_eq!(a[&key(Own::Reconnects, "")], 0);
        assert_eq!(b[&key(Own::Events, "meta")], 1);
        assert_eq!(b[&key(Own::Events, "build")], 1);
        assert_eq!(b[&key(Own::SpansExported, "")], 3);
        assert_eq!(b[&key(Own::Reconnects, "")], 1);
        // The runs add up to what /metrics shows for the process.
        let process = read_counts(&own, &stats);
        for (k, n) in &process {
            assert_eq!(a.get(k).unwrap_or(&0) + b.get(k).unwrap_or(&0), *n, "{k:?}");
        }
    }
}
