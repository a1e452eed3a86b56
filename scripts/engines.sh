#!/usr/bin/env bash
# Builds (once; cached outside the tree by scripts/build-tool.sh) the real engines
# of the team-wide path and prints one `NAME=path` line per binary on stdout:
#   OTELCOL     our Collector distribution (tools/otelcol: exactly the components
#               of deploy/otel-collector/collector.yaml, collector release v0.161.0)
#   PROMETHEUS3 Prometheus 3 (tools/prometheus), without the service-discovery
#               plugins we never use (build tag remove_all_sd keeps file and HTTP SD)
#   PROMTOOL3   promtool of the same release
#   JAEGER      Jaeger v2 (tools/jaeger), the trace store of the tests
# Idempotent: an unchanged pin is a cache hit (no go command runs at all).
#   eval "$(scripts/engines.sh)"
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build() { "$root/scripts/build-tool.sh" "$@"; }
prom_version=$(sed -n 's#^require github.com/prometheus/prometheus v0\.\([0-9]*\)\.\([0-9]*\)$#\1 \2#p' "$root/tools/prometheus/go.mod")
# v0.316.0 is Prometheus 3.16.0
prom_version="3.$(( ${prom_version% *} - 300 )).${prom_version#* }"
prom_flags=(-tags remove_all_sd -ldflags "-X github.com/prometheus/common/version.Version=$prom_version -X github.com/prometheus/common/version.Branch=module")
jaeger_version=$(sed -n 's#^require github.com/jaegertracing/jaeger \(v[0-9.]*\)$#\1#p' "$root/tools/jaeger/go.mod")
echo "OTELCOL=$(build otelcol skaffold-exporter/tools/otelcol)"
echo "PROMETHEUS3=$(build prometheus github.com/prometheus/prometheus/cmd/prometheus -- "${prom_flags[@]}")"
echo "PROMTOOL3=$(build prometheus github.com/prometheus/prometheus/cmd/promtool -- "${prom_flags[@]}")"
echo "JAEGER=$(build jaeger github.com/jaegertracing/jaeger/cmd/jaeger -- -ldflags "-X github.com/jaegertracing/jaeger/internal/version.latestVersion=$jaeger_version")"
