"""Shared helpers for the deploy tests: dashboards, rules, PromQL, the contract.

Used by lint_dashboards.py (static checks) and e2e.py (against a real
Prometheus). Needs PyYAML and promql-parser (tests/deploy/requirements.txt).
"""

import json
import re
from pathlib import Path

import promql_parser
import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD_DIR = ROOT / "dashboards"
PROM_DIR = ROOT / "deploy" / "prometheus"
CONTRACT = Path(__file__).resolve().parent / "metric-contract.txt"

# Values for Grafana's built-in variables when an expression is parsed or run
# outside Grafana.
BUILTINS_STATIC = {
    "__rate_interval": "1m",
    "__interval": "1m",
    "__range": "1h",
    "__range_s": "3600",
    "__interval_ms": "60000",
}

COUNTER_FUNCS = {"rate", "increase", "irate"}


# ---------------------------------------------------------------------------
# dashboards
# ---------------------------------------------------------------------------


def load_dashboards():
    out = []
    for path in sorted(DASHBOARD_DIR.glob("*.json")):
        out.append((path, json.loads(path.read_text())))
    return out


def iter_panels(dash):
    for p in dash.get("panels", []):
        yield p
        for inner in p.get("panels", []) or []:  # collapsed rows
            yield inner


def prom_annotations(dash):
    """The dashboard's annotations other than Grafana's built-in one."""
    for a in dash.get("annotations", {}).get("list", []):
        if not a.get("builtIn"):
            yield a


def annotation_expr(a):
    """The PromQL of an annotation: in `target` (current form) or on the annotation
    itself (the form Grafana migrates)."""
    return (a.get("target") or {}).get("expr") or a.get("expr") or ""


def template_vars(dash):
    return dash.get("templating", {}).get("list", [])


def var_query(v):
    q = v.get("query")
    if isinstance(q, dict):
        q = q.get("query")
    return q or v.get("definition") or ""


LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(?P<sel>.*),\s*)?(?P<label>[a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$", re.S)


def parse_label_values(q):
    """label_values(selector, label) -> (selector or None, label)."""
    m = LABEL_VALUES.match(q)
    if not m:
        return None
    return (m.group("sel") or None), m.group("label")


VAR_RE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


def substitute(expr, values):
    """Replace Grafana variables ($x, ${x}, ${x:fmt}, [[x]]) from `values`.
    Unknown variables are left in place (and will fail to parse if outside a
    string)."""

    def repl(m):
        name = m.group(1) or m.group(2) or m.group(3)
        return values.get(name, m.group(0))

    return VAR_RE.sub(repl, expr)


def static_values(dash):
    """Values used to parse a dashboard's expressions statically."""
    vals = dict(BUILTINS_STATIC)
    for v in template_vars(dash):
        vals[v["name"]] = v.get("allValue") or ".*"
    return vals


MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(,|$)')


def parse_matchers(text):
    """`{a="x", b=~"y"}` (Grafana's alert-list label filter, Alertmanager matcher
    syntax) -> [(label, op, value)]; [] for an empty filter; None if it does not
    parse."""
    text = text.strip()
    if not text:
        return []
    if not (text.startswith("{") and text.endswith("}")):
        return None
    body, out, pos = text[1:-1].strip(), [], 0
    while pos < len(body):
        m = MATCHER.match(body, pos)
        if not m:
            return None
        out.append((m.group(1), m.group(2), m.group(3)))
        pos = m.end()
    return out


def matches(matchers, labels):
    """Whether `labels` (a dict) satisfy every matcher (regexes fully anchored, an
    absent label reads as "")."""
    for label, op, value in matchers:
        got = labels.get(label, "")
        if op == "=" and got != value or op == "!=" and got == value:
            return False
        if op in ("=~", "!~") and (re.fullmatch(value, got) is not None) != (op == "=~"):
            return False
    return True


# ---------------------------------------------------------------------------
# rules
# ---------------------------------------------------------------------------


def rule_files():
    return [p for p in sorted(PROM_DIR.glob("*.yml")) if not p.name.endswith(".test.yml")
            and "groups" in (yaml.safe_load(p.read_text()) or {})]


def iter_rules():
    for path in rule_files():
        doc = yaml.safe_load(path.read_text())
        for g in doc["groups"]:
            for r in g["rules"]:
                yield path, g["name"], r


# ---------------------------------------------------------------------------
# contract
# ---------------------------------------------------------------------------


def load_contract():
    """name -> (type, [labels])"""
    out = {}
    for line in CONTRACT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        out[parts[0]] = (parts[1], parts[2:])
    return out


def contract_sample_names(contract=None):
    """Names a PromQL query may use, with their kind:
    counter | gauge | bucket | histogram_counter (_sum/_count)."""
    contract = contract or load_contract()
    names = {}
    for n, (t, _) in contract.items():
        if t == "histogram":
            names[n + "_bucket"] = "bucket"
            names[n + "_sum"] = "histogram_counter"
            names[n + "_count"] = "histogram_counter"
        else:
            names[n] = t
    return names


def exposition_names(text):
    """Sample names present in a Prometheus/OpenMetrics exposition, including
    the names implied by # TYPE lines of families without samples yet."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) >= 4:
                fam, typ = parts[2], parts[3]
                if typ == "counter":
                    names.add(fam if fam.endswith("_total") else fam + "_total")
                elif typ == "histogram":
                    names.update({fam + "_bucket", fam + "_sum", fam + "_count"})
                else:
                    names.add(fam)
        elif line and not line.startswith("#"):
            m = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line)
            if m:
                names.add(m.group(0))
    return names


# ---------------------------------------------------------------------------
# PromQL AST
# ---------------------------------------------------------------------------


def children(node):
    P = promql_parser
    if isinstance(node, P.AggregateExpr):
        return [c for c in (node.param, node.expr) if c is not None]
    if isinstance(node, P.BinaryExpr):
        return [node.lhs, node.rhs]
    if isinstance(node, P.Call):
        return list(node.args)
    if isinstance(node, P.MatrixSelector):
        return [node.vector_selector]
    if isinstance(node, (P.ParenExpr, P.UnaryExpr, P.SubqueryExpr)):
        return [node.expr]
    return []


def selector_name(vs):
    if vs.name:
        return vs.name
    for m in vs.matchers.matchers:
        if m.name == "__name__":
            return m.value
    return None


def selectors(expr_text):
    """Parse a PromQL expression; yield (metric name, [ancestors outermost
    first]) for every vector selector. Raises ValueError on a parse error."""
    ast = promql_parser.parse(expr_text)
    out = []

    def rec(node, ancestors):
        if isinstance(node, promql_parser.VectorSelector):
            out.append((selector_name(node), list(ancestors)))
            return
        for c in children(node):
            rec(c, ancestors + [node])

    rec(ast, [])
    return out


def call_name(node):
    return node.func.name if isinstance(node, promql_parser.Call) else None


def inside_counter_func(ancestors):
    """True when the selector is the range argument of rate/increase/irate."""
    return (len(ancestors) >= 2 and isinstance(ancestors[-1], promql_parser.MatrixSelector)
            and call_name(ancestors[-2]) in COUNTER_FUNCS)


def inside_last_over_time(ancestors):
    """True when the selector is the range argument of last_over_time: a counter's
    value at the end of a window, which is how the team dashboard and the alert
    rules count the events of exporters that started inside the window (a CI run's
    single push, where increase() sees nothing)."""
    return (len(ancestors) >= 2 and isinstance(ancestors[-1], promql_parser.MatrixSelector)
            and call_name(ancestors[-2]) == "last_over_time")


def inside_histogram_quantile(ancestors):
    return any(call_name(a) == "histogram_quantile" for a in ancestors)


def divides(expr_text):
    """Whether the expression contains a division (a ratio, not a quantity)."""
    try:
        ast = promql_parser.parse(expr_text)
    except ValueError:
        return False
    stack = [ast]
    while stack:
        node = stack.pop()
        if isinstance(node, promql_parser.BinaryExpr) and str(node.op) == "/":
            return True
        stack.extend(children(node))
    return False


def range_windows(expr_text):
    """The raw contents of every [...] range / subquery window."""
    return re.findall(r"\[([^\]]+)\]", expr_text)
