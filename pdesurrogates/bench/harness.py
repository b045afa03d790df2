"""Sweep runner: progress bar over points, resume from a partial JSON, results + Markdown + plots.

A *suite* (module in :mod:`pdesurrogates.bench.suites`) supplies

* ``NAME``, ``TITLE`` and ``SIZES`` (``{"smoke"|"small"|"full": config dict}``);
* ``points(config, context) -> list[dict]``: the sweep, each point a small JSON-able dict;
* ``prepare(config, device) -> context``: data loaded once for all points;
* ``measure(point, context, config, device) -> dict``: one row's measurements;
* ``analyze(rows, config) -> dict``: ``fits``, ``tables`` (``{title: rows}``), ``notes``, ``columns``;
* ``plot(payload, folder, stem) -> list[Path]``: PNGs drawn from the result JSON alone.

:func:`run_suite` runs it and writes ``<out>/<device>/<suite>/<size>.json`` (with the provenance of
:func:`pdesurrogates.bench.report.environment`), ``<size>.md`` and ``<size>_*.png``. While it runs,
every finished point is saved to ``<size>.partial.json``; a rerun with the same config skips them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pdesurrogates.bench import schema
from pdesurrogates.bench.report import (
    RESULTS,
    _json_default,
    device_name,
    markdown_table,
    write_results,
)


def point_key(point: dict[str, Any]) -> str:
    """Stable identity of a sweep point (sorted JSON)."""
    return json.dumps(point, sort_keys=True, default=_json_default)


def _normalise(obj: Any) -> Any:
    return json.loads(json.dumps(obj, sort_keys=True, default=_json_default))


def _atomic_write(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=_json_default) + "\n")
    os.replace(tmp, path)


def run_sweep(
    points: Sequence[dict[str, Any]],
    measure: Callable[[dict[str, Any]], dict[str, Any]],
    *,
    partial: Path | str | None,
    config: dict[str, Any],
    progress: bool = True,
    desc: str = "sweep",
) -> list[dict[str, Any]]:
    """Measure every point, skipping those already stored in ``partial``.

    Parameters
    ----------
    points:
        Sweep points (JSON-able dicts); their sorted JSON is their identity.
    measure:
        ``measure(point) -> dict`` of measurements; the row is ``{**point, **measurements}``.
    partial:
        JSON file updated after every point; ``None`` disables resumption.
    config:
        The sweep's config, stored in ``partial``; resuming with a different config is refused.
    progress:
        Show a tqdm bar over the points.

    Returns
    -------
    list of dict
        One row per point, in the order of ``points``.

    Raises
    ------
    ValueError
        When ``partial`` holds results of another config, or points repeat.
    """
    from tqdm.auto import tqdm

    keys = [point_key(p) for p in points]
    if len(set(keys)) != len(keys):
        raise ValueError("run_sweep: sweep points must be distinct")
    done: dict[str, dict[str, Any]] = {}
    partial = Path(partial) if partial is not None else None
    if partial is not None and partial.exists():
        stored = json.loads(partial.read_text())
        if _normalise(stored.get("config")) != _normalise(config):
            raise ValueError(
                f"{partial} holds an interrupted sweep with another config; delete it or run without "
                "resume (--restart) to start over"
            )
        done = {r["key"]: r for r in stored.get("rows", [])}
    rows = []
    todo = sum(k not in done for k in keys)
    bar = tqdm(total=len(keys), initial=len(keys) - todo, desc=desc, disable=not progress, leave=False)
    try:
        for point, key in zip(points, keys):
            if key in done:
                rows.append(done[key])
                continue
            bar.set_postfix_str(", ".join(f"{k}={v}" for k, v in point.items()), refresh=False)
            row = {**point, **measure(point), "key": key}
            rows.append(row)
            done[key] = row
            if partial is not None:
                _atomic_write(partial, {"config": config, "rows": list(done.values())})
            bar.update(1)
    finally:
        bar.close()
    return rows


def render_markdown(payload: dict[str, Any], plots: Sequence[str] = ()) -> str:
    """The Markdown page of a result: provenance, config, rows, fit tables, notes, plots."""
    env = payload["environment"]
    cfg = payload["config"]
    out = [
        f"# {payload.get('title') or payload['name']}\n",
        (f"suite `{payload['suite']}`, size `{payload['size']}`; device `{env['device']}` "
        f"({env.get('device_detail', '')}), torch {env['torch']}, threads {env.get('threads', '?')}, "
        f"git `{env['git_sha']}`, {env['date']}\n"),
        "<details><summary>config</summary>\n\n```json\n"
        + json.dumps(cfg, indent=1, default=_json_default) + "\n```\n</details>\n",
    ]
    for title, rows in payload.get("tables", {}).items():
        out.append(f"## {title}\n\n" + markdown_table(rows))
    if payload.get("notes"):
        out.append(payload["notes"].strip() + "\n")
    for p in plots:
        out.append(f"![{p}]({p})\n")
    out.append("## rows\n\n" + markdown_table(payload["rows"], payload.get("columns")))
    return "\n".join(out)


def result_folder(suite: str, device: str = "cpu", out: Path | str | None = None) -> Path:
    """``<out or benchmarks/results>/<device>/<suite>``."""
    return (Path(out) if out is not None else RESULTS) / device_name(device) / suite


def finish(payload: dict[str, Any], folder: Path, stem: str) -> dict[str, Path]:
    """Plot and write the Markdown of a validated payload; returns all paths."""
    from pdesurrogates.bench.suites import get_suite

    schema.validate(payload, str(folder / f"{stem}.json"))
    suite = get_suite(payload["suite"])
    plots = suite.plot(payload, folder, stem)
    md = folder / f"{stem}.md"
    md.write_text(render_markdown(payload, [p.name for p in plots]))
    return {"json": folder / f"{stem}.json", "md": md, **{p.stem: p for p in plots}}


def run_suite(
    name: str,
    size: str = "smoke",
    *,
    device: str = "cpu",
    out: Path | str | None = None,
    resume: bool = True,
    progress: bool = True,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """Run suite ``name`` at ``size`` and write its results.

    Parameters
    ----------
    name:
        Suite name (see :data:`pdesurrogates.bench.suites.SUITES`).
    size:
        ``"smoke"`` (seconds, runs in ``make test``), ``"small"`` (minutes on a CPU) or ``"full"``.
    device:
        Torch device string.
    out:
        Results root; default ``benchmarks/results``. Files go to ``<out>/<device>/<name>/``.
    resume:
        Skip points stored in ``<size>.partial.json`` by an interrupted run (default); ``False``
        deletes that file first.
    progress:
        Show a progress bar.
    overrides:
        Top-level config entries to replace (tests use it to shrink a sweep).

    Returns
    -------
    dict
        Paths of the JSON, Markdown and PNG files.
    """
    from pdesurrogates.bench.suites import get_suite

    suite = get_suite(name)
    if size not in suite.SIZES:
        raise ValueError(f"suite {name!r} has sizes {', '.join(suite.SIZES)}, got {size!r}")
    config = {**_normalise(suite.SIZES[size]), **(_normalise(overrides) if overrides else {})}
    folder = result_folder(name, device, out)
    partial = folder / f"{size}.partial.json"
    if not resume and partial.exists():
        partial.unlink()
    context = suite.prepare(config, device)
    rows = run_sweep(
        suite.points(config, context),
        lambda p: suite.measure(p, context, config, device),
        partial=partial,
        config=config,
        progress=progress,
        desc=name,
    )
    analysis = suite.analyze(rows, config)
    extra = {
        "suite": name, "size": size, "schema_version": schema.SCHEMA_VERSION, "title": suite.TITLE,
        "fits": analysis.get("fits", {}), "tables": analysis.get("tables", {}),
        "notes": analysis.get("notes", ""), "columns": analysis.get("columns"),
    }
    paths = write_results(size, rows, config=config, device=device, title=suite.TITLE,
                          columns=analysis.get("columns"), extra=extra, out_dir=folder)
    payload = json.loads(paths["json"].read_text())
    result = finish(payload, folder, size)
    if partial.exists():
        partial.unlink()
    return result


def rebuild_reports(root: Path | str | None = None, *, refit: bool = False) -> list[Path]:
    """Re-render Markdown and plots of every suite result JSON under ``root`` (recursively).

    Files without a ``suite`` key (other benchmarks' results) and ``*.partial.json`` are left
    alone. Each file is validated first; an invalid one raises ``ValueError`` naming it.
    With ``refit=True`` the suite's analysis (fits, tables, notes) is recomputed from the stored
    rows and config and written back into the JSON; rows and provenance are never changed.
    """
    root = Path(root) if root is not None else RESULTS
    if not root.exists():
        raise FileNotFoundError(f"no results folder {root}")
    written = []
    for path in sorted(root.rglob("*.json")):
        if path.name.endswith(".partial.json"):
            continue
        try:
            payload = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from exc
        if not isinstance(payload, dict) or "suite" not in payload:
            continue
        if refit:
            from pdesurrogates.bench.suites import get_suite

            schema.validate(payload, str(path))
            analysis = get_suite(payload["suite"]).analyze(payload["rows"], payload["config"])
            for key in ("fits", "tables", "notes", "columns"):
                payload[key] = analysis.get(key, payload.get(key))
            path.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
        written.extend(finish(payload, path.parent, path.stem).values())
    return written
