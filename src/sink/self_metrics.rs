//! The exporter's own health on `/metrics` ([`SelfMetrics`]): the values of the
//! `skaffold_exporter_*` families of the contract (`sink::contract::Own`) that the
//! reader and the fold update (connection, reconnects, events folded, invalid events
//! by reason, the fold's queue, label caps, skipped log events), registered from the
//! contract's table. The OTLP push mirrors these same values
//! (`sink::otlp_metrics`).

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::contract::{Own, OwnLabel};
use super::prometheus::register;
use crate::core::{LogKind, ReaderHealth, Reason};

/// The label values of `skaffold_exporter_label_values_folded_total{label}`: the
/// capped labels.
pub const CAPPED_LABELS: [&str; 3] = ["artifact", "image", "resource"];

/// The exporter's own health, shared between the reader and the fold.
#[derive(Clone, Debug, Default)]
pub struct SelfMetrics {
    /// 1 while subscribed to Skaffold's event stream.
    pub connected: Gauge,
    /// Re-subscriptions after the first one.
    pub reconnects: Counter,
    /// Events folded, by type.
    pub events: Family<OwnLabel, Counter>,
    /// Replayed events skipped after a reconnect.
    pub replayed_skipped: Counter,
    /// Events that could not be interpreted, by reason.
    pub invalid: Family<OwnLabel, Counter>,
    /// Skaffold's timestamp of the newest event folded.
    pub last_event_timestamp: Gauge<f64, AtomicU64>,
    /// 1 while the reader has waited more than 5 s for room in the fold's queue or its
    /// byte budget (the fold is making no progress; nothing is lost).
    pub fold_stalled: Gauge,
    /// Times the reader waited more than 5 s for room in the queue or its byte budget.
    pub fold_stalls: Counter,
    /// Label values folded into `other` by the cardinality cap.
    pub label_values_folded: Family<OwnLabel, Counter>,
    /// v2 Skaffold / application log events skipped without decoding.
    pub log_events_skipped: Family<OwnLabel, Counter>,
}

impl SelfMetrics {
    /// Registers every family in `r`, in the contract's order, and creates the
    /// invalid-event series of every reason at zero.
    pub(super) fn register(self, r: &mut Registry) -> Self {
        register(r, Own::Connected, self.connected.clone());
        register(r, Own::Reconnects, self.reconnects.clone());
        register(r, Own::Events, self.events.clone());
        register(r, Own::ReplayedSkipped, self.replayed_skipped.clone());
        register(r, Own::Invalid, self.invalid.clone());
        for reason in Reason::ALL {
            let _ = self
                .invalid
                .get_or_create(&Own::Invalid.label(reason.as_str()));
        }
        register(
            r,
            Own::LastEventTimestamp,
            self.last_event_timestamp.clone(),
        );
        register(r, Own::FoldStalled, self.fold_stalled.clone());
        register(r, Own::FoldStalls, self.fold_stalls.clone());
        register(r, Own::LabelValuesFolded, self.label_values_folded.clone());
        register(r, Own::LogEventsSkipped, self.log_events_skipped.clone());
        self
    }

    /// Counts one event that could not be interpreted, by `reason`.
    pub fn count_invalid(&self, reason: Reason) {
        self.invalid
            .get_or_create(&Own::Invalid.label(reason.as_str()))
            .inc();
    }

    /// Counts one value of `label` folded into `other` by the cap.
    pub fn count_folded(&self, label: &'static str) {
        self.label_values_folded
            .get_or_create(&Own::LabelValuesFolded.label(label))
            .inc();
    }

    /// The `skaffold_exporter_events_total{event}` series (kept by callers that
    /// count often: a family lookup hashes the label every time).
    pub fn event_counter(&self, event: &'static str) -> Counter {
        self.events.get_or_create(&Own::Events.label(event)).clone()
    }

    /// The `skaffold_exporter_log_events_skipped_total{event}` series.
    pub fn log_skipped_counter(&self, kind: LogKind) -> Counter {
        self.log_events_skipped
            .get_or_create(&Own::LogEventsSkipped.label(kind.as_str()))
            .clone()
    }

    /// The labelled counter families, each with every label value it can have (the
    /// sets are small and known).
    pub fn labelled(&self) -> [(Own, &Family<OwnLabel, Counter>, &'static [&'static str]); 4] {
        static LOG_KINDS: std::sync::LazyLock<[&str; 2]> = std::sync::LazyLock::new(|| {
            [LogKind::Skaffold.as_str(), LogKind::Application.as_str()]
        });
        [
            (Own::Events, &self.events, &crate::core::event::EVENT_NAMES),
            (
                Own::Invalid,
                &self.invalid,
                &crate::core::event::INVALID_REASONS,
            ),
            (
                Own::LabelValuesFolded,
                &self.label_values_folded,
                &CAPPED_LABELS,
            ),
            (Own::LogEventsSkipped, &self.log_events_skipped, &*LOG_KINDS),
        ]
    }
}

impl ReaderHealth for SelfMetrics {
    fn reconnected(&self) {
        self.reconnects.inc();
    }

    fn fold_stalled(&self, stalled: bool) {
        if stalled {
            self.fold_stalled.set(1);
            self.fold_stalls.inc();
        } else {
            self.fold_stalled.set(0);
        }
    }

    fn invalid(&self, reason: Reason) {
        self.count_invalid(reason);
    }
}
