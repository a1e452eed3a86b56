# shellcheck shell=bash
# Helpers of scripts/real-skaffold.sh (sourced): processes, ports, scrapes and the
# assertion ledger. Nothing here knows the scenario.

# --- processes ---------------------------------------------------------------
PIDS=()

# start NAME LOGFILE CMD... : runs CMD in the background, remembers its pid under NAME.
declare -A PID_OF LOG_OF
start() {
  local name=$1 logf=$2
  shift 2
  "$@" >"$logf" 2>&1 &
  PID_OF[$name]=$!
  LOG_OF[$name]=$logf
  PIDS+=("$!")
}

# stop NAME [SIGNAL]: signals the process started as NAME and waits for it (10 s,
# then SIGKILL). Only processes this script started are ever signalled.
stop() {
  local name=$1 sig=${2:-TERM} pid=${PID_OF[$1]:-}
  [ -n "$pid" ] || return 0
  kill -"$sig" "$pid" 2>/dev/null || true
  local _
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  { wait "$pid"; } 2>/dev/null || true
  unset "PID_OF[$name]"
  # Reaped: never signalled again (its pid may be reused).
  local kept=() p
  for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || kept+=("$p"); done
  PIDS=("${kept[@]}")
}

stop_all() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  sleep 0.5
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}

# --- ports -------------------------------------------------------------------
# free_port: a loopback port nothing listens on, below the kernel's ephemeral range
# (an outgoing connection's local port can then never take it between this check and
# the listener's bind), and never one this script handed out before: the ports given
# are kept in the file USED_PORTS_FILE (set by the script, in its work area), as
# free_port runs in the subshell of a `$(...)`.
USED_PORTS_FILE=""
EPHEMERAL_LOW=32768
if [ -r /proc/sys/net/ipv4/ip_local_port_range ]; then
  read -r EPHEMERAL_LOW _ </proc/sys/net/ipv4/ip_local_port_range
fi
free_port() {
  : "${USED_PORTS_FILE:?set USED_PORTS_FILE before free_port}"
  touch "$USED_PORTS_FILE"
  local p low=10000 high=$((EPHEMERAL_LOW - 1))
  [ "$high" -gt $((low + 1000)) ] || { low=20000 high=60000; }
  while :; do
    p=$((low + (RANDOM * 32768 + RANDOM) % (high - low + 1)))
    grep -qx "$p" "$USED_PORTS_FILE" && continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p" >>"$USED_PORTS_FILE"
      echo "$p"
      return
    fi
  done
}

# wait_for DESC SECONDS CMD...: retries CMD every 0.2 s until it succeeds.
wait_for() { wait_up "" "$@"; }

# wait_up NAME DESC SECONDS CMD...: wait_for, for a process started as NAME: fails at
# once when that process has exited, and prints the tail of its log on any failure.
# An empty NAME waits on no process.
wait_up() {
  local name=$1 desc=$2 secs=$3 pid=${PID_OF[${1:-none}]:-} log=${LOG_OF[${1:-none}]:-}
  shift 3
  local deadline=$(($(date +%s) + secs)) why=""
  until "$@" >/dev/null 2>&1; do
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      why="$name exited before $desc was ready"
    elif [ "$(date +%s)" -ge "$deadline" ]; then
      why="timed out after ${secs}s waiting for $desc"
    fi
    if [ -n "$why" ]; then
      echo "real-skaffold: $why${log:+; the end of $log:}" >&2
      [ -z "$log" ] || tail -n 20 "$log" >&2
      return 1
    fi
    sleep 0.2
  done
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

now() { date +%s.%N; }

# --- scrapes -----------------------------------------------------------------
# value FILE NAME 'k="v",k2="v2"': sum of the samples of NAME whose label set
# contains every given pair; `absent` when no sample matched.
value() {
  awk -v name="$2" -v want="$3" '
    /^#/ || NF == 0 { next }
    {
      line = $0; brace = index(line, "{")
      if (brace) {
        n = substr(line, 1, brace - 1); rest = substr(line, brace + 1)
        close_at = index(rest, "} "); labels = substr(rest, 1, close_at - 1)
        split(substr(rest, close_at + 2), f, " "); v = f[1]
      } else { split(line, f, " "); n = f[1]; labels = ""; v = f[2] }
      if (n != name) next
      ok = 1; m = split(want, w, ",")
      for (i = 1; i <= m; i++) if (w[i] != "" && index("," labels ",", "," w[i] ",") == 0) ok = 0
      if (ok) { sum += v; found = 1 }
    }
    END { if (found) printf "%.6f\n", sum; else print "absent" }' "$1"
}

# core FILE: the metric-contract samples (skaffold_*, not the exporter's own health
# and not skaffold_info/port forwards, which depend on when they are read), sorted.
core() {
  grep -E '^skaffold_' "$1" | grep -vE '^skaffold_(exporter_|info|port_forwards)' | sort
}

# --- assertions --------------------------------------------------------------
PASSED=0 FAILED=0
FAILURES=()

verdict() { # verdict ID OK(0/1) MESSAGE
  local id=$1 ok=$2 msg=$3
  if [ "$ok" = 1 ]; then
    PASSED=$((PASSED + 1))
    [ -n "${RS_VERBOSE:-}" ] && echo "  ok              $id: $msg"
  else
    FAILED=$((FAILED + 1))
    FAILURES+=("$id")
    echo "  FAIL            $id: $msg"
  fi
  return 0
}

num() { [ "$1" = absent ] && echo 0 || echo "$1"; }

# check_eq ID ACTUAL EXPECTED: numeric equality (absent counts as 0).
check_eq() {
  local a e
  a=$(num "$2")
  e=$(num "$3")
  if awk -v a="$a" -v e="$e" 'BEGIN { exit !(a + 0 == e + 0) }'; then
    verdict "$1" 1 "$2 == $3"
  else
    verdict "$1" 0 "got $2, expected $3"
  fi
}

# check_range ID ACTUAL LO HI (an absent series fails: a range is only checked
# where something was expected)
check_range() {
  local a=$2
  if [ "$a" = absent ]; then
    verdict "$1" 0 "absent, expected within [$3, $4]"
    return 0
  fi
  if awk -v a="$a" -v lo="$3" -v hi="$4" 'BEGIN { exit !(a + 0 >= lo - 1e-9 && a + 0 <= hi + 1e-9) }'; then
    verdict "$1" 1 "$2 in [$3, $4]"
  else
    verdict "$1" 0 "got $2, expected within [$3, $4]"
  fi
}

# check_true ID MESSAGE CMD...
check_true() {
  local id=$1 msg=$2
  shift 2
  if "$@"; then verdict "$id" 1 "$msg"; else verdict "$id" 0 "$msg"; fi
}
