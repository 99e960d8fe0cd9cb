"""Trim KServe's InferenceService CRD to the schema of what deploy/kserve/ uses, for tests/kserve/ to vendor.

KServe's full CRD (charts/kserve-crd/templates/serving.kserve.io_inferenceservices.yaml) is 1.9 MB; the trimmed copy
keeps its v1beta1 openAPIV3Schema for apiVersion, kind, metadata and spec.predictor, less the predictor's fields
that deploy/kserve/ does not use and that are large: the other frameworks' specs, workerSpec, initContainers and
affinity (tests/test_kserve.py refuses those fields, as strict field validation would). The rest is KServe's own
text, unchanged.

    python tools/kserve_crd.py CRD.yaml COMMIT > tests/kserve/inferenceservice-v1beta1.schema.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

#: Predictor fields left out of the trimmed schema (size: two thirds of the predictor's).
TRIMMED = tuple("workerSpec sklearn xgboost tensorflow pytorch triton onnx pmml lightgbm paddle huggingface initContainers affinity".split())


def trim(crd: dict[str, Any], source: str) -> dict[str, Any]:
    """The served v1beta1 schema of the InferenceService CRD, trimmed to apiVersion, kind, metadata and spec.predictor."""
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1beta1")
    schema = version["schema"]["openAPIV3Schema"]
    spec = schema["properties"]["spec"]
    predictor = spec["properties"]["predictor"]
    kept = {name: field for name, field in predictor["properties"].items() if name not in TRIMMED}
    return {
        "$comment": f"KServe's InferenceService v1beta1 openAPIV3Schema from {source}, trimmed by tools/kserve_crd.py: no {', '.join(TRIMMED)}",
        **{key: value for key, value in schema.items() if key != "properties"},
        "properties": {
            **{key: schema["properties"][key] for key in ("apiVersion", "kind", "metadata")},
            "spec": {
                **{key: value for key, value in spec.items() if key != "properties"},
                "properties": {"predictor": {**{key: value for key, value in predictor.items() if key != "properties"}, "properties": kept}},
            },
        },
    }


def main(argv: list[str]) -> None:
    """Print the trimmed schema of the CRD file argv[0], naming argv[1] (e.g. kserve/kserve@COMMIT) as its source."""
    crd = next(doc for doc in yaml.safe_load_all(Path(argv[0]).read_text()) if doc)
    print(json.dumps(trim(crd, argv[1]), indent=1, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1:])
