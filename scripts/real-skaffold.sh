#!/usr/bin/env bash
# A real Skaffold drives the exporter: no Docker daemon, no cluster.
#
#   scripts/real-skaffold.sh [EXPORTER_BINARY] [--capture DIR] [--keep]
#
# Builds Skaffold v2.24.0 from its Go module (tools/skaffold, cached by
# scripts/build-tool.sh), starts a local registry (Debian's docker-registry) on a
# free loopback port, and runs `skaffold dev` on tests/real-skaffold/project: three
# artifacts built by a custom builder that sleeps and pushes a tiny OCI image with
# skopeo, a custom test per artifact, no deployer (a multi-config project without a
# deploy section: deploy is a no-op that still emits its events). The builder and
# tester read files under a control directory, so the script makes Skaffold build,
# fail and pass on demand while `skaffold dev` runs:
#
#   iteration 0  initial: a, b, c built in parallel, 3 tests, deploy      success
#   iteration 1  edit a: rebuild a, test a, deploy                        success
#   iteration 2  edit b with b's build failing                            failure (build)
#                  -> the v2 exporter and the proxy are killed (SIGKILL)
#   iteration 3  edit c with c's test failing: rebuild c, test c fails    failure (test)
#   iteration 4  edit b (4 s build): rebuild b, test b, deploy            success
#                  -> during b's build both are restarted: Skaffold replays to
#                     them while live events flow
#                  -> a fourth exporter attaches late; GetState and /v1/state
#                     are compared through the exporter and from Skaffold
#   iteration 5  edit a file of app-c's sync rule: synced (a no-op), no build success
#   iteration 6  edit a (60 s build), Ctrl-C (SIGINT to Skaffold) 2 s in:
#                  a's build is cancelled, Skaffold exits; over v2 a cancelled
#                  build and iteration, over v1 (where Skaffold reports it so) a
#                  failed build and iteration
#
# Exporters: v2 (`--api auto`), v1 (`--api v1`), the HTTP gateway (`--skaffold-http`),
# the late one (`--api auto`), and a proxied one (`--api auto`, with the gRPC
# passthrough) that reaches Skaffold through grpccapture's recording proxy, killed
# and restarted with the v2 exporter: it resubscribes within one process.
# Independent captures record the raw v1 and v2 gRPC streams (grpccapture,
# tools/grpccapture) and the gateway's /v1/events and /v2/events. Then `skaffold-exporter replay` folds both
# event-log files Skaffold wrote, and `skaffold run --wait-for-connection` is run
# with an exporter on v2 attached only once Skaffold holds at exit.
#
# Every expected value below is derived from what this script made Skaffold do
# (which artifacts it edited, which builds/tests it made fail, how long the builder
# and tester scripts ran by their own logs), never from the exporter's output; the
# error codes follow Skaffold's source, and the labels and the folding rules the
# docs/metrics.md documents. Every assertion must pass.
#
# Environment: RS_TOL (seconds Skaffold may spend around a build or test script,
# default 2.5), RS_VERBOSE=1 prints every passing assertion.
set -euo pipefail
export LC_ALL=C # sort and join must agree on the order
root=$(cd "$(dirname "$0")/.." && pwd)
here="$root/tests/real-skaffold"
# shellcheck source=../tests/real-skaffold/lib.sh
source "$here/lib.sh"

EXP_BIN="$root/target/debug/skaffold-exporter"
CAPTURE_DIR="" KEEP=""
while [ $# -gt 0 ]; do
  case "$1" in
    --capture) CAPTURE_DIR=$(mkdir -p "$2" && cd "$2" && pwd); shift 2 ;;
    --keep) KEEP=1; shift ;;
    *) EXP_BIN=$1; shift ;;
  esac
done
[ -x "$EXP_BIN" ] || { echo "real-skaffold: $EXP_BIN not found (cargo build first)" >&2; exit 2; }
EXP_BIN=$(cd "$(dirname "$EXP_BIN")" && pwd)/$(basename "$EXP_BIN")
TOL=${RS_TOL:-2.5}
t_begin=$(date +%s)

bash "$root/scripts/install-real-skaffold-deps.sh"

# --- Skaffold and the capture client, from the Go module proxy ------------------
t0=$(date +%s)
tools=$(bash "$root/scripts/engines.sh" SKAFFOLD GRPCCAPTURE) || { echo "real-skaffold: building Skaffold failed (see above)" >&2; exit 1; }
SKAFFOLD=$(sed -n 's/^SKAFFOLD=//p' <<<"$tools")
CAPTURE=$(sed -n 's/^GRPCCAPTURE=//p' <<<"$tools")
SKAFFOLD_VERSION=$(sed -n 's/^SKAFFOLD_VERSION=//p' <<<"$tools")
echo "real-skaffold: Skaffold and grpccapture ready in $(($(date +%s) - t0))s"
echo "real-skaffold: skaffold version: $("$SKAFFOLD" version)"
[ "$("$SKAFFOLD" version)" = "$SKAFFOLD_VERSION" ] || { echo "real-skaffold: expected Skaffold $SKAFFOLD_VERSION" >&2; exit 1; }

# --- work area -----------------------------------------------------------------
work=$(mktemp -d /tmp/real-skaffold.XXXXXX)
cleanup() {
  local rc=$?
  stop_all
  if [ -n "$KEEP" ] || [ "$FAILED" -gt 0 ] || [ "$rc" -ne 0 ]; then
    echo "real-skaffold: logs and captures kept in $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
USED_PORTS_FILE="$work/ports"
proj="$work/project" ctl="$work/ctl"
cp -r "$here/project" "$proj"
mkdir -p "$ctl" "$work/home" "$work/registry" "$work/scrapes"
: >"$ctl/builds.log"
: >"$ctl/tests.log"
cat >"$work/kubeconfig" <<'EOF'
# Skaffold reads the kube context at start even when nothing is deployed (with no
# kubeconfig at all it goes on with an empty one). This one makes that explicit and
# points nowhere: with HOME and KUBECONFIG in the work area, a developer's real
# cluster is never seen. It is never contacted (there is no deployer).
apiVersion: v1
kind: Config
clusters:
  - name: nowhere
    cluster: {server: "https://127.0.0.1:9"}
contexts:
  - name: nowhere
    context: {cluster: nowhere, user: nobody}
current-context: nowhere
users:
  - name: nobody
    user: {}
EOF
cat >"$work/skaffold-global.yaml" <<'EOF'
global:
  update-check: false
  collect-metrics: false
  survey:
    disable-prompt: true
kubeContexts: []
EOF
export HOME="$work/home" KUBECONFIG="$work/kubeconfig" RS_HOME="$here" RS_CTL="$ctl"
export SKAFFOLD_UPDATE_CHECK=false
RS_BUILD_SLEEP=1
RS_TEST_SLEEP=0.2
export RS_BUILD_SLEEP RS_TEST_SLEEP

# --- registry --------------------------------------------------------------------
REG=$(free_port)
cat >"$work/registry.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$REG
EOF
start registry "$work/registry.log" docker-registry serve "$work/registry.yml"
wait_up registry "the registry on 127.0.0.1:$REG" 20 curl -fsS "http://127.0.0.1:$REG/v2/"

sk_common=(--default-repo "127.0.0.1:$REG" --config "$work/skaffold-global.yaml" --update-check=false
  --interactive=false --port-forward=off --force-colors -v warn)

# --- expectations (from the scenario) ---------------------------------------------
# Expected values are kept per API: `v1` (the v1 exporter and the replay of
# events.json) and `v2` (every other reading). They are the same except where
# Skaffold itself reports differently (the cancelled build of iteration 6). An
# expectation holds for both unless it is set through `only API ...`.
#
# Durations are bounded by what the script measured, never by the exporter's output.
# Skaffold stamps a build's (test's) start event before it runs the builder (tester)
# and its end event after the script exited, and both scripts log their own start and
# end (builds.log, tests.log): a build or test lasts at least as long as its script
# ran, and at most that plus RS_TOL for Skaffold's own work around the script
# (starting it; for a build, asking the registry for the pushed image's digest). A dev
# iteration lasts at least from the first start to the last end of the scripts it ran,
# and at most from just before the edit that started it (the start of `skaffold dev`
# for iteration 0) until the script saw its end on the gateway (or Skaffold gone).
ARTIFACTS=(app-a app-b app-c)
APIS="v1 v2"
declare -A EXP DLO DHI STREAK
plus() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a + b }'; }
minus() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }
add() { # add KEY [N]: N more of KEY (1)
  local api
  for api in $APIS; do EXP[$api|$1]=$((${EXP[$api|$1]:-0} + ${2:-1})); done
}
bounds() { # bounds KEY LO HI: adds to a duration sum's bounds
  local api
  for api in $APIS; do
    DLO[$api|$1]=$(plus "${DLO[$api|$1]:-0}" "$2")
    DHI[$api|$1]=$(plus "${DHI[$api|$1]:-0}" "$3")
  done
}
only() { # only API CMD...: CMD's expectations hold for that API's readings only
  local APIS=$1
  shift
  "$@"
}
scenario_error() {
  echo "real-skaffold: the scenario did not run as scripted: $*" >&2
  exit 1
}

# What the scripts logged from a mark on: `mark` before each iteration remembers where
# builds.log and tests.log end and when the iteration was started (T_EDIT);
# run_iteration sets T_SEEN.
mark() {
  B0=$(wc -l <"$ctl/builds.log")
  T0=$(wc -l <"$ctl/tests.log")
  T_EDIT=$(now)
}
# runs LOG FROM: `NAME RESULT START END` for each run logged after line FROM (a run
# killed before it logged its end is left out).
runs() {
  tail -n +"$(($2 + 1))" "$1" | awk '$2 == "start" { s[$1] = $3; next } ($1 in s) { print $1, $2, s[$1], $3; delete s[$1] }'
}
# measured LOG FROM NAME RESULT: seconds the run of NAME that ended with RESULT after
# line FROM took, by the script's own clock (fails when there is none).
measured() {
  runs "$1" "$2" | awk -v n="$3" -v r="$4" \
    '$1 == n && $2 == r { printf "%.3f\n", $4 - $3; found = 1; exit } END { exit !found }'
}
# span: seconds from the first start to the last end of the scripts run since `mark`.
span() {
  { tail -n +"$((B0 + 1))" "$ctl/builds.log"; tail -n +"$((T0 + 1))" "$ctl/tests.log"; } |
    awk '$2 == "start" { if (!lo || $3 < lo) lo = $3; next } { if ($3 > hi) hi = $3 }
      END { if (lo && hi > lo) printf "%.3f\n", hi - lo; else print 0 }'
}

exp_build() { # ART RESULT [LO HI]: bounds default to the builder's own run + TOL
  local l="artifact=\"$1\",result=\"$2\"" lo=${3:-} hi=${4:-} api
  if [ -z "$lo" ]; then
    lo=$(measured "$ctl/builds.log" "$B0" "$1" "$2") || scenario_error "no $2 build of $1 in builds.log"
    hi=$(plus "$lo" "$TOL")
  fi
  add "skaffold_builds_total|$l"
  bounds "skaffold_build_duration_seconds|$l" "$lo" "$hi"
  add "skaffold_build_cache_total|artifact=\"$1\",result=\"miss\"" # every build is a miss: src.txt is new each time
  # The failure streak: a success resets it, a failure adds one, a cancel leaves it.
  for api in $APIS; do
    case "$2" in
      success) STREAK[$api|$1]=0 ;;
      failure) STREAK[$api|$1]=$((${STREAK[$api|$1]:-0} + 1)) ;;
    esac
  done
}
exp_phase() { # METRIC RESULT LO HI (deploys and renders: no-ops here)
  add "skaffold_${1}s_total|result=\"$2\""
  bounds "skaffold_${1}_duration_seconds|result=\"$2\"" "$3" "$4"
}
# Tests are counted per custom test command run (docs/metrics.md: tests counted per tester
# run; v1 sends one TestEvent per run, v2 one TestSubtaskEvent per run inside one
# Test task per iteration).
exp_test() { # RESULT N: the N test runs that ended with RESULT since `mark`
  local n d
  n=$(runs "$ctl/tests.log" "$T0" | awk -v r="$1" '$2 == r' | wc -l)
  [ "$n" -eq "$2" ] || scenario_error "$n test runs ended $1 in tests.log, the scenario needs $2"
  for d in $(runs "$ctl/tests.log" "$T0" | awk -v r="$1" '$2 == r { printf "%.3f\n", $4 - $3 }'); do
    exp_phase test "$1" "$d" "$(plus "$d" "$TOL")"
  done
}
exp_loop() { # KIND RESULT [LO HI]: bounds default to span .. T_SEEN - T_EDIT
  local lo=${3:-$(span)} hi=${4:-$(minus "$T_SEEN" "$T_EDIT")}
  add "skaffold_dev_loops_total|kind=\"$1\",result=\"$2\""
  bounds "skaffold_dev_loop_duration_seconds|kind=\"$1\",result=\"$2\"" "$lo" "$hi"
}
exp_error() { add "skaffold_errors_total|phase=\"$1\",code=\"$2\""; }
exp_sync() { # IMAGE RESULT FILES
  local l="image=\"$1\",result=\"$2\""
  add "skaffold_file_syncs_total|$l"
  add "skaffold_file_syncs_total|" # all
  bounds "skaffold_file_sync_duration_seconds|$l" 0 "$TOL"
  [ "$2" = success ] && add "skaffold_synced_files_total|image=\"$1\"" "$3"
  return 0
}
# A passing iteration that rebuilt ARTs: each built, tested once, deployed, rendered.
exp_passing_rebuild() { # KIND ART...
  local kind=$1 a
  shift
  for a in "$@"; do exp_build "$a" success; done
  exp_test success $#
  exp_phase deploy success 0 "$TOL"
  exp_phase render success 0 "$TOL"
  exp_loop "$kind" success
}

# Skaffold's error codes, from its source (v2.24.0):
# - a custom build script exiting non-zero matches none of the build problems
#   (pkg/skaffold/build/build_problems.go), so it is BUILD_UNKNOWN
#   (pkg/skaffold/errors/errors.go unknownErrForPhase);
# - a cancelled custom build is SIGKILLed by exec.CommandContext before the SIGINT
#   of misc.HandleGracefulTermination can matter: "building custom artifact: signal:
#   killed" matches no problem either (BUILD_CANCELLED is given only to an error whose
#   text says "context canceled"): BUILD_UNKNOWN;
# - a custom test command exiting non-zero is TEST_CUSTOM_CMD_RUN_NON_ZERO_EXIT_ERR
#   (pkg/skaffold/test/custom/error.go).
# Each failure is counted once, at the phase that failed (docs/metrics.md, "Errors: one count
# per failure"): the failed build or test, not again as a failed iteration.
CODE_BUILD_FAIL=BUILD_UNKNOWN
CODE_BUILD_CANCEL=BUILD_UNKNOWN
CODE_TEST_FAIL=TEST_CUSTOM_CMD_RUN_NON_ZERO_EXIT_ERR

# --- exporters and captures ----------------------------------------------------------
RPC=$(free_port) HTTP=$(free_port)
E2=$(free_port) E1=$(free_port) EG=$(free_port) EL=$(free_port) EP=$(free_port) EPG=$(free_port) PX=$(free_port)
exp_common=(--backoff-min 100ms --backoff-max 500ms)
start_e2() {
  start e2 "$work/exporter-v2.$1.log" "$EXP_BIN" --listen "127.0.0.1:$E2" \
    --skaffold-addr "127.0.0.1:$RPC" --api auto "${exp_common[@]}"
}
start_e2 first
start e1 "$work/exporter-v1.log" "$EXP_BIN" --listen "127.0.0.1:$E1" --skaffold-addr "127.0.0.1:$RPC" --api v1 "${exp_common[@]}"
start eg "$work/exporter-gateway.log" "$EXP_BIN" --listen "127.0.0.1:$EG" --skaffold-http "http://127.0.0.1:$HTTP" \
  --skaffold-addr "127.0.0.1:$RPC" "${exp_common[@]}"
# The fifth exporter reaches Skaffold through grpccapture's proxy, which records the
# GetState bytes it forwards and is killed and restarted mid-session: that exporter
# loses its stream and resubscribes within one process, so Skaffold's replay must be
# told apart from what it already folded while live events flow.
start_proxy() {
  start proxy "$work/proxy.$1.log" "$CAPTURE" proxy -listen "127.0.0.1:$PX" -addr "127.0.0.1:$RPC" -out "$work/state-upstream.bin"
  # Its own line, printed once it holds the port (a port that is merely open could be
  # another process's).
  wait_up proxy "the recording proxy on 127.0.0.1:$PX" 20 \
    grep -q "proxying 127.0.0.1:$PX to" "$work/proxy.$1.log"
}
# The first start may take another port (no exporter uses it yet): a proxy that could
# not listen on the one picked tells why, and the next try picks another.
for try in 1 2 3; do
  start_proxy "first-$try" && break
  [ "$try" -lt 3 ] || exit 1
  stop proxy KILL
  PX=$(free_port)
done
start ep "$work/exporter-proxied.log" "$EXP_BIN" --listen "127.0.0.1:$EP" --grpc-listen "127.0.0.1:$EPG" \
  --skaffold-addr "127.0.0.1:$PX" --api auto "${exp_common[@]}"
for x in "e2:$E2" "e1:$E1" "eg:$EG" "ep:$EP"; do
  wait_up "${x%%:*}" "an exporter on ${x#*:}" 20 curl -fsS "http://127.0.0.1:${x#*:}/healthz"
done

echo "real-skaffold: registry 127.0.0.1:$REG, Skaffold gRPC $RPC, gateway $HTTP; exporters v2 $E2, v1 $E1, gateway $EG, late $EL, proxied $EP (passthrough $EPG, through the proxy $PX)"
cd "$proj"
# A background job of a non-interactive shell starts with SIGINT ignored, and Go
# passes an ignored SIGINT on to the commands it runs; a developer's terminal has
# SIGINT at its default: so does this Skaffold (and its builders and testers).
# shellcheck disable=SC2054 # one argument: the list of signals env resets
sk_env=(env --default-signal=INT,QUIT)
echo 1 >"$ctl/build-sleep-app-a" # iteration 0: a, b and c build in parallel
echo 1.5 >"$ctl/build-sleep-app-b"
echo 2 >"$ctl/build-sleep-app-c"
mark
start skaffold "$work/skaffold-dev.log" "${sk_env[@]}" "$SKAFFOLD" dev "${sk_common[@]}" \
  --rpc-port "$RPC" --rpc-http-port "$HTTP" --event-log-file "$work/events.json" --cache-file "$work/cache-dev.yaml"
wait_up skaffold "Skaffold's gRPC port" 60 port_open "$RPC"
wait_up skaffold "Skaffold's HTTP gateway" 60 port_open "$HTTP"
start cap_v1 "$work/capture-v1.log" "$CAPTURE" events -addr "127.0.0.1:$RPC" -api v1 -out "$work/v1.grpc.bin"
start cap_v2 "$work/capture-v2.log" "$CAPTURE" events -addr "127.0.0.1:$RPC" -api v2 -out "$work/v2.grpc.bin"
start cap_g1 "$work/capture-g1.log" curl -sN "http://127.0.0.1:$HTTP/v1/events" -o "$work/gateway-v1.jsonl"
start cap_g2 "$work/capture-g2.log" curl -sN "http://127.0.0.1:$HTTP/v2/events" -o "$work/gateway-v2.jsonl"

# loop_status N: the status of dev iteration N's terminal DevLoopEvent, as Skaffold
# published it on its gateway (empty while it runs).
loop_status() {
  jq -rR --argjson n "$1" 'fromjson? | .result.event.devLoopEvent // empty
    | select((.iteration // 0) == $n and (.status == "Succeeded" or .status == "Failed")) | .status' \
    "$work/gateway-v1.jsonl" 2>/dev/null | head -1
}
# run_iteration N WANT: waits (120 s) for iteration N to end and checks Skaffold's
# status; T_SEEN is when the script saw the end.
run_iteration() {
  local n=$1 want=$2 st="" deadline=$(($(date +%s) + 120))
  while [ -z "$st" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "real-skaffold: iteration $n did not end; see $work/skaffold-dev.log" >&2; exit 1; }
    kill -0 "${PID_OF[skaffold]}" 2>/dev/null || { echo "real-skaffold: Skaffold exited; see $work/skaffold-dev.log" >&2; tail -20 "$work/skaffold-dev.log" >&2; exit 1; }
    sleep 0.2
    st=$(loop_status "$n")
  done
  T_SEEN=$(now)
  echo "real-skaffold: iteration $n ended: $st"
  [ "$st" = "$want" ] || { echo "real-skaffold: Skaffold reported iteration $n $st, the scenario needs $want" >&2; exit 1; }
  sleep 0.5 # let Skaffold reset its watcher before the next edit
}
edit() { echo "$1 $(now)" >"$proj/build/$1/src.txt"; }
builder_starts() { grep -c "^$1 start" "$ctl/builds.log" || true; }
scrape() { curl -fsS "http://127.0.0.1:$1/metrics" >"$work/scrapes/$2.prom"; }

# Iteration 0: a, b and c build in parallel (1, 1.5 and 2 s); three tests pass.
run_iteration 0 Succeeded
exp_passing_rebuild initial app-a app-b app-c

# Iteration 1: a changes.
mark
edit app-a
run_iteration 1 Succeeded
exp_passing_rebuild rebuild app-a

# Iteration 2: b's build fails after 1.5 s; nothing is tested or deployed.
touch "$ctl/build-fail-app-b"
mark
edit app-b
run_iteration 2 Failed
exp_build app-b failure
exp_error build "$CODE_BUILD_FAIL"
exp_loop rebuild failure
stop e2 KILL
stop proxy KILL
echo "real-skaffold: v2 exporter and the proxy in front of the proxied one killed after iteration 2"

# Iteration 3: c builds (2 s) and its test fails; nothing is deployed.
rm -f "$ctl/build-fail-app-b"
touch "$ctl/test-fail-app-c"
mark
edit app-c
run_iteration 3 Failed
exp_build app-c success
exp_test failure 1
exp_error test "$CODE_TEST_FAIL"
exp_loop rebuild failure

# Iteration 4: b builds for 4 s; the v2 exporter comes back 1 s into that build.
rm -f "$ctl/test-fail-app-c"
echo 4 >"$ctl/build-sleep-app-b"
n=$(builder_starts app-b)
mark
edit app-b
wait_for "b's build to start" 60 bash -c "[ \$(grep -c '^app-b start' '$ctl/builds.log') -gt $n ]"
sleep 1
start_e2 restarted
start_proxy restarted
echo "real-skaffold: v2 exporter and the proxy restarted during b's build"
run_iteration 4 Succeeded
exp_passing_rebuild rebuild app-b

# A fourth exporter attaches late: Skaffold replays everything to it.
start el "$work/exporter-late.log" "$EXP_BIN" --listen "127.0.0.1:$EL" --skaffold-addr "127.0.0.1:$RPC" --api auto "${exp_common[@]}"
for p in "$E2" "$E1" "$EG" "$EL" "$EP"; do
  wait_for "exporter $p ready" 30 curl -fsS "http://127.0.0.1:$p/readyz"
done
sleep 1
for x in "v2:$E2" "v1:$E1" "gateway:$EG" "late:$EL" "proxied:$EP"; do scrape "${x#*:}" "mid-${x%%:*}"; done

# GetState through the exporter's passthrough vs Skaffold's own answer. Skaffold
# encodes the State's maps in Go's random map order, so two calls need not return
# the same bytes: the passthrough exporter reaches Skaffold through grpccapture's
# recording proxy, which keeps the bytes Skaffold answered that very call.
"$CAPTURE" getstate -addr "127.0.0.1:$EPG" -out "$work/state-proxied.bin"
cp "$work/state-upstream.bin" "$work/state-upstream-of-proxied.bin"
"$CAPTURE" getstate -addr "127.0.0.1:$RPC" -out "$work/state-direct.bin"
curl -fsS "http://127.0.0.1:$HTTP/v1/state" >"$work/state-gateway.json"
curl -fsS "http://127.0.0.1:$E2/v1/state" >"$work/state-exporter-v2.json"
curl -fsS "http://127.0.0.1:$EG/v1/state" >"$work/state-exporter-gateway.json"

# Iteration 5: a file under app-c/static changes: synced (a no-op without a
# deployer), nothing built, tested or deployed. Skaffold names the synced image by
# its built tag (127.0.0.1:PORT/app-c:latest@sha256:...); the label is the image
# name without tag and digest (docs/metrics.md, skaffold_file_syncs_total).
IMG_C="127.0.0.1:$REG/app-c"
mark
echo "page $(now)" >"$proj/build/app-c/static/page.txt"
run_iteration 5 Succeeded
exp_sync "$IMG_C" success 1
exp_loop sync success

# Iteration 6: a's build sleeps 60 s; Ctrl-C 2 s into it.
echo 60 >"$ctl/build-sleep-app-a"
n=$(builder_starts app-a)
mark
edit app-a
wait_for "a's build to start" 60 bash -c "[ \$(grep -c '^app-a start' '$ctl/builds.log') -gt $n ]"
sleep 2
t_int=$(now)
kill -INT "${PID_OF[skaffold]}"
echo "real-skaffold: Ctrl-C (SIGINT) sent to Skaffold 2 s into a's 60 s build"
skaffold_rc=0
deadline=$(($(date +%s) + 60))
while kill -0 "${PID_OF[skaffold]}" 2>/dev/null; do
  [ "$(date +%s)" -lt "$deadline" ] || { echo "real-skaffold: Skaffold did not exit after SIGINT" >&2; exit 1; }
  sleep 0.2
done
t_gone=$(now)
wait "${PID_OF[skaffold]}" || skaffold_rc=$?
unset "PID_OF[skaffold]"
echo "real-skaffold: skaffold dev exited ($skaffold_rc) $(minus "$t_gone" "$t_int")s after SIGINT"
# a's build (no end in builds.log: the builder was killed) ran at least from the
# builder's start to the SIGINT, and ended, as did the iteration, before Skaffold exited.
a_start=$(tail -n +"$((B0 + 1))" "$ctl/builds.log" | awk '$1 == "app-a" && $2 == "start" { print $3; exit }')
[ -n "$a_start" ] || scenario_error "a's last build is not in builds.log"
cancel_lo=$(minus "$t_int" "$a_start")
cancel_hi=$(minus "$t_gone" "$a_start")
# Skaffold reports this build differently over its two APIs
# (pkg/skaffold/build/scheduler.go, scheduler.build): v2 gets BuildCanceled; v1 only
# ever gets BuildFailed, whose code is BUILD_CANCELLED only when the error's text says
# "context canceled" (build/build_problems.go), and a killed custom builder's is
# "building custom artifact: signal: killed", so BUILD_UNKNOWN. We count what Skaffold
# says: over v2 a cancelled build in an iteration with only a cancellation in it (a
# `canceled` iteration, no error, no failure streak); over v1 a failed build (a build
# error, a failure streak of 1) in a failed iteration, counted once at the build.
only v2 exp_build app-a canceled "$cancel_lo" "$cancel_hi"
only v2 exp_loop rebuild canceled "$cancel_lo" "$(minus "$t_gone" "$T_EDIT")"
only v1 exp_build app-a failure "$cancel_lo" "$cancel_hi"
only v1 exp_error build "$CODE_BUILD_CANCEL"
only v1 exp_loop rebuild failure "$cancel_lo" "$(minus "$t_gone" "$T_EDIT")"

# Skaffold is gone: let each exporter notice (connected 0), then read it.
for x in "v2:$E2" "v1:$E1" "gateway:$EG" "late:$EL" "proxied:$EP"; do
  wait_for "exporter ${x%%:*} to see Skaffold gone" 30 bash -c \
    "curl -fsS http://127.0.0.1:${x#*:}/metrics | grep -qx 'skaffold_exporter_connected 0'" || true
done
# "Skaffold gone" is a failed reconnect (backoff at most 500 ms here): give every
# exporter that long before reading what the end of the session closed.
sleep 1.5
for x in "v2:$E2" "v1:$E1" "gateway:$EG" "late:$EL" "proxied:$EP"; do
  scrape "${x#*:}" "end-${x%%:*}"
done
for c in cap_v1 cap_v2 cap_g1 cap_g2; do
  wait_for "capture $c to end" 15 bash -c "! kill -0 ${PID_OF[$c]} 2>/dev/null" || stop "$c"
done
for e in e2 e1 eg el ep proxy; do stop "$e"; done

# Replays of the two event-log files Skaffold wrote at exit.
replay_rc_v1=0 replay_rc_v2=0
"$EXP_BIN" replay --output metrics "$work/events.json" >"$work/scrapes/end-replay-v1.prom" 2>"$work/replay-v1.err" || replay_rc_v1=$?
"$EXP_BIN" replay --output metrics "$work/events.json.v2" >"$work/scrapes/end-replay-v2.prom" 2>"$work/replay-v2.err" || replay_rc_v2=$?

# --- skaffold run --wait-for-connection with an exporter on v2 -------------------------
rm -f "$ctl"/build-sleep-* "$ctl"/build-fail-* "$ctl"/test-fail-*
RPC2=$(free_port) ER=$(free_port)
mark
start skaffold_run "$work/skaffold-run.log" "${sk_env[@]}" "$SKAFFOLD" run "${sk_common[@]}" --rpc-port "$RPC2" \
  --wait-for-connection --cache-file "$work/cache-run.yaml" --event-log-file "$work/events-run.json"
wait_for "skaffold run's builds and tests" 120 bash -c \
  "[ \$(tail -n +$((T0 + 1)) '$ctl/tests.log' | grep -c ' success ') -ge 3 ]"
sleep 2
held=0
kill -0 "${PID_OF[skaffold_run]}" 2>/dev/null && held=1
start er "$work/exporter-run.log" "$EXP_BIN" --listen "127.0.0.1:$ER" --skaffold-addr "127.0.0.1:$RPC2" --api v2 "${exp_common[@]}"
released=0 run_rc=0
deadline=$(($(date +%s) + 60))
while kill -0 "${PID_OF[skaffold_run]}" 2>/dev/null && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.2; done
if ! kill -0 "${PID_OF[skaffold_run]}" 2>/dev/null; then
  released=1
  T_SEEN=$(now) # the run's events all lie between its start and here
  wait "${PID_OF[skaffold_run]}" || run_rc=$?
  unset "PID_OF[skaffold_run]"
fi
wait_for "the run exporter to see Skaffold gone" 30 bash -c \
  "curl -fsS http://127.0.0.1:$ER/metrics | grep -qx 'skaffold_exporter_connected 0'" || true
sleep 1.5
scrape "$ER" run-v2
stop er
stop registry

# --- captures ---------------------------------------------------------------------------
if [ -n "$CAPTURE_DIR" ]; then
  cp "$work/v1.grpc.bin" "$work/v2.grpc.bin" "$work/gateway-v1.jsonl" "$work/gateway-v2.jsonl" \
    "$work/events.json" "$work/events.json.v2" "$CAPTURE_DIR/"
  cp "$ctl/builds.log" "$CAPTURE_DIR/builds.log"
  cp "$ctl/tests.log" "$CAPTURE_DIR/tests.log"
  echo "127.0.0.1:$REG" >"$CAPTURE_DIR/registry.txt"
  echo "real-skaffold: captures written to $CAPTURE_DIR"
fi

# --- assertions ---------------------------------------------------------------------------
echo "real-skaffold: scenario done in $(($(date +%s) - t_begin))s; checking"
S="$work/scrapes"

# check_counted FILE ID_PREFIX API COUNTER HISTOGRAM KEY ID_LABELS: the counter
# (skaffold_COUNTER) and the histogram's count (skaffold_HISTOGRAM_seconds) of the
# series KEY equal what API's readings should show, and where something was
# expected, the histogram's sum lies within the expected bounds. Ids:
# PREFIX:COUNTER{ID_LABELS}, PREFIX:HISTOGRAM_count{...}, PREFIX:HISTOGRAM_sum{...}.
check_counted() {
  local f=$1 src=$2 api=$3 counter=$4 hist=$5 key=$6 ids=$7 want
  want=${EXP[$api|skaffold_$counter|$key]:-0}
  check_eq "$src:$counter{$ids}" "$(value "$f" "skaffold_$counter" "$key")" "$want"
  check_eq "$src:${hist}_count{$ids}" "$(value "$f" "skaffold_${hist}_seconds_count" "$key")" "$want"
  if [ "$want" -gt 0 ]; then
    check_range "$src:${hist}_sum{$ids}" "$(value "$f" "skaffold_${hist}_seconds_sum" "$key")" \
      "${DLO[$api|skaffold_${hist}_seconds|$key]}" "${DHI[$api|skaffold_${hist}_seconds|$key]}"
  fi
}

# check_core SOURCE FILE API (v1|v2): every core series against the expectations.
check_core() {
  local src=$1 f=$2 api=$3 a r k key
  for a in "${ARTIFACTS[@]}"; do
    for r in success failure canceled; do
      check_counted "$f" "$src" "$api" builds_total build_duration "artifact=\"$a\",result=\"$r\"" "$a,$r"
    done
    check_eq "$src:build_consecutive_failures{$a}" "$(value "$f" skaffold_build_consecutive_failures "artifact=\"$a\"")" \
      "${STREAK[$api|$a]:-0}"
    if [ "$api" = v2 ]; then
      for r in hit miss; do
        key="artifact=\"$a\",result=\"$r\""
        check_eq "$src:build_cache_total{$a,$r}" "$(value "$f" skaffold_build_cache_total "$key")" "${EXP[$api|skaffold_build_cache_total|$key]:-0}"
      done
    fi
  done
  local phases=(test deploy status_check)
  [ "$api" = v2 ] && phases+=(render)
  for k in "${phases[@]}"; do
    for r in success failure canceled; do
      check_counted "$f" "$src" "$api" "${k}s_total" "${k}_duration" "result=\"$r\"" "$r"
    done
  done
  for k in initial rebuild sync redeploy; do
    for r in success failure canceled; do
      check_counted "$f" "$src" "$api" dev_loops_total dev_loop_duration "kind=\"$k\",result=\"$r\"" "$k,$r"
    done
  done
  # Every error series expected, and nothing else: their sum is the expected total.
  local total=0
  for key in "${!EXP[@]}"; do
    case "$key" in
      "$api|skaffold_errors_total|"*)
        total=$((total + EXP[$key]))
        check_eq "$src:errors_total{${key##*|}}" "$(value "$f" skaffold_errors_total "${key##*|}")" "${EXP[$key]}"
        ;;
    esac
  done
  check_eq "$src:errors_total(all)" "$(value "$f" skaffold_errors_total "")" "$total"
  check_eq "$src:deploy_consecutive_failures" "$(value "$f" skaffold_deploy_consecutive_failures "")" 0
  check_eq "$src:file_syncs_total(all)" "$(value "$f" skaffold_file_syncs_total "")" "${EXP[$api|skaffold_file_syncs_total|]:-0}"
  for r in success failure; do
    check_counted "$f" "$src" "$api" file_syncs_total file_sync_duration "image=\"$IMG_C\",result=\"$r\"" "app-c,$r"
  done
  check_eq "$src:synced_files_total{app-c}" "$(value "$f" skaffold_synced_files_total "image=\"$IMG_C\"")" "${EXP[$api|skaffold_synced_files_total|image=\"$IMG_C\"]:-0}"
  check_eq "$src:invalid_events_total" "$(value "$f" skaffold_exporter_invalid_events_total "")" 0
  check_eq "$src:events_dropped_total" "$(value "$f" skaffold_exporter_events_dropped_total "")" 0
}

# compared FILE FILTER EXCLUDED: the core series of FILE to compare (sorted): not
# those whose name matches the regex FILTER, nor those named in EXCLUDED (one a line).
compared() {
  core "$1" | grep -vE "$2" | awk -v ex="$3" '
    BEGIN { n = split(ex, e, "\n"); for (i = 1; i <= n; i++) if (e[i] != "") skip[e[i]] = 1 }
    { k = $0; sub(/ [^ ]*$/, "", k); if (!(k in skip)) print }'
}
# sample FILE SERIES: the value of the series named exactly SERIES (empty when absent).
sample() { core "$1" | awk -v k="$2" 'substr($0, 1, length(k) + 1) == k " " { print $2 }'; }

# same SOURCE_A FILE_A SOURCE_B FILE_B EXACT [REASON SERIES...]: the core series of
# two readings agree: every count and bucket exactly; duration sums exactly when both
# come from the same events (EXACT=1), within 50 ms when v1 and v2 (whose events
# Skaffold timestamps separately) are compared. Series only one of the two APIs
# reports (v2's build cache and renders) and buckets are left out when EXACT=0. The
# SERIES named (exact names with labels) are left out for REASON, which is printed;
# each of them must differ between the two readings (or the exclusion is wider than
# the difference it stands for). They are checked one by one against the scenario
# by check_core.
same() {
  local a=$1 fa=$2 b=$3 fb=$4 exact=$5 reason=${6:-} filter='^$'
  shift 5
  [ $# -gt 0 ] && shift
  local excluded
  excluded=$(printf '%s\n' "$@")
  [ "$exact" = 1 ] || filter='^skaffold_(build_cache|render|verif|exec)'
  local buckets='^$'
  [ "$exact" = 1 ] || buckets='_bucket\{'
  if [ $# -gt 0 ]; then
    local s same_ones="" va vb
    for s in "$@"; do
      va=$(sample "$fa" "$s")
      vb=$(sample "$fb" "$s")
      if [ -z "$va$vb" ] || { [ -n "$va" ] && [ -n "$vb" ] && awk -v x="$va" -v y="$vb" 'BEGIN { exit !(x + 0 == y + 0) }'; }; then
        same_ones="$same_ones $s=${va:-absent}"
      fi
    done
    if [ -z "$same_ones" ]; then
      verdict "agree:$a=$b:excluded-differ" 1 "$# series left out, each differs"
    else
      verdict "agree:$a=$b:excluded-differ" 0 "left out but equal:$same_ones"
    fi
    echo "  left out of agree:$a=$b ($# series): $reason"
    [ -n "${RS_VERBOSE:-}" ] && printf '    %s\n' "$@"
  fi
  local ka kb
  ka=$(compared "$fa" "$filter" "$excluded" | grep -vE '_sum(\{| )' | grep -vE "$buckets" || true)
  kb=$(compared "$fb" "$filter" "$excluded" | grep -vE '_sum(\{| )' | grep -vE "$buckets" || true)
  if [ "$(echo "$ka" | grep -c .)" -lt 20 ]; then
    verdict "agree:$a=$b:counts" 0 "only $(echo "$ka" | grep -c .) series in $fa"
  elif [ "$ka" = "$kb" ]; then
    verdict "agree:$a=$b:counts" 1 "$(echo "$ka" | wc -l) series"
  else
    verdict "agree:$a=$b:counts" 0 "differ: $(diff <(echo "$ka") <(echo "$kb") | grep '^[<>]' | head -8 | tr '\n' ';')"
  fi
  local sa sb
  sa=$(compared "$fa" "$filter" "$excluded" | grep -E '_sum(\{| )' || true)
  sb=$(compared "$fb" "$filter" "$excluded" | grep -E '_sum(\{| )' || true)
  local bad
  bad=$(join -j1 -a1 -a2 -e missing -o 0,1.2,2.2 <(echo "$sa" | sort -k1,1) <(echo "$sb" | sort -k1,1) |
    awk -v exact="$exact" '{ if ($2 == "missing" || $3 == "missing") { print; next }
      d = $2 - $3; if (d < 0) d = -d; if ((exact && d > 1e-9) || (!exact && d > 0.05)) print }')
  if [ "$(echo "$sa" | grep -c .)" -lt 5 ]; then
    verdict "agree:$a=$b:sums" 0 "only $(echo "$sa" | grep -c .) duration sums in $fa"
  elif [ -z "$bad" ]; then verdict "agree:$a=$b:sums" 1 "$(echo "$sa" | grep -c .) duration sums agree"; else verdict "agree:$a=$b:sums" 0 "$(echo "$bad" | head -5 | tr '\n' ';')"; fi
}

# The series Skaffold's v1/v2 difference on the build Ctrl-C cancelled touches (see
# iteration 6): over v1 a failed build of a in a failed iteration, over v2 a
# cancelled build in a cancelled one.
CANCEL_REASON="Skaffold v2.24.0 reports the build Ctrl-C cancelled as BuildEvent Failed/BUILD_UNKNOWN over API v1 and as Canceled over v2 (pkg/skaffold/build/scheduler.go); each side is checked against the scenario above"
CANCEL_SERIES=()
for r in failure canceled; do
  CANCEL_SERIES+=("skaffold_builds_total{artifact=\"app-a\",result=\"$r\"}"
    "skaffold_build_duration_seconds_count{artifact=\"app-a\",result=\"$r\"}"
    "skaffold_build_duration_seconds_sum{artifact=\"app-a\",result=\"$r\"}"
    "skaffold_dev_loops_total{kind=\"rebuild\",result=\"$r\"}"
    "skaffold_dev_loop_duration_seconds_count{kind=\"rebuild\",result=\"$r\"}"
    "skaffold_dev_loop_duration_seconds_sum{kind=\"rebuild\",result=\"$r\"}")
done
CANCEL_SERIES+=("skaffold_build_consecutive_failures{artifact=\"app-a\"}"
  "skaffold_errors_total{phase=\"build\",code=\"$CODE_BUILD_CANCEL\"}")

echo "== skaffold dev: each exporter and each replay against the scenario"
check_eq "skaffold-dev:exit-after-ctrl-c" "$skaffold_rc" 0
check_true "files:event-log" "Skaffold wrote events.json and events.json.v2" test -s "$work/events.json" -a -s "$work/events.json.v2"
check_eq "replay-v1:exit" "$replay_rc_v1" 0
check_eq "replay-v2:exit" "$replay_rc_v2" 0
for src in v2 gateway late proxied replay-v2; do check_core "$src" "$S/end-$src.prom" v2; done
for src in v1 replay-v1; do check_core "$src" "$S/end-$src.prom" v1; done

echo "== the proxied exporter resubscribed within one process and skipped the replay"
check_true "proxied:reconnected" "skaffold_exporter_reconnects_total >= 1" \
  awk -v v="$(num "$(value "$S/end-proxied.prom" skaffold_exporter_reconnects_total "")")" 'BEGIN { exit !(v >= 1) }'
check_true "proxied:replay-skipped" "skaffold_exporter_replayed_events_skipped_total > 0" \
  awk -v v="$(num "$(value "$S/end-proxied.prom" skaffold_exporter_replayed_events_skipped_total "")")" 'BEGIN { exit !(v > 0) }'

echo "== agreement"
for src in v2 v1 gateway late proxied; do
  check_eq "mid-$src:skaffold_info{$SKAFFOLD_VERSION}" "$(value "$S/mid-$src.prom" skaffold_info "version=\"$SKAFFOLD_VERSION\"")" 1
done
same mid-v2 "$S/mid-v2.prom" mid-gateway "$S/mid-gateway.prom" 1
same mid-v2 "$S/mid-v2.prom" mid-late "$S/mid-late.prom" 1
same mid-v2 "$S/mid-v2.prom" mid-proxied "$S/mid-proxied.prom" 1
same mid-v2 "$S/mid-v2.prom" mid-v1 "$S/mid-v1.prom" 0
same v2 "$S/end-v2.prom" gateway "$S/end-gateway.prom" 1
same v2 "$S/end-v2.prom" late "$S/end-late.prom" 1
same v2 "$S/end-v2.prom" proxied "$S/end-proxied.prom" 1
same v2 "$S/end-v2.prom" replay-v2 "$S/end-replay-v2.prom" 1
same v1 "$S/end-v1.prom" replay-v1 "$S/end-replay-v1.prom" 1
same v2 "$S/end-v2.prom" v1 "$S/end-v1.prom" 0 "$CANCEL_REASON" "${CANCEL_SERIES[@]}"

echo "== GetState and /v1/state"
check_true "getstate:passthrough-bytes" "GetState through the exporter is byte-identical to what Skaffold answered it ($(stat -c %s "$work/state-proxied.bin") bytes)" \
  cmp -s "$work/state-upstream-of-proxied.bin" "$work/state-proxied.bin"
check_eq "getstate:size-matches-direct" "$(stat -c %s "$work/state-proxied.bin")" "$(stat -c %s "$work/state-direct.bin")"
check_true "state:v2-exporter=gateway" "/v1/state of the gRPC exporter equals the gateway's JSON" \
  diff <(jq -S . "$work/state-gateway.json") <(jq -S . "$work/state-exporter-v2.json")
check_true "state:gateway-exporter=gateway" "/v1/state of the gateway exporter equals the gateway's JSON" \
  diff <(jq -S . "$work/state-gateway.json") <(jq -S . "$work/state-exporter-gateway.json")

echo "== skaffold run --wait-for-connection, exporter on v2"
check_eq "run:held-until-subscriber" "$held" 1
check_eq "run:released" "$released" 1
check_eq "run:exit" "$run_rc" 0
# The run's builds, tests, deploy and render, measured since its `mark`; its one
# iteration (derived: `skaffold run` sends no DevLoopEvent) within the run's lifetime.
EXP=() DLO=() DHI=() STREAK=()
exp_passing_rebuild initial "${ARTIFACTS[@]}"
check_core run "$S/run-v2.prom" v2

echo "real-skaffold: done in $(($(date +%s) - t_begin))s"
[ ${#FAILURES[@]} -eq 0 ] || echo "real-skaffold: failed: ${FAILURES[*]}"
echo "real-skaffold: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
