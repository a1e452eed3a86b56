#!/bin/sh
# Skaffold `custom` test command of the real-Skaffold tests. Skaffold runs it with
# IMAGE and TEST_CONTEXT set; it sleeps $RS_CTL/test-sleep seconds (else
# $RS_TEST_SLEEP, else 0.2), fails when $RS_CTL/test-fail-<artifact> exists, and
# appends `<artifact> start|success|failure <epoch seconds>` to $RS_CTL/tests.log.
set -eu
ctl=${RS_CTL:?RS_CTL must name the control directory}
name=$(basename "$TEST_CONTEXT")
log() { echo "$name $1 $(date +%s.%N)" >>"$ctl/tests.log"; }
log start
sleep "$(cat "$ctl/test-sleep" 2>/dev/null || echo "${RS_TEST_SLEEP:-0.2}")"
if [ -e "$ctl/test-fail-$name" ]; then
  log failure
  echo "test of $name ($IMAGE) fails on purpose" >&2
  exit 1
fi
log success
echo "test of $name ($IMAGE) passed"
