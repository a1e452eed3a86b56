#!/usr/bin/env python3
"""A stand-in for `skaffold-exporter demo`, for developing the deploy test
harness only.

    fake-exporter.py demo --listen 127.0.0.1:9464 [--scenario deploy-failures]

Serves /metrics in OpenMetrics with every series of the metric contract
(tests/deploy/metric-contract.txt) and advances a simulated dev session about
once a second. It is NOT the exporter: CI runs tests/deploy/e2e.sh against the
real binary. Use it to check e2e.sh itself (`e2e.sh tests/deploy/fake-exporter.py`)
when the exporter is not built. Standard library only.
"""

import argparse
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BUCKETS = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 900, 1800, 3600]
ARTIFACTS = ["api", "web", "worker"]
RESOURCES = ["default:deployment/api", "default:deployment/web", "default:statefulset/worker"]


def lbl(d):
    return "{" + ",".join(f'{k}="{v}"' for k, v in d.items()) + "}" if d else ""


class Registry:
    def __init__(self):
        self.lock = threading.Lock()
        self.fams = {}  # name -> (type, help, {labels_tuple: value or hist})

    def fam(self, name, typ, help_):
        return self.fams.setdefault(name, (typ, help_, {}))[2]

    def inc(self, name, labels=None, v=1.0, help_=""):
        s = self.fam(name, "counter", help_)
        k = tuple(sorted((labels or {}).items()))
        s[k] = s.get(k, 0.0) + v

    def set(self, name, labels=None, v=0.0, help_=""):
        s = self.fam(name, "gauge", help_)
        s[tuple(sorted((labels or {}).items()))] = v

    def observe(self, name, labels, v, help_=""):
        s = self.fam(name, "histogram", help_)
        k = tuple(sorted(labels.items()))
        h = s.setdefault(k, {"buckets": [0] * len(BUCKETS), "sum": 0.0, "count": 0})
        if v is None:
            return
        for i, b in enumerate(BUCKETS):
            if v <= b:
                h["buckets"][i] += 1
        h["sum"] += v
        h["count"] += 1

    def render(self):
        out = []
        with self.lock:
            for name, (typ, help_, series) in sorted(self.fams.items()):
                fam = name[:-6] if typ == "counter" and name.endswith("_total") else name
                out.append(f"# TYPE {fam} {typ}")
                out.append(f"# HELP {fam} {help_ or fam}")
                for k, v in sorted(series.items()):
                    labels = dict(k)
                    if typ == "histogram":
                        for i, b in enumerate(BUCKETS):
                            out.append(f"{fam}_bucket{lbl({**labels, 'le': str(float(b))})} {v['buckets'][i]}")
                        out.append(f"{fam}_bucket{lbl({**labels, 'le': '+Inf'})} {v['count']}")
                        out.append(f"{fam}_sum{lbl(labels)} {v['sum']}")
                        out.append(f"{fam}_count{lbl(labels)} {v['count']}")
                    elif typ == "counter":
                        out.append(f"{fam}_total{lbl(labels)} {v}")
                    else:
                        out.append(f"{fam}{lbl(labels)} {v}")
        out.append("# EOF")
        return "\n".join(out) + "\n"


class Sim:
    def __init__(self, reg, scenario):
        self.r = reg
        self.scenario = scenario
        self.deploy_streak = 0
        self.build_streak = {a: 0 for a in ARTIFACTS}
        self.iteration = 0
        r = reg
        with r.lock:
            for res in ("success", "failure"):
                r.inc("skaffold_deploys_total", {"result": res}, 0)
                r.observe("skaffold_deploy_duration_seconds", {"result": res}, None)
                r.inc("skaffold_status_checks_total", {"result": res}, 0)
                r.observe("skaffold_status_check_duration_seconds", {"result": res}, None)
                for k in ("initial", "rebuild", "sync", "redeploy"):
                    r.inc("skaffold_dev_loops_total", {"kind": k, "result": res}, 0)
                    r.observe("skaffold_dev_loop_duration_seconds", {"kind": k, "result": res}, None)
            r.set("skaffold_deploy_consecutive_failures", None, 0)
            r.set("skaffold_port_forwards", None, 0)
            r.set("skaffold_exporter_connected", None, 0)
            r.inc("skaffold_exporter_replayed_events_skipped_total", None, 0)
            r.inc("skaffold_exporter_reconnects_total", None, 0)
            r.fam("skaffold_exporter_invalid_events_total", "counter", "")
            r.fam("skaffold_errors_total", "counter", "")
            r.set("skaffold_exporter_last_event_timestamp_seconds", None, 0)
            r.set("skaffold_exporter_build_info", {"version": "0.0.0-fake", "revision": "unknown"}, 1)
            r.set("process_resident_memory_bytes", None, 12e6)
            r.set("process_open_fds", None, 12)
            r.inc("process_cpu_seconds_total", None, 0.5)

    def event(self, kind):
        self.r.inc("skaffold_exporter_events_total", {"event": kind})
        self.r.set("skaffold_exporter_last_event_timestamp_seconds", None, time.time())

    def loop(self):
        r = self.r
        with r.lock:
            if self.iteration == 0:
                r.set("skaffold_exporter_connected", None, 1)
                r.set("skaffold_info", {"version": "v2.16.1"}, 1)
                self.event("meta")
            if self.scenario == "deploy-failures":
                kind = "initial" if self.iteration == 0 else "redeploy"
            else:
                kind = "initial" if self.iteration == 0 else random.choice(
                    ["sync", "sync", "rebuild", "rebuild", "redeploy"])
            self.iteration += 1
            self.event("devLoop")
            total, ok = 0.0, True
            if kind in ("initial", "rebuild"):
                for a in (ARTIFACTS if kind == "initial" else [random.choice(ARTIFACTS)]):
                    d = random.uniform(1, 40)
                    fail = self.scenario != "deploy-failures" and random.random() < 0.08
                    res = "failure" if fail else "success"
                    for x in ("success", "failure"):
                        r.inc("skaffold_builds_total", {"artifact": a, "result": x}, 0)
                    r.inc("skaffold_builds_total", {"artifact": a, "result": res})
                    r.observe("skaffold_build_duration_seconds", {"artifact": a, "result": res}, d)
                    self.build_streak[a] = self.build_streak[a] + 1 if fail else 0
                    r.set("skaffold_build_consecutive_failures", {"artifact": a}, self.build_streak[a])
                    self.event("build")
                    total += d
                    if fail:
                        ok = False
                        r.inc("skaffold_errors_total", {"phase": "build", "code": "BUILD_DOCKER_UNKNOWN"})
            if kind == "sync":
                img = random.choice(ARTIFACTS)
                d = random.uniform(0.05, 1.5)
                r.inc("skaffold_file_syncs_total", {"image": img, "result": "success"})
                r.inc("skaffold_file_syncs_total", {"image": img, "result": "failure"}, 0)
                r.observe("skaffold_file_sync_duration_seconds", {"image": img, "result": "success"}, d)
                r.inc("skaffold_synced_files_total", {"image": img}, random.randint(1, 5))
                self.event("fileSync")
                total += d
            elif ok:
                d = random.uniform(0.5, 6)
                fail = self.scenario == "deploy-failures" or random.random() < 0.1
                res = "failure" if fail else "success"
                r.inc("skaffold_deploys_total", {"result": res})
                r.observe("skaffold_deploy_duration_seconds", {"result": res}, d)
                self.deploy_streak = self.deploy_streak + 1 if fail else 0
                r.set("skaffold_deploy_consecutive_failures", None, self.deploy_streak)
                self.event("deploy")
                total += d
                if fail:
                    ok = False
                    r.inc("skaffold_errors_total", {"phase": "deploy", "code": "DEPLOY_KUBECTL_USER_ERR"})
                else:
                    sc = 0.0
                    for res_ in RESOURCES:
                        rd = random.uniform(1, 45)
                        sc = max(sc, rd)
                        r.observe("skaffold_resource_rollout_duration_seconds",
                                  {"resource": res_, "result": "success"}, rd)
                        r.observe("skaffold_resource_rollout_duration_seconds",
                                  {"resource": res_, "result": "failure"}, None)
                        self.event("resourceStatusCheck")
                    r.inc("skaffold_status_checks_total", {"result": "success"})
                    r.observe("skaffold_status_check_duration_seconds", {"result": "success"}, sc)
                    self.event("statusCheck")
                    total += sc
                    r.set("skaffold_port_forwards", None, 2)
            res = "success" if ok else "failure"
            r.inc("skaffold_dev_loops_total", {"kind": kind, "result": res})
            r.observe("skaffold_dev_loop_duration_seconds", {"kind": kind, "result": res}, total + 0.2)
            # A failed iteration is not an error of its own: its failed phase was
            # counted (skaffold_errors_total counts each failure once).


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["demo"])
    ap.add_argument("--listen", default="127.0.0.1:9464")
    ap.add_argument("--scenario", default="default", choices=["default", "deploy-failures"])
    ap.add_argument("--period", type=float, default=1.0, help="seconds between simulated iterations")
    ap.add_argument("--time-scale", type=float, default=1.0, help="multiplies --period")
    args = ap.parse_args()

    reg = Registry()
    sim = Sim(reg, args.scenario)

    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.split("?")[0] != "/metrics":
                self.send_response(404)
                self.end_headers()
                return
            body = reg.render().encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/openmetrics-text; version=1.0.0; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    host, port = args.listen.rsplit(":", 1)
    srv = ThreadingHTTPServer((host, int(port)), H)

    def run():
        while True:
            sim.loop()
            time.sleep(args.period * args.time_scale)

    threading.Thread(target=run, daemon=True).start()
    print(f"fake-exporter: serving http://{args.listen}/metrics (scenario {args.scenario})", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
