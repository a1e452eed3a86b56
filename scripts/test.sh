#!/usr/bin/env bash
# The whole test suite, as CI runs it:
#   1. cargo test: unit tests, golden files from captured Skaffold streams,
#      end-to-end tests through real sockets (simulated Skaffold, real gRPC/HTTP),
#      promtool check metrics on our exposition;
#   2. tests/deploy/check.sh: promtool check/test of the alert rules, dashboard lint,
#      YAML/JSON/Kubernetes validation, ConfigMaps in sync;
#   3. tests/deploy/e2e.sh: the demo scraped by a real Prometheus with our rules;
#      every dashboard query must return data and the deploy alert must fire;
#   4. scripts/real-skaffold.sh: a real Skaffold (built from its Go module) runs
#      `skaffold dev` and `skaffold run` with the exporters attached;
#   5. tests/deploy/team-e2e.sh: the team path on the real engines (our Collector
#      build with the shipped collector.yaml, Prometheus 3, Jaeger): pushed
#      metrics, traces, alerts for CI runs, a Collector outage.
# Everything the suite needs is installed or built first (idempotent: apt packages
# when missing, the pinned Go engines into ~/.cache/skaffold-exporter/tools once).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh
bash scripts/install-real-skaffold-deps.sh
bash scripts/engines.sh >/dev/null
cargo test --locked
bash tests/deploy/check.sh
bash tests/deploy/e2e.sh target/debug/skaffold-exporter
bash scripts/real-skaffold.sh target/debug/skaffold-exporter
bash tests/deploy/team-e2e.sh target/debug/skaffold-exporter
