#!/usr/bin/env python3
"""End-to-end check of dashboards and alert rules against a real Prometheus.

    e2e.py BIN [--timeout SECONDS] [--skip-alert-scenario] [--keep]

1. Starts `BIN demo --listen 127.0.0.1:P1` (the simulated dev session) and
   `BIN demo --scenario deploy-failures --listen 127.0.0.1:P2` (every deploy
   fails).
2. Starts a real `prometheus` (Debian package) from a config derived from the
   shipped deploy/prometheus/prometheus.yml: same job and rule file, targets
   replaced by P1/P2, 1 s scrape and evaluation interval. Each target gets the
   labels team/developer/repo, as the collector gateway promotes them, so the
   team dashboard has data too.
3. Until every check passed or the deadline expires (default 100 s):
   - every query of every panel of every dashboard (Grafana variables replaced:
     $__rate_interval=1m, $__interval=15s, $__range=10m, $job=the scrape job,
     multi-value variables by their "All" regex) runs through /api/v1/query
     (instant targets) or /api/v1/query_range (range targets) and must return
     at least one finite sample;
   - every template variable (label_values) returns at least one value;
   - every annotation query (failed deploys) returns a point;
   - every alert-list panel's filter, at the dashboard's defaults, selects the
     firing deploy alert;
   - all rules evaluate without error;
   - SkaffoldDeployFailingRepeatedly is firing for the deploy-failures sidecar.
4. Every metric name used by the dashboards and rules appears in the
   exporters' /metrics output.
Ends with "N passed, M failed". Exit 1 on any failure.
"""

import argparse
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

import dashlib as dl
import lint_dashboards

JOB = "skaffold-exporter"
ALERT = "SkaffoldDeployFailingRepeatedly"

# Queries that may legitimately stay empty in a short demo run. They must
# still parse (Prometheus answers "success"). key: (dashboard uid, panel, refId)
ALLOW_EMPTY = {
    ("skaffold-dev-loop", "Exporter anomalies", "A"):
        "invalid events only exist when Skaffold sends something the exporter rejects; "
        "the demo sends valid events",
}
# The demo's `skaffold dev` session configures no tests, and `skaffold verify` and
# `skaffold exec` are commands of their own: those phases have no series in it.
NO_TESTS = "the demo session configures no tests (skaffold_test_duration_seconds has no series)"
NOT_IN_DEV = "verify and exec run as `skaffold verify` / `skaffold exec`, never in the demo's `skaffold dev`"
for _title, _refs in (("Where the time goes", "BGH"), ("Phase time (p90)", "BGH"),
                      ("Share of loop time by phase", "B")):
    for _ref in _refs:
        ALLOW_EMPTY[("skaffold-dev-loop", _title, _ref)] = NO_TESTS if _ref == "B" else NOT_IN_DEV
# The same phases' histograms: the exporter creates their series when the phase
# first runs, so the demo's /metrics has no sample of them. Their names are checked
# against the contract by the lint, and their values by the Rust tests.
NOT_EXPOSED = {f"skaffold_{p}_duration_seconds_{s}": NO_TESTS if p == "test" else NOT_IN_DEV
               for p in ("test", "verify", "exec") for s in ("bucket", "sum", "count")}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=5, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.headers, r.read().decode()


class Prom:
    def __init__(self, base):
        self.base = base

    def api(self, path, **params):
        url = f"{self.base}/api/v1/{path}?{urllib.parse.urlencode(params, doseq=True)}"
        try:
            _, _, body = http_get(url, timeout=10)
        except urllib.error.HTTPError as e:
            body = e.read().decode()
        return json.loads(body)


def finite_values(result, kind):
    vals = []
    if kind == "vector":
        vals = [s["value"][1] for s in result]
    elif kind == "matrix":
        vals = [v[1] for s in result for v in s["values"]]
    elif kind == "scalar":
        vals = [result[1]]
    return [float(v) for v in vals if not math.isnan(float(v)) and not math.isinf(float(v))]


class Checks:
    def __init__(self):
        self.passed = {}
        self.failed = {}
        self.first_ok = {}

    def ok(self, key, msg=""):
        self.failed.pop(key, None)
        if key not in self.passed:
            self.first_ok[key] = time.monotonic()
        self.passed[key] = msg

    def fail(self, key, msg):
        if key not in self.passed:
            self.failed[key] = msg


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bin", help="path of the built skaffold-exporter binary")
    ap.add_argument("--timeout", type=float, default=100.0)
    ap.add_argument("--skip-alert-scenario", action="store_true",
                    help="do not start the deploy-failures sidecar (its check is reported as skipped)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir with logs and config")
    ap.add_argument("--time-scale", type=float, default=0.2,
                    help="demo --time-scale for the normal session (real seconds per simulated second)")
    ap.add_argument("--failures-time-scale", type=float, default=0.05,
                    help="demo --time-scale for the deploy-failures session")
    ap.add_argument("--prometheus", default=shutil.which("prometheus") or "prometheus")
    ap.add_argument("--promtool", default=shutil.which("promtool") or "promtool")
    args = ap.parse_args()

    t0 = time.monotonic()
    binpath = os.path.abspath(args.bin)
    if not os.access(binpath, os.X_OK):
        print(f"e2e: {binpath} is not an executable file", file=sys.stderr)
        return 2
    if not shutil.which(args.prometheus):
        print("e2e: prometheus not found (apt-get install -y prometheus)", file=sys.stderr)
        return 2

    tmp = Path(tempfile.mkdtemp(prefix="skaffold-e2e-"))
    procs = []

    def start(name, argv):
        log = open(tmp / f"{name}.log", "w")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True)
        procs.append((name, p))
        return p

    def stop_all():
        for name, p in reversed(procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for name, p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)

    def on_signal(signum, frame):
        stop_all()
        sys.exit(130)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    checks = Checks()
    try:
        # ---- exporters ------------------------------------------------------
        p1, p2, pp = free_port(), free_port(), free_port()
        targets = {"demo": f"127.0.0.1:{p1}"}
        start("exporter-demo", [binpath, "demo", "--time-scale", str(args.time_scale),
                                "--listen", targets["demo"]])
        if not args.skip_alert_scenario:
            targets["deploy-failures"] = f"127.0.0.1:{p2}"
            start("exporter-deploy-failures",
                  [binpath, "demo", "--scenario", "deploy-failures",
                   "--time-scale", str(args.failures_time_scale), "--listen", targets["deploy-failures"]])
        for name, addr in targets.items():
            deadline = time.monotonic() + 30
            while True:
                proc = dict(procs)[f"exporter-{name}"]
                if proc.poll() is not None:
                    log = (tmp / f"exporter-{name}.log").read_text()[-2000:]
                    print(f"e2e: exporter ({name}) exited with {proc.returncode}:\n{log}", file=sys.stderr)
                    return 1
                try:
                    status, headers, _ = http_get(f"http://{addr}/metrics", timeout=2)
                    if status == 200:
                        break
                except (urllib.error.URLError, ConnectionError, socket.timeout):
                    pass
                if time.monotonic() > deadline:
                    print(f"e2e: exporter ({name}) did not serve /metrics within 30 s", file=sys.stderr)
                    return 1
                time.sleep(0.2)
            ctype = headers.get("Content-Type") or ""
            key = f"exporter {name}: Content-Type"
            if ctype.startswith("application/openmetrics-text") or ctype.startswith("text/plain"):
                checks.ok(key, ctype)
            else:
                checks.fail(key, f"unexpected Content-Type {ctype!r}")

        # ---- prometheus -----------------------------------------------------
        shipped = yaml.safe_load((dl.PROM_DIR / "prometheus.yml").read_text())
        cfg = dict(shipped)
        cfg["global"] = {**shipped.get("global", {}), "scrape_interval": "1s",
                         "evaluation_interval": "1s", "scrape_timeout": "1s"}
        cfg["rule_files"] = [str((dl.PROM_DIR / f).resolve()) for f in shipped["rule_files"]]
        jobs = [j for j in shipped["scrape_configs"] if j["job_name"] == JOB]
        if not jobs:
            print(f"e2e: job {JOB} not found in deploy/prometheus/prometheus.yml", file=sys.stderr)
            return 1
        job = dict(jobs[0])
        job["static_configs"] = [
            {"targets": [addr], "labels": {"team": "e2e", "developer": f"dev-{name}", "repo": "demo"}}
            for name, addr in targets.items()
        ]
        cfg["scrape_configs"] = [job]
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        r = subprocess.run([args.promtool, "check", "config", str(tmp / "prometheus.yml")],
                           capture_output=True, text=True)
        if r.returncode == 0:
            checks.ok("promtool check config (e2e config)")
        else:
            checks.fail("promtool check config (e2e config)", r.stdout + r.stderr)

        start("prometheus", [args.prometheus, f"--config.file={tmp / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp / 'data'}",
                             f"--web.listen-address=127.0.0.1:{pp}",
                             "--enable-feature=exemplar-storage", "--log.level=warn"])
        prom = Prom(f"http://127.0.0.1:{pp}")
        deadline = time.monotonic() + 30
        while True:
            try:
                if http_get(f"{prom.base}/-/ready", timeout=2)[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError, socket.timeout):
                pass
            if dict(procs)["prometheus"].poll() is not None or time.monotonic() > deadline:
                print("e2e: prometheus did not start:\n" + (tmp / "prometheus.log").read_text()[-3000:],
                      file=sys.stderr)
                return 1
            time.sleep(0.3)
        prom_start = time.time()
        prom_start_mono = time.monotonic()
        print(f"e2e: exporters {targets}, prometheus 127.0.0.1:{pp}, temp dir {tmp}")

        # ---- the work list ----------------------------------------------------
        queries = []  # (key, expr, instant, allow_empty_reason)
        var_queries = []  # (key, selector, label)
        # The exporter's own exposition, as Prometheus scraped it (gzip-compressed:
        # Prometheus asks for it): its build and its process, for every target.
        n_targets = len(targets)
        queries.append(("exposition: skaffold_exporter_build_info of every target",
                        f'count(skaffold_exporter_build_info{{version!="",revision!=""}} == 1) == {n_targets}',
                        True, None))
        queries.append(("exposition: process metrics of every target",
                        f"count(process_resident_memory_bytes > 0 and on(instance) process_open_fds > 0"
                        f" and on(instance) process_cpu_seconds_total > 0) == {n_targets}",
                        True, None))
        alert_lists = []  # (key, alert name filter, label matchers with the defaults)
        for path, dash in dl.load_dashboards():
            uid = dash["uid"]
            values = {"__rate_interval": "1m", "__interval": "15s", "__range": "10m",
                      "__range_s": "600", "__interval_ms": "15000"}
            for v in dl.template_vars(dash):
                if v["name"] == "job":
                    values["job"] = JOB
                elif v.get("multi") or v.get("includeAll"):
                    values[v["name"]] = v.get("allValue") or ".*"
            for v in dl.template_vars(dash):
                if v.get("type") == "query":
                    sel, label = dl.parse_label_values(dl.var_query(v))
                    var_queries.append((f"{uid} variable ${v['name']}",
                                        dl.substitute(sel, values) if sel else None, label))
            for p in dl.iter_panels(dash):
                for t in p.get("targets", []):
                    key = f"{uid} / {p['title']} / {t['refId']}"
                    queries.append((key, dl.substitute(t["expr"], values), bool(t.get("instant")),
                                    ALLOW_EMPTY.get((uid, p["title"], t["refId"]))))
                if p.get("type") == "alertlist":
                    opts = p.get("options") or {}
                    alert_lists.append((f"{uid} / {p['title']}", opts.get("alertName") or "",
                                        dl.parse_matchers(dl.substitute(
                                            opts.get("alertInstanceLabelFilter") or "", values))))
            for a in dl.prom_annotations(dash):
                # an annotation is a range query; the deploy-failures sidecar fails deploys
                queries.append((f"{uid} / annotation {a['name']}",
                                dl.substitute(dl.annotation_expr(a), values), False, None))

        def run_round():
            now = time.time()
            for key, expr, instant, allow in queries:
                if key in checks.passed:
                    continue
                if instant:
                    res = prom.api("query", query=expr, time=f"{now:.3f}")
                else:
                    res = prom.api("query_range", query=expr, start=f"{max(prom_start, now - 600):.3f}",
                                   end=f"{now:.3f}", step="2")
                if res.get("status") != "success":
                    checks.fail(key, f"{res.get('errorType')}: {res.get('error')}\n      {expr}")
                    continue
                data = res["data"]
                if finite_values(data["result"], data["resultType"]):
                    checks.ok(key)
                elif allow:
                    # parsed; keep trying for data in later rounds, but never fail on it
                    checks.failed.pop(key, None)
                    allowed_empty[key] = allow
                else:
                    checks.fail(key, f"no finite sample yet\n      {expr}")
            for key, sel, label in var_queries:
                if key in checks.passed:
                    continue
                params = {"start": f"{prom_start - 60:.3f}", "end": f"{now:.3f}"}
                if sel:
                    params["match[]"] = sel
                res = prom.api(f"label/{label}/values", **params)
                if res.get("status") == "success" and res["data"]:
                    checks.ok(key, ", ".join(res["data"][:5]))
                else:
                    checks.fail(key, f"no values for label_values({sel}, {label}): {res}")
            # rules evaluate without error
            res = prom.api("rules")
            rules = [r for g in res.get("data", {}).get("groups", []) for r in g["rules"]]
            bad = [f"{r['name']}: {r.get('lastError')}" for r in rules if r.get("health") != "ok"]
            if rules and not bad:
                checks.ok("rules: all evaluate without error", f"{len(rules)} rules")
            else:
                checks.fail("rules: all evaluate without error", "; ".join(bad) or "no rules loaded")
            # the alert
            if "deploy-failures" in targets:
                res = prom.api("alerts")
                firing = [a for a in res.get("data", {}).get("alerts", [])
                          if a["labels"].get("alertname") == ALERT and a["state"] == "firing"
                          and a["labels"].get("instance") == targets["deploy-failures"]]
                key = f"alert {ALERT} firing for the deploy-failures sidecar"
                if firing:
                    checks.ok(key, f"after {time.time() - prom_start:.0f} s, value {firing[0].get('value')}")
                else:
                    states = [(a["labels"].get("instance"), a["state"]) for a in res.get("data", {}).get("alerts", [])
                              if a["labels"].get("alertname") == ALERT]
                    checks.fail(key, f"not firing yet (alerts: {states})")
                # each alert-list panel, with its filter at the dashboard's defaults, lists it
                for key, name, matchers in alert_lists:
                    key = f"{key}: lists the firing {ALERT}"
                    if key in checks.passed:
                        continue
                    shown = [a for a in firing if name.lower() in a["labels"]["alertname"].lower()
                             and matchers is not None and dl.matches(matchers, a["labels"])]
                    if shown:
                        checks.ok(key, f"filter {matchers}")
                    else:
                        checks.fail(key, f"filter {matchers} selects none of {[a['labels'] for a in firing]}")

        allowed_empty = {}
        deadline = time.monotonic() + args.timeout
        while True:
            run_round()
            if not checks.failed and all(k in checks.passed or k in allowed_empty for k, *_ in queries):
                break
            if time.monotonic() > deadline:
                break
            time.sleep(2)
        qkeys = [k for k, *_ in queries if k in checks.first_ok]
        if qkeys:
            slow = max(qkeys, key=lambda k: checks.first_ok[k])
            print(f"e2e: every panel query had data {checks.first_ok[slow] - prom_start_mono:.0f} s "
                  f"after Prometheus started (last: {slow})")
        for key, reason in allowed_empty.items():
            if key not in checks.passed:
                checks.ok(key, f"parsed, empty (allowed: {reason})")

        # ---- metric names vs the real exposition -------------------------------
        exposed = set()
        for name, addr in targets.items():
            _, _, text = http_get(f"http://{addr}/metrics")
            exposed |= dl.exposition_names(text)
            (tmp / f"metrics-{name}.txt").write_text(text)
        lint = lint_dashboards.Lint()
        for path, dash in dl.load_dashboards():
            lint.dashboard(path, dash, lint_dashboards.load_exclusions())
        lint.rules()
        for name in sorted(lint.names):
            key = f"metric {name} is exposed by the exporter"
            if name in exposed:
                checks.ok(key)
            elif name in NOT_EXPOSED:
                checks.ok(key, f"not in the demo (allowed: {NOT_EXPOSED[name]})")
            else:
                checks.fail(key, "used by " + "; ".join(sorted(lint.names[name])))
        missing_contract = sorted(n for n in dl.contract_sample_names() if n not in exposed)
        if missing_contract:
            print("e2e: note: contract names not (yet) in the exposition: " + ", ".join(missing_contract))

        # exemplars are informational (they arrive with tracing)
        res = prom.api("query_exemplars", query="skaffold_dev_loop_duration_seconds_bucket",
                       start=f"{prom_start - 60:.3f}", end=f"{time.time():.3f}")
        n_ex = sum(len(s.get("exemplars", [])) for s in res.get("data", []) or [])
        print(f"e2e: note: {n_ex} exemplars stored for skaffold_dev_loop_duration_seconds_bucket")
    finally:
        stop_all()
        if args.keep or checks.failed:
            print(f"e2e: logs and config kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    if args.skip_alert_scenario:
        print(f"e2e: SKIPPED alert {ALERT} firing (--skip-alert-scenario)")
    for key, msg in sorted(checks.passed.items()):
        print(f"  ok   {key}" + (f"  [{msg}]" if msg else ""))
    for key, msg in sorted(checks.failed.items()):
        print(f"  FAIL {key}: {msg}")
    print(f"e2e: took {time.monotonic() - t0:.0f} s")
    print(f"{len(checks.passed)} passed, {len(checks.failed)} failed")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
