#!/usr/bin/env python3
"""Standalone JSON schemas for kubeconform, offline, from Kubernetes' own
OpenAPI spec and our CRDs.

usage: k8s-json-schemas.py SWAGGER_JSON CRD_YAML... OUTDIR

Writes OUTDIR/<kind>[-<group's first label>]-<version>.json, the names
kubeconform looks up with
  -schema-location 'OUTDIR/{{ .ResourceKind }}{{ .KindSuffix }}.json'
Each file is draft-04 (kubeconform's default) with the definitions it needs.
As kubectl's validation and kubeconform's own "-strict" schemas do, an object
that lists properties rejects unknown fields. That is in the schemas, so it
holds with or without kubeconform's -strict (which adds: no duplicate keys).
"""
import json
import os
import sys

import yaml  # python3-yaml (Debian), installed by cluster/build.sh

DEFS = "#/definitions/"
META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
# The API server also takes numbers for quantities (cpu: 1).
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"


def convert(s, nullable_default):
    """OpenAPI (swagger v2 or CRD v3) schema -> draft-04 JSON schema."""
    out = {}
    for k, v in s.items():
        if k == "properties":
            out[k] = {name: convert(p, nullable_default) for name, p in v.items()}
        elif k in ("items", "not") or (k == "additionalProperties" and isinstance(v, dict)):
            out[k] = convert(v, nullable_default)
        elif k in ("allOf", "anyOf", "oneOf"):
            out[k] = [convert(x, nullable_default) for x in v]
        elif k not in ("description", "nullable") and not k.startswith("x-"):
            out[k] = v
    if s.get("format") == "int-or-string" or s.get("x-kubernetes-int-or-string"):
        out.pop("format", None)
        out["type"] = ["integer", "string"]
    if "properties" in out and "additionalProperties" not in out \
            and not s.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    # Built-in types decode null as the zero value; CRDs say so per field.
    if "type" in out and s.get("nullable", nullable_default):
        t = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = t + ["null"]
    return out


def refs(node):
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for k, v in node.items():
            yield from refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from refs(v)


def standalone(root, defs):
    """root plus every definition it reaches, so the file needs no other."""
    need, todo = {}, [root]
    while todo:
        for ref in refs(todo.pop()):
            name = ref[len(DEFS):]
            if name not in need:
                need[name] = defs[name]
                todo.append(defs[name])
    out = {"$schema": "http://json-schema.org/draft-04/schema#", **root}
    if need:
        out["definitions"] = need
    return out


def filename(kind, group, version):
    """kubeconform's ResourceKind + KindSuffix (pkg/registry)."""
    parts = [kind, group.split(".")[0]] if group else [kind]
    return "-".join(parts + [version]).lower() + ".json"


def crd_schemas(doc, defs):
    """(kind, group, version, schema) for each version of a CRD."""
    if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
        return
    spec = doc["spec"]
    kind, group = spec["names"]["kind"], spec["group"]
    for v in spec["versions"]:
        s = convert(v["schema"]["openAPIV3Schema"], False)
        # The API server adds these to every custom resource.
        s.setdefault("properties", {}).update({
            "apiVersion": {"type": "string", "enum": [f"{group}/{v['name']}"]},
            "kind": {"type": "string", "enum": [kind]},
            "metadata": {"$ref": DEFS + META},
        })
        yield kind, group, v["name"], s


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    swagger, crds, outdir = sys.argv[1], sys.argv[2:-1], sys.argv[-1]
    with open(swagger) as f:
        spec = json.load(f)
    defs = {name: convert(d, True) for name, d in spec["definitions"].items()}
    defs[QUANTITY] = {"type": ["string", "number", "null"]}

    kinds = []
    for name, d in spec["definitions"].items():
        for gvk in d.get("x-kubernetes-group-version-kind", []):
            kinds.append((gvk["kind"], gvk["group"], gvk["version"], defs[name]))
    for path in crds:
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                kinds.extend(crd_schemas(doc, defs))

    os.makedirs(outdir, exist_ok=True)
    written = {}
    for kind, group, version, schema in kinds:
        name = filename(kind, group, version)
        if written.get(name, group) != group:
            sys.exit(f"{name}: both group {written[name]} and {group} map to this file name")
        written[name] = group
        with open(os.path.join(outdir, name), "w") as f:
            json.dump(standalone(schema, defs), f, separators=(",", ":"), sort_keys=True)
    print(f"wrote {len(written)} schemas", file=sys.stderr)


if __name__ == "__main__":
    main()
