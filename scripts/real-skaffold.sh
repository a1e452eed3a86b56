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
#                  a's build is cancelled, the iteration fails, Skaffold exits
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
# (which artifacts it edited, which builds/tests it made fail, the sleeps it set),
# never from the exporter's output (the error codes and the image label follow
# Skaffold's source and issue 9's rules, see below). Assertions known to fail until
# issue 9 lands are listed in EXPECT_FAIL with the cause: they are still evaluated
# and printed.
#
# Environment: RS_TOL (seconds of slack above a sleep, default 2.5), RS_VERBOSE=1
# prints every passing assertion.
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
SKAFFOLD_VERSION=v2.24.0
SKAFFOLD_COMMIT=b0d643a5b5944a7d3f82bd5c00d5eaa0902226bd
t_begin=$(date +%s)

bash "$root/scripts/install-real-skaffold-deps.sh"

# --- Skaffold and the capture client, from the Go module proxy ------------------
vpkg=github.com/GoogleContainerTools/skaffold/v2/pkg/skaffold/version
t0=$(date +%s)
SKAFFOLD=$(bash "$root/scripts/build-tool.sh" skaffold github.com/GoogleContainerTools/skaffold/v2/cmd/skaffold -- \
  -ldflags "-X $vpkg.version=$SKAFFOLD_VERSION -X $vpkg.gitCommit=$SKAFFOLD_COMMIT -s -w")
CAPTURE=$(bash "$root/scripts/build-tool.sh" grpccapture github.com/skaffold-exporter/tools/grpccapture)
echo "real-skaffold: Skaffold and grpccapture ready in $(($(date +%s) - t0))s"
echo "real-skaffold: skaffold version: $("$SKAFFOLD" version)"
[ "$("$SKAFFOLD" version)" = "$SKAFFOLD_VERSION" ] || { echo "real-skaffold: expected Skaffold $SKAFFOLD_VERSION" >&2; exit 1; }

# --- work area -----------------------------------------------------------------
work=$(mktemp -d /tmp/real-skaffold.XXXXXX)
cleanup() {
  stop_all
  if [ -n "$KEEP" ] || [ "$FAILED" -gt 0 ]; then
    echo "real-skaffold: logs and captures kept in $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
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
wait_for "the registry on 127.0.0.1:$REG" 20 curl -fsS "http://127.0.0.1:$REG/v2/"

sk_common=(--default-repo "127.0.0.1:$REG" --config "$work/skaffold-global.yaml" --update-check=false
  --interactive=false --port-forward=off --force-colors -v warn)

# --- expectations (from the scenario) ---------------------------------------------
ARTIFACTS=(app-a app-b app-c)
declare -A EXP DLO DHI
add() { EXP[$1]=$((${EXP[$1]:-0} + ${2:-1})); }
bounds() { # bounds KEY LO HI: adds to a duration sum's bounds
  DLO[$1]=$(awk -v a="${DLO[$1]:-0}" -v b="$2" 'BEGIN { printf "%.3f", a + b }')
  DHI[$1]=$(awk -v a="${DHI[$1]:-0}" -v b="$3" 'BEGIN { printf "%.3f", a + b }')
}
plus() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a + b }'; }
exp_build() { # ART RESULT SLEEP_LO
  local l="artifact=\"$1\",result=\"$2\""
  add "skaffold_builds_total|$l"
  bounds "skaffold_build_duration_seconds|$l" "$3" "$(plus "$3" "$TOL")"
  add "skaffold_build_cache_total|artifact=\"$1\",result=\"miss\"" # every build is a miss: src.txt is new each time
}
exp_phase() { # METRIC RESULT LO (tests, deploys, renders)
  add "skaffold_${1}s_total|result=\"$2\""
  bounds "skaffold_${1}_duration_seconds|result=\"$2\"" "$3" "$(plus "$3" "$TOL")"
}
# Tests are counted per custom test command run (issue 9: "count only tests that
# ran"; v1 sends one TestEvent per tester run, v2 one TestSubtaskEvent per tester
# inside one Test task per iteration). Each slept RS_TEST_SLEEP.
exp_test() { # RESULT N
  local i
  for i in $(seq "$2"); do exp_phase test "$1" "$RS_TEST_SLEEP"; done
}
exp_loop() { # KIND RESULT LO
  add "skaffold_dev_loops_total|kind=\"$1\",result=\"$2\""
  bounds "skaffold_dev_loop_duration_seconds|kind=\"$1\",result=\"$2\"" "$3" "$(plus "$3" "$(plus "$TOL" "$TOL")")"
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
declare -A STREAK

# Skaffold's error codes, from its source (v2.24.0):
# - a custom build script exiting non-zero matches none of the build problems
#   (pkg/skaffold/build/build_problems.go), so it is BUILD_UNKNOWN
#   (pkg/skaffold/errors/errors.go unknownErrForPhase);
# - a cancelled custom build is SIGKILLed by exec.CommandContext before the SIGINT
#   of misc.HandleGracefulTermination can matter: "building custom artifact: signal:
#   killed" matches no problem either: BUILD_UNKNOWN;
# - a custom test command exiting non-zero is TEST_CUSTOM_CMD_RUN_NON_ZERO_EXIT_ERR
#   (pkg/skaffold/test/custom/error.go);
# - a failed dev iteration carries the code of the phase that failed
#   (event.DevLoopFailedInPhase takes the build or test state's code). Over v2,
#   Skaffold's DevLoop TaskEvent carries only the generic UNKNOWN_ERROR
#   (eventV2.TaskFailed for the DevLoop phase), while the failed phase's own event
#   carries the real code: the metric follows the phase.
CODE_BUILD_FAIL=BUILD_UNKNOWN
CODE_BUILD_CANCEL=BUILD_UNKNOWN
CODE_TEST_FAIL=TEST_CUSTOM_CMD_RUN_NON_ZERO_EXIT_ERR

# Known failures pending issue 9 (none of issue 8 showed here), each with the
# event and the code of ours that cause it. They are still evaluated and printed.
v1srcs='@(v1|replay-v1)'
shopt -s extglob
EXPECT_FAIL["$v1srcs:@(builds_total|build_duration_count){app-a,@(failure|canceled)}"]="pending issue 9 (cancelled builds): Skaffold's v1 BuildEvent for the build Ctrl-C cancelled is Failed (BUILD_UNKNOWN, 'building custom artifact: signal: killed'); only v2's BuildSubtaskEvent says Canceled. src/source/decode.rs decode_v1 + src/core/state.rs fold it as a failure"
EXPECT_FAIL["$v1srcs:build_duration_sum{app-a,canceled}"]=${EXPECT_FAIL["$v1srcs:@(builds_total|build_duration_count){app-a,@(failure|canceled)}"]}
EXPECT_FAIL["$v1srcs:build_consecutive_failures{app-a}"]="pending issue 9 (cancelled builds): the cancelled build, folded as a failure (v1 says Failed), starts a failure streak"
EXPECT_FAIL["$v1srcs:errors_total{phase=\"build\",code=\"BUILD_UNKNOWN\"}"]="pending issue 9 (cancelled builds): the cancelled build is counted as a build error (v1 BuildEvent Failed)"
EXPECT_FAIL["$v1srcs:errors_total(all)"]="pending issue 9 (cancelled builds): one build error too many, the cancelled build"
v2srcs='@(v2|gateway|late|proxied|replay-v2)'
EXPECT_FAIL["@(v2|gateway|late|proxied|replay-v2|run):@(tests_total|test_duration_count){success}"]="pending issue 9 (v1/v2 parity, 'count only tests that ran'): src/source/decode_v2.rs maps v2's Test task (one per iteration) to a test, not the TestSubtaskEvent of each tester run: 3 passed, not 5"
EXPECT_FAIL["$v2srcs:@(file_syncs_total(all)|@(file_syncs_total|file_sync_duration_count|file_sync_duration_sum){app-c,success}|synced_files_total{app-c})"]="pending issue 9 (coloured output): under --force-colors the v2 SkaffoldLogEvent is '\\e[34mSyncing 1 files for ...\\e[0m'; src/source/decode_v2.rs parse_sync_line (and wire.rs/json.rs) require it to start with 'Syncing ': no sync is seen over v2"
EXPECT_FAIL["$v2srcs:@(dev_loops_total|dev_loop_duration_count|dev_loop_duration_sum){@(sync|redeploy),success}"]="pending issue 9 (coloured output): the sync-only iteration 5 is not recognised as a sync over v2 (see above) and is counted as redeploy"
EXPECT_FAIL["$v1srcs:@(file_syncs_total|file_sync_duration_count|file_sync_duration_sum){app-c,success}"]="pending issue 9 (tagged images): Skaffold's v1 FileSyncEvent.image is the built tag 127.0.0.1:PORT/app-c:latest@sha256:...; src/source/decode.rs uses it verbatim as the image label instead of the image name"
EXPECT_FAIL["$v1srcs:synced_files_total{app-c}"]=${EXPECT_FAIL["$v1srcs:@(file_syncs_total|file_sync_duration_count|file_sync_duration_sum){app-c,success}"]}
EXPECT_FAIL["@(v2|gateway|late|proxied|replay-v2):errors_total{phase=\"dev_loop\",code=\"BUILD_UNKNOWN\"}"]="pending issue 9 (v1/v2 parity): a failed v2 DevLoop TaskEvent carries UNKNOWN_ERROR (iterations 2 and 6); src/source/decode_v2.rs V2Decoder::task (DevLoop arm) takes that code, v1's DevLoopEvent has the failed phase's BUILD_UNKNOWN"
EXPECT_FAIL["agree:@(mid-v2=mid-v1|v2=v1):counts"]="pending issue 9 (v1/v2 parity): the test count, the dev-loop error code and (at the end) the cancelled build, the sync's image label and the sync-only loop differ, see above"
EXPECT_FAIL["agree:v2=v1:sums"]="pending issue 9 (cancelled builds, coloured output, tagged images): the cancelled build's and the sync's durations sit under other labels"
EXPECT_FAIL["state:v2-exporter=gateway"]="pending issue 9 (item 7): src/source/json.rs state_json_from_bytes (prost-reflect SerializeOptions) leaves the unset message field metadata.test out, where Skaffold's gateway (protojson EmitUnpopulated) writes \"test\": null"

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
  wait_for "the recording proxy" 20 port_open "$PX"
}
start_proxy first
start ep "$work/exporter-proxied.log" "$EXP_BIN" --listen "127.0.0.1:$EP" --grpc-listen "127.0.0.1:$EPG" \
  --skaffold-addr "127.0.0.1:$PX" --api auto "${exp_common[@]}"
for p in "$E2" "$E1" "$EG" "$EP"; do wait_for "an exporter on $p" 20 curl -fsS "http://127.0.0.1:$p/healthz"; done

echo "real-skaffold: registry 127.0.0.1:$REG, Skaffold gRPC $RPC, gateway $HTTP; exporters v2 $E2, v1 $E1, gateway $EG, late $EL, proxied $EP (passthrough $EPG, through the proxy $PX)"
cd "$proj"
# A background job of a non-interactive shell starts with SIGINT ignored, and Go
# passes an ignored SIGINT on to the commands it runs; a developer's terminal has
# SIGINT at its default: so does this Skaffold (and its builders and testers).
sk_env=(env --default-signal=INT,QUIT)
start skaffold "$work/skaffold-dev.log" "${sk_env[@]}" "$SKAFFOLD" dev "${sk_common[@]}" \
  --rpc-port "$RPC" --rpc-http-port "$HTTP" --event-log-file "$work/events.json" --cache-file "$work/cache-dev.yaml"
wait_for "Skaffold's gRPC port" 60 port_open "$RPC"
wait_for "Skaffold's HTTP gateway" 60 port_open "$HTTP"
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
# run_iteration N WANT: waits (120 s) for iteration N to end and checks Skaffold's status.
run_iteration() {
  local n=$1 want=$2 st="" deadline=$(($(date +%s) + 120))
  while [ -z "$st" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "real-skaffold: iteration $n did not end; see $work/skaffold-dev.log" >&2; exit 1; }
    kill -0 "${PID_OF[skaffold]}" 2>/dev/null || { echo "real-skaffold: Skaffold exited; see $work/skaffold-dev.log" >&2; tail -20 "$work/skaffold-dev.log" >&2; exit 1; }
    sleep 0.2
    st=$(loop_status "$n")
  done
  echo "real-skaffold: iteration $n ended: $st"
  [ "$st" = "$want" ] || { echo "real-skaffold: Skaffold reported iteration $n $st, the scenario needs $want" >&2; exit 1; }
  sleep 0.5 # let Skaffold reset its watcher before the next edit
}
edit() { echo "$1 $(now)" >"$proj/build/$1/src.txt"; }
builder_starts() { grep -c "^$1 start" "$ctl/builds.log" || true; }
scrape() { curl -fsS "http://127.0.0.1:$1/metrics" >"$work/scrapes/$2.prom"; }

# Iteration 0: all three in parallel; sleeps 1, 1.5 and 2 s; three tests.
echo 1 >"$ctl/build-sleep-app-a"
echo 1.5 >"$ctl/build-sleep-app-b"
echo 2 >"$ctl/build-sleep-app-c"
run_iteration 0 Succeeded
exp_build app-a success 1
exp_build app-b success 1.5
exp_build app-c success 2
exp_test success 3
exp_phase deploy success 0
exp_phase render success 0
exp_loop initial success 2.6

# Iteration 1: a changes.
edit app-a
run_iteration 1 Succeeded
exp_build app-a success 1
exp_test success 1
exp_phase deploy success 0
exp_phase render success 0
exp_loop rebuild success 1.2

# Iteration 2: b's build fails after 1.5 s.
touch "$ctl/build-fail-app-b"
edit app-b
run_iteration 2 Failed
exp_build app-b failure 1.5
exp_error build "$CODE_BUILD_FAIL"
exp_error dev_loop "$CODE_BUILD_FAIL"
exp_loop rebuild failure 1.5
stop e2 KILL
stop proxy KILL
echo "real-skaffold: v2 exporter and the proxy in front of the proxied one killed after iteration 2"

# Iteration 3: c builds (2 s) and its test fails.
rm -f "$ctl/build-fail-app-b"
touch "$ctl/test-fail-app-c"
edit app-c
run_iteration 3 Failed
exp_build app-c success 2
exp_test failure 1
exp_error test "$CODE_TEST_FAIL"
exp_error dev_loop "$CODE_TEST_FAIL"
exp_loop rebuild failure 2.2

# Iteration 4: b builds for 4 s; the v2 exporter comes back 1 s into that build.
rm -f "$ctl/test-fail-app-c"
echo 4 >"$ctl/build-sleep-app-b"
n=$(builder_starts app-b)
edit app-b
wait_for "b's build to start" 60 bash -c "[ \$(grep -c '^app-b start' '$ctl/builds.log') -gt $n ]"
sleep 1
start_e2 restarted
start_proxy restarted
echo "real-skaffold: v2 exporter and the proxy restarted during b's build"
run_iteration 4 Succeeded
exp_build app-b success 4
exp_test success 1
exp_phase deploy success 0
exp_phase render success 0
exp_loop rebuild success 4.2

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
# name without tag and digest (issue 9).
IMG_C="127.0.0.1:$REG/app-c"
echo "page $(now)" >"$proj/build/app-c/static/page.txt"
run_iteration 5 Succeeded
exp_sync "$IMG_C" success 1
exp_loop sync success 0

# Iteration 6: a's build sleeps 60 s; Ctrl-C 2 s into it.
echo 60 >"$ctl/build-sleep-app-a"
n=$(builder_starts app-a)
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
wait "${PID_OF[skaffold]}" || skaffold_rc=$?
unset "PID_OF[skaffold]"
echo "real-skaffold: skaffold dev exited ($skaffold_rc) $(awk -v a="$(now)" -v b="$t_int" 'BEGIN { printf "%.1f", a - b }')s after SIGINT"
a_start=$(awk '$1 == "app-a" && $2 == "start" { t = $3 } END { print t }' "$ctl/builds.log")
cancel_after=$(awk -v a="$t_int" -v b="$a_start" 'BEGIN { printf "%.3f", a - b }')
exp_build app-a canceled "$cancel_after" # a cancel is no build error
exp_error dev_loop "$CODE_BUILD_CANCEL"
exp_loop rebuild failure "$cancel_after"

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
runs_before=$(grep -c ' success ' "$ctl/builds.log" || true)
tests_before=$(grep -c ' success ' "$ctl/tests.log" || true)
start skaffold_run "$work/skaffold-run.log" "${sk_env[@]}" "$SKAFFOLD" run "${sk_common[@]}" --rpc-port "$RPC2" \
  --wait-for-connection --cache-file "$work/cache-run.yaml" --event-log-file "$work/events-run.json"
wait_for "skaffold run's builds and tests" 120 bash -c \
  "[ \$(grep -c ' success ' '$ctl/tests.log') -ge $((tests_before + 3)) ]"
sleep 2
held=0
kill -0 "${PID_OF[skaffold_run]}" 2>/dev/null && held=1
start er "$work/exporter-run.log" "$EXP_BIN" --listen "127.0.0.1:$ER" --skaffold-addr "127.0.0.1:$RPC2" --api v2 "${exp_common[@]}"
released=0 run_rc=0
deadline=$(($(date +%s) + 60))
while kill -0 "${PID_OF[skaffold_run]}" 2>/dev/null && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.2; done
if ! kill -0 "${PID_OF[skaffold_run]}" 2>/dev/null; then
  released=1
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

# check_counted FILE ID_PREFIX COUNTER HISTOGRAM KEY ID_LABELS: the counter
# (skaffold_COUNTER) and the histogram's count (skaffold_HISTOGRAM_seconds) of the
# series KEY equal the expected count, and where something was expected, the
# histogram's sum lies within the expected bounds. Ids: PREFIX:COUNTER{ID_LABELS},
# PREFIX:HISTOGRAM_count{...}, PREFIX:HISTOGRAM_sum{...}.
check_counted() {
  local f=$1 src=$2 counter=$3 hist=$4 key=$5 ids=$6 want
  want=${EXP[skaffold_$counter|$key]:-0}
  check_eq "$src:$counter{$ids}" "$(value "$f" "skaffold_$counter" "$key")" "$want"
  check_eq "$src:${hist}_count{$ids}" "$(value "$f" "skaffold_${hist}_seconds_count" "$key")" "$want"
  if [ "$want" -gt 0 ]; then
    check_range "$src:${hist}_sum{$ids}" "$(value "$f" "skaffold_${hist}_seconds_sum" "$key")" \
      "${DLO[skaffold_${hist}_seconds|$key]}" "${DHI[skaffold_${hist}_seconds|$key]}"
  fi
}

# check_core SOURCE FILE V2: every core series against the expectations.
check_core() {
  local src=$1 f=$2 v2=$3 a r k key
  for a in "${ARTIFACTS[@]}"; do
    for r in success failure canceled; do
      check_counted "$f" "$src" builds_total build_duration "artifact=\"$a\",result=\"$r\"" "$a,$r"
    done
    check_eq "$src:build_consecutive_failures{$a}" "$(value "$f" skaffold_build_consecutive_failures "artifact=\"$a\"")" 0
    if [ "$v2" = 1 ]; then
      for r in hit miss; do
        key="artifact=\"$a\",result=\"$r\""
        check_eq "$src:build_cache_total{$a,$r}" "$(value "$f" skaffold_build_cache_total "$key")" "${EXP[skaffold_build_cache_total|$key]:-0}"
      done
    fi
  done
  local phases=(test deploy status_check)
  [ "$v2" = 1 ] && phases+=(render)
  for k in "${phases[@]}"; do
    for r in success failure canceled; do
      check_counted "$f" "$src" "${k}s_total" "${k}_duration" "result=\"$r\"" "$r"
    done
  done
  for k in initial rebuild sync redeploy; do
    for r in success failure canceled; do
      check_counted "$f" "$src" dev_loops_total dev_loop_duration "kind=\"$k\",result=\"$r\"" "$k,$r"
    done
  done
  local total=0
  for key in "${!EXP[@]}"; do
    case "$key" in
      skaffold_errors_total\|*)
        total=$((total + EXP[$key]))
        check_eq "$src:errors_total{${key#*|}}" "$(value "$f" skaffold_errors_total "${key#*|}")" "${EXP[$key]}"
        ;;
    esac
  done
  check_eq "$src:errors_total(all)" "$(value "$f" skaffold_errors_total "")" "$total"
  check_eq "$src:deploy_consecutive_failures" "$(value "$f" skaffold_deploy_consecutive_failures "")" 0
  check_eq "$src:file_syncs_total(all)" "$(value "$f" skaffold_file_syncs_total "")" "${EXP[skaffold_file_syncs_total|]:-0}"
  for r in success failure; do
    check_counted "$f" "$src" file_syncs_total file_sync_duration "image=\"$IMG_C\",result=\"$r\"" "app-c,$r"
  done
  check_eq "$src:synced_files_total{app-c}" "$(value "$f" skaffold_synced_files_total "image=\"$IMG_C\"")" "${EXP[skaffold_synced_files_total|image=\"$IMG_C\"]:-0}"
  check_eq "$src:invalid_events_total" "$(value "$f" skaffold_exporter_invalid_events_total "")" 0
  check_eq "$src:events_dropped_total" "$(value "$f" skaffold_exporter_events_dropped_total "")" 0
}

# same SOURCE_A FILE_A SOURCE_B FILE_B EXACT: the core series of two readings agree:
# every count and bucket exactly; duration sums exactly when both come from the
# same events (EXACT=1), within 10 ms per observation when v1 and v2 (whose events
# Skaffold timestamps separately) are compared. Series only one of the two APIs
# reports (v2's build cache and renders) are left out when EXACT=0.
same() {
  local a=$1 fa=$2 b=$3 fb=$4 exact=$5 filter='^$'
  [ "$exact" = 1 ] || filter='^skaffold_(build_cache|render|verif|exec)'
  local ka kb buckets='^$'
  [ "$exact" = 1 ] || buckets='_bucket\{'
  ka=$(core "$fa" | grep -vE "$filter" | grep -vE '_sum(\{| )' | grep -vE "$buckets" || true)
  kb=$(core "$fb" | grep -vE "$filter" | grep -vE '_sum(\{| )' | grep -vE "$buckets" || true)
  if [ "$(echo "$ka" | grep -c .)" -lt 20 ]; then
    verdict "agree:$a=$b:counts" 0 "only $(echo "$ka" | grep -c .) series in $fa"
  elif [ "$ka" = "$kb" ]; then
    verdict "agree:$a=$b:counts" 1 "$(echo "$ka" | wc -l) series"
  else
    verdict "agree:$a=$b:counts" 0 "differ: $(diff <(echo "$ka") <(echo "$kb") | grep '^[<>]' | head -8 | tr '\n' ';')"
  fi
  local sa sb
  sa=$(core "$fa" | grep -vE "$filter" | grep -E '_sum(\{| )' || true)
  sb=$(core "$fb" | grep -vE "$filter" | grep -E '_sum(\{| )' || true)
  local bad
  bad=$(join -j1 -a1 -a2 -e missing -o 0,1.2,2.2 <(echo "$sa" | sort -k1,1) <(echo "$sb" | sort -k1,1) |
    awk -v exact="$exact" '{ if ($2 == "missing" || $3 == "missing") { print; next }
      d = $2 - $3; if (d < 0) d = -d; if ((exact && d > 1e-9) || (!exact && d > 0.05)) print }')
  if [ "$(echo "$sa" | grep -c .)" -lt 5 ]; then
    verdict "agree:$a=$b:sums" 0 "only $(echo "$sa" | grep -c .) duration sums in $fa"
  elif [ -z "$bad" ]; then verdict "agree:$a=$b:sums" 1 "$(echo "$sa" | grep -c .) duration sums agree"; else verdict "agree:$a=$b:sums" 0 "$(echo "$bad" | head -5 | tr '\n' ';')"; fi
}

echo "== skaffold dev: each exporter and each replay against the scenario"
check_eq "skaffold-dev:exit-after-ctrl-c" "$skaffold_rc" 0
check_true "files:event-log" "Skaffold wrote events.json and events.json.v2" test -s "$work/events.json" -a -s "$work/events.json.v2"
check_eq "replay-v1:exit" "$replay_rc_v1" 0
check_eq "replay-v2:exit" "$replay_rc_v2" 0
for src in v2 gateway late proxied replay-v2; do check_core "$src" "$S/end-$src.prom" 1; done
for src in v1 replay-v1; do check_core "$src" "$S/end-$src.prom" 0; done

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
same v2 "$S/end-v2.prom" v1 "$S/end-v1.prom" 0

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
EXP=() DLO=() DHI=()
for a in "${ARTIFACTS[@]}"; do exp_build "$a" success 1; done
exp_test success 3
exp_phase deploy success 0
exp_phase render success 0
exp_loop initial success 1.6
check_core run "$S/run-v2.prom" 1

echo "real-skaffold: done in $(($(date +%s) - t_begin))s; $KNOWN known failures (listed in EXPECT_FAIL), $UNEXPECTED unexpected passes"
[ ${#FAILURES[@]} -eq 0 ] || echo "real-skaffold: failed: ${FAILURES[*]}"
echo "real-skaffold: $PASSED passed, $FAILED failed, $KNOWN skipped"
[ "$FAILED" -eq 0 ]
