#!/usr/bin/env bash
# Static checks of the dashboards, alert rules and deploy files (issue 4).
#
#   tests/deploy/check.sh
#
# Needs: promtool >= 2.42 (Debian: apt-get install -y prometheus), python3 with
# venv and pip (the Python packages in requirements.txt, the Grafana Foundation
# SDK that scripts/gen-dashboards.py builds with among them, are installed into a
# venv under ${TMPDIR:-/tmp}; PyPI must be reachable the first time).
# Writes the list of metric names used by dashboards and rules to
# target/deploy-check/metric-names.txt. Ends with "N passed, M failed".
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

need_tool promtool prometheus || exit 2
need_tool python3 python3 || exit 2
ensure_venv || { echo "deploy tests: could not create the Python venv" >&2; exit 2; }

OUT="$REPO_ROOT/target/deploy-check"
mkdir -p "$OUT"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

passed=0
failed=0
failures=()
step() {
  local name="$1"
  shift
  echo "== $name"
  if "$@" >"$TMP/out" 2>&1; then
    passed=$((passed + 1))
    sed 's/^/   /' "$TMP/out" | tail -n 40
  else
    failed=$((failed + 1))
    failures+=("$name")
    sed 's/^/   /' "$TMP/out"
    echo "   FAILED: $name"
  fi
}

compose_prometheus_config() {
  # the compose config expects the rules at rules/skaffold-alerts.yml
  mkdir -p "$TMP/compose-prom/rules"
  cp deploy/compose/prometheus.yml "$TMP/compose-prom/"
  cp deploy/prometheus/skaffold-alerts.yml "$TMP/compose-prom/rules/"
  promtool check config "$TMP/compose-prom/prometheus.yml"
}

test_rules() { (cd deploy/prometheus && promtool test rules skaffold-alerts.test.yml); }

kubernetes_schemas() {
  local f=(deploy/kubernetes/skaffold-run-job.yaml deploy/kubernetes/dashboards-configmap.yaml)
  # 1.29: first release with native sidecar containers on by default
  "$VENV/bin/kubernetes-validate" --strict --quiet -k 1.29.0 "${f[@]}" &&
    "$VENV/bin/kubernetes-validate" --strict --quiet "${f[@]}" &&
    echo "valid for Kubernetes 1.29 and $("$VENV/bin/kubernetes-validate" --version 2>&1 | tail -1) schemas"
}

# PodMonitor and PrometheusRule: the Prometheus Operator's CRD schemas (vendored in
# tests/deploy/crds), strictly; then proof that the check catches a misspelt field
operator_schemas() {
  "$PY" tests/deploy/crd_validate.py && "$PY" tests/deploy/crd_validate.py --self-test
}

step "promtool version supports keep_firing_for" check_promtool_version
step "promtool check config deploy/prometheus/prometheus.yml" promtool check config deploy/prometheus/prometheus.yml
step "promtool check config deploy/compose/prometheus.yml" compose_prometheus_config
step "promtool check rules deploy/prometheus/skaffold-alerts.yml" promtool check rules deploy/prometheus/skaffold-alerts.yml
step "promtool test rules deploy/prometheus/skaffold-alerts.test.yml" test_rules
step "alert unit tests catch weakened rules (mutations)" "$PY" tests/deploy/rule_mutations.py
step "dashboards/*.json match scripts/gen-dashboards.py (Grafana Foundation SDK)" "$PY" scripts/gen-dashboards.py --check
step "ConfigMaps and PrometheusRule match scripts/gen-configmaps.py" python3 scripts/gen-configmaps.py --check
step "all YAML/JSON parse; compose, collector, grafana, kubernetes, Dockerfile cross-checks" "$PY" tests/deploy/validate_files.py
step "compose.yaml against the compose-spec schema" "$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec deploy/compose/compose.yaml
step "Kubernetes manifests against the Kubernetes schemas" kubernetes_schemas
step "PodMonitor and PrometheusRule against the Prometheus Operator CRDs" operator_schemas
step "dashboard and rule lint (conventions + metric contract)" "$PY" tests/deploy/lint_dashboards.py \
  --names-out "$OUT/metric-names.txt" --promtool-rules-out "$OUT/dashboard-exprs.rules.yml"
step "dashboard lint rules fire on bad dashboards (self-test)" "$PY" tests/deploy/lint_dashboards.py --self-test
step "every dashboard/rule expression parses with Prometheus' own parser" promtool check rules "$OUT/dashboard-exprs.rules.yml"
step "README.md and docs/*.md: relative links and #anchors resolve" python3 tests/deploy/check_links.py

echo
echo "metric names used by dashboards and rules: target/deploy-check/metric-names.txt"
cut -f1 "$OUT/metric-names.txt" 2>/dev/null | sed 's/^/  /'
if [ "$failed" -gt 0 ]; then
  printf 'failed: %s\n' "${failures[@]}"
fi
echo "deploy: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
