#!/usr/bin/env bash
# Regenerates tests/fixtures/skaffold-events/: Skaffold's own event emitters (the
# Skaffold pinned in tools/skaffold-events/go.mod) driven through the situations of
# issue 9, written as Skaffold's --event-log-file files (FILE and FILE.v2).
#
#   scripts/gen-skaffold-events.sh
#   SCENARIOS=tests scripts/gen-skaffold-events.sh   # only these
#
# Needs Go and the Go module proxy; the first build takes minutes. Timestamps are
# the wall clock, so every run differs in its times only: review the diff anyway.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
version=$(sed -n 's#^require github.com/GoogleContainerTools/skaffold/v2 \(v[^ ]*\)$#\1#p' \
  "$root/tools/skaffold-events/go.mod")
bin=$("$root/scripts/build-tool.sh" skaffold-events github.com/skaffold-exporter/tools/skaffold-events \
  -- "-ldflags=-X=github.com/GoogleContainerTools/skaffold/v2/pkg/skaffold/version.version=$version")
out="$root/tests/fixtures/skaffold-events"
mkdir -p "$out"
for scenario in ${SCENARIOS:-sync-retries reload cancelled-builds tests status-checks cancelled-status-check}; do
  "$bin" -scenario "$scenario" -out "$out/$scenario.json"
  chmod 644 "$out/$scenario.json" "$out/$scenario.json.v2"
  echo "wrote $out/$scenario.json{,.v2} (Skaffold $version)"
done
