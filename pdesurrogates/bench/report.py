"""Result files for benchmarks: JSON with provenance, a Markdown table, and where they go.

Every benchmark writes ``benchmarks/results/<device>/<name>.json`` (or ``.../<suite>/...``) through
:func:`write_results`, which adds the provenance the house rules ask for (device, torch/CUDA
versions, git sha, date) and a Markdown table rendered from the same rows.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import platform
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results"


def device_name(device: str | None = None) -> str:
    """Folder name for a device: ``cpu``, or the CUDA device name made path-safe (``nvidia-h100``)."""
    import torch

    if device is None or str(device).startswith("cpu") or not torch.cuda.is_available():
        return "cpu"
    name = torch.cuda.get_device_name(torch.device(device))
    return "-".join(name.lower().replace("nvidia", "nvidia ").split()).split("-pcie")[0]


def git_sha() -> str:
    """Short sha of HEAD, ``-dirty`` when tracked files outside ``benchmarks/results`` differ from it
    (result files are what benchmarks write, so rewriting one does not make the measured code dirty)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!benchmarks/results"],
            cwd=REPO, capture_output=True, text=True, check=False,
        ).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _version(distribution: str) -> str | None:
    """Installed version of a distribution, ``None`` when it is not installed."""
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def environment(device: str | None = None) -> dict[str, Any]:
    """Provenance of a benchmark run."""
    import numpy
    import scipy
    import torch

    import pdesurrogates

    env = {
        "device": device_name(device),
        "device_detail": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "neuralop": _version("neuraloperator"),
        "pyamg": _version("pyamg"),
        "h5py": _version("h5py"),
        "python": platform.python_version(),
        "pdesurrogates": pdesurrogates.__version__,
        "git_sha": git_sha(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "threads": torch.get_num_threads(),
    }
    env["git_dirty"] = env["git_sha"].endswith("-dirty")  # uncommitted changes when the run started
    if env["device"] != "cpu":
        env["device_detail"] = torch.cuda.get_device_name(torch.device(device))
    return env


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value != 0 and (abs(value) >= 1e4 or abs(value) < 1e-3):
            return f"{value:.3e}"
        return f"{value:.4g}"
    return str(value)


def markdown_table(rows: Sequence[dict[str, Any]], columns: Iterable[str] | None = None) -> str:
    """A GitHub Markdown table of ``rows`` (list of dicts); columns default to the first row's keys."""
    if not rows:
        return "(no rows)\n"
    cols = list(columns) if columns is not None else list(rows[0].keys())
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c, "")) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def write_results(
    name: str,
    rows: Sequence[dict[str, Any]],
    *,
    config: dict[str, Any] | None = None,
    device: str | None = None,
    title: str | None = None,
    notes: str = "",
    columns: Iterable[str] | None = None,
    extra: dict[str, Any] | None = None,
    out_dir: Path | str | None = None,
) -> dict[str, Path]:
    """Write ``<name>.json`` and ``<name>.md`` under ``benchmarks/results/<device>/``.

    Args:
        name: file stem, may contain a sub folder (``"scaling-params/results"``).
        rows: one dict per measured point.
        config: the benchmark's settings (sizes, seeds, ...).
        device: torch device string the benchmark ran on.
        notes: Markdown placed under the table (ratios, targets, caveats).
        extra: more JSON fields (fits, summaries).
        out_dir: override of ``benchmarks/results/<device>``.

    Returns:
        ``{"json": path, "md": path}``.
    """
    env = environment(device)
    folder = Path(out_dir) if out_dir is not None else RESULTS / env["device"]
    json_path = folder / f"{name}.json"
    md_path = json_path.with_suffix(".md")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"name": name, "environment": env, "config": config or {}, "rows": list(rows)}
    if extra:
        payload.update(extra)
    json_path.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
    header = f"# {title or name}\n\n"
    meta = (
        f"device `{env['device']}` ({env['device_detail']}), torch {env['torch']}, "
        f"git `{env['git_sha']}`, {env['date']}\n\n"
    )
    md_path.write_text(header + meta + markdown_table(rows, columns) + ("\n" + notes + "\n" if notes else ""))
    return {"json": json_path, "md": md_path}


def _json_default(value: Any) -> Any:
    try:
        import numpy as np

        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
