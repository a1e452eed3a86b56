#!/usr/bin/env python3
"""The team-wide path end to end, on the real engines (issue 14).

    team_e2e.py BIN   (run through tests/deploy/team-e2e.sh, which builds the engines)

Engines (paths from the environment: OTELCOL, PROMETHEUS3, PROMTOOL3, JAEGER):
our Collector distribution running deploy/otel-collector/collector.yaml
unchanged (endpoints from the environment only), Prometheus 3 with the OTLP and
remote-write receivers and deploy/prometheus/skaffold-alerts.yml, and Jaeger v2
(memory store) as the trace store.

Exporters (each a real `skaffold-exporter` process against a simulated Skaffold,
a `demo --skaffold-listen` process with its own OTLP off):
  alice  team payments, OTLP/gRPC, $USER=alice, traces + metrics
  bob    team checkout, OTLP/HTTP, $USER=bob, traces + metrics
  carol  traces + metrics, restarted three times mid-session (item 8), the
         second time on another --listen port; a witness exporter that is never restarted reads the same
         Skaffold (no OTLP): the truth for carol's counts
  CI     one fresh exporter per `skaffold run`, with the environment and
         arguments of deploy/kubernetes/skaffold-run-job.yaml (endpoint mapped
         to this Collector, $USER unset), living for one simulated run.

Checks: the Collector loads the file (no config error, no deprecation warning);
the Collector is stopped for 20 s mid-run (readers and /metrics unaffected,
queued spans arrive afterwards, nothing is lost beyond the documented bounds);
after the exporters stop, a marker metric and span sent through the Collector
reach Prometheus and Jaeger (so everything sent before them has: no fixed wait);
Jaeger has one trace per dev-loop iteration, each with its root and the
expected tree and CI/CD attributes, no span id twice, exporters told apart by
resource attributes; every team-dashboard query returns, from the pushed
metrics, the value the exporters' own /metrics give (for carol: the witness's,
each event once although her exporter re-folded Skaffold's history three
times), carol's run kept one service.instance.id and its series no reset
across her restarts; a second Prometheus 3 scraping carol every 100 ms sees
no series of hers ever lower than before or above the witness's end, and each
ends as the witness's; the redesigned
failing-repeatedly alert fires for three failed CI runs of one pipeline, not
for F S F F, and stops after a success; target_info has no per-commit labels;
the CI exporter's identity comes from its uid. Ends with "N passed, M failed".
"""

import hashlib
import json
import math
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

import dashlib

REPO = Path(__file__).resolve().parents[2]
COLLECTOR_YAML = REPO / "deploy/otel-collector/collector.yaml"
RULES = REPO / "deploy/prometheus/skaffold-alerts.yml"
JOB_YAML = REPO / "deploy/kubernetes/skaffold-run-job.yaml"
DASHBOARD = REPO / "dashboards/skaffold-team-builds.json"
ALERT = "SkaffoldDeployFailingRepeatedly"
OUTAGE_S = 20


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def user_hash(name):
    return hashlib.sha256(b"skaffold-exporter/user.hash/v1:" + name.encode()).hexdigest()[:32]


def parse_metrics(text):
    """{(name, frozenset(labels)): value} from the text exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)', line)
        if not m:
            continue
        labels = frozenset(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        out[(m.group(1), labels)] = float(m.group(4))
    return out


def series(metrics, name, **match):
    """[(labels dict, value)] of `name` whose labels include `match`."""
    res = []
    for (n, labels), v in metrics.items():
        d = dict(labels)
        if n == name and all(d.get(k) == want for k, want in match.items()):
            res.append((d, v))
    return res


def total(metrics, name, **match):
    return sum(v for _, v in series(metrics, name, **match))


def quantile(q, buckets):
    """Prometheus' histogram_quantile over {le: cumulative count}."""
    bs = sorted(((math.inf if le == "+Inf" else float(le)), c) for le, c in buckets.items())
    if not bs or bs[-1][1] == 0:
        return None
    rank = q * bs[-1][1]
    prev_le, prev_c = 0.0, 0.0
    for i, (le, c) in enumerate(bs):
        if c >= rank:
            if le == math.inf:
                return bs[i - 1][0] if i > 0 else None
            if i == 0 and le <= 0:
                return le
            return prev_le + (le - prev_le) * (rank - prev_c) / (c - prev_c) if c > prev_c else le
        prev_le, prev_c = le, c
    return None


class Results:
    def __init__(self):
        self.passed, self.failed = 0, []

    def check(self, name, ok, detail=""):
        if ok:
            self.passed += 1
            print(f"  ok   {name}" + (f": {detail}" if detail else ""), flush=True)
        else:
            self.failed.append(name)
            print(f"  FAIL {name}" + (f": {detail}" if detail else ""), flush=True)
        return ok


class Procs:
    def __init__(self, tmp):
        self.tmp, self.procs = tmp, []

    def start(self, name, argv, env=None, cwd=None):
        log = open(self.tmp / f"{name}.log", "ab")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                             start_new_session=True)
        p.log_path = self.tmp / f"{name}.log"
        p.name = name
        self.procs.append(p)
        return p

    @staticmethod
    def stop(p, timeout=15):
        """SIGTERM and wait; returns seconds it took, or None if it had to be killed."""
        if p.poll() is not None:
            return 0.0
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout)
            return time.monotonic() - t0
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            return None

    def stop_all(self):
        for p in reversed(self.procs):
            self.stop(p, 5)


def wait_for(pred, timeout, step=0.2):
    end = time.monotonic() + timeout
    while True:
        try:
            v = pred()
            if v:
                return v
        except Exception:  # noqa: BLE001 (not up yet)
            pass
        if time.monotonic() > end:
            return None
        time.sleep(step)


class Prom:
    def __init__(self, base):
        self.base = base

    def query(self, expr, at=None):
        q = {"query": expr}
        if at is not None:
            q["time"] = f"{at:.3f}"
        d = json.loads(get(f"{self.base}/api/v1/query?" + urllib.parse.urlencode(q), 20))
        if d.get("status") != "success":
            raise RuntimeError(f"{expr}: {d}")
        return d["data"]["result"]

    def alerts(self):
        return json.loads(get(f"{self.base}/api/v1/alerts"))["data"]["alerts"]


def main():
    bin_ = str(Path(sys.argv[1]).resolve())
    eng = {k: os.environ[k] for k in ("OTELCOL", "PROMETHEUS3", "JAEGER")}
    t_start = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="skx-team-e2e-"))
    procs = Procs(tmp)
    r = Results()
    try:
        run(bin_, eng, tmp, procs, r)
    finally:
        procs.stop_all()
        if r.failed:
            print(f"logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"team e2e: wall time {time.monotonic() - t_start:.0f}s")
    if r.failed:
        print("failed: " + ", ".join(r.failed))
    print(f"team-e2e: {r.passed} passed, {len(r.failed)} failed")
    return 1 if r.failed else 0


def run(bin_, eng, tmp, procs, r):
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    base_env.pop("USER", None)
    base_env["RUST_LOG"] = "info"

    # --- engines ---------------------------------------------------------------
    print("== engines", flush=True)
    ports = {k: free_port() for k in ("prom", "jaeger_otlp", "jaeger_http", "jaeger_grpc",
                                        "col_grpc", "col_http", "col_health",
                                        "prom_scrape", "carol", "witness")}
    prom_dir = tmp / "prometheus"
    prom_dir.mkdir()
    (prom_dir / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "5s", "evaluation_interval": "2s"},
        "rule_files": [str(RULES)],
    }))
    procs.start("prometheus", [
        eng["PROMETHEUS3"], f"--config.file={prom_dir / 'prometheus.yml'}",
        f"--storage.tsdb.path={prom_dir / 'data'}", f"--web.listen-address=127.0.0.1:{ports['prom']}",
        "--web.enable-otlp-receiver", "--web.enable-remote-write-receiver"], env=base_env)
    prom = Prom(f"http://127.0.0.1:{ports['prom']}")
    # The scraped path: a Prometheus 3 that scrapes carol's exporter (restarted on
    # her port, but once) and the witness every 100 ms, so a scrape that lands while a
    # restarted exporter re-folds the history would show.
    scrape_dir = tmp / "prometheus-scrape"
    scrape_dir.mkdir()
    (scrape_dir / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "100ms", "scrape_timeout": "100ms"},
        "scrape_configs": [{"job_name": name, "static_configs": [
            {"targets": [f"127.0.0.1:{ports[name]}"]}]} for name in ("carol", "witness")],
    }))
    procs.start("prometheus-scrape", [
        eng["PROMETHEUS3"], f"--config.file={scrape_dir / 'prometheus.yml'}",
        f"--storage.tsdb.path={scrape_dir / 'data'}",
        f"--web.listen-address=127.0.0.1:{ports['prom_scrape']}"], env=base_env)
    prom_scrape = Prom(f"http://127.0.0.1:{ports['prom_scrape']}")
    jaeger_cfg = Path(__file__).with_name("team-jaeger.yaml")
    jenv = dict(base_env, OTEL_SDK_DISABLED="true", JAEGER_OTLP_GRPC=f"127.0.0.1:{ports['jaeger_otlp']}",
                JAEGER_QUERY_HTTP=f"127.0.0.1:{ports['jaeger_http']}",
                JAEGER_QUERY_GRPC=f"127.0.0.1:{ports['jaeger_grpc']}")
    procs.start("jaeger", [eng["JAEGER"], f"--config={jaeger_cfg}"], env=jenv)
    jaeger = f"http://127.0.0.1:{ports['jaeger_http']}"
    col_env = dict(base_env,
                   OTLP_GRPC_ENDPOINT=f"127.0.0.1:{ports['col_grpc']}",
                   OTLP_HTTP_ENDPOINT=f"127.0.0.1:{ports['col_http']}",
                   HEALTH_CHECK_ENDPOINT=f"127.0.0.1:{ports['col_health']}",
                   TEMPO_OTLP_ENDPOINT=f"127.0.0.1:{ports['jaeger_otlp']}",
                   PROMETHEUS_REMOTE_WRITE_URL=f"http://127.0.0.1:{ports['prom']}/api/v1/write")
    col_argv = [eng["OTELCOL"], f"--config={COLLECTOR_YAML}"]

    def start_collector():
        p = procs.start("collector", col_argv, env=col_env)
        up = wait_for(lambda: p.poll() is None and "Server available" in get(
            f"http://127.0.0.1:{ports['col_health']}/"), 30)
        return p, up

    col, up = start_collector()
    r.check("the Collector loads the shipped collector.yaml unchanged and is healthy",
            up and col.poll() is None, "" if up else col.log_path.read_text()[-2000:])
    if not up:
        return
    log = col.log_path.read_text()
    bad = [line for line in log.splitlines()
           if (re.search(r"\t(warn|error)\t", line) and "grpc@" not in line)
           or re.search(r"deprecat|please rewrite", line, re.I)]
    r.check("the Collector logs no deprecation or config warning", not bad, "\n".join(bad)[:1500])
    r.check("Prometheus 3 is ready", wait_for(lambda: prom.query("vector(1)"), 60) is not None)
    r.check("the scraping Prometheus 3 is ready",
            wait_for(lambda: prom_scrape.query("vector(1)"), 60) is not None)
    r.check("Jaeger's query API is up", wait_for(lambda: get(f"{jaeger}/api/services"), 60) is not None)

    # --- exporters ---------------------------------------------------------------
    print("== exporters", flush=True)

    def checkout(name, branch):
        d = tmp / "src" / name
        d.mkdir(parents=True)
        g = ["git", "-C", str(d), "-c", "user.name=t", "-c", "user.email=t@t"]
        subprocess.run(g[:3] + ["init", "-q", "-b", branch], check=True)
        subprocess.run(g[:3] + ["remote", "add", "origin", f"git@example.com:org/{name}.git"], check=True)
        (d / "README").write_text(name)
        subprocess.run(g + ["add", "README"], check=True)
        subprocess.run(g + ["commit", "-q", "-m", "x"], check=True)
        rev = subprocess.run(["git", "-C", str(d), "rev-parse", "HEAD"], check=True,
                             capture_output=True, text=True).stdout.strip()
        return d, rev

    def simulator(name, flavor="normal", scale="0.05", seed="42"):
        port = free_port()
        p = procs.start(f"sim-{name}", [
            bin_, "demo", "--listen", f"127.0.0.1:{free_port()}", "--skaffold-listen", f"127.0.0.1:{port}",
            "--scenario", flavor, "--time-scale", scale, "--seed", seed],
            env=dict(base_env, OTEL_SDK_DISABLED="true"))
        return p, port

    class Exporter:
        def __init__(self, name, sim_port, env, args, cwd, port=None):
            self.name, self.port = name, port or free_port()
            self.argv = [bin_, "--skaffold-addr", f"127.0.0.1:{sim_port}", "--listen",
                         f"127.0.0.1:{self.port}"] + args
            self.env, self.cwd, self.runs = dict(base_env, **env), cwd, 0
            self.final, self.finals = None, []
            self.start()

        def start(self):
            self.runs += 1
            self.p = procs.start(f"exp-{self.name}-{self.runs}", self.argv, env=self.env, cwd=self.cwd)
            # /metrics answers once Skaffold's replay is folded
            wait_for(lambda: get(self.url()), 20)

        def url(self):
            return f"http://127.0.0.1:{self.port}/metrics"

        def listen_on(self, port):
            """The next start listens on `port`."""
            self.port = port
            self.argv[self.argv.index("--listen") + 1] = f"127.0.0.1:{port}"

        def metrics(self):
            return parse_metrics(get(self.url()))

        def stop(self):
            """The metrics it ends with (no event comes after Skaffold stopped or
            while it shuts down), then SIGTERM (final flush)."""
            self.final = self.metrics()
            self.finals.append(self.final)
            return Procs.stop(self.p)

    col_grpc = f"http://127.0.0.1:{ports['col_grpc']}"
    col_http = f"http://127.0.0.1:{ports['col_http']}"

    def markers_forwarded(timeout=60):
        """Sends a marker metric and a marker span to the Collector (OTLP/HTTP
        JSON, a resource of their own: no team label, no target_info) and waits
        until Prometheus and Jaeger hold them. The Collector's batch processor
        forwards in the order it received: what it acknowledged before the
        markers has been forwarded by then. {signal: seconds it took, or None}."""
        nonce = int.from_bytes(os.urandom(4), "big")
        now = time.time_ns()
        res = {"attributes": [{"key": "service.name", "value": {"stringValue": "team-e2e-marker"}}]}
        trace_id = os.urandom(16).hex()
        bodies = {
            "metrics": {"resourceMetrics": [{"resource": res, "scopeMetrics": [{"metrics": [{
                "name": "team_e2e_marker",
                "gauge": {"dataPoints": [{"asDouble": nonce, "timeUnixNano": str(now)}]}}]}]}]},
            "traces": {"resourceSpans": [{"resource": res, "scopeSpans": [{"spans": [{
                "traceId": trace_id, "spanId": os.urandom(8).hex(), "name": "marker", "kind": 1,
                "startTimeUnixNano": str(now), "endTimeUnixNano": str(now + 1000)}]}]}]},
        }
        for signal, body in bodies.items():
            req = urllib.request.Request(f"{col_http}/v1/{signal}", json.dumps(body).encode(),
                                         {"Content-Type": "application/json"})
            urllib.request.urlopen(req, timeout=10).read()
        t0 = time.monotonic()
        arrived = {
            "metrics": lambda: any(float(x["value"][1]) == nonce for x in prom.query("team_e2e_marker")),
            "traces": lambda: json.loads(get(f"{jaeger}/api/traces/{trace_id}"))["data"],
        }
        took = {}
        for signal, pred in arrived.items():
            ok = wait_for(pred, max(0.0, timeout - (time.monotonic() - t0)), 0.25)
            took[signal] = time.monotonic() - t0 if ok else None
        return took

    dev_env = {"OTEL_METRIC_EXPORT_INTERVAL": "1000"}
    alice_dir, alice_rev = checkout("shop", "main")
    bob_dir, _ = checkout("cart", "feature/x")
    carol_dir, _ = checkout("shop-restart", "main")
    # carol's Skaffold runs in real time: the restart check compares Skaffold's
    # clock with the exporter's start, and a time-scaled demo runs ahead of it
    sims = {n: simulator(n, scale=sc, seed=s)
            for n, sc, s in (("alice", "0.05", "1"), ("bob", "0.05", "2"), ("carol", "1", "3"))}
    alice = Exporter("alice", sims["alice"][1], dict(
        dev_env, USER="alice", OTEL_EXPORTER_OTLP_ENDPOINT=col_grpc, OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
        OTEL_RESOURCE_ATTRIBUTES="team=payments"), ["--otlp-metrics"], alice_dir)
    bob = Exporter("bob", sims["bob"][1], dict(
        dev_env, USER="bob", OTEL_EXPORTER_OTLP_ENDPOINT=col_http,
        OTEL_RESOURCE_ATTRIBUTES="team=checkout"), ["--otlp-metrics"], bob_dir)
    carol = Exporter("carol", sims["carol"][1], dict(
        dev_env, USER="carol", OTEL_EXPORTER_OTLP_ENDPOINT=col_http,
        OTEL_RESOURCE_ATTRIBUTES="team=payments"), ["--otlp-metrics"], carol_dir,
        port=ports["carol"])
    # Never restarted, no OTLP: what carol's Skaffold really did.
    witness = Exporter("witness", sims["carol"][1], {}, [], carol_dir, port=ports["witness"])
    devs = [alice, bob]

    def events(e):
        return total(e.metrics(), "skaffold_exporter_events_total")

    r.check("the developers' exporters receive Skaffold events",
            wait_for(lambda: all(events(e) > 20 for e in devs + [carol]), 60) is not None)

    # carol: restarted mid-iteration, three times (the replay rebuilds the open one)
    # The second restart listens on another port (the scraping Prometheus misses
    # that process), the third on hers again: still the same exporter.
    kill_times, restart_times = [], []
    for i in range(3):
        def mid_iteration():
            m = carol.metrics()
            return (total(m, "skaffold_builds_total") > getattr(carol, "seen_builds", 0)
                    and total(m, "skaffold_dev_loops_total"))
        carol.seen_builds = total(carol.metrics(), "skaffold_builds_total")
        wait_for(mid_iteration, 30, 0.05)
        kill_times.append(time.time())
        carol.stop()
        time.sleep(0.5)
        carol.listen_on(free_port() if i == 1 else ports["carol"])
        carol.start()
        restart_times.append(time.time())
        time.sleep(2)

    # --- the Collector stops for 20 s ------------------------------------------------
    print(f"== Collector down for {OUTAGE_S}s", flush=True)
    before = {e.name: e.metrics() for e in devs}
    Procs.stop(col)
    t_down = time.monotonic()
    worst = 0.0
    while time.monotonic() - t_down < OUTAGE_S:
        for e in devs:
            t0 = time.monotonic()
            e.metrics()
            worst = max(worst, time.monotonic() - t0)
        time.sleep(0.5)
    during = {e.name: e.metrics() for e in devs}
    r.check("/metrics answers while the Collector is down", worst < 2.0, f"slowest {worst * 1000:.0f} ms")
    r.check("the readers go on while the Collector is down",
            all(total(during[e.name], "skaffold_exporter_events_total")
                > total(before[e.name], "skaffold_exporter_events_total") for e in devs))
    r.check("failed exports are counted while the Collector is down",
            all(total(during[e.name], "skaffold_exporter_otlp_export_errors_total") > 0 for e in devs))
    col, up = start_collector()
    r.check("the Collector comes back", bool(up))
    time.sleep(12)

    # --- CI runs: the shipped Job's environment, one exporter per run -----------------
    print("== CI runs (deploy/kubernetes/skaffold-run-job.yaml)", flush=True)
    job = [d for d in yaml.safe_load_all(JOB_YAML.read_text()) if d and d.get("kind") == "Job"][0]
    pod = job["spec"]["template"]["spec"]
    sidecar = [c for c in pod["initContainers"] if c["name"] == "skaffold-exporter"][0]
    skaffold = [c for c in pod["containers"] if c["name"] == "skaffold"][0]
    job_env = {e["name"]: e["value"] for e in sidecar.get("env", []) if "value" in e}
    r.check("the CI Job runs skaffold with --wait-for-connection", "--wait-for-connection" in skaffold["args"])
    ep = urllib.parse.urlsplit(job_env["OTEL_EXPORTER_OTLP_ENDPOINT"])
    proto = job_env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    right = {"grpc": 4317, "http/protobuf": 4318}[proto]
    r.check("the Job's OTLP endpoint port matches its protocol", ep.port == right,
            f"{proto} to port {ep.port}, the Collector serves it on {right}")
    ci_env = dict(job_env, OTEL_EXPORTER_OTLP_ENDPOINT=f"{ep.scheme}://127.0.0.1:"
                  f"{ports['col_grpc'] if right == 4317 else ports['col_http']}")
    ci_args = [a for a in sidecar.get("args", []) if not a.startswith(("--listen", "--skaffold-addr"))]
    team_attr = dict(kv.split("=", 1) for kv in job_env.get("OTEL_RESOURCE_ATTRIBUTES", "").split(",") if kv)
    pipeline_arg = [a.split("=", 1)[1] for a in ci_args if a.startswith("--pipeline-name=")]
    ci_pipeline = pipeline_arg[0] if pipeline_arg else None
    r.check("the Job names its pipeline", ci_pipeline is not None, str(ci_args))
    ci_runs = []

    def ci_run(outcome, pipeline):
        flavor = "deploy-failures" if outcome == "failure" else "normal"
        args = [a for a in ci_args if not a.startswith("--pipeline-name=")] + [f"--pipeline-name={pipeline}"]
        sim_port = free_port()
        e = Exporter(f"ci{len(ci_runs) + 1}", sim_port, ci_env, args, tmp)
        sim = procs.start(f"sim-ci{len(ci_runs) + 1}", [
            bin_, "demo", "--listen", f"127.0.0.1:{free_port()}", "--skaffold-listen", f"127.0.0.1:{sim_port}",
            "--scenario", flavor, "--time-scale", "0.3", "--seed", "7"],
            env=dict(base_env, OTEL_SDK_DISABLED="true"))
        done = wait_for(lambda: total(e.metrics(), "skaffold_deploys_total") >= 1, 60, 0.05)
        Procs.stop(sim)  # `skaffold run` exits
        time.sleep(3)  # the Job's preStop gives the sidecar 15 s
        took = e.stop()  # the kubelet stops the sidecar: it flushes its OTLP export
        got = {res: total(e.final, "skaffold_deploys_total", result=res) for res in ("success", "failure")}
        ok = done and got[outcome] == 1 and sum(got.values()) == 1 and took is not None
        r.check(f"CI run {len(ci_runs) + 1} ({pipeline}) sees exactly one deploy, {outcome}", ok,
                f"deploys {got}, sidecar stopped in {took}s")
        ci_runs.append(e)
        return e

    def firing(pipeline):
        return [a for a in prom.alerts() if a["labels"].get("alertname") == ALERT
                and a["labels"].get("pipeline") == pipeline and a["state"] == "firing"]

    for outcome in ("failure", "success", "failure", "failure"):
        ci_run(outcome, "mixed-ci")
    for _ in range(3):
        ci_run("failure", ci_pipeline)
    alert = wait_for(lambda: firing(ci_pipeline), 60)
    r.check(f"{ALERT} fires for three failed CI runs of {ci_pipeline} on Prometheus 3", bool(alert),
            json.dumps(alert[0]["labels"]) if alert else json.dumps(prom.alerts())[:1500])
    r.check(f"{ALERT} does not fire for CI runs F S F F (mixed-ci)", not firing("mixed-ci"))
    rule_expr = [ru for g in yaml.safe_load(RULES.read_text())["groups"] for ru in g["rules"]
                 if ru.get("alert") == ALERT][0]["expr"]
    ci_run("success", ci_pipeline)
    stopped = wait_for(lambda: not [s for s in prom.query(rule_expr)
                                    if s["metric"].get("pipeline") == ci_pipeline], 60)
    held = wait_for(lambda: [a for a in firing(ci_pipeline) if a.get("keepFiringSince")]
                    or not firing(ci_pipeline), 30)
    r.check("a successful CI run stops it (expression false; keep_firing_for holds the alert)",
            stopped is not None and held, json.dumps(firing(ci_pipeline))[:500])

    # --- stop the developers: Skaffold first, then the exporters (final push) --------
    print("== stopping the developers' sessions", flush=True)
    for n, (sim, _) in sims.items():
        Procs.stop(sim)
    time.sleep(3)
    stop_times = {e.name: e.stop() for e in devs + [carol, witness]}
    r.check("every exporter stops within its shutdown timeout",
            all(t is not None and t < 8 for t in stop_times.values()), str(stop_times))
    # Each exporter's exit flush and exit push were acknowledged by the Collector
    # before the process ended. The Collector forwards what it holds on its batch
    # timeout (5 s, later on a loaded machine), in the order received: a marker
    # sent now arrives once everything before it has.
    arrived = markers_forwarded()
    r.check("the Collector forwards the exporters' last exports (a marker sent after them "
            "reaches Prometheus and Jaeger)", all(arrived.values()),
            ", ".join(f"{k} after {v:.1f} s" if v is not None else f"{k} not within 60 s"
                      for k, v in arrived.items()))

    # --- metrics: what was pushed is what /metrics said -------------------------------
    print("== pushed metrics", flush=True)
    # every exporter process that pushed, with the metrics it ended with
    processes = [(e, m) for e in devs + [carol] + ci_runs for m in e.finals]
    # every Skaffold session, with what happened in it: its exporter's last
    # /metrics; carol's from the witness (each of her four exporter processes
    # re-folded the whole history: adding them up would count it four times)
    sessions = [(e, e.final) for e in devs + ci_runs] + [(carol, witness.final)]
    for e in devs:
        m = e.final
        r.check(f"{e.name}: no span dropped within the documented bounds (queue 2048, 60 s retry)",
                total(m, "skaffold_exporter_spans_dropped_total") == 0,
                f"exported {total(m, 'skaffold_exporter_spans_exported_total'):.0f}")

    hashes = {"alice": user_hash("alice"), "bob": user_hash("bob")}
    ci_user = pwd.getpwuid(os.getuid()).pw_name
    hashes["ci"] = user_hash(ci_user)
    r.check("the CI exporter's developer label comes from its uid ($USER unset)",
            bool(prom.query(f'last_over_time(skaffold_exporter_connected{{developer="{hashes["ci"]}"}}[1h])')),
            f"user {ci_user}")
    ti = prom.query("last_over_time(target_info[1h])")
    r.check("target_info carries no per-commit label (branch, revision)",
            ti and not any(k.startswith("vcs_ref_head") for s in ti for k in s["metric"]),
            sorted({k for s in ti for k in s["metric"]}).__repr__())
    runs = sum(total(m, "skaffold_exporter_events_total", event="meta") for _, m in sessions)
    r.check("target_info: one series per sidecar and Skaffold run (a restart continues its run's)",
            len(ti) == runs, f"{len(ti)} series, {runs:.0f} runs in {len(sessions)} sessions, "
            f"{len(processes)} exporter processes")
    exported = sum(total(m, "skaffold_exporter_spans_exported_total") for _, m in processes)

    def sum_builds(fn, **match):
        return sum(total(m, "skaffold_builds_total", **match) for e, m in sessions if fn(e))

    all_ = lambda e: True  # noqa: E731
    dash = json.loads(DASHBOARD.read_text())
    subst = {"$team": ".*", "$developer": ".+", "$repo": ".*", "$artifact": ".*",
             "${team:regex}": ".*", "${developer:regex}": ".+", "${repo:regex}": ".*",
             "$__range": "1h", "$__rate_interval": "3m"}

    def substituted(e, **extra):
        values = dict(subst, **extra)
        for k in sorted(values, key=len, reverse=True):
            e = e.replace(k, values[k])
        return e

    def expr_of(title, ref="A", **extra):
        """The panel's query, variables substituted; `extra` overrides them, by
        token ("$__rate_interval") or by variable name (developer=...: $developer
        and ${developer:regex})."""
        for k in [k for k in extra if not k.startswith("$")]:
            v = extra.pop(k)
            extra.update({f"${k}": v, f"${{{k}:regex}}": v})
        for p in dash["panels"]:
            if p.get("title") == title:
                for t in p["targets"]:
                    if t["refId"] == ref:
                        return substituted(t["expr"], **extra)
        raise KeyError(title)

    def counted_by_processes(name, by=None):
        """What every exporter process counted in `name` over all its pushes: per
        series, the value before each drop (a process that ended, the next one
        continuing the run's series from its own start) plus the last one. With
        `by`, a dict per value of that label."""
        n = {}
        for x in prom.query(f"{name}[2h]"):
            v = [float(val) for _, val in x["values"]]
            k = x["metric"].get(by) if by else None
            n[k] = n.get(k, 0.0) + sum(a for a, b in zip(v, v[1:]) if b < a) + (v[-1] if v else 0)
        return n if by else n.get(None, 0.0)

    def scalar(expr):
        res = prom.query(expr)
        return float(res[0]["value"][1]) if res else None

    def buckets(name, fn, by=None):
        acc = {}
        for e, m in sessions:
            if not fn(e):
                continue
            for labels, v in series(m, name):
                key = tuple(labels.get(b, "") for b in (by or ())) + (labels["le"],)
                acc[key] = acc.get(key, 0) + v
        out = {}
        for key, v in acc.items():
            out.setdefault(key[:-1], {})[key[-1]] = v
        return out

    def close(a, b):
        return a is not None and b is not None and abs(a - b) <= 1e-6 * max(1, abs(b))

    exp = sum_builds(all_)
    got = wait_for(lambda: (lambda v: v if close(v, exp) else None)(scalar(expr_of("Builds"))), 30)
    r.check("team dashboard: Builds", got is not None, f"expected {exp}, got {scalar(expr_of('Builds'))}")
    f = sum_builds(all_, result="failure")
    exp = f / (f + sum_builds(all_, result="success"))
    got = scalar(expr_of("Build failure ratio"))
    r.check("team dashboard: Build failure ratio", close(got, exp), f"expected {exp}, got {got}")
    exp = quantile(0.9, buckets("skaffold_build_duration_seconds_bucket", all_)[()])
    got = scalar(expr_of("p90 build time"))
    r.check("team dashboard: p90 build time", close(got, exp), f"expected {exp}, got {got}")
    hashes["carol"] = user_hash("carol")
    exp = len({hashes.get(e.name, hashes["ci"]) for e, m in sessions
               if total(m, "skaffold_dev_loops_total") > 0})
    got = scalar(expr_of("Active developers"))
    r.check("team dashboard: Active developers (alice, bob, the CI user)", close(got, exp), f"expected {exp}, got {got}")
    # per repo and artifact: the table
    want = {}
    for e, m in sessions:
        repo = {"alice": "shop", "bob": "cart", "carol": "shop-restart"}.get(
            e.name, team_attr.get("vcs.repository.name"))
        for labels, v in series(m, "skaffold_builds_total"):
            want[(repo, labels["artifact"])] = want.get((repo, labels["artifact"]), 0) + v
    want = {k: v for k, v in want.items() if v}
    got = {(s["metric"].get("repo"), s["metric"].get("artifact")): float(s["value"][1])
           for s in prom.query(expr_of("Slowest artifacts", "B"))}
    got = {k: v for k, v in got.items() if v}
    rows = min(10, len(want))
    r.check("team dashboard: Slowest artifacts, builds of each of the top 10 repo/artifact rows",
            len(got) == rows and all(want.get(k) == v for k, v in got.items()),
            f"expected {want}, got {got}")
    got_p90 = {(s["metric"].get("repo"), s["metric"].get("artifact")): float(s["value"][1])
               for s in prom.query(expr_of("Slowest artifacts", "A"))}
    r.check("team dashboard: Slowest artifacts, the top 10 p90 rows are the builds' rows",
            len(got_p90) == rows and set(got_p90) == set(got), f"{sorted(got_p90)}")
    for title in ("Build time by artifact (p50 / p90)", "Build time by developer (p50 / p90)"):
        res = prom.query(expr_of(title, "B"), at=time.time() - 15)
        by = "artifact" if "artifact" in title else "developer"
        vals = {s["metric"].get(by) for s in res}
        expect = ({a for _, a in want} if by == "artifact" else {hashes["alice"], hashes["bob"]})
        r.check(f"team dashboard: {title} has a series per {by}", expect <= vals, f"{sorted(vals)}")
    res = prom.query(expr_of("Build failure rate by repo and artifact"), at=time.time() - 15)
    r.check("team dashboard: Build failure rate by repo and artifact answers per repo",
            {"shop", "cart"} <= {s["metric"].get("repo") for s in res}, str(len(res)))
    dl = buckets("skaffold_dev_loop_duration_seconds_bucket", all_)[()]
    for ref, q in (("A", 0.5), ("B", 0.9)):
        exp, got = quantile(q, dl), scalar(expr_of("Dev-loop time, weekly trend", ref))
        r.check(f"team dashboard: weekly dev-loop p{int(q * 100)}", close(got, exp), f"expected {exp}, got {got}")
    bl = buckets("skaffold_build_duration_seconds_bucket", all_)[()]
    for ref, q in (("A", 0.5), ("B", 0.9)):
        exp, got = quantile(q, bl), scalar(expr_of("Build time, weekly trend", ref))
        r.check(f"team dashboard: weekly build p{int(q * 100)}", close(got, exp), f"expected {exp}, got {got}")
    # deploys: the laptops' (the demo fails some at random) and the CI runs' (known)
    def sum_deploys(**match):
        return sum(total(m, "skaffold_deploys_total", **match) for e, m in sessions)
    failed = sum_deploys(result="failure")
    got = scalar(expr_of("Failed deploys"))
    r.check("team dashboard: Failed deploys", close(got, failed), f"expected {failed}, got {got}")
    exp = failed / (failed + sum_deploys(result="success"))
    got = scalar(expr_of("Deploy failure ratio"))
    r.check("team dashboard: Deploy failure ratio", close(got, exp), f"expected {exp}, got {got}")
    rows = {s["metric"].get("pipeline"): float(s["value"][1])
            for s in prom.query(expr_of("Deploy failures by pipeline"))}
    r.check(f"team dashboard: Deploy failures by pipeline: 3 for {ci_pipeline} (F F F S), 3 for mixed-ci (F S F F)",
            rows.get(ci_pipeline) == 3 and rows.get("mixed-ci") == 3, str(rows))
    # the per-interval panel and the annotation, over a window that holds the CI runs
    res = prom.query(expr_of("Failed deploys by repo and pipeline", **{"$__rate_interval": "1h"}))
    per = {s["metric"].get("pipeline"): float(s["value"][1]) for s in res}
    r.check("team dashboard: Failed deploys by repo and pipeline has the CI pipelines' failures",
            per.get(ci_pipeline) == 3 and per.get("mixed-ci") == 3, str(per))
    anno = [a for a in dash["annotations"]["list"] if not a.get("builtIn")][0]
    res = prom.query(substituted(anno["target"]["expr"], **{"$__rate_interval": "1h"}))
    r.check("team dashboard: the failed-deploy annotation marks the CI pipelines",
            {ci_pipeline, "mixed-ci"} <= {s["metric"].get("pipeline") for s in res}, str(len(res)))
    alert_list = [p for p in dash["panels"] if p["type"] == "alertlist"][0]["options"]
    matchers = dashlib.parse_matchers(substituted(alert_list["alertInstanceLabelFilter"]))
    shown = [a["labels"] for a in firing(ci_pipeline)
             if alert_list["alertName"] in a["labels"]["alertname"] and dashlib.matches(matchers, a["labels"])]
    r.check(f"team dashboard: the alert list's filter selects the firing {ALERT} of {ci_pipeline}",
            bool(shown), f"{matchers} vs {[a['labels'] for a in firing(ci_pipeline)]}")
    for var, expect in (("team", {"payments", "checkout", team_attr.get("team")}),
                        ("developer", set(hashes.values())),
                        ("repo", {"shop", "cart", team_attr.get("vcs.repository.name")})):
        vals = {s["metric"].get(var)
                for s in prom.query(f"group by ({var}) (last_over_time(skaffold_exporter_connected[1h]))")}
        r.check(f"team dashboard: variable ${var}", expect <= vals, f"{sorted(v for v in vals if v)}")

    # --- carol: three restarts, every event counted once -----------------------------
    print("== carol: restarted three times", flush=True)
    ch = hashes["carol"]
    truth = {n: total(witness.final, n) for n in (
        "skaffold_builds_total", "skaffold_dev_loops_total", "skaffold_deploys_total")}
    got = scalar(expr_of("Builds", developer=ch))
    r.check("team dashboard, carol: Builds equals what her Skaffold built (the witness), "
            "each build once across her exporter's 3 restarts",
            close(got, truth["skaffold_builds_total"]),
            f"expected {truth['skaffold_builds_total']:.0f}, got {got}")
    # "Active developers" counts developers whose iterations in the range are > 0:
    # its inner sum is the dashboard's count of iterations per developer.
    per_dev = re.fullmatch(r"count\((.*) > 0\)", expr_of("Active developers", developer=ch), re.S)
    got = scalar(per_dev.group(1)) if per_dev else None
    r.check("team dashboard, carol: dev-loop iterations (the per-developer count inside "
            "Active developers) equal her Skaffold's",
            close(got, truth["skaffold_dev_loops_total"]),
            f"expected {truth['skaffold_dev_loops_total']:.0f}, got {got}")
    want_c = {}
    for labels, v in series(witness.final, "skaffold_builds_total"):
        want_c[labels["artifact"]] = want_c.get(labels["artifact"], 0) + v
    got = {x["metric"].get("artifact"): float(x["value"][1]) for x in prom.query(
        expr_of("Slowest artifacts", "B", developer=ch, repo="shop-restart"))}
    r.check("team dashboard, carol: Slowest artifacts, builds per artifact equal her Skaffold's",
            got == {a: v for a, v in want_c.items() if v}, f"expected {want_c}, got {got}")
    # One id per Skaffold run: the run that was current at each restart kept its
    # id (its series has samples from before the kill and after the restart).
    raw = prom.query(f'skaffold_dev_loops_total{{developer="{ch}"}}[2h]')
    seen = {}
    for x in raw:
        ts = [float(t) for t, _ in x["values"]]
        lo, hi = seen.get(x["metric"].get("instance"), (math.inf, -math.inf))
        seen[x["metric"].get("instance")] = (min([lo] + ts), max([hi] + ts))
    carol_runs = total(witness.final, "skaffold_exporter_events_total", event="meta")
    bridged = [any(lo < k and hi > rt + 1 for lo, hi in seen.values())
               for k, rt in zip(kill_times, restart_times)]
    r.check("carol: one service.instance.id per Skaffold run, kept across each of her restarts "
            "(one on another --listen port)",
            len(seen) == carol_runs and all(bridged) and len(bridged) == 3,
            f"{len(seen)} ids for {carol_runs:.0f} runs; restarts bridged: {bridged}")
    resets = {n: scalar(f'sum(resets({n}{{developer="{ch}"}}[2h]))') for n in (
        "skaffold_builds_total", "skaffold_deploys_total", "skaffold_status_checks_total",
        "skaffold_dev_loops_total", "skaffold_build_duration_seconds_count")}
    r.check("carol: her pushed counters never went down (no reset for increase() to add up)",
            all(v == 0 for v in resets.values()), str(resets))

    # --- the scraped path: the same restarts, scraped every 100 ms ------------------
    print("== carol scraped (Prometheus 3, every 100 ms)", flush=True)

    def scraped(expr):
        res = prom_scrape.query(expr)
        return float(res[0]["value"][1]) if res else None

    for name, want in truth.items():
        # The raw samples, no extrapolation: increase() of two series scraped
        # at different moments (carol's exporter is down during each restart,
        # and on another port once) may differ by its extrapolation and by what
        # happened before a series' first sample; what a restart must never do
        # is make the counter go down (increase() would add it all again) or
        # count an event twice (a sample above her Skaffold's count).
        raw = {}
        for x in prom_scrape.query(f'{name}{{job=~"carol|witness"}}[2h]'):
            labels = frozenset((k, v) for k, v in x["metric"].items() if k not in ("__name__", "job", "instance"))
            raw.setdefault(x["metric"]["job"], {})[labels] = [float(v) for _, v in x["values"]]
        c, w = raw.get("carol", {}), raw.get("witness", {})
        drops = sum(1 for v in c.values() for a, b in zip(v, v[1:]) if b < a)
        above = sum(1 for k, v in c.items() if max(v) > w.get(k, [0.0])[-1])
        last = {k: v[-1] for k, v in c.items()}
        inc = {j: scraped(f'sum(increase({name}{{job="{j}"}}[2h]))') for j in ("carol", "witness")}
        r.check(f"scraped carol, {name}: across 3 restarts no series ever lower than before "
                "or above the witness's end, and they end as the witness's, at her Skaffold's count",
                bool(c) and drops == 0 and above == 0 and last == {k: v[-1] for k, v in w.items()}
                and sum(last.values()) == want,
                f"{len(c)} series, {sum(len(v) for v in c.values())} samples, {drops} drops, "
                f"{above} above, last {sum(last.values())}, truth {want:.0f}; "
                f"increase() carol {inc['carol']}, witness {inc['witness']}")

    # --- traces in Jaeger ------------------------------------------------------------
    print("== traces in Jaeger", flush=True)
    # the time-scaled demo sessions run ahead of the wall clock
    end_us = int((time.time() + 86400) * 1e6)
    try:
        traces = json.loads(get(f"{jaeger}/api/traces?service=skaffold&limit=100000"
                                f"&start={end_us - 2 * 86400 * 10**6}&end={end_us}", 30))["data"]
    except OSError as err:
        r.check("Jaeger answers the trace query", False, str(err))
        return
    by_inst = {}
    dup, orphans, rootless, multi = 0, 0, 0, 0
    seen = set()
    for t in traces:
        procs_ = {pid: {tg["key"]: tg["value"] for tg in p["tags"]} for pid, p in t["processes"].items()}
        ids = [s["spanID"] for s in t["spans"]]
        for s in t["spans"]:
            key = (t["traceID"], s["spanID"])
            dup += key in seen
            seen.add(key)
        roots = [s for s in t["spans"] if not s["references"]]
        rootless += not roots
        multi += len(roots) > 1
        if len(roots) > 1 and multi <= 3:
            print("    several roots:", [(s["operationName"], procs_[s["processID"]].get("service.instance.id"),
                                           {tg["key"]: tg["value"] for tg in s["tags"]}.get("skaffold.iteration"))
                                          for s in roots])
        orphans += sum(1 for s in t["spans"] for ref in s["references"] if ref["spanID"] not in ids)
        for s in roots:
            res = procs_[s["processID"]]
            tags = {tg["key"]: tg["value"] for tg in s["tags"]}
            by_inst.setdefault(res.get("user.hash"), []).append((t, s, tags, res))
    r.check("Jaeger: no span id twice", dup == 0, f"{dup} duplicates in {len(traces)} traces")
    # Jaeger's query drops exact duplicates: count what every exporter process
    # sent (its exit push of spans_exported_total) against what the store has
    # (both complete: the markers went through).
    stored = sum(len(t["spans"]) for t in traces)
    pushed = counted_by_processes("skaffold_exporter_spans_exported_total")
    detail = (f"store {stored}, pushed at exit {pushed:.0f} (on /metrics before the exit flush "
              f"{exported:.0f})")
    if stored != pushed:
        # by developer (the CI runs share one): the exporters' count against the store's
        sent = counted_by_processes("skaffold_exporter_spans_exported_total", by="developer")
        held = {}
        for t in traces:
            for s in t["spans"]:
                d = {tg["key"]: tg["value"] for tg in t["processes"][s["processID"]]["tags"]}.get("user.hash")
                held[d] = held.get(d, 0) + 1
        detail += "; by developer (sent, stored): " + ", ".join(
            f"{str(d)[:8]} {sent.get(d, 0):.0f} {held.get(d, 0)}" for d in sorted(set(sent) | set(held), key=str)
            if sent.get(d, 0) != held.get(d, 0))
    r.check("Jaeger: the store holds exactly the spans the exporters sent, none twice",
            stored == pushed and stored >= exported, detail)
    r.check("Jaeger: every trace has exactly one root and no span whose parent is missing",
            rootless == 0 and multi == 0 and orphans == 0,
            f"{rootless} without root, {multi} with several, {orphans} orphans")
    for e in devs + [carol]:
        h = user_hash(e.name)
        mine = by_inst.get(h, [])
        complete = [x for x in mine if "skaffold.span.end_reason" not in x[2]]
        # the last process saw Skaffold's whole session (its replay)
        loops = total(e.final, "skaffold_dev_loops_total")
        r.check(f"Jaeger: {e.name}: one trace per finished dev-loop iteration",
                len(complete) == loops and loops > 0, f"{len(complete)} traces, {loops:.0f} iterations")
    alice_roots = by_inst.get(hashes["alice"], [])
    if alice_roots:
        t, s, tags, res = alice_roots[0]
        need = {"cicd.pipeline.name", "cicd.pipeline.action.name", "cicd.pipeline.run.id", "cicd.pipeline.result"}
        r.check("Jaeger: roots carry the CI/CD attributes", need <= set(tags), str(sorted(tags)))
        r.check("Jaeger: the resource tells the exporters apart (team, user.hash, instance, commit)",
                res.get("team") == "payments" and res.get("vcs.ref.head.revision") == alice_rev
                and res.get("service.instance.id"), str(res))
    names = {sp["operationName"] for t, *_ in alice_roots for sp in t["spans"]}
    expect = {"build leeroy-web", "build leeroy-app", "build leeroy-db", "deploy", "status check"}
    r.check("Jaeger: the tree has builds per artifact, deploy, status check, rollouts",
            expect <= names and any(n.startswith("rollout ") for n in names), str(sorted(names)))
    tasks = [sp for t, *_ in alice_roots for sp in t["spans"] if sp["references"]]
    r.check("Jaeger: children carry cicd.pipeline.task.* attributes",
            tasks and all({"cicd.pipeline.task.name", "cicd.pipeline.task.type", "cicd.pipeline.task.run.id"}
                          <= {tg["key"] for tg in sp["tags"]} for sp in tasks))
    carol_roots = by_inst.get(user_hash("carol"), [])
    spanning = [x for x in carol_roots for k in kill_times
                if x[1]["startTime"] / 1e6 < k < (x[1]["startTime"] + x[1]["duration"]) / 1e6]
    r.check("Jaeger: carol's exporter was restarted inside an iteration, whose trace is complete",
            bool(spanning), f"{len(spanning)} of {len(kill_times)} restarts mid-iteration")
    ci_traces = [x for x in by_inst.get(hashes["ci"], [])]
    r.check("Jaeger: every CI run left a trace with the Job's resource",
            len({x[3].get("service.instance.id") for x in ci_traces}) == len(ci_runs)
            and all(x[3].get("deployment.environment.name") == "ci" for x in ci_traces),
            f"{len(ci_traces)} traces")


if __name__ == "__main__":
    sys.exit(main())
