#!/usr/bin/env python3
"""Generate the Grafana dashboards in dashboards/ from this one description.

    python3 scripts/gen-dashboards.py           # (re)write dashboards/*.json
    python3 scripts/gen-dashboards.py --check   # exit 1 if a JSON file is stale

The JSON files are committed (Grafana imports them as they are); this script is
their source, so edit here and regenerate. After that, regenerate the Kubernetes
ConfigMaps with scripts/gen-configmaps.py. tests/deploy/check.sh verifies both.

Built with the Grafana Foundation SDK for Python (PyPI grafana-foundation-sdk, the
typed builders generated from Grafana's schemas), pinned in
tests/deploy/requirements.txt: `pip install -r tests/deploy/requirements.txt`
(tests/deploy/check.sh runs this script in its venv). The newest SDK build on PyPI
is for Grafana 11.6 (schemaVersion 41, what Grafana 12 reads as it is); we target
Grafana 12 (deploy/compose). Two things its 11.6 schema lacks are built here as
small typed models: the alert-list panel (no builder) and the Prometheus fields of
an annotation (titleFormat, textFormat, tagKeys; the SDK knows only `expr`).

Conventions (checked by tests/deploy/lint_dashboards.py): only timeseries,
heatmap, stat, table, bargauge and alertlist panels; a $datasource variable used
by every panel, target and annotation; $__rate_interval in range selectors;
counters only inside rate()/increase(); *_bucket only inside
histogram_quantile() or a heatmap; units everywhere; a title and a description on
every panel; exemplars on latency panels; runbook links that exist; stable uids.
"""

import json
import sys
from pathlib import Path

try:
    from grafana_foundation_sdk.builders import bargauge, common as cb, dashboard as db
    from grafana_foundation_sdk.builders import heatmap, prometheus as prom, stat, table, timeseries
    from grafana_foundation_sdk.cog import builder as cogbuilder
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models import common as cm, dashboard as dm, heatmap as hmm, prometheus as pm
except ImportError:  # pragma: no cover
    sys.exit("gen-dashboards.py needs the Grafana Foundation SDK: "
             "pip install -r tests/deploy/requirements.txt")

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "dashboards"

DS = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
RUNBOOKS = "https://github.com/skaffold-exporter/skaffold-exporter/blob/main/docs/runbooks/"

# Minimum interval of the panels over sparse data. Dev-loop events are minutes
# apart: 2m gives $__rate_interval = 2m15s at a 15 s scrape (and still two
# samples if the data arrives over OTLP every 60 s). Team data arrives over OTLP,
# pushed every 60 s by default (OTEL_METRIC_EXPORT_INTERVAL): 5m keeps at least
# four pushes in every rate window.
DEV_MIN_INTERVAL = "2m"
TEAM_MIN_INTERVAL = "5m"

# The phases of the metric contract with a duration histogram, in loop order:
# (legend, metric base name, part of a dev-loop iteration). `skaffold verify` and
# `skaffold exec` run outside `skaffold dev` (runner/verify.go, not runner/dev.go).
PHASES = [
    ("build", "skaffold_build_duration_seconds", True),
    ("test", "skaffold_test_duration_seconds", True),
    ("render", "skaffold_render_duration_seconds", True),
    ("deploy", "skaffold_deploy_duration_seconds", True),
    ("status check", "skaffold_status_check_duration_seconds", True),
    ("file sync", "skaffold_file_sync_duration_seconds", True),
    ("verify", "skaffold_verify_duration_seconds", False),
    ("exec", "skaffold_exec_duration_seconds", False),
]


# --------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------


def query(expr, legend="", *, instant=False, fmt=None, exemplar=False):
    q = (prom.Dataquery().expr(expr).datasource(DS).editor_mode(pm.QueryEditorMode.CODE)
         .legend_format(legend or "__auto"))
    q = q.instant() if instant else q.range()
    if fmt:
        q = q.format(fmt)
    if exemplar:
        q = q.exemplar(True)
    return q


def thresholds(*steps):
    """steps: (value or None, color) pairs; the first one is the base."""
    return (db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE)
            .steps([dm.Threshold(value=v, color=c) for v, c in steps]))


def runbook(alert):
    """A panel link to the runbook of `alert` (docs/runbooks/<alert>.md)."""
    return (db.DashboardLink(f"Runbook: {alert}").type(dm.DashboardLinkType.LINK)
            .url(f"{RUNBOOKS}{alert}.md").target_blank(True))


def grid(x, y, w, h):
    return dm.GridPos(x=x, y=y, w=w, h=h)


def common(panel, title, description, targets, grid_pos, *, unit=None, links=(), interval=None,
           time_from=None):
    panel = panel.title(title).description(description).datasource(DS).grid_pos(grid_pos)
    for i, t in enumerate(targets):
        panel = panel.with_target(t.ref_id(chr(ord("A") + i)))
    if unit:
        panel = panel.unit(unit)
    if links:
        panel = panel.links(list(links))
    if interval:
        panel = panel.interval(interval)
    if time_from:
        panel = panel.time_from(time_from)
    return panel


def ts(title, description, targets, unit, grid_pos, *, stack=False, bars=False, points=False,
       min_=0, max_=None, interval=None, legend_calcs=(), links=(), time_from=None):
    p = common(timeseries.Panel(), title, description, targets, grid_pos, unit=unit, links=links,
               interval=interval, time_from=time_from)
    p = (p.draw_style(cm.GraphDrawStyle.BARS if bars else cm.GraphDrawStyle.LINE)
         .line_width(1).fill_opacity(80 if bars else (25 if stack else 10))
         .show_points(cm.VisibilityMode.ALWAYS if points else cm.VisibilityMode.AUTO)
         .point_size(5).span_nulls(bool(points))
         .stacking(cb.StackingConfig().mode(cm.StackingMode.NORMAL if stack else cm.StackingMode.NONE)
                   .group("A"))
         .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.PALETTE_CLASSIC))
         .thresholds(thresholds((None, "green")))
         .legend(cb.VizLegendOptions().show_legend(True).placement(cm.LegendPlacement.BOTTOM)
                 .display_mode(cm.LegendDisplayMode.TABLE if legend_calcs else cm.LegendDisplayMode.LIST)
                 .calcs(list(legend_calcs)))
         .tooltip(cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.DESCENDING))
         .min(min_))
    if max_ is not None:
        p = p.max(max_)
    return p


def st(title, description, targets, unit, grid_pos, *, steps=((None, "blue"),), mappings=None,
       decimals=None, text_mode=cm.BigValueTextMode.VALUE, time_from=None, min_=None, max_=None,
       links=()):
    p = common(stat.Panel(), title, description, targets, grid_pos, unit=unit, links=links,
               time_from=time_from)
    p = (p.color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
         .thresholds(thresholds(*steps))
         .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False))
         .color_mode(cm.BigValueColorMode.VALUE).graph_mode(cm.BigValueGraphMode.NONE)
         .justify_mode(cm.BigValueJustifyMode.AUTO).text_mode(text_mode)
         .orientation(cm.VizOrientation.AUTO).wide_layout(True).show_percent_change(False))
    if mappings:
        p = p.mappings(mappings)
    if decimals is not None:
        p = p.decimals(decimals)
    if min_ is not None:
        p = p.min(min_)
    if max_ is not None:
        p = p.max(max_)
    return p


def hm(title, description, targets, unit, grid_pos, *, interval=None):
    p = common(heatmap.Panel(), title, description, targets, grid_pos, unit=unit, interval=interval)
    return (p.calculate(False).cell_gap(1)
            .color(heatmap.HeatmapColorOptions().mode(hmm.HeatmapColorMode.SCHEME).scheme("Oranges")
                   .fill("dark-orange").scale(hmm.HeatmapColorScale.EXPONENTIAL).exponent(0.5).steps(64)
                   .reverse(False))
            .exemplars_color("rgba(255,0,255,0.7)")
            .filter_values(heatmap.FilterValueRange().le(1e-9))
            .show_legend().show_value(cm.VisibilityMode.NEVER)
            .rows_frame(heatmap.RowsHeatmapOptions().layout(cm.HeatmapCellLayout.AUTO))
            .cell_values(heatmap.CellValues().unit("short"))
            .mode(cm.TooltipDisplayMode.SINGLE).show_y_histogram().show_color_scale(False)
            .y_axis(heatmap.YAxisConfig().axis_placement(cm.AxisPlacement.LEFT).reverse(False).unit(unit)))


def tb(title, description, targets, grid_pos, *, rename, units, sort_by, links=()):
    """rename: {"Value #A": "p90", ...}; units: {"p90": "s", ...} (after rename)."""
    p = common(table.Panel(), title, description, targets, grid_pos, unit="short", links=links)
    for name, unit in units.items():
        p = p.override_by_name(name, [dm.DynamicConfigValue(id_val="unit", value=unit)])
    return (p.thresholds(thresholds((None, "green")))
            .show_header(True).cell_height(cm.TableCellHeight.SM)
            .footer(cb.TableFooterOptions().show(False).reducer(["sum"]).count_rows(False).fields(""))
            .sort_by([cb.TableSortByFieldState().display_name(sort_by).desc(True)])
            .with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
            .with_transformation(dm.DataTransformerConfig(id_val="organize", options={
                "excludeByName": {"Time": True}, "indexByName": {}, "renameByName": rename})))


def bg(title, description, targets, unit, grid_pos, *, min_=0, max_=None, links=()):
    p = common(bargauge.Panel(), title, description, targets, grid_pos, unit=unit, links=links)
    p = (p.display_mode(cm.BarGaugeDisplayMode.GRADIENT).orientation(cm.VizOrientation.HORIZONTAL)
         .value_mode(cm.BarGaugeValueMode.COLOR).name_placement(cm.BarGaugeNamePlacement.AUTO)
         .show_unfilled(True).sizing(cm.BarGaugeSizing.AUTO)
         .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False))
         .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.CONTINUOUS_GR_YL_RD))
         .thresholds(thresholds((None, "green")))
         .min(min_))
    if max_ is not None:
        p = p.max(max_)
    return p


class AlertListPanel(cogbuilder.Builder[dm.Panel]):
    """Grafana's alert list ("alertlist"): firing and pending alerts from every rule
    source Grafana reads, the Prometheus data source's rules included. The SDK has
    no builder for it; the options are the panel's UnifiedAlertListOptions."""

    def __init__(self, title, description, grid_pos, *, name_filter, label_filter, links=()):
        options = {
            "viewMode": "list",
            "groupMode": "default",
            "groupBy": [],
            "maxItems": 20,
            "sortOrder": 3,  # importance: firing first
            "dashboardAlerts": False,
            "alertName": name_filter,
            "alertInstanceLabelFilter": label_filter,
            "showInactiveAlerts": False,
            "stateFilter": {"firing": True, "pending": True, "recovering": True,
                            "noData": False, "normal": False, "error": True},
        }
        self._panel = (db.Panel().type("alertlist").title(title).description(description)
                       .datasource(DS).grid_pos(grid_pos).options(options))
        if links:
            self._panel = self._panel.links(list(links))

    def build(self):
        return self._panel.build()


ALERTS = ("SkaffoldDeployFailingRepeatedly", "SkaffoldBuildFailingRepeatedly", "SkaffoldDevLoopSlow",
          "SkaffoldExporterDisconnected")


def alert_list(whose, label_filter):
    """The alert list at the top of a dashboard: every Skaffold alert of `whose`."""
    return AlertListPanel(
        "Skaffold alerts",
        "Firing and pending alerts of deploy/prometheus/skaffold-alerts.yml (rule names "
        f"starting with Skaffold) for {whose}, read by Grafana from the Prometheus data "
        "source's rules. Each alert's runbook_url names its runbook; the panel links open "
        "them all.",
        grid(0, 4, 24, 5), name_filter="Skaffold", label_filter=label_filter,
        links=[runbook(a) for a in ALERTS])


class PromAnnotation(dm.AnnotationQuery):
    """A Prometheus annotation: the SDK's AnnotationQuery plus the fields the
    Prometheus data source reads (query in `target`; `titleFormat`, `textFormat`,
    `tagKeys` on the annotation). Each step where `expr` is above 0 marks the time;
    consecutive steps join into one region."""

    def __init__(self, name, expr, *, title, text, tags, color="red"):
        super().__init__(name=name, datasource=DS, enable=True, hide=False, icon_color=color)
        self.query = {"expr": expr, "refId": "Anno", "interval": "", "editorMode": "code",
                      "range": True, "instant": False, "datasource": DS}
        self.title_format, self.text_format, self.tag_keys = title, text, tags

    def to_json(self):
        out = super().to_json()
        out.update(target=self.query, titleFormat=self.title_format, textFormat=self.text_format,
                   tagKeys=self.tag_keys, useValueForTime=False)
        return out


class Built(cogbuilder.Builder):
    """A model that is already built, passed where the SDK takes a builder."""

    def __init__(self, model):
        self.model = model

    def build(self):
        return self.model


def builtin_annotations():
    return (db.AnnotationQuery().name("Annotations & Alerts").built_in(1).type("dashboard")
            .datasource(dm.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
            .enable(True).hide(True).icon_color("rgba(0, 211, 255, 1)"))


def datasource_var():
    return (db.DatasourceVariable("datasource").label("Data source").type("prometheus")
            .multi(False).include_all(False))


def query_var(name, label, q, *, multi=True, all_value=".*", description=""):
    v = (db.QueryVariable(name).label(label).description(description).datasource(DS).query(q)
         .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(dm.VariableSort.ALPHABETICAL_ASC)
         .multi(multi).include_all(multi))
    if multi:
        v = v.all_value(all_value).current(dm.VariableOption(selected=True, text=["All"], value=["$__all"]))
    return v


def dashboard(uid, title, description, panels, variables, annotations, *, time_from, refresh, tags):
    d = (db.Dashboard(title).uid(uid).description(description).tags(tags).editable()
         .tooltip(dm.DashboardCursorSync.CROSSHAIR).time(time_from, "now").refresh(refresh)
         .timezone("browser").fiscal_year_start_month(0).live_now(False).week_start("").version(1)
         .link(db.DashboardLink("Skaffold dashboards").type(dm.DashboardLinkType.DASHBOARDS)
               .tags(["skaffold"]).as_dropdown(False).include_vars(False).keep_time(True)
               .target_blank(False).icon("external link"))
         .annotation(builtin_annotations()))
    for a in annotations:
        d = d.annotation(Built(a))
    for v in variables:
        d = d.with_variable(v)
    for i, p in enumerate(panels, start=1):
        d = d.with_panel(p.id(i) if hasattr(p, "id") else p)
    out = json.loads(json.dumps(d.build(), cls=JSONEncoder))
    for i, p in enumerate(out["panels"], start=1):
        p["id"] = i
    return {"__comment": "Generated by scripts/gen-dashboards.py; edit that script, not this file.", **out}


# --------------------------------------------------------------------------
# skaffold-dev-loop.json: one developer's loop
# --------------------------------------------------------------------------

S = 'job=~"$job", instance=~"$instance"'

TODAY = "now/d"  # panel relative time: "Today so far"


def dev_loop():
    panels = []

    # --- stat row -------------------------------------------------------------
    panels.append(st(
        "Iterations today",
        "Dev-loop iterations (initial, rebuild, sync and redeploy; any result) since "
        "midnight: increase of skaffold_dev_loops_total over today.",
        [query(f"round(sum(increase(skaffold_dev_loops_total{{{S}}}[$__range])))", instant=True)],
        "none", grid(0, 0, 4, 4), decimals=0, time_from=TODAY))
    panels.append(st(
        "Success ratio today",
        "Share of today's dev-loop iterations that succeeded: success / (success + failure). "
        "Canceled iterations (Ctrl-C, superseded by a newer change) are left out.",
        [query(
            f'sum(increase(skaffold_dev_loops_total{{{S}, result="success"}}[$__range]))\n/\n'
            f'sum(increase(skaffold_dev_loops_total{{{S}, result=~"success|failure"}}[$__range]))',
            instant=True)],
        "percentunit", grid(4, 0, 4, 4), decimals=0, min_=0, max_=1, time_from=TODAY,
        steps=((None, "red"), (0.8, "orange"), (0.95, "green"))))
    panels.append(st(
        "Median loop time today",
        "Median (p50) duration of today's dev-loop iterations, from the first event of an "
        "iteration to its last, estimated from skaffold_dev_loop_duration_seconds buckets.",
        [query(
            f"histogram_quantile(0.5, sum by (le) (increase(skaffold_dev_loop_duration_seconds_bucket{{{S}}}[$__range])))",
            instant=True)],
        "s", grid(8, 0, 4, 4), time_from=TODAY,
        steps=((None, "green"), (60, "orange"), (120, "red"))))
    panels.append(st(
        "p90 loop time today",
        "90th percentile duration of today's dev-loop iterations. Red above 2 minutes, the "
        "SkaffoldDevLoopSlow alert threshold (see its runbook in the panel links).",
        [query(
            f"histogram_quantile(0.9, sum by (le) (increase(skaffold_dev_loop_duration_seconds_bucket{{{S}}}[$__range])))",
            instant=True)],
        "s", grid(12, 0, 4, 4), time_from=TODAY,
        steps=((None, "green"), (60, "orange"), (120, "red")),
        links=[runbook("SkaffoldDevLoopSlow")]))
    panels.append(st(
        "Deploy failure streak",
        "Failed deploys since the last successful one (skaffold_deploy_consecutive_failures). "
        "3 or more within 30 minutes fires SkaffoldDeployFailingRepeatedly (runbook in the "
        "panel links).",
        [query(f"max(skaffold_deploy_consecutive_failures{{{S}}})", instant=True)],
        "none", grid(16, 0, 4, 4), decimals=0,
        steps=((None, "green"), (1, "orange"), (3, "red")),
        links=[runbook("SkaffoldDeployFailingRepeatedly")]))
    panels.append(st(
        "Connected",
        "Whether the sidecar currently holds an event stream from Skaffold "
        "(skaffold_exporter_connected). Disconnected means no telemetry is being recorded; "
        "10 minutes of it fires SkaffoldExporterDisconnected (runbook in the panel links).",
        [query(f"min(skaffold_exporter_connected{{{S}}})", instant=True)],
        "none", grid(20, 0, 4, 4),
        steps=((None, "red"), (1, "green")),
        mappings=[dm.ValueMap(options={
            "0": dm.ValueMappingResult(text="Disconnected", color="red", index=0),
            "1": dm.ValueMappingResult(text="Connected", color="green", index=1),
        })],
        links=[runbook("SkaffoldExporterDisconnected")]))

    # --- alerts -----------------------------------------------------------------
    panels.append(alert_list(
        "the selected job and sidecar",
        '{job=~"${job:regex}", instance=~"${instance:regex}"}'))

    # --- latency --------------------------------------------------------------
    panels.append(ts(
        "Dev-loop time by kind (p50 / p90 / p99)",
        "Quantiles of the dev-loop iteration duration per kind (initial, rebuild, sync, "
        "redeploy), from skaffold_dev_loop_duration_seconds. Iterations are sparse, so each "
        "point covers at least two minutes; a gap means no iteration of that kind finished "
        "then. Exemplars link a point to the iteration's trace.",
        [query(
            f"histogram_quantile({q_}, sum by (le, kind) (rate(skaffold_dev_loop_duration_seconds_bucket{{{S}}}[$__rate_interval])))",
            f"p{int(float(q_) * 100)} {{{{kind}}}}", exemplar=True)
         for q_ in ("0.5", "0.9", "0.99")],
        "s", grid(0, 9, 12, 9), points=True, interval=DEV_MIN_INTERVAL, legend_calcs=["mean", "max"],
        links=[runbook("SkaffoldDevLoopSlow")]))
    panels.append(hm(
        "Dev-loop time distribution",
        "Heatmap of skaffold_dev_loop_duration_seconds buckets: how many iterations finished "
        "in each duration band per interval, all kinds and results. Exemplars (dots) open "
        "the trace of a single iteration.",
        [query(
            f"sum by (le) (increase(skaffold_dev_loop_duration_seconds_bucket{{{S}}}[$__rate_interval]))",
            "{{le}}", fmt=pm.PromQueryFormat.HEATMAP, exemplar=True)],
        "s", grid(12, 9, 12, 9), interval=DEV_MIN_INTERVAL))

    # --- where the time goes ----------------------------------------------------
    panels.append(ts(
        "Where the time goes",
        "Seconds spent in each phase per interval, stacked: build (summed over artifacts, so "
        "parallel builds count once per artifact), test, render (API v2), deploy, status "
        "check (waiting for rollouts), file sync, and verify and exec (custom actions), "
        "which run outside dev loops (`skaffold verify`, `skaffold exec`). With "
        "--iterative-status-check or deploy hooks Skaffold's deploy includes its status "
        "check, which then shows in both bands. From the _sum series of the phase duration "
        "histograms.",
        [query(f"sum(increase({m}_sum{{{S}}}[$__rate_interval]))", name) for name, m, _ in PHASES],
        "s", grid(0, 18, 12, 9), stack=True, bars=True, interval=DEV_MIN_INTERVAL,
        legend_calcs=["sum"]))
    loop_sum = f"sum(increase(skaffold_dev_loop_duration_seconds_sum{{{S}}}[$__range]))"
    in_loop = [(name, m) for name, m, loop in PHASES if loop]
    phase_total = "\n  + ".join(f"(sum(increase({m}_sum{{{S}}}[$__range])) or vector(0))" for _, m in in_loop)
    panels.append(bg(
        "Share of loop time by phase",
        "Each phase's seconds over the dashboard's time range as a share of the dev-loop "
        "iterations' total time (skaffold_dev_loop_duration_seconds_sum): which phase to "
        "speed up first. Build adds up every artifact, so parallel builds can take more than "
        "their wall time. 'not in a phase' is the rest of the loop (waiting between phases, "
        "port forwarding, Skaffold's own work), 0 when the phases add up to more than the "
        "loop. Verify and exec are not part of a dev loop and are left out here.",
        [query(f"sum(increase({m}_sum{{{S}}}[$__range]))\n/\n{loop_sum}", name, instant=True)
         for name, m in in_loop]
        + [query(f"clamp_min(\n  1 - (\n    {phase_total}\n  )\n  /\n  {loop_sum},\n  0\n)",
                 "not in a phase", instant=True)],
        "percentunit", grid(12, 18, 12, 9), min_=0, max_=1))
    panels.append(ts(
        "Phase time (p90)",
        "90th percentile duration of each phase (one build per artifact, one test, render, "
        "deploy, status check or file sync per iteration; verify and exec per run), from "
        "the phase duration histograms. Exemplars link to the phase's span.",
        [query(
            f"histogram_quantile(0.9, sum by (le) (rate({m}_bucket{{{S}}}[$__rate_interval])))",
            name, exemplar=True) for name, m, _ in PHASES],
        "s", grid(0, 27, 12, 9), points=True, interval=DEV_MIN_INTERVAL, legend_calcs=["mean", "max"]))
    panels.append(ts(
        "Build time by artifact (p50 / p90)",
        "Median and 90th percentile build duration per artifact (all results), from "
        "skaffold_build_duration_seconds. Exemplars link to the build's span.",
        [query(
            f"histogram_quantile({q_}, sum by (le, artifact) (rate(skaffold_build_duration_seconds_bucket{{{S}}}[$__rate_interval])))",
            f"p{int(float(q_) * 100)} {{{{artifact}}}}", exemplar=True)
         for q_ in ("0.5", "0.9")],
        "s", grid(12, 27, 12, 9), points=True, interval=DEV_MIN_INTERVAL, legend_calcs=["mean", "max"]))

    # --- tables -------------------------------------------------------------------
    by = "namespace, kind, name"
    rollout_p90 = (
        f"topk(10, histogram_quantile(0.9, sum by (le, {by}) "
        f"(increase(skaffold_resource_rollout_duration_seconds_bucket{{{S}}}[$__range]))))")
    panels.append(tb(
        "Slowest resources to roll out",
        "The 10 Kubernetes resources with the highest p90 rollout time over the dashboard's "
        "time range (status check start to the resource's ready or failed event), with the "
        "number of rollouts, by namespace, kind and name as kube-state-metrics and kubectl "
        "name them (Skaffold's own `resource` string is a label too). From "
        "skaffold_resource_rollout_duration_seconds.",
        [query(rollout_p90, instant=True, fmt=pm.PromQueryFormat.TABLE),
         query(
             f"round(sum by ({by}) (increase(skaffold_resource_rollout_duration_seconds_count{{{S}}}[$__range])))\n"
             f"and on ({by})\n{rollout_p90}",
             instant=True, fmt=pm.PromQueryFormat.TABLE)],
        grid(0, 36, 12, 9),
        rename={"namespace": "Namespace", "kind": "Kind", "name": "Name",
                "Value #A": "p90 rollout time", "Value #B": "Rollouts"},
        units={"p90 rollout time": "s", "Rollouts": "none"},
        sort_by="p90 rollout time"))
    panels.append(tb(
        "Recent failures by phase and error code",
        "Failures over the dashboard's time range, each counted once at the phase that "
        "failed (build, test, deploy, status_check, file_sync, render, verify, exec; "
        "dev_loop when an iteration failed without a failed phase), by Skaffold StatusCode "
        "name (UNKNOWN_ERROR or *_UNKNOWN: Skaffold could not classify the error; UNKNOWN: "
        "Skaffold sent no code), from skaffold_errors_total. Empty when nothing failed. The "
        "panel links open the runbooks of the failing-repeatedly alerts.",
        [query(
            f"sort_desc(round(sum by (phase, code) (increase(skaffold_errors_total{{{S}}}[$__range]))) > 0)",
            instant=True, fmt=pm.PromQueryFormat.TABLE)],
        grid(12, 36, 12, 9),
        rename={"phase": "Phase", "code": "Error code", "Value": "Failures"},
        units={"Failures": "none"},
        sort_by="Failures",
        links=[runbook("SkaffoldDeployFailingRepeatedly"), runbook("SkaffoldBuildFailingRepeatedly")]))

    # --- volume -------------------------------------------------------------------
    panels.append(ts(
        "Iterations by kind and result",
        "Dev-loop iterations finished per interval, by kind and result "
        "(skaffold_dev_loops_total).",
        [query(f"sum by (kind, result) (increase(skaffold_dev_loops_total{{{S}}}[$__rate_interval]))",
               "{{kind}} {{result}}")],
        "none", grid(0, 45, 12, 8), stack=True, bars=True, interval=DEV_MIN_INTERVAL, legend_calcs=["sum"]))
    panels.append(ts(
        "Sync volume",
        "File syncs (hot updates without a rebuild) and files copied per interval, by image: "
        "skaffold_file_syncs_total and skaffold_synced_files_total.",
        [query(f"sum by (image) (increase(skaffold_synced_files_total{{{S}}}[$__rate_interval]))",
               "{{image}} files"),
         query(f"sum by (image) (increase(skaffold_file_syncs_total{{{S}}}[$__rate_interval]))",
               "{{image}} syncs")],
        "none", grid(12, 45, 12, 8), bars=True, interval=DEV_MIN_INTERVAL, legend_calcs=["sum"]))

    # --- sidecar health -----------------------------------------------------------
    panels.append(st(
        "Skaffold version",
        "Version Skaffold reported at the start of its run (skaffold_info).",
        [query(f"max by (version) (skaffold_info{{{S}}})", "{{version}}", instant=True)],
        "none", grid(0, 53, 4, 4), text_mode=cm.BigValueTextMode.NAME))
    panels.append(st(
        "Time since last event",
        "Seconds since the sidecar last received an event from Skaffold "
        "(time() - skaffold_exporter_last_event_timestamp_seconds). Large while Skaffold "
        "waits for file changes; that alone is not a problem.",
        [query(f"time() - max(skaffold_exporter_last_event_timestamp_seconds{{{S}}})", instant=True)],
        "s", grid(4, 53, 4, 4),
        steps=((None, "green"), (3600, "orange"))))
    panels.append(st(
        "Port forwards",
        "Port forwards Skaffold announced in the current run (skaffold_port_forwards).",
        [query(f"sum(skaffold_port_forwards{{{S}}})", instant=True)],
        "none", grid(0, 57, 4, 4), decimals=0))
    panels.append(st(
        "Reconnects",
        "Times the sidecar re-established the event stream over the dashboard's time range "
        "(skaffold_exporter_reconnects_total). Each Skaffold restart adds one.",
        [query(f"round(sum(increase(skaffold_exporter_reconnects_total{{{S}}}[$__range])))", instant=True)],
        "none", grid(4, 57, 4, 4), decimals=0,
        steps=((None, "green"), (10, "orange")),
        links=[runbook("SkaffoldExporterDisconnected")]))
    panels.append(ts(
        "Events received by type",
        "Events per second the sidecar folded, by event type (skaffold_exporter_events_total).",
        [query(f"sum by (event) (rate(skaffold_exporter_events_total{{{S}}}[$__rate_interval]))",
               "{{event}}")],
        "cps", grid(8, 53, 8, 8)))
    panels.append(ts(
        "Exporter anomalies",
        "Per interval: events rejected as invalid by reason "
        "(skaffold_exporter_invalid_events_total, should stay empty), events skipped as "
        "already-seen replay after a reconnect (skaffold_exporter_replayed_events_skipped_total, "
        "expected after reconnects) and stream reconnects.",
        [query(f"sum by (reason) (increase(skaffold_exporter_invalid_events_total{{{S}}}[$__rate_interval]))",
               "invalid: {{reason}}"),
         query(f"sum(increase(skaffold_exporter_replayed_events_skipped_total{{{S}}}[$__rate_interval]))",
               "replayed events skipped"),
         query(f"sum(increase(skaffold_exporter_reconnects_total{{{S}}}[$__rate_interval]))",
               "reconnects")],
        "none", grid(16, 53, 8, 8), bars=True))

    variables = [
        datasource_var(),
        query_var("job", "Job", "label_values(skaffold_exporter_connected, job)", multi=False,
                  description="Prometheus job of the sidecar (scrape job, or service.name over OTLP)."),
        query_var("instance", "Sidecar", 'label_values(skaffold_exporter_connected{job=~"$job"}, instance)',
                  description="Sidecar instance: host:port when scraped, service.instance.id over OTLP."),
    ]
    annotations = [PromAnnotation(
        "Failed deploys",
        f'sum by (job, instance) (increase(skaffold_deploys_total{{{S}, result="failure"}}[$__rate_interval])) > 0',
        title="Deploy failed", text="{{instance}} (job {{job}})", tags="job,instance")]
    return dashboard(
        "skaffold-dev-loop",
        "Skaffold / Dev loop",
        "One developer's Skaffold dev loop from skaffold-exporter: iterations, loop time, "
        "where the time goes, failures, alerts and the sidecar's own health. Failed deploys "
        "are marked as annotations.",
        panels, variables, annotations, time_from="now-6h", refresh="30s", tags=["skaffold", "dev-loop"])


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
    failed_deploys = f'skaffold_deploys_total{{{T}, result="failure"}}'
    panels.append(st(
        "Builds",
        "Artifact builds in the time range across the selected teams, developers and repos "
        "(skaffold_builds_total, all results).",
        [query(f"round(sum({counted(f'skaffold_builds_total{{{TA}}}')}))", instant=True)],
        "none", grid(0, 0, 4, 4), decimals=0))
    panels.append(st(
        "Build failure ratio",
        "Failed builds / (successful + failed builds) in the time range. Canceled builds are "
        "left out.",
        [query(
            "sum(" + counted(f'skaffold_builds_total{{{TA}, result="failure"}}') + ")\n/\n"
            "sum(" + counted(f'skaffold_builds_total{{{TA}, result=~"success|failure"}}') + ")",
            instant=True)],
        "percentunit", grid(4, 0, 4, 4), decimals=1, min_=0, max_=1,
        steps=((None, "green"), (0.1, "orange"), (0.25, "red")),
        links=[runbook("SkaffoldBuildFailingRepeatedly")]))
    panels.append(st(
        "p90 build time",
        "90th percentile build duration over the time range, all selected artifacts "
        "(skaffold_build_duration_seconds).",
        [query(
            f"histogram_quantile(0.9, sum by (le) {counted(f'skaffold_build_duration_seconds_bucket{{{TA}}}')})",
            instant=True)],
        "s", grid(8, 0, 4, 4),
        steps=((None, "green"), (60, "orange"), (300, "red"))))
    panels.append(st(
        "Failed deploys",
        "Failed deploys in the time range across the selected teams, developers and repos, "
        "laptops and CI runs alike (skaffold_deploys_total{result=\"failure\"}).",
        [query(f"round(sum({counted(failed_deploys)}))", instant=True)],
        "none", grid(12, 0, 4, 4), decimals=0,
        steps=((None, "green"), (1, "orange"), (3, "red")),
        links=[runbook("SkaffoldDeployFailingRepeatedly")]))
    panels.append(st(
        "Deploy failure ratio",
        "Failed deploys / (successful + failed deploys) in the time range.",
        [query(
            f"sum({counted(failed_deploys)})\n/\n"
            "sum(" + counted(f'skaffold_deploys_total{{{T}, result=~"success|failure"}}') + ")",
            instant=True)],
        "percentunit", grid(16, 0, 4, 4), decimals=1, min_=0, max_=1,
        steps=((None, "green"), (0.1, "orange"), (0.25, "red")),
        links=[runbook("SkaffoldDeployFailingRepeatedly")]))
    panels.append(st(
        "Active developers",
        "Developers (hashed user.hash) with at least one dev-loop iteration in the time range.",
        [query(
            f"count(sum by (developer) {counted(f'skaffold_dev_loops_total{{{T}}}')} > 0)",
            instant=True)],
        "none", grid(20, 0, 4, 4), decimals=0))

    panels.append(alert_list(
        "the selected teams, developers and repos: laptops (per sidecar) and CI pipelines "
        "(no instance label)",
        '{team=~"${team:regex}", developer=~"${developer:regex}", repo=~"${repo:regex}"}'))

    panels.append(ts(
        "Build time by artifact (p50 / p90)",
        "Median and 90th percentile build duration per artifact, aggregated over every "
        "selected developer's sidecar (skaffold_build_duration_seconds). Exemplars link to "
        "build spans in the trace store.",
        [query(
            f"histogram_quantile({q_}, sum by (le, artifact) (rate(skaffold_build_duration_seconds_bucket{{{TA}}}[$__rate_interval])))",
            f"p{int(float(q_) * 100)} {{{{artifact}}}}", exemplar=True)
         for q_ in ("0.5", "0.9")],
        "s", grid(0, 9, 12, 9), interval=TEAM_MIN_INTERVAL, legend_calcs=["mean", "max"]))
    panels.append(ts(
        "Build time by developer (p50 / p90)",
        "Median and 90th percentile build duration per developer (user.hash, a pseudonym), "
        "all selected artifacts. A developer far above the rest usually has a cold cache or "
        "a slow machine.",
        [query(
            f"histogram_quantile({q_}, sum by (le, developer) (rate(skaffold_build_duration_seconds_bucket{{{TA}}}[$__rate_interval])))",
            f"p{int(float(q_) * 100)} {{{{developer}}}}", exemplar=True)
         for q_ in ("0.5", "0.9")],
        "s", grid(12, 9, 12, 9), interval=TEAM_MIN_INTERVAL, legend_calcs=["mean", "max"]))
    panels.append(ts(
        "Build failure rate by repo and artifact",
        "Share of builds that failed per repo and artifact: rate of failed builds / rate of "
        "successful + failed builds (skaffold_builds_total).",
        [query(
            f'sum by (repo, artifact) (rate(skaffold_builds_total{{{TA}, result="failure"}}[$__rate_interval]))\n/\n'
            f'sum by (repo, artifact) (rate(skaffold_builds_total{{{TA}, result=~"success|failure"}}[$__rate_interval]))',
            "{{repo}} {{artifact}}")],
        "percentunit", grid(0, 18, 12, 9), min_=0, max_=1, interval=TEAM_MIN_INTERVAL,
        legend_calcs=["mean", "max"], links=[runbook("SkaffoldBuildFailingRepeatedly")]))

    slow_p90 = (
        "topk(10, histogram_quantile(0.9, sum by (le, repo, artifact) "
        f"{counted(f'skaffold_build_duration_seconds_bucket{{{TA}}}')}))")
    panels.append(tb(
        "Slowest artifacts",
        "The 10 artifacts (per repo) with the highest p90 build time over the time range, "
        "with their build count.",
        [query(slow_p90, instant=True, fmt=pm.PromQueryFormat.TABLE),
         query(
             f"round(sum by (repo, artifact) {counted(f'skaffold_builds_total{{{TA}}}')})\n"
             f"and on (repo, artifact)\n{slow_p90}",
             instant=True, fmt=pm.PromQueryFormat.TABLE)],
        grid(12, 18, 12, 9),
        rename={"repo": "Repo", "artifact": "Artifact", "Value #A": "p90 build time",
                "Value #B": "Builds"},
        units={"p90 build time": "s", "Builds": "none"},
        sort_by="p90 build time"))

    panels.append(ts(
        "Failed deploys by repo and pipeline",
        "Failed deploys per interval by repo and pipeline (cicd.pipeline.name; empty for "
        "laptops that set none), counting CI runs whose exporter pushed only once or twice "
        "(skaffold_deploys_total{result=\"failure\"}). A pipeline that keeps failing fires "
        "SkaffoldDeployFailingRepeatedly (runbook in the panel links).",
        [query(f"sum by (repo, pipeline) {counted(failed_deploys, '$__rate_interval')}",
               "{{repo}} {{pipeline}}")],
        "none", grid(0, 27, 12, 9), bars=True, stack=True, interval=TEAM_MIN_INTERVAL,
        legend_calcs=["sum"], links=[runbook("SkaffoldDeployFailingRepeatedly")]))
    deploy_table = (f"sort_desc(round(sum by (team, repo, pipeline) {counted(failed_deploys)}) > 0)")
    panels.append(tb(
        "Deploy failures by pipeline",
        "Failed deploys over the time range per team, repo and pipeline, laptops and CI "
        "runs alike, most first. Empty when no deploy failed.",
        [query(deploy_table, instant=True, fmt=pm.PromQueryFormat.TABLE)],
        grid(12, 27, 12, 9),
        rename={"team": "Team", "repo": "Repo", "pipeline": "Pipeline", "Value": "Failed deploys"},
        units={"Failed deploys": "none"},
        sort_by="Failed deploys",
        links=[runbook("SkaffoldDeployFailingRepeatedly")]))

    weekly = "1w"
    panels.append(ts(
        "Build time, weekly trend",
        "Median and 90th percentile build time over the trailing 7 days, one point per day, "
        "for the last 12 weeks, all selected artifacts and per artifact "
        "(skaffold_build_duration_seconds). A deliberate fixed [1w] window: a trend, not a "
        "live view.",
        [query(
            f"histogram_quantile(0.5, sum by (le) {counted(f'skaffold_build_duration_seconds_bucket{{{TA}}}', weekly)})",
            "p50"),
         query(
             f"histogram_quantile(0.9, sum by (le) {counted(f'skaffold_build_duration_seconds_bucket{{{TA}}}', weekly)})",
             "p90"),
         query(
             f"histogram_quantile(0.9, sum by (le, artifact) {counted(f'skaffold_build_duration_seconds_bucket{{{TA}}}', weekly)})",
             "p90 {{artifact}}")],
        "s", grid(0, 36, 12, 9), interval="1d", time_from="12w", legend_calcs=["lastNotNull"]))
    panels.append(ts(
        "Dev-loop time, weekly trend",
        "Median and 90th percentile dev-loop iteration time over the trailing 7 days, one "
        "point per day, for the last 12 weeks (skaffold_dev_loop_duration_seconds). A "
        "deliberate fixed [1w] window: a trend, not a live view.",
        [query(
            f"histogram_quantile(0.5, sum by (le) {counted(f'skaffold_dev_loop_duration_seconds_bucket{{{T}}}', weekly)})",
            "p50"),
         query(
             f"histogram_quantile(0.9, sum by (le) {counted(f'skaffold_dev_loop_duration_seconds_bucket{{{T}}}', weekly)})",
             "p90"),
         query(
             f"histogram_quantile(0.9, sum by (le, kind) {counted(f'skaffold_dev_loop_duration_seconds_bucket{{{T}}}', weekly)})",
             "p90 {{kind}}")],
        "s", grid(12, 36, 12, 9), interval="1d", time_from="12w", legend_calcs=["lastNotNull"]))

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
    annotations = [PromAnnotation(
        "Failed deploys",
        f"sum by (team, repo, pipeline) {counted(failed_deploys, '$__rate_interval')} > 0",
        title="Deploy failed", text="{{pipeline}} ({{team}}, {{repo}})", tags="team,repo,pipeline")]
    return dashboard(
        "skaffold-team-builds",
        "Skaffold / Team builds",
        "Team-wide Skaffold build, deploy and dev-loop statistics from every developer's and "
        "CI job's skaffold-exporter, pushed over OTLP through the collector gateway (labels "
        "team, developer, repo, pipeline). Failed deploys are marked as annotations.",
        panels, variables, annotations, time_from="now-7d", refresh="5m", tags=["skaffold", "team"])


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
