#!/usr/bin/env bash
# End to end: the exporter's demo + a real Prometheus + every dashboard query
# and the deploy-failure alert (see tests/deploy/e2e.py for the details).
#
#   cargo build --release
#   tests/deploy/e2e.sh target/release/skaffold-exporter
#
# Needs: prometheus and promtool >= 2.42 (Debian: apt-get install -y prometheus;
# no service is started, the test runs its own on a free loopback port with a
# temp data dir), python3 with venv/pip. The exporter must support
# `demo --listen ADDR` and `demo --scenario deploy-failures --listen ADDR`
# (pass --skip-alert-scenario to run without the latter; the alert check is
# then reported as skipped). Takes about 30-100 s. Ends with "N passed, M failed".
set -uo pipefail
if [ $# -lt 1 ]; then
  echo "usage: $0 PATH/TO/skaffold-exporter [--skip-alert-scenario] [--timeout S] [--keep]" >&2
  exit 2
fi
BIN="$(realpath "$1")"
shift
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
need_tool prometheus prometheus || exit 2
need_tool promtool prometheus || exit 2
check_promtool_version >/dev/null || exit 2
ensure_venv || { echo "deploy tests: could not create the Python venv" >&2; exit 2; }
cd "$DEPLOY_TESTS"
exec "$PY" e2e.py "$BIN" "$@"
