#!/usr/bin/env bash
# Installs what scripts/real-skaffold.sh needs beyond Go and cargo: Debian's
# `docker-registry` (the distribution registry, run by the script on a free
# loopback port with its own storage) and `skopeo` (pushes the builder's tiny OCI
# image to it without a Docker daemon), plus curl and jq for the assertions.
# Does nothing when everything is present; needs root otherwise (CI runs as root).
set -euo pipefail
need=()
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
command -v skopeo >/dev/null 2>&1 || need+=(skopeo)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v jq >/dev/null 2>&1 || need+=(jq)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "install-real-skaffold-deps: need ${need[*]}; run: sudo apt-get install -y --no-install-recommends ${need[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The package may start its own registry service on :5000; ours runs on a free
# loopback port with its own storage, so that one is stopped if it came up.
(systemctl stop docker-registry || service docker-registry stop) >/dev/null 2>&1 || true
echo "install-real-skaffold-deps: installed ${need[*]}" >&2
