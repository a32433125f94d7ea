"""Shared output of every scenario: a JSON file and a short table on stdout."""

from __future__ import annotations

import json
import math
import platform
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]) of a non-empty list; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def emit(scenario: str, params: Mapping[str, Any], metrics: Mapping[str, Any], json_path: str | None) -> None:
    """Write `{"scenario", "params", "metrics"}` to `json_path` (if given) and print a table.
    `params` gains `python`: the interpreter that ran the scenario (and the agents it starts),
    whose build the figures depend on."""
    params = {**params, "python": f"{sys.executable} {platform.python_version()}"}
    doc = {"scenario": scenario, "params": params, "metrics": dict(metrics)}
    if json_path:
        path = Path(json_path)
        if path.parent and not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        # NaN is not JSON; write null so that any JSON reader can load the file.
        clean = json.loads(json.dumps(doc, default=str).replace("NaN", "null"))
        path.write_text(json.dumps(clean, indent=2, sort_keys=True) + "\n")
    width = max((len(k) for k in metrics), default=10)
    out = sys.stdout
    out.write(f"{scenario}  " + " ".join(f"{k}={_fmt(v)}" for k, v in params.items()) + "\n")
    for key, value in metrics.items():
        out.write(f"  {key:<{width}}  {_fmt(value)}\n")
    out.flush()
