#!/usr/bin/env bash
# The whole test suite, as CI runs it:
#   1. cargo test: unit tests, golden files from captured Skaffold streams,
#      end-to-end tests through real sockets (simulated Skaffold, real gRPC/HTTP),
#      promtool check metrics on our exposition;
#   2. tests/deploy/check.sh: promtool check/test of the alert rules, dashboard lint,
#      YAML/JSON/Kubernetes validation, ConfigMaps in sync;
#   3. tests/deploy/e2e.sh: the demo scraped by a real Prometheus with our rules;
#      every dashboard query must return data and the deploy alert must fire.
#   4. tests/deploy/team-e2e.sh: the team path on the real engines (our Collector
#      build with the shipped collector.yaml, Prometheus 3, Jaeger): pushed
#      metrics, traces, alerts for CI runs, a Collector outage.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh
cargo test --locked
bash tests/deploy/check.sh
bash tests/deploy/e2e.sh target/debug/skaffold-exporter
bash tests/deploy/team-e2e.sh target/debug/skaffold-exporter
