#!/usr/bin/env python3
"""Static checks for dashboards/*.json and deploy/prometheus rules.

    lint_dashboards.py [--names-out FILE] [--promtool-rules-out FILE]

Dashboard rules (after grafana/dashboard-linter, plus this project's contract):
  schema        uid == file name, stable and url-safe; schemaVersion >= 39;
                panel ids unique; panels inside the 24-column grid, no overlap
  panel-type    only timeseries, heatmap, stat, table, bargauge, alertlist (no
                Angular "graph")
  title-desc    every panel has a title and a description
  alertlist     an alert list filters by name and by labels that are the
                dashboard's variables, and shows firing alerts
  links         every panel link to a runbook names a file in docs/runbooks/ and
                opens in a new tab
  annotations   every annotation but Grafana's built-in one queries ${datasource}
                with a title; its expression passes the rules below
  datasource    a `datasource` variable of type datasource/prometheus; every
                panel, target and query variable uses ${datasource}
  units         every panel sets a unit; panels showing durations use "s"; a
                percent panel divides (a share of loop time is not a duration)
  parse         every expression parses (promql-parser here; the real
                Prometheus parser via `promtool check rules` on the emitted file)
  range-window  every [..] window is $__rate_interval or $__range (exclusions in
                lint-exclusions.yaml, each with a reason)
  counter       *_total, *_sum, *_count only as the argument of rate/increase/irate
  gauge         gauges never inside rate/increase/irate
  bucket        *_bucket only inside histogram_quantile, or in a heatmap-format
                target of a heatmap panel (and then inside increase/rate)
  exemplars     latency targets (duration buckets over $__rate_interval) have
                exemplars enabled
  contract      every metric name used is in tests/deploy/metric-contract.txt
Rule-file rules: severity label, summary/description/runbook_url annotations,
runbook file present, contract and counter/bucket rules as above.

Exit status 1 when anything fails. Prints one line per problem.
"""

import argparse
import sys
from pathlib import Path

import yaml

import dashlib as dl

ALLOWED_PANELS = {"timeseries", "heatmap", "stat", "table", "bargauge", "alertlist"}
PERCENT_UNITS = {"percentunit", "percent"}
ALLOWED_WINDOWS = {"$__rate_interval", "$__range"}
DS_REF = {"type": "prometheus", "uid": "${datasource}"}
RUNBOOK_PREFIX = "https://github.com/skaffold-exporter/skaffold-exporter/blob/main/docs/runbooks/"
SEVERITIES = {"critical", "warning", "info"}


def load_exclusions():
    path = Path(__file__).resolve().parent / "lint-exclusions.yaml"
    doc = yaml.safe_load(path.read_text()) or {}
    ex = doc.get("exclusions") or []
    for e in ex:
        if not str(e.get("reason", "")).strip():
            raise SystemExit(f"lint-exclusions.yaml: entry without a reason: {e}")
    return ex


def excluded(exclusions, rule, uid, panel, value=None):
    for e in exclusions:
        if e["rule"] == rule and e["dashboard"] == uid and e["panel"] == panel and (
                value is None or str(e.get("value")) == value):
            return True
    return False


class Lint:
    def __init__(self):
        self.errors = []
        self.names = {}  # metric name -> set(where)
        self.exprs = []  # (where, expr text with static values)
        self.contract = dl.contract_sample_names()

    def err(self, where, msg):
        self.errors.append(f"{where}: {msg}")

    # -- PromQL ---------------------------------------------------------------
    def check_expr(self, where, expr, *, heatmap_target=False, selector_only=False):
        try:
            sels = dl.selectors(expr)
        except ValueError as e:
            self.err(where, f"parse error: {e}")
            return
        self.exprs.append((where, expr))
        for name, anc in sels:
            if name is None:
                self.err(where, "selector without a metric name")
                continue
            self.names.setdefault(name, set()).add(where)
            kind = self.contract.get(name)
            if kind is None:
                self.err(where, f"metric {name} is not in the metric contract")
                continue
            if selector_only:  # label_values(): only the series' labels are read
                continue
            in_rate_fn = dl.inside_counter_func(anc)
            in_counter_fn = in_rate_fn or dl.inside_last_over_time(anc)
            if kind in ("counter", "histogram_counter") and not in_counter_fn:
                self.err(where, f"counter {name} used outside rate()/increase()/irate()/last_over_time()")
            if kind == "gauge" and in_rate_fn:
                self.err(where, f"gauge {name} used inside rate()/increase()/irate()")
            if kind == "bucket":
                if not in_counter_fn:
                    self.err(where, f"{name} used outside rate()/increase()")
                if not (dl.inside_histogram_quantile(anc) or heatmap_target):
                    self.err(where, f"{name} used outside histogram_quantile() or a heatmap")

    # -- dashboards -----------------------------------------------------------
    def dashboard(self, path, dash, exclusions):
        uid = dash.get("uid")
        w0 = path.name
        if uid != path.stem:
            self.err(w0, f"uid {uid!r} must equal the file name stem {path.stem!r} (stable uids)")
        if not uid or len(uid) > 40 or not all(c.isalnum() or c == "-" for c in uid):
            self.err(w0, f"uid {uid!r} is not a short url-safe id")
        if not dash.get("title"):
            self.err(w0, "dashboard without a title")
        if (dash.get("schemaVersion") or 0) < 39:
            self.err(w0, f"schemaVersion {dash.get('schemaVersion')} is older than Grafana 11")
        if "rows" in dash:
            self.err(w0, "legacy `rows` layout")
        if dash.get("id") not in (None,):
            self.err(w0, "dashboard id must be null (importable anywhere)")

        variables = dl.template_vars(dash)
        dsv = [v for v in variables if v.get("name") == "datasource"]
        if not dsv or dsv[0].get("type") != "datasource" or dsv[0].get("query") != "prometheus":
            self.err(w0, "missing `datasource` variable of type datasource (prometheus)")
        values = dl.static_values(dash)
        for v in variables:
            if v.get("type") != "query":
                continue
            wv = f"{w0} variable {v['name']}"
            if v.get("datasource") != DS_REF:
                self.err(wv, "variable datasource must be ${datasource}")
            q = dl.var_query(v)
            lv = dl.parse_label_values(q)
            if not lv:
                self.err(wv, f"unsupported variable query {q!r} (use label_values(selector, label))")
                continue
            sel, _ = lv
            if sel:
                self.check_expr(wv, dl.substitute(sel, values), selector_only=True)
            if v.get("refresh") != 2:
                self.err(wv, "refresh must be 2 (on time range change)")

        var_names = {v.get("name") for v in variables}
        self.annotations(w0, uid, dash, values, exclusions)

        ids = set()
        cells = {}
        for p in dl.iter_panels(dash):
            title = p.get("title") or ""
            wp = f"{w0} panel {title or p.get('id')!r}"
            ptype = p.get("type")
            if ptype == "row":
                self.err(wp, "row panels are not used")
                continue
            if ptype not in ALLOWED_PANELS:
                self.err(wp, f"panel type {ptype!r} not allowed ({', '.join(sorted(ALLOWED_PANELS))})")
            if not title.strip():
                self.err(wp, "panel without a title")
            if not (p.get("description") or "").strip():
                self.err(wp, "panel without a description")
            if p.get("id") in ids:
                self.err(wp, f"duplicate panel id {p.get('id')}")
            ids.add(p.get("id"))
            g = p.get("gridPos") or {}
            if g.get("x", 0) + g.get("w", 0) > 24 or g.get("w", 0) <= 0 or g.get("h", 0) <= 0:
                self.err(wp, f"bad gridPos {g}")
            for x in range(g.get("x", 0), g.get("x", 0) + g.get("w", 0)):
                for y in range(g.get("y", 0), g.get("y", 0) + g.get("h", 0)):
                    if (x, y) in cells:
                        self.err(wp, f"overlaps panel {cells[(x, y)]!r}")
                        break
                    cells[(x, y)] = title
                else:
                    continue
                break
            if p.get("datasource") != DS_REF:
                self.err(wp, "panel datasource must be ${datasource}")
            self.links(wp, p)
            if ptype == "alertlist":
                self.alertlist(wp, p, var_names)
                continue

            # units
            defaults = (p.get("fieldConfig") or {}).get("defaults") or {}
            unit = defaults.get("unit")
            if ptype == "heatmap":
                unit = ((p.get("options") or {}).get("yAxis") or {}).get("unit")
            if not unit:
                self.err(wp, "no unit set")
            targets = p.get("targets") or []
            if not targets:
                self.err(wp, "panel without targets")
            exprs = " ".join(t.get("expr", "") for t in targets)
            is_duration = ("histogram_quantile" in exprs and "_seconds_bucket" in exprs) or \
                "_seconds_sum" in exprs or "_timestamp_seconds" in exprs
            if ptype == "table":
                units = [pr.get("value") for o in (p.get("fieldConfig") or {}).get("overrides", [])
                         for pr in o.get("properties", []) if pr.get("id") == "unit"]
                if is_duration and "s" not in units:
                    self.err(wp, "table shows durations but no column has unit s")
            elif unit in PERCENT_UNITS:
                for t in targets:
                    if not dl.divides(dl.substitute(t.get("expr") or "", values)):
                        self.err(wp, f"percent panel target {t.get('refId')} does not divide")
            elif is_duration and unit != "s":
                self.err(wp, f"duration panel with unit {unit!r}, expected 's'")

            for t in targets:
                wt = f"{wp} target {t.get('refId')}"
                if t.get("datasource") != DS_REF:
                    self.err(wt, "target datasource must be ${datasource}")
                expr = t.get("expr") or ""
                if not expr.strip():
                    self.err(wt, "empty expression")
                    continue
                for win in dl.range_windows(expr):
                    if win not in ALLOWED_WINDOWS and not excluded(exclusions, "range-window", uid, title, win):
                        self.err(wt, f"range window [{win}]: use $__rate_interval (or $__range for totals)")
                heat = ptype == "heatmap" and t.get("format") == "heatmap"
                if ptype == "heatmap" and not heat:
                    self.err(wt, "heatmap target must use format heatmap")
                latency = "_duration_seconds_bucket" in expr and "$__rate_interval" in expr
                if ptype in ("timeseries", "heatmap") and latency and not t.get("exemplar"):
                    self.err(wt, "latency target without exemplars")
                self.check_expr(wt, dl.substitute(expr, values), heatmap_target=heat)

    def links(self, where, panel):
        for link in panel.get("links") or []:
            url = link.get("url") or ""
            if not url.startswith(RUNBOOK_PREFIX):
                continue
            name = url[len(RUNBOOK_PREFIX):]
            if not (dl.ROOT / "docs" / "runbooks" / name).is_file():
                self.err(where, f"runbook link {url!r}: docs/runbooks/{name} does not exist")
            if not link.get("targetBlank"):
                self.err(where, f"runbook link {link.get('title')!r} must open in a new tab")

    def alertlist(self, where, panel, var_names):
        if panel.get("targets"):
            self.err(where, "an alert list has no queries")
        opts = panel.get("options") or {}
        if not str(opts.get("alertName") or "").strip():
            self.err(where, "alert list without an alert name filter")
        if not (opts.get("stateFilter") or {}).get("firing"):
            self.err(where, "alert list does not show firing alerts")
        matchers = dl.parse_matchers(opts.get("alertInstanceLabelFilter") or "")
        if matchers is None:
            self.err(where, f"alert label filter {opts.get('alertInstanceLabelFilter')!r} does not parse")
            return
        if not matchers:
            self.err(where, "alert list without a label filter (it would show every sidecar's alerts)")
        for label, _, value in matchers:
            for m in dl.VAR_RE.finditer(value):
                name = m.group(1) or m.group(2) or m.group(3)
                if name not in var_names:
                    self.err(where, f"alert label filter uses ${name}, not a variable of the dashboard")

    def annotations(self, w0, uid, dash, values, exclusions):
        for a in dl.prom_annotations(dash):
            wa = f"{w0} annotation {a.get('name')!r}"
            if a.get("datasource") != DS_REF:
                self.err(wa, "annotation datasource must be ${datasource}")
            if not str(a.get("titleFormat") or "").strip():
                self.err(wa, "annotation without a title")
            expr = dl.annotation_expr(a)
            if not expr.strip():
                self.err(wa, "annotation without an expression")
                continue
            for win in dl.range_windows(expr):
                if win not in ALLOWED_WINDOWS and not excluded(exclusions, "range-window", uid, a.get("name"), win):
                    self.err(wa, f"range window [{win}]: use $__rate_interval (or $__range for totals)")
            self.check_expr(wa, dl.substitute(expr, values))

    # -- rules ----------------------------------------------------------------
    def rules(self):
        root = dl.ROOT
        for path, group, r in dl.iter_rules():
            name = r.get("alert") or r.get("record")
            wr = f"{path.name} {group}/{name}"
            self.check_expr(wr, r["expr"])
            if "alert" not in r:
                continue
            sev = (r.get("labels") or {}).get("severity")
            if sev not in SEVERITIES:
                self.err(wr, f"severity {sev!r} not in {sorted(SEVERITIES)}")
            ann = r.get("annotations") or {}
            for k in ("summary", "description", "runbook_url"):
                if not str(ann.get(k, "")).strip():
                    self.err(wr, f"missing annotation {k}")
            if "{{" in str(ann.get("summary", "")):
                self.err(wr, "summary must be static (no templating)")
            url = ann.get("runbook_url", "")
            want = f"{RUNBOOK_PREFIX}{name}.md"
            if url != want:
                self.err(wr, f"runbook_url {url!r}, expected {want!r}")
            if not (root / "docs" / "runbooks" / f"{name}.md").exists():
                self.err(wr, f"docs/runbooks/{name}.md is missing")
            for lk, lv in (r.get("labels") or {}).items():
                if "{{" in str(lv):
                    self.err(wr, f"templated label {lk} (creates new alert identities)")


def self_test():
    """Prove each rule fires: mutate a copy of a real dashboard and expect the
    matching error."""
    import copy

    path, base = dl.load_dashboards()[0]
    lat = next(i for i, p in enumerate(base["panels"])
               if p["type"] == "timeseries" and "_duration_seconds_bucket" in p["targets"][0]["expr"])

    def panel(d):
        return d["panels"][lat]

    def tgt(d):
        return panel(d)["targets"][0]

    def alerts(d):
        return next(p for p in d["panels"] if p["type"] == "alertlist")

    def anno(d):
        return next(dl.prom_annotations(d))

    cases = [
        ("not allowed", lambda d: panel(d).update(type="graph")),
        ("without a description", lambda d: panel(d).pop("description")),
        ("counter skaffold_builds_total used outside",
         lambda d: tgt(d).update(expr="sum(skaffold_builds_total)")),
        ("outside histogram_quantile",
         lambda d: tgt(d).update(expr="sum(rate(skaffold_build_duration_seconds_bucket[$__rate_interval]))")),
        ("range window [5m]", lambda d: tgt(d).update(expr=tgt(d)["expr"].replace("$__rate_interval", "5m"))),
        ("no unit set", lambda d: panel(d)["fieldConfig"]["defaults"].pop("unit")),
        ("expected 's'", lambda d: panel(d)["fieldConfig"]["defaults"].update(unit="ms")),
        ("without exemplars", lambda d: tgt(d).pop("exemplar")),
        ("panel datasource must be", lambda d: panel(d).update(datasource={"type": "prometheus", "uid": "P1"})),
        ("target datasource must be", lambda d: tgt(d).update(datasource=None)),
        ("not in the metric contract", lambda d: tgt(d).update(expr="skaffold_made_up_seconds")),
        ("gauge skaffold_port_forwards used inside",
         lambda d: tgt(d).update(expr="rate(skaffold_port_forwards[$__rate_interval])")),
        ("parse error", lambda d: tgt(d).update(expr="sum(rate(x[$__rate_interval])")),
        ("must equal the file name", lambda d: d.update(uid="something-else")),
        ("missing `datasource` variable", lambda d: d["templating"].update(list=d["templating"]["list"][1:])),
        ("overlaps panel", lambda d: panel(d).update(gridPos=dict(d["panels"][0]["gridPos"]))),
        ("does not exist", lambda d: panel(d).update(links=[{
            "title": "x", "url": RUNBOOK_PREFIX + "NoSuchAlert.md", "targetBlank": True}])),
        ("must open in a new tab", lambda d: panel(d).update(links=[{
            "title": "x", "url": RUNBOOK_PREFIX + "SkaffoldDevLoopSlow.md", "targetBlank": False}])),
        ("does not divide", lambda d: panel(d)["fieldConfig"]["defaults"].update(unit="percentunit")),
        ("without an alert name filter", lambda d: alerts(d)["options"].update(alertName="")),
        ("not a variable of the dashboard",
         lambda d: alerts(d)["options"].update(alertInstanceLabelFilter='{team=~"${nope:regex}"}')),
        ("alert list without a label filter", lambda d: alerts(d)["options"].update(alertInstanceLabelFilter="")),
        ("an alert list has no queries", lambda d: alerts(d).update(targets=[tgt(d)])),
        ("annotation datasource must be", lambda d: anno(d).update(datasource={"type": "prometheus", "uid": "P1"})),
        ("counter skaffold_deploys_total used outside",
         lambda d: anno(d)["target"].update(expr="skaffold_deploys_total > 0")),
        ("annotation without a title", lambda d: anno(d).pop("titleFormat")),
    ]
    failed = 0
    for want, mutate in cases:
        d = copy.deepcopy(base)
        mutate(d)
        lint = Lint()
        lint.dashboard(path, d, load_exclusions())
        if not any(want in e for e in lint.errors):
            failed += 1
            print(f"  FAIL self-test: mutation expecting {want!r} produced {lint.errors}")
    clean = Lint()
    clean.dashboard(path, copy.deepcopy(base), load_exclusions())
    if clean.errors:
        failed += 1
        print(f"  FAIL self-test: the unmodified dashboard has errors {clean.errors}")
    print(f"lint self-test: {len(cases) + 1 - failed} of {len(cases) + 1} mutations detected as expected")
    return 1 if failed else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--self-test", action="store_true", help="check that every lint rule fires")
    ap.add_argument("--names-out", help="write the metric names used (one per line, with where)")
    ap.add_argument("--promtool-rules-out",
                    help="write every expression as a recording rule for `promtool check rules`")
    args = ap.parse_args()
    if args.self_test:
        return self_test()

    lint = Lint()
    exclusions = load_exclusions()
    dashboards = dl.load_dashboards()
    if not dashboards:
        lint.err("dashboards/", "no dashboards found")
    for path, dash in dashboards:
        lint.dashboard(path, dash, exclusions)
    lint.rules()

    if args.names_out:
        with open(args.names_out, "w") as f:
            for n in sorted(lint.names):
                f.write(f"{n}\t{'; '.join(sorted(lint.names[n]))}\n")
    if args.promtool_rules_out:
        rules = [{"record": f"lint:expr_{i}", "expr": e} for i, (_, e) in enumerate(lint.exprs)]
        with open(args.promtool_rules_out, "w") as f:
            f.write("# expressions from dashboards/ and deploy/prometheus, one recording rule each\n")
            for i, (where, _) in enumerate(lint.exprs):
                f.write(f"# lint:expr_{i} = {where}\n")
            yaml.safe_dump({"groups": [{"name": "lint", "rules": rules}]}, f, sort_keys=False, width=1000)

    n_panels = sum(1 for _, d in dashboards for _ in dl.iter_panels(d))
    n_annotations = sum(1 for _, d in dashboards for _ in dl.prom_annotations(d))
    print(f"lint: {len(dashboards)} dashboards, {n_panels} panels, {n_annotations} annotations, "
          f"{len(lint.exprs)} expressions, "
          f"{len(lint.names)} metric names")
    for e in lint.errors:
        print(f"  FAIL {e}")
    return 1 if lint.errors else 0


if __name__ == "__main__":
    sys.exit(main())
