#!/usr/bin/env bash
# Installs what the tests need beyond cargo: Prometheus and promtool (Debian
# package `prometheus`: promtool lints our exposition and tests the alert rules;
# the server scrapes the demo in the end-to-end check). Does nothing when present.
set -euo pipefail
if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-test-deps: need prometheus + promtool; run: sudo apt-get install -y --no-install-recommends prometheus" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# The package may try to start its own service; our tests run their own server on
# a free loopback port, so that one is stopped if it came up.
apt-get install -y -qq --no-install-recommends prometheus >/dev/null
(systemctl stop prometheus || service prometheus stop) >/dev/null 2>&1 || true
promtool --version | head -1
