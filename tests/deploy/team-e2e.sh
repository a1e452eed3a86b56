#!/usr/bin/env bash
# The team-wide path on the real engines (see tests/deploy/team_e2e.py):
# exporters -> our OpenTelemetry Collector build running the shipped
# deploy/otel-collector/collector.yaml -> Prometheus 3 (remote write, alert
# rules) and Jaeger v2 (traces); plus the alert rules' unit tests on
# Prometheus 3's promtool.
#
#   cargo build
#   tests/deploy/team-e2e.sh target/debug/skaffold-exporter
#
# Builds the engines first when they are not cached (scripts/engines.sh; Go and
# the Go module proxy needed then). Ends with "N passed, M failed".
set -uo pipefail
if [ $# -lt 1 ]; then
  echo "usage: $0 PATH/TO/skaffold-exporter" >&2
  exit 2
fi
BIN="$(realpath "$1")"
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
engines=$(scripts/engines.sh) || { echo "team e2e: building the engines failed (see above)" >&2; exit 1; }
eval "$engines"
export OTELCOL PROMETHEUS3 PROMTOOL3 JAEGER
echo "engines:"
echo "  collector:  $("$OTELCOL" --version)"
echo "  prometheus: $("$PROMETHEUS3" --version 2>&1 | head -1)"
echo "  promtool:   $("$PROMTOOL3" --version 2>&1 | head -1)"
echo "  jaeger:     $("$JAEGER" version 2>&1 | grep -o '"gitVersion":"[^"]*"' | head -1)"
ensure_venv || { echo "team e2e: could not create the Python venv" >&2; exit 2; }
pre_failed=0
echo "== promtool (Prometheus 3) test rules: laptop and CI shapes"
if ! (cd deploy/prometheus && "$PROMTOOL3" test rules skaffold-alerts.test.yml); then
  pre_failed=1
fi
cd "$DEPLOY_TESTS"
"$PY" team_e2e.py "$BIN"
rc=$?
[ "$pre_failed" -eq 0 ] || { echo "team e2e: promtool test rules failed on Prometheus 3"; exit 1; }
exit $rc
