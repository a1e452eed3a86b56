//! The instruments the OTLP push records into: [`OtelRecorder`], one OTel instrument
//! for every Skaffold family of the contract (`sink::contract::SPECS`), and
//! [`RunRecorder`], which gives each Skaffold run its own set of them.

use std::collections::{HashMap, HashSet};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Gauge, Histogram, Meter};

use super::push::MetricsPush;
use crate::core::Nanos;
use crate::sink::contract::{Exemplar, Instrument, Kind, Labels, Recorder, SPECS};
use crate::sink::mapping::Mapping;

/// One OTel instrument.
#[derive(Debug)]
enum Otel {
    Counter(Counter<u64>),
    Histogram(Histogram<f64>),
    Gauge(Gauge<i64>),
}

/// OTel instruments for every instrument of the contract.
#[derive(Debug)]
pub struct OtelRecorder {
    /// By [`Instrument`].
    instruments: Vec<Otel>,
    /// Label sets set on each labelled gauge (for `clear`).
    gauge_series: HashMap<Instrument, HashSet<Vec<KeyValue>>>,
}

/// The attributes of an update (see `Spec::label_pairs`: an empty value leaves its
/// attribute out, as on `/metrics`).
fn attrs(i: Instrument, labels: Labels<'_>) -> Vec<KeyValue> {
    i.spec()
        .label_pairs(labels)
        .map(|(k, v)| KeyValue::new(k, v.to_owned()))
        .collect()
}

impl OtelRecorder {
    /// Creates the instruments on `meter`, histograms with `buckets`.
    pub fn new(meter: &Meter, buckets: &[f64]) -> Self {
        let instruments = SPECS
            .iter()
            .map(|s| {
                let name = s.otel_name.unwrap_or(s.name);
                match s.kind {
                    Kind::Counter => Otel::Counter(
                        meter
                            .u64_counter(name)
                            .with_description(s.help)
                            .with_unit(s.otel_unit)
                            .build(),
                    ),
                    Kind::Histogram => Otel::Histogram(
                        meter
                            .f64_histogram(name)
                            .with_description(s.help)
                            .with_unit(s.otel_unit)
                            .with_boundaries(buckets.to_vec())
                            .build(),
                    ),
                    Kind::Gauge | Kind::PlainGauge => Otel::Gauge(
                        meter
                            .i64_gauge(name)
                            .with_description(s.help)
                            .with_unit(s.otel_unit)
                            .build(),
                    ),
                }
            })
            .collect();
        OtelRecorder {
            instruments,
            gauge_series: HashMap::new(),
        }
    }
}

impl Recorder for OtelRecorder {
    fn add(&mut self, i: Instrument, labels: Labels<'_>, by: u64) {
        if let Otel::Counter(c) = &self.instruments[i as usize] {
            c.add(by, &attrs(i, labels));
        }
    }

    fn observe(&mut self, i: Instrument, labels: Labels<'_>, value: f64, _ex: Option<&Exemplar>) {
        if let Otel::Histogram(h) = &self.instruments[i as usize] {
            h.record(value, &attrs(i, labels));
        }
    }

    fn set(&mut self, i: Instrument, labels: Labels<'_>, value: i64) {
        if let Otel::Gauge(g) = &self.instruments[i as usize] {
            let a = attrs(i, labels);
            g.record(value, &a);
            if !a.is_empty() {
                let series = self.gauge_series.entry(i).or_default();
                if series.len() < 10_000 {
                    series.insert(a);
                }
            }
        }
    }

    fn clear(&mut self, i: Instrument) {
        if let (Otel::Gauge(g), Some(series)) =
            (&self.instruments[i as usize], self.gauge_series.get_mut(&i))
        {
            for a in series.drain() {
                g.record(0, &a);
            }
        }
    }
}

/// The [`Recorder`] of the OTLP push: the updates of each Skaffold run go to that
/// run's own instruments, which start at zero when the run starts.
#[derive(Debug)]
pub struct RunRecorder {
    push: MetricsPush,
    buckets: Vec<f64>,
    current: Option<OtelRecorder>,
    /// The failure streaks, which go on across runs (as on `/metrics`).
    carried: HashMap<(Instrument, Vec<String>), i64>,
}

impl RunRecorder {
    /// A recorder feeding `push` (histograms with `buckets`).
    pub(super) fn new(push: MetricsPush, buckets: &[f64]) -> Self {
        RunRecorder {
            push,
            buckets: buckets.to_vec(),
            current: None,
            carried: HashMap::new(),
        }
    }

    /// Starts the instruments of `run` (`None`: updates before any run).
    fn start(&mut self, run: Option<Nanos>) {
        let Some((provider, meter)) = self.push.provider(run) else {
            self.current = None;
            return;
        };
        let mut r = OtelRecorder::new(&meter, &self.buckets);
        Mapping::precreate(&mut r);
        for ((i, labels), v) in &self.carried {
            let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
            r.set(*i, &labels, *v);
        }
        self.current = Some(r);
        self.push.replace(provider, run.unwrap_or(Nanos::MAX));
    }

    /// The current run's instruments, started if an update arrives before any run.
    fn current(&mut self) -> Option<&mut OtelRecorder> {
        if self.current.is_none() {
            self.start(None);
        }
        self.current.as_mut()
    }
}

impl Recorder for RunRecorder {
    fn add(&mut self, i: Instrument, labels: Labels<'_>, by: u64) {
        // Creating a series at zero does not start a run of its own.
        if by == 0 && self.current.is_none() {
            return;
        }
        if let Some(r) = self.current() {
            r.add(i, labels, by);
        }
    }

    fn observe(&mut self, i: Instrument, labels: Labels<'_>, value: f64, ex: Option<&Exemplar>) {
        if let Some(r) = self.current() {
            r.observe(i, labels, value, ex);
        }
    }

    fn set(&mut self, i: Instrument, labels: Labels<'_>, value: i64) {
        if matches!(i, Instrument::DeployStreak | Instrument::BuildStreak) {
            let key = (i, labels.iter().map(|l| (*l).to_owned()).collect());
            self.carried.insert(key, value);
        }
        if let Some(r) = &mut self.current {
            r.set(i, labels, value);
        }
    }

    fn clear(&mut self, i: Instrument) {
        if let Some(r) = &mut self.current {
            r.clear(i);
        }
    }

    fn run_started(&mut self, at: Nanos) {
        self.start(Some(at));
    }
}
