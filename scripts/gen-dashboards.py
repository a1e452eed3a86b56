#!/usr/bin/env python3
"""Generate the Grafana dashboards in dashboards/ from this one description.

    python3 scripts/gen-dashboards.py           # (re)write dashboards/*.json
    python3 scripts/gen-dashboards.py --check   # exit 1 if a JSON file is stale

The JSON files are committed (Grafana imports them as they are); this script is
their source, so edit here and regenerate. After that, regenerate the Kubernetes
ConfigMaps with scripts/gen-configmaps.py. tests/deploy/check.sh verifies both.

Conventions (checked by tests/deploy/lint_dashboards.py): Grafana's current
dashboard schema, only timeseries/heatmap/stat/table panels, a $datasource
variable used by every panel and target, $__rate_interval in range selectors,
counters only inside rate()/increase(), *_bucket only inside
histogram_quantile() or a heatmap, units everywhere, a title and a description
on every panel, exemplars on latency panels, stable uids.
Only the Python standard library is used.
"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "dashboards"

SCHEMA_VERSION = 41  # Grafana 12
DS = {"type": "prometheus", "uid": "${datasource}"}

# Minimum interval of the panels over sparse data. Dev-loop events are minutes
# apart: 2m gives $__rate_interval = 2m15s at a 15 s scrape (and still two
# samples if the data arrives over OTLP every 60 s). Team data arrives over OTLP,
# pushed every 60 s by default (OTEL_METRIC_EXPORT_INTERVAL): 5m keeps at least
# four pushes in every rate window.
DEV_MIN_INTERVAL = "2m"
TEAM_MIN_INTERVAL = "5m"


# --------------------------------------------------------------------------
# builders
# --------------------------------------------------------------------------


def target(expr, legend="", ref="A", instant=False, fmt=None, exemplar=False):
    t = {
        "datasource": DS,
        "editorMode": "code",
        "expr": expr,
        "legendFormat": legend or "__auto",
        "range": not instant,
        "instant": instant,
        "refId": ref,
    }
    if fmt:
        t["format"] = fmt
    if exemplar:
        t["exemplar"] = True
    return t


def _refs(targets):
    for i, t in enumerate(targets):
        t["refId"] = chr(ord("A") + i)
    return targets


def thresholds(*steps):
    """steps: (value or None, color) pairs; the first one is the base."""
    return {
        "mode": "absolute",
        "steps": [{"color": c, "value": v} for v, c in steps],
    }


def timeseries(title, description, targets, unit, grid, *, stack=False, bars=False,
               points=False, min_=0, max_=None, interval=None, legend_calcs=None,
               time_from=None):
    custom = {
        "drawStyle": "bars" if bars else "line",
        "lineWidth": 1,
        "fillOpacity": 80 if bars else (25 if stack else 10),
        "gradientMode": "none",
        "showPoints": "always" if points else "auto",
        "pointSize": 5,
        "spanNulls": bool(points),
        "axisPlacement": "auto",
        "axisLabel": "",
        "stacking": {"mode": "normal" if stack else "none", "group": "A"},
        "lineInterpolation": "linear",
        "barAlignment": 0,
        "scaleDistribution": {"type": "linear"},
        "thresholdsStyle": {"mode": "off"},
        "hideFrom": {"legend": False, "tooltip": False, "viz": False},
    }
    defaults = {
        "unit": unit,
        "min": min_,
        "color": {"mode": "palette-classic"},
        "custom": custom,
        "thresholds": thresholds((None, "green")),
    }
    if max_ is not None:
        defaults["max"] = max_
    p = {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": grid,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "legend": {
                "showLegend": True,
                "displayMode": "table" if legend_calcs else "list",
                "placement": "bottom",
                "calcs": legend_calcs or [],
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": _refs(targets),
    }
    if interval:
        p["interval"] = interval
    if time_from:
        p["timeFrom"] = time_from
    return p


def stat(title, description, targets, unit, grid, *, thresholds_=None, mappings=None,
         decimals=None, text_mode="value", time_from=None, min_=None, max_=None):
    defaults = {
        "unit": unit,
        "color": {"mode": "thresholds"},
        "thresholds": thresholds_ or thresholds((None, "blue")),
        "mappings": mappings or [],
    }
    if decimals is not None:
        defaults["decimals"] = decimals
    if min_ is not None:
        defaults["min"] = min_
    if max_ is not None:
        defaults["max"] = max_
    p = {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": grid,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "none",
            "justifyMode": "auto",
            "orientation": "auto",
            "textMode": text_mode,
            "wideLayout": True,
            "showPercentChange": False,
        },
        "targets": _refs(targets),
    }
    if time_from:
        p["timeFrom"] = time_from
    return p


def heatmap(title, description, targets, unit, grid, *, interval=None):
    return {
        "type": "heatmap",
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": grid,
        "interval": interval,
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "custom": {
                    "hideFrom": {"legend": False, "tooltip": False, "viz": False},
                    "scaleDistribution": {"type": "linear"},
                },
            },
            "overrides": [],
        },
        "options": {
            "calculate": False,
            "cellGap": 1,
            "cellValues": {"unit": "short"},
            "color": {
                "mode": "scheme",
                "scheme": "Oranges",
                "fill": "dark-orange",
                "scale": "exponential",
                "exponent": 0.5,
                "steps": 64,
                "reverse": False,
            },
            "exemplars": {"color": "rgba(255,0,255,0.7)"},
            "filterValues": {"le": 1e-9},
            "legend": {"show": True},
            "rowsFrame": {"layout": "auto"},
            "showValue": "never",
            "tooltip": {"mode": "single", "showColorScale": False, "yHistogram": True},
            "yAxis": {"axisPlacement": "left", "reverse": False, "unit": unit},
        },
        "targets": _refs(targets),
    }


def table(title, description, targets, grid, *, rename, units, sort_by):
    """rename: {"Value #A": "p90", ...}; units: {"p90": "s", ...} (after rename)."""
    overrides = [
        {
            "matcher": {"id": "byName", "options": name},
            "properties": [{"id": "unit", "value": unit}],
        }
        for name, unit in units.items()
    ]
    return {
        "type": "table",
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": grid,
        "fieldConfig": {
            "defaults": {
                "unit": "short",
                "custom": {"align": "auto", "cellOptions": {"type": "auto"}, "inspect": False},
                "thresholds": thresholds((None, "green")),
            },
            "overrides": overrides,
        },
        "options": {
            "showHeader": True,
            "cellHeight": "sm",
            "footer": {"show": False, "reducer": ["sum"], "fields": "", "countRows": False},
            "sortBy": [{"displayName": sort_by, "desc": True}],
        },
        "targets": _refs(targets),
        "transformations": [
            {"id": "merge", "options": {}},
            {
                "id": "organize",
                "options": {
                    "excludeByName": {"Time": True},
                    "indexByName": {},
                    "renameByName": rename,
                },
            },
        ],
    }


def grid(x, y, w, h):
    return {"x": x, "y": y, "w": w, "h": h}


def datasource_var():
    return {
        "type": "datasource",
        "name": "datasource",
        "label": "Data source",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "includeAll": False,
        "multi": False,
        "options": [],
        "refresh": 1,
        "regex": "",
        "skipUrlSync": False,
    }


def query_var(name, label, query, *, multi=True, all_value=".*", description=""):
    v = {
        "type": "query",
        "name": name,
        "label": label,
        "description": description,
        "datasource": DS,
        "definition": query,
        "query": {"qryType": 1, "query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "current": {},
        "hide": 0,
        "includeAll": multi,
        "multi": multi,
        "options": [],
        "refresh": 2,  # on time range change
        "regex": "",
        "skipUrlSync": False,
        "sort": 1,
    }
    if multi:
        v["allValue"] = all_value
        v["current"] = {"selected": True, "text": ["All"], "value": ["$__all"]}
    return v


def dashboard(uid, title, description, panels, variables, *, time_from, refresh, tags):
    for i, p in enumerate(panels, start=1):
        p["id"] = i
    return {
        "__comment": "Generated by scripts/gen-dashboards.py; edit that script, not this file.",
        "uid": uid,
        "title": title,
        "description": description,
        "tags": tags,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [
            {
                "type": "dashboards",
                "tags": ["skaffold"],
                "asDropdown": False,
                "includeVars": False,
                "keepTime": True,
                "targetBlank": False,
                "title": "Skaffold dashboards",
                "icon": "external link",
                "tooltip": "",
                "url": "",
            }
        ],
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "liveNow": False,
        "panels": panels,
        "refresh": refresh,
        "schemaVersion": SCHEMA_VERSION,
        "templating": {"list": variables},
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "version": 1,
        "weekStart": "",
    }


# --------------------------------------------------------------------------
# skaffold-dev-loop.json: one developer's loop
# --------------------------------------------------------------------------

S = 'job=~"$job", instance=~"$instance"'

TODAY = "now/d"  # panel relative time: "Today so far"


def dev_loop():
    q = {}
    q["loops"] = f"skaffold_dev_loops_total{{{S}}}"
    panels = []

    # --- stat row -------------------------------------------------------------
    panels.append(stat(
        "Iterations today",
        "Dev-loop iterations (initial, rebuild, sync and redeploy; any result) since "
        "midnight: increase of skaffold_dev_loops_total over today.",
        [target(f"round(sum(increase(skaffold_dev_loops_total{{{S}}}[$__range])))", instant=True)],
        "none", grid(0, 0, 4, 4), decimals=0, time_from=TODAY))
    panels.append(stat(
        "Success ratio today",
        "Share of today's dev-loop iterations that succeeded: success / (success + failure). "
        "Canceled iterations (Ctrl-C, superseded by a newer change) are left out.",
        [target(
            f'sum(increase(skaffold_dev_loops_total{{{S}, result="success"}}[$__range]))\n/\n'
            f'sum(increase(skaffold_dev_loops_total{{{S}, result=~"success|failure"}}[$__range]))',
            instant=True)],
        "percentunit", grid(4, 0, 4, 4), decimals=0, min_=0, max_=1, time_from=TODAY,
        thresholds_=thresholds((None, "red"), (0.8, "orange"), (0.95, "green"))))
    panels.append(stat(
        "Median loop time today",
        "Median (p50) duration of today's dev-loop iterations, from the first event of an "
        "iteration to its last, estimated from skaffold_dev_loop_duration_seconds buckets.",
        [target(
            f"histogram_quantile(0.5, sum by (le) (increase(skaffold_dev_loop_duration_seconds_bucket{{{S}}}[$__range])))",
            instant=True)],
        "s", grid(8, 0, 4, 4), time_from=TODAY,
        thresholds_=thresholds((None, "green"), (60, "orange"), (120, "red"))))
    panels.append(stat(
        "p90 loop time today",
        "90th percentile duration of today's dev-loop iterations. Red above 2 minutes, the "
        "SkaffoldDevLoopSlow alert threshold.",
        [target(
            f"histogram_quantile(0.9, sum by (le) (increase(skaffold_dev_loop_duration_seconds_bucket{{{S}}}[$__range])))",
            instant=True)],
        "s", grid(12, 0, 4, 4), time_from=TODAY,
        thresholds_=thresholds((None, "green"), (60, "orange"), (120, "red"))))
    panels.append(stat(
        "Deploy failure streak",
        "Failed deploys since the last successful one (skaffold_deploy_consecutive_failures). "
        "3 or more within 30 minutes fires SkaffoldDeployFailingRepeatedly.",
        [target(f"max(skaffold_deploy_consecutive_failures{{{S}}})", instant=True)],
        "none", grid(16, 0, 4, 4), decimals=0,
        thresholds_=thresholds((None, "green"), (1, "orange"), (3, "red"))))
    panels.append(stat(
        "Connected",
        "Whether the sidecar currently holds an event stream from Skaffold "
        "(skaffold_exporter_connected). Disconnected means no telemetry is being recorded.",
        [target(f"min(skaffold_exporter_connected{{{S}}})", instant=True)],
        "none", grid(20, 0, 4, 4),
        thresholds_=thresholds((None, "red"), (1, "green")),
        mappings=[{
            "type": "value",
            "options": {
                "0": {"text": "Disconnected", "color": "red", "index": 0},
                "1": {"text": "Connected", "color": "green", "index": 1},
            },
        }]))

    # --- latency --------------------------------------------------------------
    panels.append(timeseries(
        "Dev-loop time by kind (p50 / p90 / p99)",
        "Quantiles of the dev-loop iteration duration per kind (initial, rebuild, sync, "
        "redeploy), from skaffold_dev_loop_duration_seconds. Iterations are sparse, so each "
        "point covers at least two minutes; a gap means no iteration of that kind finished "
        "then. Exemplars link a point to the iteration's trace.",
        [target(
            f"histogram_quantile({q_}, sum by (le, kind) (rate(skaffold_dev_loop_duration_seconds_bucket{{{S}}}[$__rate_interval])))",
            legend=f"p{int(float(q_) * 100)} {{{{kind}}}}", exemplar=True)
         for q_ in ("0.5", "0.9", "0.99")],
        "s", grid(0, 4, 12, 9), points=True, interval=DEV_MIN_INTERVAL, legend_calcs=["mean", "max"]))
    panels.append(heatmap(
        "Dev-loop time distribution",
        "Heatmap of skaffold_dev_loop_duration_seconds buckets: how many iterations finished "
        "in each duration band per interval, all kinds and results. Exemplars (dots) open "
        "the trace of a single iteration.",
        [target(
            f"sum by (le) (increase(skaffold_dev_loop_duration_seconds_bucket{{{S}}}[$__rate_interval]))",
            legend="{{le}}", fmt="heatmap", exemplar=True)],
        "s", grid(12, 4, 12, 9), interval=DEV_MIN_INTERVAL))

    # --- where the time goes ----------------------------------------------------
    phases = [
        ("build", "skaffold_build_duration_seconds_sum"),
        ("deploy", "skaffold_deploy_duration_seconds_sum"),
        ("status check", "skaffold_status_check_duration_seconds_sum"),
        ("file sync", "skaffold_file_sync_duration_seconds_sum"),
    ]
    panels.append(timeseries(
        "Where the time goes",
        "Seconds spent in each phase per interval, stacked: build (summed over artifacts, so "
        "parallel builds count once per artifact), deploy, status check (waiting for "
        "rollouts) and file sync. With --iterative-status-check or deploy hooks Skaffold's "
        "deploy includes its status check, which then shows in both bands. From the _sum "
        "series of the phase duration histograms.",
        [target(f"sum(increase({m}{{{S}}}[$__rate_interval]))", legend=name)
         for name, m in phases],
        "s", grid(0, 13, 12, 9), stack=True, bars=True, interval=DEV_MIN_INTERVAL,
        legend_calcs=["sum"]))
    panels.append(timeseries(
        "Build time by artifact (p50 / p90)",
        "Median and 90th percentile build duration per artifact (all results), from "
        "skaffold_build_duration_seconds. Exemplars link to the build's span.",
        [target(
            f"histogram_quantile({q_}, sum by (le, artifact) (rate(skaffold_build_duration_seconds_bucket{{{S}}}[$__rate_interval])))",
            legend=f"p{int(float(q_) * 100)} {{{{artifact}}}}", exemplar=True)
         for q_ in ("0.5", "0.9")],
        "s", grid(12, 13, 12, 9), points=True, interval=DEV_MIN_INTERVAL, legend_calcs=["mean", "max"]))

    # --- tables -------------------------------------------------------------------
    rollout_p90 = (
        "topk(10, histogram_quantile(0.9, sum by (le, resource) "
        f"(increase(skaffold_resource_rollout_duration_seconds_bucket{{{S}}}[$__range]))))")
    panels.append(table(
        "Slowest resources to roll out",
        "The 10 Kubernetes resources with the highest p90 rollout time over the dashboard's "
        "time range (status check start to the resource's ready or failed event), with the "
        "number of rollouts. From skaffold_resource_rollout_duration_seconds.",
        [target(rollout_p90, instant=True, fmt="table"),
         target(
             f"round(sum by (resource) (increase(skaffold_resource_rollout_duration_seconds_count{{{S}}}[$__range])))\n"
             f"and on (resource)\n{rollout_p90}",
             instant=True, fmt="table")],
        grid(0, 22, 12, 9),
        rename={"resource": "Resource", "Value #A": "p90 rollout time", "Value #B": "Rollouts"},
        units={"p90 rollout time": "s", "Rollouts": "none"},
        sort_by="p90 rollout time"))
    panels.append(table(
        "Recent failures by phase and error code",
        "Failures over the dashboard's time range, each counted once at the phase that "
        "failed (build, test, deploy, status_check, file_sync, render, verify, exec; "
        "dev_loop when an iteration failed without a failed phase), by Skaffold StatusCode "
        "name (UNKNOWN_ERROR or *_UNKNOWN: Skaffold could not classify the error; UNKNOWN: "
        "Skaffold sent no code), from skaffold_errors_total. Empty when nothing failed.",
        [target(
            f"sort_desc(round(sum by (phase, code) (increase(skaffold_errors_total{{{S}}}[$__range]))) > 0)",
            instant=True, fmt="table")],
        grid(12, 22, 12, 9),
        rename={"phase": "Phase", "code": "Error code", "Value": "Failures"},
        units={"Failures": "none"},
        sort_by="Failures"))

    # --- volume -------------------------------------------------------------------
    panels.append(timeseries(
        "Iterations by kind and result",
        "Dev-loop iterations finished per interval, by kind and result "
        "(skaffold_dev_loops_total).",
        [target(f"sum by (kind, result) (increase(skaffold_dev_loops_total{{{S}}}[$__rate_interval]))",
                legend="{{kind}} {{result}}")],
        "none", grid(0, 31, 12, 8), stack=True, bars=True, interval=DEV_MIN_INTERVAL, legend_calcs=["sum"]))
    panels.append(timeseries(
        "Sync volume",
        "File syncs (hot updates without a rebuild) and files copied per interval, by image: "
        "skaffold_file_syncs_total and skaffold_synced_files_total.",
        [target(f"sum by (image) (increase(skaffold_synced_files_total{{{S}}}[$__rate_interval]))",
                legend="{{image}} files"),
         target(f"sum by (image) (increase(skaffold_file_syncs_total{{{S}}}[$__rate_interval]))",
                legend="{{image}} syncs")],
        "none", grid(12, 31, 12, 8), bars=True, interval=DEV_MIN_INTERVAL, legend_calcs=["sum"]))

    # --- sidecar health -----------------------------------------------------------
    panels.append(stat(
        "Skaffold version",
        "Version Skaffold reported in its MetaEvent (skaffold_info).",
        [target(f"max by (version) (skaffold_info{{{S}}})", legend="{{version}}", instant=True)],
        "none", grid(0, 39, 4, 4), text_mode="name"))
    panels.append(stat(
        "Time since last event",
        "Seconds since the sidecar last received an event from Skaffold "
        "(time() - skaffold_exporter_last_event_timestamp_seconds). Large while Skaffold "
        "waits for file changes; that alone is not a problem.",
        [target(f"time() - max(skaffold_exporter_last_event_timestamp_seconds{{{S}}})", instant=True)],
        "s", grid(4, 39, 4, 4),
        thresholds_=thresholds((None, "green"), (3600, "orange"))))
    panels.append(stat(
        "Port forwards",
        "Port forwards Skaffold announced in the current run (skaffold_port_forwards).",
        [target(f"sum(skaffold_port_forwards{{{S}}})", instant=True)],
        "none", grid(0, 43, 4, 4), decimals=0))
    panels.append(stat(
        "Reconnects",
        "Times the sidecar re-established the event stream over the dashboard's time range "
        "(skaffold_exporter_reconnects_total). Each Skaffold restart adds one.",
        [target(f"round(sum(increase(skaffold_exporter_reconnects_total{{{S}}}[$__range])))", instant=True)],
        "none", grid(4, 43, 4, 4), decimals=0,
        thresholds_=thresholds((None, "green"), (10, "orange"))))
    panels.append(timeseries(
        "Events received by type",
        "Events per second the sidecar folded, by event type (skaffold_exporter_events_total).",
        [target(f"sum by (event) (rate(skaffold_exporter_events_total{{{S}}}[$__rate_interval]))",
                legend="{{event}}")],
        "cps", grid(8, 39, 8, 8)))
    panels.append(timeseries(
        "Exporter anomalies",
        "Per interval: events rejected as invalid by reason "
        "(skaffold_exporter_invalid_events_total, should stay empty), events skipped as "
        "already-seen replay after a reconnect (skaffold_exporter_replayed_events_skipped_total, "
        "expected after reconnects) and stream reconnects.",
        [target(f"sum by (reason) (increase(skaffold_exporter_invalid_events_total{{{S}}}[$__rate_interval]))",
                legend="invalid: {{reason}}"),
         target(f"sum(increase(skaffold_exporter_replayed_events_skipped_total{{{S}}}[$__rate_interval]))",
                legend="replayed events skipped"),
         target(f"sum(increase(skaffold_exporter_reconnects_total{{{S}}}[$__rate_interval]))",
                legend="reconnects")],
        "none", grid(16, 39, 8, 8), bars=True))

    variables = [
        datasource_var(),
        query_var("job", "Job", "label_values(skaffold_exporter_connected, job)", multi=False,
                  description="Prometheus job of the sidecar (scrape job, or service.name over OTLP)."),
        query_var("instance", "Sidecar", 'label_values(skaffold_exporter_connected{job=~"$job"}, instance)',
                  description="Sidecar instance: host:port when scraped, service.instance.id over OTLP."),
    ]
    return dashboard(
        "skaffold-dev-loop",
        "Skaffold / Dev loop",
        "One developer's Skaffold dev loop from skaffold-exporter: iterations, loop time, "
        "where the time goes, failures and the sidecar's own health.",
        panels, variables, time_from="now-6h", refresh="30s", tags=["skaffold", "dev-loop"])


# --------------------------------------------------------------------------
# skaffold-team-builds.json: team-wide, metrics pushed over OTLP
# --------------------------------------------------------------------------

T = 'team=~"$team", developer=~"$developer", repo=~"$repo"'
TA = T + ', artifact=~"$artifact"'


def counted(selector, window="$__range"):
    """Per series, the increase of a counter over `window`, exact for series that
    start inside it: a CI run's exporter lives for one `skaffold run` and pushes
    once or twice, where increase() alone sees nothing. Series older than the
    window: increase(); series that started in it: their value at its end
    (counters start at 0). The same form as the alert rules."""
    return (f"(increase({selector}[{window}]) and last_over_time({selector}[{window}] offset {window})"
            f" or last_over_time({selector}[{window}]))")


def team_builds():
    panels = []
    panels.append(stat(
        "Builds",
        "Artifact builds in the time range across the selected teams, developers and repos "
        "(skaffold_builds_total, all results).",
        [target(f"round(sum({counted(f'skaffold_builds_total{{{TA}}}')}))", instant=True)],
        "none", grid(0, 0, 6, 4), decimals=0))
    panels.append(stat(
        "Build failure ratio",
        "Failed builds / (successful + failed builds) in the time range. Canceled builds are "
        "left out.",
        [target(
            "sum(" + counted(f'skaffold_builds_total{{{TA}, result="failure"}}') + ")\n/\n"
            "sum(" + counted(f'skaffold_builds_total{{{TA}, result=~"success|failure"}}') + ")",
            instant=True)],
        "percentunit", grid(6, 0, 6, 4), decimals=1, min_=0, max_=1,
        thresholds_=thresholds((None, "green"), (0.1, "orange"), (0.25, "red"))))
    panels.append(stat(
        "p90 build time",
        "90th percentile build duration over the time range, all selected artifacts "
        "(skaffold_build_duration_seconds).",
        [target(
            f"histogram_quantile(0.9, sum by (le) {counted(f'skaffold_build_duration_seconds_bucket{{{TA}}}')})",
            instant=True)],
        "s", grid(12, 0, 6, 4),
        thresholds_=thresholds((None, "green"), (60, "orange"), (300, "red"))))
    panels.append(stat(
        "Active developers",
        "Developers (hashed user.hash) with at least one dev-loop iteration in the time range.",
        [target(
            f"count(sum by (developer) {counted(f'skaffold_dev_loops_total{{{T}}}')} > 0)",
            instant=True)],
        "none", grid(18, 0, 6, 4), decimals=0))

    panels.append(timeseries(
        "Build time by artifact (p50 / p90)",
        "Median and 90th percentile build duration per artifact, aggregated over every "
        "selected developer's sidecar (skaffold_build_duration_seconds). Exemplars link to "
        "build spans in the trace store.",
        [target(
            f"histogram_quantile({q_}, sum by (le, artifact) (rate(skaffold_build_duration_seconds_bucket{{{TA}}}[$__rate_interval])))",
            legend=f"p{int(float(q_) * 100)} {{{{artifact}}}}", exemplar=True)
         for q_ in ("0.5", "0.9")],
        "s", grid(0, 4, 12, 9), interval=TEAM_MIN_INTERVAL, legend_calcs=["mean", "max"]))
    panels.append(timeseries(
        "Build time by developer (p50 / p90)",
        "Median and 90th percentile build duration per developer (user.hash, a pseudonym), "
        "all selected artifacts. A developer far above the rest usually has a cold cache or "
        "a slow machine.",
        [target(
            f"histogram_quantile({q_}, sum by (le, developer) (rate(skaffold_build_duration_seconds_bucket{{{TA}}}[$__rate_interval])))",
            legend=f"p{int(float(q_) * 100)} {{{{developer}}}}", exemplar=True)
         for q_ in ("0.5", "0.9")],
        "s", grid(12, 4, 12, 9), interval=TEAM_MIN_INTERVAL, legend_calcs=["mean", "max"]))
    panels.append(timeseries(
        "Build failure rate by repo and artifact",
        "Share of builds that failed per repo and artifact: rate of failed builds / rate of "
        "successful + failed builds (skaffold_builds_total).",
        [target(
            f'sum by (repo, artifact) (rate(skaffold_builds_total{{{TA}, result="failure"}}[$__rate_interval]))\n/\n'
            f'sum by (repo, artifact) (rate(skaffold_builds_total{{{TA}, result=~"success|failure"}}[$__rate_interval]))',
            legend="{{repo}} {{artifact}}")],
        "percentunit", grid(0, 13, 12, 9), min_=0, max_=1, interval=TEAM_MIN_INTERVAL,
        legend_calcs=["mean", "max"]))

    slow_p90 = (
        "topk(10, histogram_quantile(0.9, sum by (le, repo, artifact) "
        f"{counted(f'skaffold_build_duration_seconds_bucket{{{TA}}}')}))")
    panels.append(table(
        "Slowest artifacts",
        "The 10 artifacts (per repo) with the highest p90 build time over the time range, "
        "with their build count.",
        [target(slow_p90, instant=True, fmt="table"),
         target(
             f"round(sum by (repo, artifact) {counted(f'skaffold_builds_total{{{TA}}}')})\n"
             f"and on (repo, artifact)\n{slow_p90}",
             instant=True, fmt="table")],
        grid(12, 13, 12, 9),
        rename={"repo": "Repo", "artifact": "Artifact", "Value #A": "p90 build time",
                "Value #B": "Builds"},
        units={"p90 build time": "s", "Builds": "none"},
        sort_by="p90 build time"))

    panels.append(timeseries(
        "Dev-loop time, weekly trend",
        "Median and 90th percentile dev-loop iteration time over the trailing 7 days, one "
        "point per day, for the last 12 weeks (skaffold_dev_loop_duration_seconds). A "
        "deliberate fixed [1w] window: a trend, not a live view.",
        [target(
            f"histogram_quantile(0.5, sum by (le) {counted(f'skaffold_dev_loop_duration_seconds_bucket{{{T}}}', '1w')})",
            legend="p50"),
         target(
             f"histogram_quantile(0.9, sum by (le) {counted(f'skaffold_dev_loop_duration_seconds_bucket{{{T}}}', '1w')})",
             legend="p90"),
         target(
             f"histogram_quantile(0.9, sum by (le, kind) {counted(f'skaffold_dev_loop_duration_seconds_bucket{{{T}}}', '1w')})",
             legend="p90 {{kind}}")],
        "s", grid(0, 22, 24, 9), interval="1d", time_from="12w", legend_calcs=["lastNotNull"]))

    variables = [
        datasource_var(),
        query_var("team", "Team", "label_values(skaffold_exporter_connected, team)",
                  description="Resource attribute team (OTEL_RESOURCE_ATTRIBUTES=team=...), "
                              "promoted to a label by the collector gateway."),
        query_var("developer", "Developer",
                  'label_values(skaffold_exporter_connected{team=~"$team"}, developer)',
                  all_value=".+",
                  description="Resource attribute user.hash (a salted hash, not a name). 'All' "
                              "requires the label, which leaves out locally scraped sidecars."),
        query_var("repo", "Repo",
                  'label_values(skaffold_exporter_connected{team=~"$team", developer=~"$developer"}, repo)',
                  description="Resource attribute vcs.repository.name."),
        query_var("artifact", "Artifact",
                  f"label_values(skaffold_build_consecutive_failures{{{T}}}, artifact)",
                  description="Skaffold artifact (image name); one series per artifact and sidecar."),
    ]
    return dashboard(
        "skaffold-team-builds",
        "Skaffold / Team builds",
        "Team-wide Skaffold build and dev-loop statistics from every developer's "
        "skaffold-exporter, pushed over OTLP through the collector gateway (labels team, "
        "developer, repo).",
        panels, variables, time_from="now-7d", refresh="5m", tags=["skaffold", "team"])


DASHBOARDS = {
    "skaffold-dev-loop.json": dev_loop,
    "skaffold-team-builds.json": team_builds,
}


def render(fn):
    return json.dumps(fn(), indent=2, sort_keys=False) + "\n"


def main(argv):
    check = "--check" in argv
    stale = []
    for name, fn in DASHBOARDS.items():
        path = OUT / name
        text = render(fn)
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path.relative_to(ROOT)))
        else:
            OUT.mkdir(exist_ok=True)
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        print("stale (run python3 scripts/gen-dashboards.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
