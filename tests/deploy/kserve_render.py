"""What KServe does to a ServingRuntime's container for an InferenceService, in Python.

KServe (pkg/controller/v1beta1/inferenceservice: ``MergeRuntimeContainers`` and
``ReplacePlaceholders``) merges the predictor's ``model`` fields into the runtime's
``kserve-container``, appends the predictor's ``args`` to the runtime's, then executes the
container's JSON as a Go template over the InferenceService's metadata: ``{{.Name}}``,
``{{.Namespace}}``, ``{{.Labels.key}}``, ``{{.Annotations.key}}``. Anything else in ``{{ }}``
is refused here, so a runtime using more of Go's templates fails its test instead of being
rendered wrongly.
"""

from __future__ import annotations

import json
import re
from typing import Any

CONTAINER = "kserve-container"
# The predictor model's fields that are not a container's.
MODEL_FIELDS = {
    "modelFormat",
    "runtime",
    "runtimeVersion",
    "storageUri",
    "storage",
    "protocolVersion",
}
_PLACEHOLDER = re.compile(r"\{\{\s*\.(Name|Namespace|Labels\.[\w.-]+|Annotations\.[\w.-]+)\s*\}\}")


def render(runtime: dict[str, Any], isvc: dict[str, Any]) -> dict[str, Any]:
    """The predictor container KServe creates for ``isvc`` from ``runtime``."""
    (container,) = [c for c in runtime["spec"]["containers"] if c["name"] == CONTAINER]
    model = isvc["spec"]["predictor"].get("model", {})
    # The predictor's container fields override the runtime's (KServe merges lists such as env
    # by key; the examples set none of those), its args are appended.
    merged = {**container, **{k: v for k, v in model.items() if k not in MODEL_FIELDS}}
    merged["args"] = [*container.get("args", []), *model.get("args", [])]
    meta = isvc["metadata"]
    values = {"Name": meta["name"], "Namespace": meta.get("namespace", "default")}

    def substitute(match: re.Match[str]) -> str:
        field = match.group(1)
        if field.startswith(("Labels.", "Annotations.")):
            kind, key = field.split(".", 1)
            return str(meta.get(kind.lower(), {})[key])
        return values[field]

    text = _PLACEHOLDER.sub(substitute, json.dumps(merged))
    assert "{{" not in text, f"a placeholder KServe's metadata template cannot fill: {text}"
    rendered: dict[str, Any] = json.loads(text)
    return rendered
