#!/usr/bin/env python3
"""Validate the Prometheus Operator objects in deploy/kubernetes against the CRDs
in tests/deploy/crds (kubernetes-validate knows only built-in kinds).

    crd_validate.py [FILE...]    (default: every deploy/kubernetes/*.yaml)

Strict: an unknown field is an error (the API server would prune it silently, so a
typo such as `podMetricEndpoints` would otherwise pass and scrape nothing). Every
document of a kind the CRDs define is checked; a file with none is skipped.
--self-test proves that a misspelt field and a wrong type are caught.
"""

import copy
import sys
from pathlib import Path

import jsonschema
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def strict(schema):
    """The CRD schema with additionalProperties: false wherever it lists properties
    and allows nothing else (x-kubernetes-preserve-unknown-fields, maps)."""
    s = copy.deepcopy(schema)

    def rec(node):
        if not isinstance(node, dict):
            return
        if ("properties" in node and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")):
            node["additionalProperties"] = False
        for v in node.values():
            if isinstance(v, dict):
                rec(v)
            elif isinstance(v, list):
                for x in v:
                    rec(x)

    rec(s)
    return s


def load_schemas():
    """(apiVersion, kind) -> strict JSON schema."""
    out = {}
    for f in sorted((HERE / "crds").glob("*.yaml")):
        crd = yaml.safe_load(f.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for v in crd["spec"]["versions"]:
            if v.get("served"):
                out[(f"{group}/{v['name']}", kind)] = strict(v["schema"]["openAPIV3Schema"])
    return out


def validate(doc, schemas):
    key = (doc.get("apiVersion"), doc.get("kind"))
    schema = schemas.get(key)
    if schema is None:
        return None
    v = jsonschema.Draft7Validator(schema)
    errs = [f"{'/'.join(map(str, e.absolute_path)) or '.'}: {e.message}" for e in v.iter_errors(doc)]
    for field in ("name",):
        if not (doc.get("metadata") or {}).get(field):
            errs.append(f"metadata.{field} missing")
    return errs


def self_test(schemas):
    pm = next(d for d in yaml.safe_load_all((ROOT / "deploy/kubernetes/pod-monitor.yaml").read_text()) if d)
    cases = [
        ("podMetricEndpoints", lambda d: d["spec"].update(podMetricEndpoints=d["spec"].pop("podMetricsEndpoints"))),
        ("is not of type 'boolean'", lambda d: d["spec"]["podMetricsEndpoints"][0].update(honorLabels="yes")),
    ]
    bad = 0
    for want, mutate in cases:
        d = copy.deepcopy(pm)
        mutate(d)
        errs = validate(d, schemas) or []
        if not any(want in e for e in errs):
            bad += 1
            print(f"  FAIL self-test: expected {want!r}, got {errs}")
    print(f"crd self-test: {len(cases) - bad} of {len(cases)} mutations caught")
    return bad


def main(argv):
    schemas = load_schemas()
    if "--self-test" in argv:
        return 1 if self_test(schemas) else 0
    files = [Path(a) for a in argv] or sorted((ROOT / "deploy/kubernetes").glob("*.yaml"))
    failed = checked = 0
    for f in files:
        for doc in yaml.safe_load_all(f.read_text()):
            if not doc:
                continue
            errs = validate(doc, schemas)
            if errs is None:
                continue
            checked += 1
            name = f"{f.name} {doc['kind']}/{(doc.get('metadata') or {}).get('name')}"
            if errs:
                failed += 1
                for e in errs:
                    print(f"  FAIL {name}: {e}")
            else:
                print(f"  ok   {name} against the {doc['apiVersion']} CRD schema")
    if checked == 0:
        print("  FAIL no Prometheus Operator object found")
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
