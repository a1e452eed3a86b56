#!/usr/bin/env python3
"""Parse and cross-check every deploy file.

    validate_files.py

- Every *.yaml/*.yml/*.json under deploy/ and dashboards/ parses (multi-document
  YAML included).
- The Collector gateway config is internally consistent (every component used by
  a pipeline is defined, memory_limiter first and batch last, traces to an OTLP
  exporter, metrics to prometheusremotewrite) and promotes exactly the labels the
  team dashboard filters on, from the resource attributes the exporter sends.
  (No otelcol binary can be installed from the registries available to CI, so
  the Collector itself does not load it here.)
- Grafana provisioning: the datasources, the dashboards provider path and the
  compose mounts agree; the exemplar trace link points at the Tempo datasource.
- compose.yaml: files it mounts exist; Prometheus gets the shipped rule file at
  the path its config names; the exporter runs the demo on 0.0.0.0:9464 from the
  repository's Dockerfile; the Collector gets every ${env:...} it needs.
- Dockerfile (parsed with Docker's own parser): rust:1 build stage, debian slim
  runtime, numeric non-root USER, entrypoint skaffold-exporter, default args
  --listen 0.0.0.0:9464.
- The PodMonitor selects the Job's pods and scrapes the exporter's named port and
  path (the same as the prometheus.io/* annotations), with honorLabels.
Schema validation of compose (compose-spec), Kubernetes manifests
(kubernetes-validate) and the Prometheus Operator objects (crd_validate.py) runs
from check.sh.
"""

import json
import re
import sys

import yaml

import dashlib as dl

ROOT = dl.ROOT
errors = []
checked = []


def err(where, msg):
    errors.append(f"{where}: {msg}")


def rel(p):
    return str(p.relative_to(ROOT))


def parse_all():
    docs = {}
    files = sorted(
        [p for d in ("deploy", "dashboards") for p in (ROOT / d).rglob("*")
         if p.suffix in (".yaml", ".yml", ".json") and p.is_file()])
    for p in files:
        try:
            if p.suffix == ".json":
                docs[p] = [json.loads(p.read_text())]
            else:
                docs[p] = [d for d in yaml.safe_load_all(p.read_text()) if d is not None]
            checked.append(f"parse {rel(p)}")
        except (ValueError, yaml.YAMLError) as e:
            err(rel(p), f"does not parse: {e}")
    return docs


def collector(docs):
    path = ROOT / "deploy" / "otel-collector" / "collector.yaml"
    w = rel(path)
    cfg = docs[path][0]
    svc = cfg.get("service", {})
    for kind in ("receivers", "processors", "exporters"):
        defined = set(cfg.get(kind) or {})
        for name, pipe in (svc.get("pipelines") or {}).items():
            for c in pipe.get(kind, []):
                if c not in defined:
                    err(w, f"pipeline {name} uses undefined {kind[:-1]} {c}")
    for e in svc.get("extensions", []):
        if e not in (cfg.get("extensions") or {}):
            err(w, f"service uses undefined extension {e}")
    protos = ((cfg.get("receivers") or {}).get("otlp") or {}).get("protocols") or {}
    if not {"grpc", "http"} <= set(protos):
        err(w, "otlp receiver must accept grpc and http")
    pipes = svc.get("pipelines") or {}
    for name in ("traces", "metrics"):
        p = pipes.get(name)
        if not p:
            err(w, f"no {name} pipeline")
            continue
        procs = p.get("processors", [])
        if not procs or procs[0] != "memory_limiter":
            err(w, f"{name}: memory_limiter must be the first processor")
        if not procs or procs[-1] != "batch":
            err(w, f"{name}: batch must be the last processor")
    if pipes.get("traces") and not any(e.split("/")[0] in ("otlp", "otlp_grpc", "otlphttp", "otlp_http")
                                       for e in pipes["traces"].get("exporters", [])):
        err(w, "traces must be exported over OTLP (Tempo/Jaeger)")
    if pipes.get("metrics") and not any(e.split("/")[0] in ("prometheusremotewrite", "prometheus_remote_write")
                                        for e in pipes["metrics"].get("exporters", [])):
        err(w, "metrics must be exported with prometheus_remote_write")

    # label promotion vs the team dashboard
    promoted = {}
    for name, proc in (cfg.get("processors") or {}).items():
        if name.split("/")[0] != "transform" or name not in pipes.get("metrics", {}).get("processors", []):
            continue
        for group in proc.get("metric_statements", []):
            if group.get("context") != "datapoint":
                err(w, f"{name}: label promotion must run in the datapoint context")
            for st in group.get("statements", []):
                m = re.match(r'set\((?:datapoint\.)?attributes\["(\w+)"\], resource\.attributes\["([\w.]+)"\]\)', st)
                if m:
                    promoted.setdefault(m.group(1), []).append(m.group(2))
    expect = {"developer": "user.hash", "repo": "vcs.repository.name", "team": "team",
              "pipeline": "cicd.pipeline.name"}
    for label, attr in expect.items():
        if attr not in promoted.get(label, []):
            err(w, f"label {label} must be promoted from resource attribute {attr} (got {promoted.get(label)})")
    team = json.loads((ROOT / "dashboards" / "skaffold-team-builds.json").read_text())
    for v in dl.template_vars(team):
        if v.get("type") != "query":
            continue
        _, label = dl.parse_label_values(dl.var_query(v))
        if label not in promoted and label not in ("artifact", "job", "instance"):
            err(w, f"team dashboard variable ${v['name']} uses label {label}, which the gateway does not promote")
    exporters = cfg.get("exporters") or {}
    rw = exporters.get("prometheus_remote_write") or exporters.get("prometheusremotewrite") or {}
    if ((rw.get("resource_to_telemetry_conversion") or {}).get("enabled")
            or (rw.get("resource_constant_labels") or {}).get("enabled")):
        err(w, "resource_to_telemetry_conversion would turn branch/commit attributes into labels")
    checked.append("collector pipelines and label promotion")
    return cfg


def grafana_and_compose(docs, collector_cfg):
    compose_path = ROOT / "deploy" / "compose" / "compose.yaml"
    cdir = compose_path.parent
    w = rel(compose_path)
    compose = docs[compose_path][0]
    services = compose.get("services", {})

    mounts = {}  # service -> {container path: host path}
    for name, s in services.items():
        for v in s.get("volumes", []) or []:
            parts = v.split(":")
            src, dst = parts[0], parts[1]
            if src.startswith("."):
                host = (cdir / src).resolve()
                if not host.exists():
                    err(w, f"service {name} mounts missing {src}")
                mounts.setdefault(name, {})[dst] = host
            else:
                mounts.setdefault(name, {})[dst] = src

    ex = services.get("exporter", {})
    if ex.get("command") != ["demo", "--listen", "0.0.0.0:9464"]:
        err(w, f"exporter must run `demo --listen 0.0.0.0:9464`, got {ex.get('command')}")
    b = ex.get("build") or {}
    if not (cdir / b.get("context", ".") / b.get("dockerfile", "Dockerfile")).resolve() == ROOT / "Dockerfile":
        err(w, "exporter must be built from the repository's Dockerfile")

    # prometheus: config + rules at the path the config names
    pm = mounts.get("prometheus", {})
    cfg_host = pm.get("/etc/prometheus/prometheus.yml")
    if not cfg_host:
        err(w, "prometheus config not mounted at /etc/prometheus/prometheus.yml")
    else:
        pcfg = yaml.safe_load(cfg_host.read_text())
        for rf in pcfg.get("rule_files", []):
            target = "/etc/prometheus/" + rf if not rf.startswith("/") else rf
            host = pm.get(target)
            if host != (ROOT / "deploy" / "prometheus" / "skaffold-alerts.yml"):
                err(w, f"prometheus rule file {rf} is not the shipped skaffold-alerts.yml")
        targets = [t for j in pcfg.get("scrape_configs", []) for sc in j.get("static_configs", [])
                   for t in sc.get("targets", [])]
        if "exporter:9464" not in targets:
            err(rel(cfg_host), "does not scrape exporter:9464")
    cmd = " ".join(services.get("prometheus", {}).get("command", []))
    for flag in ("--web.enable-remote-write-receiver", "--enable-feature=exemplar-storage"):
        if flag not in cmd:
            err(w, f"prometheus needs {flag}")

    # collector: config mounted, env provided
    cm = mounts.get("otel-collector", {})
    if cm.get("/etc/otelcol/collector.yaml") != ROOT / "deploy" / "otel-collector" / "collector.yaml":
        err(w, "otel-collector must mount deploy/otel-collector/collector.yaml at /etc/otelcol/collector.yaml")
    # comments excluded; ${env:X:-default} has a default and is not required
    envs = set(re.findall(r"\$\{env:(\w+)\}", json.dumps(collector_cfg)))
    given = set((services.get("otel-collector", {}).get("environment") or {}))
    for e in sorted(envs - given):
        err(w, f"otel-collector needs environment {e}")

    # grafana provisioning
    gm = mounts.get("grafana", {})
    prov = gm.get("/etc/grafana/provisioning")
    if prov != ROOT / "deploy" / "grafana" / "provisioning":
        err(w, "grafana must mount deploy/grafana/provisioning at /etc/grafana/provisioning")
    dash_mounts = {dst for dst, host in gm.items() if host == ROOT / "dashboards"}
    dprov = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/dashboards.yaml").read_text())
    paths = {p["options"]["path"] for p in dprov.get("providers", [])}
    if not paths or not paths <= dash_mounts:
        err("deploy/grafana/provisioning/dashboards/dashboards.yaml",
            f"provider path {paths} is not where compose mounts dashboards/ ({dash_mounts})")
    dsprov = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/datasources.yaml").read_text())
    ds = {d["uid"]: d for d in dsprov.get("datasources", [])}
    proms = [d for d in ds.values() if d["type"] == "prometheus"]
    if len([d for d in proms if d.get("isDefault")]) != 1:
        err("datasources.yaml", "exactly one default Prometheus datasource expected")
    for d in proms:
        for dest in (d.get("jsonData") or {}).get("exemplarTraceIdDestinations", []):
            if dest.get("datasourceUid") not in ds:
                err("datasources.yaml", f"exemplar destination {dest} points at an unknown datasource")
        host = re.match(r"https?://([\w.-]+):", d["url"])
        if host and host.group(1) not in services:
            err("datasources.yaml", f"{d['url']} is not a compose service")
    for d in ds.values():
        if d["type"] == "tempo":
            host = re.match(r"https?://([\w.-]+):", d["url"]).group(1)
            if host not in services:
                err("datasources.yaml", f"{d['url']} is not a compose service")
    home = (services.get("grafana", {}).get("environment") or {}).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        d, _, f = home.rpartition("/")
        if d not in dash_mounts or not (ROOT / "dashboards" / f).exists():
            err(w, f"home dashboard {home} does not exist in the mounted dashboards")
    checked.append("compose mounts, prometheus rules path, grafana provisioning")


def dockerfile():
    import dockerfile as df

    path = ROOT / "Dockerfile"
    cmds = df.parse_file(str(path))
    froms = [c for c in cmds if c.cmd == "FROM"]
    if len(froms) < 2:
        err("Dockerfile", "must be multi-stage")
        return
    if not froms[0].value[0].startswith("rust:1"):
        err("Dockerfile", f"build stage must use rust:1, got {froms[0].value[0]}")
    if not re.match(r"debian:.*-slim$", froms[-1].value[0]):
        err("Dockerfile", f"runtime stage must be a debian slim image, got {froms[-1].value[0]}")
    last = cmds[cmds.index(froms[-1]):]
    users = [c.value[0] for c in last if c.cmd == "USER"]
    if not users or not re.match(r"^[1-9]\d*(:\d+)?$", users[-1]):
        err("Dockerfile", f"runtime stage must end with a numeric non-root USER, got {users}")
    ep = [c for c in last if c.cmd == "ENTRYPOINT"]
    if not ep or not ep[-1].json or not ep[-1].value[0].endswith("/skaffold-exporter"):
        err("Dockerfile", "ENTRYPOINT must exec skaffold-exporter (JSON form)")
    cmd = [c for c in last if c.cmd == "CMD"]
    if not cmd or list(cmd[-1].value) != ["--listen", "0.0.0.0:9464"]:
        err("Dockerfile", "CMD must default to --listen 0.0.0.0:9464")
    if not any(c.cmd == "COPY" and "--from=build" in c.flags for c in last):
        err("Dockerfile", "runtime stage must copy the binary from the build stage")
    checked.append("Dockerfile stages, user, entrypoint")


def kubernetes(docs):
    job_path = ROOT / "deploy" / "kubernetes" / "skaffold-run-job.yaml"
    jobs = [d for d in docs[job_path] if d.get("kind") == "Job"]
    if not jobs:
        err(rel(job_path), "no Job")
        return
    spec = jobs[0]["spec"]["template"]["spec"]
    main = {c["name"]: c for c in spec.get("containers", [])}
    init = {c["name"]: c for c in spec.get("initContainers", [])}
    sk = main.get("skaffold")
    if not sk or "run" not in sk.get("args", []) or not any(a.startswith("--rpc-port=") for a in sk.get("args", [])):
        err(rel(job_path), "the skaffold container must run `skaffold run --rpc-port=...`")
    ex = init.get("skaffold-exporter") or main.get("skaffold-exporter")
    if not ex:
        err(rel(job_path), "no skaffold-exporter sidecar in the pod")
        return
    if "skaffold-exporter" in init and init["skaffold-exporter"].get("restartPolicy") != "Always":
        err(rel(job_path), "the exporter init container must be a native sidecar (restartPolicy: Always)")
    rpc = next(a.split("=", 1)[1] for a in sk["args"] if a.startswith("--rpc-port="))
    if f"--skaffold-addr=127.0.0.1:{rpc}" not in ex.get("args", []):
        err(rel(job_path), f"exporter must connect to 127.0.0.1:{rpc}")
    if spec.get("hostNetwork"):
        err(rel(job_path), "no hostNetwork needed: containers of one pod share 127.0.0.1")
    checked.append("kubernetes job: skaffold run + exporter sidecar")

    # the PodMonitor scrapes that sidecar: its pods, its named port, the annotations' path
    pm_path = ROOT / "deploy" / "kubernetes" / "pod-monitor.yaml"
    pms = [d for d in docs.get(pm_path, []) if d.get("kind") == "PodMonitor"]
    if not pms:
        err(rel(pm_path), "no PodMonitor")
    else:
        pm = pms[0]["spec"]
        pod_labels = jobs[0]["spec"]["template"]["metadata"].get("labels", {})
        want = (pm.get("selector") or {}).get("matchLabels") or {}
        if not want or any(pod_labels.get(k) != v for k, v in want.items()):
            err(rel(pm_path), f"selector {want} does not select the Job's pods ({pod_labels})")
        ann = jobs[0]["spec"]["template"]["metadata"].get("annotations", {})
        ports = {p_.get("name"): p_.get("containerPort") for p_ in ex.get("ports", [])}
        for ep in pm.get("podMetricsEndpoints", []):
            if ep.get("port") not in ports:
                err(rel(pm_path), f"port {ep.get('port')!r} is not a named port of the exporter ({ports})")
            elif str(ports[ep["port"]]) != ann.get("prometheus.io/port"):
                err(rel(pm_path), "the PodMonitor and the prometheus.io/port annotation scrape different ports")
            if ep.get("path", "/metrics") != ann.get("prometheus.io/path", "/metrics"):
                err(rel(pm_path), "the PodMonitor and the prometheus.io/path annotation scrape different paths")
            if not ep.get("honorLabels"):
                err(rel(pm_path), "honorLabels must be true: the rollout metric's namespace label "
                                  "would become exported_namespace")
        checked.append("kubernetes PodMonitor: selects the Job's pod, the exporter's port and path")

    cm_path = ROOT / "deploy" / "kubernetes" / "dashboards-configmap.yaml"
    cms = docs[cm_path]
    names = set()
    for cm in cms:
        if cm.get("kind") != "ConfigMap" or cm["metadata"].get("labels", {}).get("grafana_dashboard") != "1":
            err(rel(cm_path), f"{cm['metadata'].get('name')}: ConfigMap without grafana_dashboard: \"1\"")
        for k, v in cm.get("data", {}).items():
            names.add(k)
            if v != (ROOT / "dashboards" / k).read_text():
                err(rel(cm_path), f"{k} differs from dashboards/{k}")
    want = {p.name for p in (ROOT / "dashboards").glob("*.json")}
    if names != want:
        err(rel(cm_path), f"ConfigMaps carry {sorted(names)}, dashboards/ has {sorted(want)}")
    pr_path = ROOT / "deploy" / "kubernetes" / "prometheus-rule.yaml"
    pr = docs[pr_path][0]
    if pr["spec"] != yaml.safe_load((ROOT / "deploy/prometheus/skaffold-alerts.yml").read_text()):
        err(rel(pr_path), "PrometheusRule spec differs from deploy/prometheus/skaffold-alerts.yml")
    checked.append("kubernetes ConfigMaps and PrometheusRule equal their sources")


def main():
    docs = parse_all()
    if not errors:
        cfg = collector(docs)
        grafana_and_compose(docs, cfg)
        dockerfile()
        kubernetes(docs)
    for c in checked:
        print(f"  ok   {c}")
    for e in errors:
        print(f"  FAIL {e}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
