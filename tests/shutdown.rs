//! Shutdown keeps the promise of docs/configuration.md with a collector that accepts TCP and never
//! answers (issue 13 item 6): the real binary, a real black-hole listener, OTLP over
//! http/protobuf with `--otlp-metrics`, spans and metrics waiting to be flushed.
//! The whole shutdown ends within 5 s of SIGTERM, and a second signal during it ends
//! the process at once with 128 + the signal's number.

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rustix::process::Signal;
use skaffold_exporter::simulator::Simulator;
use support::child::{Exporter, black_hole};
use support::sessions::session;

/// An exporter whose spans and metrics pushes hang in a black hole: a session played
/// live (timestamps from now, so its spans are exported, not skipped as history).
async fn busy_exporter() -> (Exporter, Simulator) {
    let (collector, accepted) = black_hole().await;
    let sim = Simulator::new();
    sim.enable_v2();
    let (skaffold, stop) = support::serve_skaffold(&sim).await;
    std::mem::forget(stop);
    let exp = Exporter::otlp_http(skaffold, collector, 500).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let script = session();
    for e in script.entries(now) {
        sim.emit(e);
    }
    for e in script.events_v2(now) {
        sim.emit_v2(e);
    }
    exp.wait_for_log("Dev loop iteration").await;
    // Both signals' exports reach the hole (spans, and the periodic metrics push).
    let deadline = Instant::now() + Duration::from_secs(20);
    while accepted.load(Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline, "{}", exp.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (exp, sim)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_within_five_seconds_with_a_black_holed_collector() {
    let (mut exp, _sim) = busy_exporter().await;
    exp.signal(Signal::TERM);
    let limit = Duration::from_secs(5);
    let (took, status) = exp.exit_within(limit).await;
    let log = exp.log();
    assert!(
        took <= limit,
        "shutdown took {took:?} (docs/configuration.md: at most 5 s):\n{log}"
    );
    assert!(status.success(), "{status:?}:\n{log}");
    assert!(log.contains("Shutting down"), "{log}");
    println!("shutdown with a black-holed collector took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_during_shutdown_ends_the_process_at_once() {
    for (first, second, code) in [
        (Signal::TERM, Signal::INT, 130),
        (Signal::INT, Signal::TERM, 143),
    ] {
        let (mut exp, _sim) = busy_exporter().await;
        exp.signal(first);
        exp.wait_for_log("Shutting down").await;
        // Still flushing into the hole; the second signal must not wait for it.
        assert!(exp.child.try_wait().unwrap().is_none(), "{}", exp.log());
        exp.signal(second);
        let (took, status) = exp.exit_within(Duration::from_secs(1)).await;
        assert!(
            took < Duration::from_secs(1),
            "took {took:?}:\n{}",
            exp.log()
        );
        assert_eq!(status.code(), Some(code), "{}", exp.log());
        assert!(
            exp.log().contains("during shutdown; exiting now"),
            "{}",
            exp.log()
        );
    }
}
