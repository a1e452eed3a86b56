//! What Skaffold's own output does to the numbers, replayed as Skaffold emits it over
//! every source (API v1 and v2 over gRPC, the gateway's `/v1/events` and
//! `/v2/events`, the `--event-log-file` files):
//!
//! - **Coloured output** (a colour terminal, or `--force-colors`): `runner/dev.go`
//!   prints `Syncing N files for IMAGE` with `output.Default.Fprintf`, heroku/color
//!   wraps it in `ESC[34m` … `ESC[0m` (`output/color.go`), and `output/output.go`
//!   copies those bytes into the v2 `SkaffoldLogEvent`, the only v2 sign of a sync.
//! - **Tagged images**: a sync names the image by the tag Skaffold built
//!   (`sync/sync.go`: `Item{Image: tag}`), `name:tag@sha256:…` once pushed, in v1
//!   `FileSyncEvent.image` and in the v2 line alike; a rebuild brings a new tag.

mod support;

use skaffold_exporter::pb::enums::StatusCode as C;
use skaffold_exporter::simulator::scenario::Script;
use support::every_source::every_source;
use support::sessions::{Iteration, Session};
use support::{close, sample, series_count};

const IMAGE: &str = "localhost:5000/web";
const DIGEST_1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const DIGEST_2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

/// `skaffold dev` in a colour terminal with a `localhost:5000` registry: the initial
/// loop, a sync of the first build (tag `abc123`), a rebuild, a sync of the second
/// build (tag `def456`).
fn session() -> Script {
    let sync = |tag: &str, files| Iteration::Sync {
        image: format!("{IMAGE}:{tag}"),
        files,
    };
    Session {
        colors: true,
        artifact: IMAGE.into(),
        iterations: vec![
            sync(&format!("abc123@{DIGEST_1}"), 3),
            Iteration::Rebuild { rollout: C::Ok },
            sync(&format!("def456@{DIGEST_2}"), 2),
        ],
        ..Session::default()
    }
    .script()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coloured_syncs_of_tagged_images_count_once_per_image_over_every_source() {
    let script = session();
    // The v2 sync lines really are coloured, and name the built tags.
    let lines: Vec<String> = script
        .events_v2(0)
        .into_iter()
        .filter_map(|e| match e.event_type? {
            skaffold_exporter::pb::v2::event::EventType::SkaffoldLogEvent(l) => Some(l.message),
            _ => None,
        })
        .filter(|m| m.contains("Syncing"))
        .collect();
    assert_eq!(
        lines,
        [
            format!("\u{1b}[34mSyncing 3 files for {IMAGE}:abc123@{DIGEST_1}\n\u{1b}[0m"),
            format!("\u{1b}[34mSyncing 2 files for {IMAGE}:def456@{DIGEST_2}\n\u{1b}[0m"),
        ]
    );
    for (source, text) in every_source(&script).await {
        let s = |name: &str, labels: &[(&str, &str)]| sample(&text, name, labels);
        let ok = [("image", IMAGE), ("result", "success")];
        // Two syncs of one image: 3 + 2 files, 0.4 s each (over v2 a sync ends at the
        // loop's next event, which Skaffold sends at the sync's end here).
        assert_eq!(s("skaffold_file_syncs_total", &ok), Some(2.0), "{source}");
        assert_eq!(
            s(
                "skaffold_file_syncs_total",
                &[("image", IMAGE), ("result", "failure")]
            ),
            Some(0.0),
            "{source}"
        );
        assert_eq!(
            series_count(&text, "skaffold_file_syncs_total"),
            2,
            "{source}: one image, no series per tag\n{text}"
        );
        assert_eq!(
            s("skaffold_synced_files_total", &[("image", IMAGE)]),
            Some(5.0),
            "{source}"
        );
        assert_eq!(
            series_count(&text, "skaffold_synced_files_total"),
            1,
            "{source}"
        );
        close(s("skaffold_file_sync_duration_seconds_sum", &ok), 0.8);
        assert_eq!(
            s("skaffold_file_sync_duration_seconds_count", &ok),
            Some(2.0),
            "{source}"
        );
        // The sync-only loops are `sync` loops, not `redeploy`.
        for (kind, n) in [
            ("initial", 1.0),
            ("rebuild", 1.0),
            ("sync", 2.0),
            ("redeploy", 0.0),
        ] {
            assert_eq!(
                s(
                    "skaffold_dev_loops_total",
                    &[("kind", kind), ("result", "success")]
                ),
                Some(n),
                "{source}: {kind} loops"
            );
        }
        // The artifact keeps its registry and port too.
        assert_eq!(
            s(
                "skaffold_builds_total",
                &[("artifact", IMAGE), ("result", "success")]
            ),
            Some(2.0),
            "{source}"
        );
        // Nothing folded into `other`, nothing counted as invalid.
        assert_eq!(
            series_count(&text, "skaffold_exporter_label_values_folded_total"),
            0,
            "{source}"
        );
        support::assert_no_invalid_events(&text, source);
    }
}
