"""Rebuild the vendored KServe schemas from KServe's CRD files (see README.md here).

    python tests/deploy/schemas/make_schemas.py KSERVE_CHECKOUT/config/crd/full

Takes each CRD's ``openAPIV3Schema`` as it is, drops the ``description`` texts and moves every
subtree that occurs more than once (the Container schema occurs dozens of times) into
``$defs``, referenced with ``$ref``: the same schema, a tenth of the size.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).parent
CRDS = {
    "serving.kserve.io_servingruntimes.yaml": "servingruntime.v1alpha1.json",
    "serving.kserve.io_inferenceservices.yaml": "inferenceservice.v1beta1.json",
}
MIN_SHARED = 400  # characters of compact JSON: smaller repeated subtrees stay inline


def _key(node: Any) -> str:
    return json.dumps(node, sort_keys=True, separators=(",", ":"))


def _strip(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def _children(node: dict[str, Any]) -> list[tuple[str, Any, bool]]:
    """(key, value, is_schema) of a schema's members: the values of ``properties`` (and of
    ``patternProperties``) are schemas, the map holding them is not."""
    out = []
    for k, v in node.items():
        if k in ("properties", "patternProperties") and isinstance(v, dict):
            out.append((k, v, False))
        else:
            out.append((k, v, True))
    return out


def factor(schema: dict[str, Any]) -> dict[str, Any]:
    counts: dict[str, int] = {}

    def count(node: Any, is_schema: bool = True) -> None:
        if isinstance(node, dict):
            k = _key(node)
            if is_schema and len(k) >= MIN_SHARED:
                counts[k] = counts.get(k, 0) + 1
            children = _children(node) if is_schema else [(k, v, True) for k, v in node.items()]
            for _, v, child_is_schema in children:
                count(v, child_is_schema)
        elif isinstance(node, list):
            for v in node:
                count(v)

    count(schema)
    shared = {k for k, n in counts.items() if n > 1}
    defs: dict[str, Any] = {}

    def rewrite(node: Any, is_schema: bool = True, top: bool = False) -> Any:
        if isinstance(node, dict):
            k = _key(node)
            if is_schema and not top and k in shared:
                name = "d" + hashlib.sha1(k.encode()).hexdigest()[:10]
                if name not in defs:
                    defs[name] = None
                    defs[name] = rewrite(node, top=True)
                return {"$ref": f"#/$defs/{name}"}
            children = _children(node) if is_schema else [(k, v, True) for k, v in node.items()]
            return {kk: rewrite(v, child_is_schema) for kk, v, child_is_schema in children}
        if isinstance(node, list):
            return [rewrite(v) for v in node]
        return node

    out: dict[str, Any] = rewrite(schema, top=True)
    out["$defs"] = dict(sorted(defs.items()))
    return out


def dump(schema: dict[str, Any]) -> str:
    """Compact JSON, one ``$defs`` entry per line."""
    defs = schema.pop("$defs")
    body = _key(schema)[1:-1]
    lines = [f"{json.dumps(n)}:{_key(d)}" for n, d in defs.items()]
    return '{"$defs":{\n' + ",\n".join(lines) + "\n}," + body + "}\n"


def main(crd_dir: Path) -> None:
    for crd_file, out in CRDS.items():
        crd = yaml.safe_load((crd_dir / crd_file).read_text())
        (version,) = [v for v in crd["spec"]["versions"] if v.get("storage")]
        schema = factor(_strip(version["schema"]["openAPIV3Schema"]))
        (HERE / out).write_text(dump(schema))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
