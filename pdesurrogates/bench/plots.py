"""Log-log plots of benchmark rows with fitted power laws, drawn from result JSON only.

Uses :class:`matplotlib.figure.Figure` directly (no pyplot state), so plotting from a notebook, a
test or the CLI never touches a global figure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _figure(figsize=(5.5, 4.0)):
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot(1, 1, 1)


def loglog_axes(
    ax: Any,
    rows: Sequence[dict[str, Any]],
    *,
    x: str,
    y: str,
    group: str,
    fits: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Draw ``rows[y]`` against ``rows[x]`` per ``rows[group]`` on ``ax``, with fitted lines.

    ``fits`` is the output of :func:`pdesurrogates.bench.fits.fit_groups`: the fit without offset is
    drawn solid, with offset dashed, and the exponent goes in the legend.
    """
    from pdesurrogates.bench.fits import PowerLawFit

    names = list(dict.fromkeys(str(r[group]) for r in rows))
    colors = [f"C{i % 10}" for i in range(len(names))]
    for name, color in zip(names, colors):
        pts = [
            (float(r[x]), float(r[y])) for r in rows
            if str(r[group]) == name and isinstance(r.get(y), (int, float)) and math.isfinite(r[y]) and r[y] > 0
        ]
        if not pts:
            continue
        xs, ys = np.array(pts).T
        label = name
        entry = (fits or {}).get(name, {})
        grid = np.geomspace(xs.min(), xs.max(), 50)
        for key, style in (("no_offset", "-"), ("with_offset", "--")):
            f = entry.get(key)
            if not f or "error" in f:
                continue
            fit = PowerLawFit.from_dict(f)
            ax.plot(grid, fit.predict(grid), style, color=color, lw=1.2, alpha=0.8)
            if key == "no_offset":
                lo, hi = fit.b_ci
                label = f"{name}: b={fit.b:.2f}" + (f" [{lo:.2f},{hi:.2f}]" if math.isfinite(lo) else "")
        ax.plot(xs, ys, "o", color=color, ms=4, label=label)
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels collide on short decades
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)


def loglog_plot(
    path: Path | str,
    rows: Sequence[dict[str, Any]],
    *,
    x: str,
    y: str,
    group: str,
    fits: dict[str, dict[str, Any]] | None = None,
    title: str = "",
    xlabel: str | None = None,
    ylabel: str | None = None,
) -> Path:
    """Write a log-log PNG of ``rows`` (see :func:`loglog_axes`) to ``path``; returns the path."""
    fig, ax = _figure()
    loglog_axes(ax, rows, x=x, y=y, group=group, fits=fits)
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(ylabel or y)
    ax.set_title(title, fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
