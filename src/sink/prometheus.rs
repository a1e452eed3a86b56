//! The Prometheus registry (`/metrics`): [`PromRecorder`] registers the contract's
//! Skaffold families (`sink::contract::SPECS`) and records the updates of
//! `sink::mapping` into them, with trace exemplars on histograms;
//! [`register`] registers the exporter's own families under the contract's names.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Metric, Registry, Unit};

use super::contract::{Exemplar, Instrument, Kind, Labels, Own, Recorder, SPECS, Spec};

/// Exemplar labels on `/metrics` histograms (OpenMetrics only).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TraceLabel {
    /// The trace's id, 32 hex digits.
    pub trace_id: String,
}

type LabelSet = Vec<(&'static str, String)>;
type Hist = HistogramWithExemplars<TraceLabel>;

/// Creates histograms with the configured buckets.
#[derive(Clone, Debug)]
pub struct Buckets(Arc<[f64]>);

impl MetricConstructor<Hist> for Buckets {
    fn new_metric(&self) -> Hist {
        HistogramWithExemplars::new(self.0.iter().copied())
    }
}

#[derive(Debug)]
enum Slot {
    Counter(Family<LabelSet, Counter>),
    Histogram(Family<LabelSet, Hist, Buckets>),
    Gauge(Family<LabelSet, Gauge>),
    Plain(Gauge),
}

/// The Prometheus registry as a [`Recorder`].
#[derive(Debug)]
pub struct PromRecorder {
    slots: Vec<Slot>,
    /// Series already created, by instrument and label values: an update then costs a
    /// hash of the values, not a label set built and hashed into the family (the fold
    /// records every transition).
    series: rustc_hash::FxHashMap<u64, (usize, Box<[String]>, Series)>,
}

/// A handle on one series (shares its value with the family's).
#[derive(Debug, Clone)]
enum Series {
    Counter(Counter),
    Histogram(Hist),
    Gauge(Gauge),
}

/// The key of a series in [`PromRecorder::series`].
fn series_key(i: Instrument, labels: Labels<'_>) -> u64 {
    // Each value's hash seeds the next one's: no hasher state to set up (XXH3's
    // streaming hasher allocates its buffers on every `with_seed`, which cost more
    // than the rest of an update), and `["ab", "c"]` differs from `["a", "bc"]`.
    labels.iter().fold(i as u64, |seed, l| {
        twox_hash::XxHash3_64::oneshot_with_seed(seed, l.as_bytes())
    })
}

/// The label set of an update (see [`Spec::label_pairs`]).
fn label_set(i: Instrument, values: Labels<'_>) -> LabelSet {
    i.spec()
        .label_pairs(values)
        .map(|(n, v)| (n, v.to_owned()))
        .collect()
}

/// Registers `metric` in `r` as the contract's family `s` (with the unit `seconds`
/// where the family is in seconds).
pub fn register_spec(r: &mut Registry, s: &Spec, metric: impl Metric) {
    if s.is_seconds() {
        r.register_with_unit(s.name, s.help, Unit::Seconds, metric);
    } else {
        r.register(s.name, s.help, metric);
    }
}

/// Registers `metric` in `r` as the exporter's own family `own`.
pub fn register(r: &mut Registry, own: Own, metric: impl Metric) {
    register_spec(r, own.spec(), metric);
}

impl PromRecorder {
    /// Registers every instrument of [`SPECS`] in `r`.
    pub fn register(r: &mut Registry, buckets: &[f64]) -> Self {
        let b = Buckets(buckets.into());
        let slots = SPECS
            .iter()
            .map(|s| {
                let slot = match s.kind {
                    Kind::Counter => Slot::Counter(Family::default()),
                    Kind::Histogram => Slot::Histogram(Family::new_with_constructor(b.clone())),
                    Kind::Gauge => Slot::Gauge(Family::default()),
                    Kind::PlainGauge => Slot::Plain(Gauge::default()),
                };
                match &slot {
                    Slot::Counter(f) => register_spec(r, s, f.clone()),
                    Slot::Histogram(f) => register_spec(r, s, f.clone()),
                    Slot::Gauge(f) => register_spec(r, s, f.clone()),
                    Slot::Plain(g) => register_spec(r, s, g.clone()),
                }
                slot
            })
            .collect();
        Self {
            slots,
            series: rustc_hash::FxHashMap::default(),
        }
    }

    /// Updates the series of `i` with `labels` (created in its family if new).
    fn update(&mut self, i: Instrument, labels: Labels<'_>, f: impl FnOnce(&Series)) {
        let key = series_key(i, labels);
        let fresh = match self.series.get(&key) {
            Some((n, values, s))
                if *n == i as usize
                    && values.len() == labels.len()
                    && values.iter().zip(labels).all(|(a, b)| a == b) =>
            {
                return f(s);
            }
            // A hash shared with other labels (never seen in practice): not cached.
            Some(_) => false,
            None => true,
        };
        let set = label_set(i, labels);
        let s = match &self.slots[i as usize] {
            Slot::Counter(f) => Series::Counter(f.get_or_create(&set).clone()),
            Slot::Histogram(f) => Series::Histogram(f.get_or_create(&set).clone()),
            Slot::Gauge(f) => Series::Gauge(f.get_or_create(&set).clone()),
            Slot::Plain(_) => return,
        };
        f(&s);
        if fresh {
            let values = labels.iter().map(|l| (*l).to_owned()).collect();
            self.series.insert(key, (i as usize, values, s));
        }
    }
}

impl Recorder for PromRecorder {
    fn add(&mut self, i: Instrument, labels: Labels<'_>, by: u64) {
        self.update(i, labels, |s| {
            if let Series::Counter(c) = s {
                c.inc_by(by);
            }
        });
    }

    fn observe(&mut self, i: Instrument, labels: Labels<'_>, value: f64, ex: Option<&Exemplar>) {
        self.update(i, labels, |s| {
            if let Series::Histogram(h) = s {
                let ex = ex.map(|e| {
                    (
                        TraceLabel {
                            trace_id: e.trace_id.clone(),
                        },
                        e.at,
                    )
                });
                let (label, at) = match ex {
                    Some((l, at)) => (Some(l), Some(at)),
                    None => (None, None),
                };
                h.observe(value, label, at);
            }
        });
    }

    fn set(&mut self, i: Instrument, labels: Labels<'_>, value: i64) {
        if let Slot::Plain(g) = &self.slots[i as usize] {
            g.set(value);
            return;
        }
        self.update(i, labels, |s| {
            if let Series::Gauge(g) = s {
                g.set(value);
            }
        });
    }

    fn clear(&mut self, i: Instrument) {
        if let Slot::Gauge(f) = &self.slots[i as usize] {
            f.clear();
            // Handles on removed series would update nothing that is exposed.
            self.series.retain(|_, (n, _, _)| *n != i as usize);
        }
    }
}
