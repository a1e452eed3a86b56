#!/usr/bin/env bash
# Builds a Go program pinned by one of our tools modules (tools/<name>/go.mod and
# go.sum, committed) into a cache outside the repository, and prints the binary's
# path on stdout (progress goes to stderr).
#
#   scripts/build-tool.sh <name> <package> [-- <extra go build flags>...]
#
# The cache key is a hash of the module's go.mod, go.sum and own .go files, the
# package, the extra flags and `go version`: a version bump (or an edit of our own
# Go code) rebuilds, an unchanged pin is reused. The cache lives in
# $SKAFFOLD_EXPORTER_TOOLS_CACHE (default ~/.cache/skaffold-exporter/tools); Go's own module and build caches are shared by every tool, so engines
# that have dependencies in common build faster together.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
[ $# -ge 2 ] || { echo "usage: $0 <name> <package> [-- go build flags]" >&2; exit 2; }
name=$1 pkg=$2
shift 2
[ "${1:-}" = "--" ] && shift
mod="$root/tools/$name"
[ -f "$mod/go.mod" ] || { echo "build-tool: $mod/go.mod not found" >&2; exit 2; }
cache=${SKAFFOLD_EXPORTER_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/skaffold-exporter/tools}
key=$({
  cat "$mod/go.mod" "$mod/go.sum" 2>/dev/null
  # The module's own Go files (a tools.go, or a small program of ours in the module).
  find "$mod" -name '*.go' -type f | LC_ALL=C sort | xargs -r cat
  echo "$pkg $*"
  go version
} | sha256sum | cut -c1-16)
out="$cache/$name-$key/$(basename "$pkg")"
mkdir -p "$(dirname "$out")"
# One build of a given key at a time (parallel callers wait, then reuse it).
exec 9>"$out.lock"
flock 9
if [ ! -x "$out" ]; then
  start=$(date +%s)
  echo "build-tool: building $name ($pkg) into $out" >&2
  (cd "$mod" && go build -trimpath "$@" -o "$out.tmp" "$pkg") >&2
  mv "$out.tmp" "$out"
  echo "build-tool: built $name in $(( $(date +%s) - start ))s" >&2
fi
echo "$out"
