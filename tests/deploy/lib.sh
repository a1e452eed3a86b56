# Shared by tests/deploy/check.sh and tests/deploy/e2e.sh (sourced, not run).
# Sets PY to a Python with tests/deploy/requirements.txt installed, in a venv
# outside the work tree (override the location with SKAFFOLD_DEPLOY_VENV).

export PYTHONDONTWRITEBYTECODE=1
DEPLOY_TESTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$DEPLOY_TESTS/../.." && pwd)"

ensure_venv() {
  local venv="${SKAFFOLD_DEPLOY_VENV:-${TMPDIR:-/tmp}/skaffold-exporter-deploy-venv}"
  local req="$DEPLOY_TESTS/requirements.txt"
  local want
  want="$(sha256sum "$req" | cut -d' ' -f1)"
  if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
    echo "deploy tests: creating venv $venv" >&2
    python3 -m venv --clear "$venv" >&2 || return 1
    "$venv/bin/pip" install --disable-pip-version-check -q -r "$req" >&2 || return 1
    echo "$want" > "$venv/.requirements.sha256"
  fi
  VENV="$venv"
  PY="$venv/bin/python"
}

need_tool() {
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "deploy tests: '$1' not found; install it with: apt-get install -y $2" >&2
    return 1
  fi
}

# keep_firing_for (used by the alert rules) needs Prometheus/promtool >= 2.42
check_promtool_version() {
  local v
  v="$(promtool --version 2>&1 | sed -n 's/^promtool, version \([0-9][0-9.]*\).*/\1/p' | head -1)"
  if [ -z "$v" ] || [ "$(printf '%s\n' 2.42.0 "$v" | sort -V | head -1)" != 2.42.0 ]; then
    echo "deploy tests: promtool '$v' is older than 2.42 (keep_firing_for)" >&2
    return 1
  fi
  echo "promtool $v"
}
