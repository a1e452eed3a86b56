//! What a reader reports about itself beside the events it delivers: the counters
//! only the reader can keep (re-subscriptions, a fold that stopped taking from the
//! queue, messages of a stream it cannot decode). A trait, so that sources report
//! without knowing which sink records it (`sink::SelfMetrics` does, for `/metrics`
//! and OTLP). Everything the fold can see in order with the events travels in band
//! instead (`source::Delivery`).

/// The reader's own counters.
pub trait ReaderHealth: Clone + Send + Sync + 'static {
    /// Subscribed again after the first subscription.
    fn reconnected(&self);
    /// The fold has made no room in its queue (or its byte budget) for a while
    /// (`true`: counted as one stall), or does again (`false`).
    fn fold_stalled(&self, stalled: bool);
    /// One message the reader dropped as undecodable, by bounded reason.
    fn invalid(&self, reason: super::Reason);
}
