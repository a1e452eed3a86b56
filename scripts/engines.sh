#!/usr/bin/env bash
# Builds (once; cached outside the tree by scripts/build-tool.sh) every Go program
# the test suite runs and prints one `NAME=path` line per binary on stdout:
#   OTELCOL     our Collector distribution (tools/otelcol: exactly the components
#               of deploy/otel-collector/collector.yaml, collector release v0.161.0)
#   PROMETHEUS3 Prometheus 3 (tools/prometheus), without the service-discovery
#               plugins we never use (build tag remove_all_sd keeps file and HTTP SD)
#   PROMTOOL3   promtool of the same release
#   JAEGER      Jaeger v2 (tools/jaeger), the trace store of the tests
#   SKAFFOLD    Skaffold (tools/skaffold, v2.24.0), for scripts/real-skaffold.sh
#   GRPCCAPTURE a bare gRPC client that records Skaffold's streams (tools/grpccapture)
#   PROTOJSON   Go's protojson on our GetState protos (tools/protojson, tests/state_json.rs)
# With names as arguments (e.g. `engines.sh SKAFFOLD GRPCCAPTURE`) only those are built.
# Idempotent: an unchanged pin is a cache hit (no go command runs at all).
#   eval "$(scripts/engines.sh)"
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build() { "$root/scripts/build-tool.sh" "$@"; }
wanted=("$@")
want() {
  [ ${#wanted[@]} -eq 0 ] && return 0
  local w
  for w in "${wanted[@]}"; do [ "$w" = "$1" ] && return 0; done
  return 1
}
prom_version=$(sed -n 's#^require github.com/prometheus/prometheus v0\.\([0-9]*\)\.\([0-9]*\)$#\1 \2#p' "$root/tools/prometheus/go.mod")
# v0.316.0 is Prometheus 3.16.0
prom_version="3.$(( ${prom_version% *} - 300 )).${prom_version#* }"
prom_flags=(-tags remove_all_sd -ldflags "-X github.com/prometheus/common/version.Version=$prom_version -X github.com/prometheus/common/version.Branch=module")
jaeger_version=$(sed -n 's#^require github.com/jaegertracing/jaeger \(v[0-9.]*\)$#\1#p' "$root/tools/jaeger/go.mod")
# Skaffold's own build stamps its version and commit (pkg/skaffold/version); ours
# stamps the same values for the pinned release.
skaffold_version=$(sed -n 's#^require github.com/GoogleContainerTools/skaffold/v2 \(v[0-9.]*\)$#\1#p' "$root/tools/skaffold/go.mod")
skaffold_commit=b0d643a5b5944a7d3f82bd5c00d5eaa0902226bd # the tag v2.24.0
vpkg=github.com/GoogleContainerTools/skaffold/v2/pkg/skaffold/version
if want OTELCOL; then echo "OTELCOL=$(build otelcol skaffold-exporter/tools/otelcol)"; fi
if want PROMETHEUS3; then echo "PROMETHEUS3=$(build prometheus github.com/prometheus/prometheus/cmd/prometheus -- "${prom_flags[@]}")"; fi
if want PROMTOOL3; then echo "PROMTOOL3=$(build prometheus github.com/prometheus/prometheus/cmd/promtool -- "${prom_flags[@]}")"; fi
if want JAEGER; then echo "JAEGER=$(build jaeger github.com/jaegertracing/jaeger/cmd/jaeger -- -ldflags "-X github.com/jaegertracing/jaeger/internal/version.latestVersion=$jaeger_version")"; fi
if want SKAFFOLD; then
  echo "SKAFFOLD=$(build skaffold github.com/GoogleContainerTools/skaffold/v2/cmd/skaffold -- \
    -ldflags "-X $vpkg.version=$skaffold_version -X $vpkg.gitCommit=$skaffold_commit -s -w")"
  echo "SKAFFOLD_VERSION=$skaffold_version"
fi
if want GRPCCAPTURE; then echo "GRPCCAPTURE=$(build grpccapture github.com/skaffold-exporter/tools/grpccapture)"; fi
if want PROTOJSON; then echo "PROTOJSON=$(build protojson github.com/skaffold-exporter/tools/protojson)"; fi
