#!/usr/bin/env python3
"""Mutation check for deploy/prometheus/skaffold-alerts.test.yml.

Each mutation weakens one alert in a way a reviewer could plausibly make (drop
a guard, drop keep_firing_for, shorten `for`); `promtool test rules` must then
FAIL. A mutation that still passes means the unit tests do not pin that
behaviour down.

    rule_mutations.py [--promtool PATH]
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

import dashlib as dl

MUTATIONS = [
    ("SkaffoldDeployFailingRepeatedly", "counter only (no streak gauge)",
     lambda r: r.update(expr='increase(skaffold_deploys_total{result="failure"}[30m]) >= 3')),
    ("SkaffoldDeployFailingRepeatedly", "streak gauge only (no 30m counter guard)",
     lambda r: r.update(expr="skaffold_deploy_consecutive_failures >= 3")),
    ("SkaffoldDeployFailingRepeatedly", "no keep_firing_for",
     lambda r: r.pop("keep_firing_for")),
    ("SkaffoldDeployFailingRepeatedly", "threshold 4",
     lambda r: r.update(expr=r["expr"].replace(">= 3", ">= 4"))),
    ("SkaffoldBuildFailingRepeatedly", "counter only (no streak gauge)",
     lambda r: r.update(expr='increase(skaffold_builds_total{result="failure"}[30m]) >= 3')),
    ("SkaffoldBuildFailingRepeatedly", "not per artifact",
     lambda r: r.update(expr='max without (artifact) (skaffold_build_consecutive_failures) >= 3')),
    ("SkaffoldDevLoopSlow", "no volume guard",
     lambda r: r.update(expr=r["expr"].split("\nand\n")[0])),
    ("SkaffoldDevLoopSlow", "initial loops included",
     lambda r: r.update(expr=r["expr"].replace('kind!="initial"', 'kind!="none"'))),
    ("SkaffoldDevLoopSlow", "threshold 300 s",
     lambda r: r.update(expr=r["expr"].replace("> 120", "> 300"))),
    ("SkaffoldExporterDisconnected", "for: 1m",
     lambda r: r.update({"for": "1m"})),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--promtool", default=shutil.which("promtool") or "promtool")
    args = ap.parse_args()

    src = dl.PROM_DIR / "skaffold-alerts.yml"
    test = dl.PROM_DIR / "skaffold-alerts.test.yml"
    base = yaml.safe_load(src.read_text())
    survived = 0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shutil.copy(test, tmp / test.name)
        for alert, what, mutate in MUTATIONS:
            doc = yaml.safe_load(src.read_text())
            rule = next(r for g in doc["groups"] for r in g["rules"] if r.get("alert") == alert)
            mutate(rule)
            if doc == base:
                print(f"  FAIL mutation {alert}: {what} changed nothing")
                survived += 1
                continue
            (tmp / src.name).write_text(yaml.safe_dump(doc, sort_keys=False))
            r = subprocess.run([args.promtool, "test", "rules", test.name], cwd=tmp,
                               capture_output=True, text=True)
            if r.returncode == 0:
                survived += 1
                print(f"  FAIL mutation {alert}: {what} -- the unit tests still pass")
            elif "FAILED" not in (r.stdout + r.stderr):
                survived += 1
                print(f"  FAIL mutation {alert}: {what} -- promtool errored instead of failing a test:\n"
                      f"{r.stdout}{r.stderr}")
            else:
                print(f"  ok   mutation {alert}: {what} -- caught")
    print(f"rule mutations: {len(MUTATIONS) - survived} of {len(MUTATIONS)} caught")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
