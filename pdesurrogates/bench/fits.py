"""Scaling-law fits: ``error = a * X**(-b) + c`` and ``error = a * X**(-b)``.

The fit is robust least squares in log space (:func:`scipy.optimize.least_squares` with a
``soft_l1`` or ``huber`` loss), so one diverged training run does not drag the exponent, and the
exponent gets a percentile bootstrap confidence interval (points resampled with replacement).

Examples
--------
>>> import numpy as np
>>> x = np.logspace(3, 6, 8)
>>> fit = fit_power_law(x, 2.0 * x ** -0.5, offset=False, n_bootstrap=50, seed=0)
>>> round(fit.b, 6), round(fit.a, 6)
(0.5, 2.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.optimize import least_squares

LOSSES = ("linear", "soft_l1", "huber", "cauchy", "arctan")


@dataclass(frozen=True)
class PowerLawFit:
    """Result of :func:`fit_power_law`.

    Attributes
    ----------
    a, b, c:
        The law ``y = a * x**(-b) + c`` (``c == 0`` when fitted without offset).
    offset:
        Whether ``c`` was fitted.
    b_ci:
        ``(low, high)`` bootstrap confidence interval of ``b`` at level ``ci``; ``(nan, nan)``
        when there were too few distinct points to bootstrap.
    ci:
        Confidence level of ``b_ci``.
    n_points:
        Number of (x, y) points fitted.
    n_bootstrap:
        Bootstrap resamples that produced a fit.
    rms_log_residual:
        Root mean square of ``log y - log fit(x)`` over the points.
    loss:
        Robust loss used by ``least_squares``.
    """

    a: float
    b: float
    c: float
    offset: bool
    b_ci: tuple[float, float]
    ci: float
    n_points: int
    n_bootstrap: int
    rms_log_residual: float
    loss: str

    def predict(self, x: Any) -> np.ndarray:
        """``a * x**(-b) + c`` at ``x``."""
        x = np.asarray(x, dtype=float)
        return self.a * x ** (-self.b) + self.c

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the CI as a list)."""
        d = asdict(self)
        d["b_ci"] = [float(v) for v in self.b_ci]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PowerLawFit:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        d["b_ci"] = tuple(float(v) for v in d["b_ci"])
        return cls(**d)

    def describe(self) -> str:
        """``b = 0.52 [0.47, 0.58]`` style summary."""
        lo, hi = self.b_ci
        ci = f" [{lo:.3g}, {hi:.3g}]" if math.isfinite(lo) else ""
        tail = f" + {self.c:.3g}" if self.offset else ""
        return f"b = {self.b:.3g}{ci} ({self.a:.3g}·X^-b{tail})"


def _check_xy(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"fit_power_law: x and y must have the same length, got {x.size} and {y.size}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("fit_power_law: x and y must be finite (drop diverged runs before fitting)")
    if np.any(x <= 0) or np.any(y <= 0):
        raise ValueError("fit_power_law: x and y must be positive for a fit in log space")
    return x, y


def _fit_once(lx: np.ndarray, ly: np.ndarray, offset: bool, loss: str, f_scale: float) -> np.ndarray:
    """Parameters ``(log a, b[, log c])`` fitted to log-log data."""
    # Start from the ordinary log-log line; with an offset, start c at a fraction of min(y).
    slope, intercept = np.polyfit(lx, ly, 1) if np.ptp(lx) > 0 else (0.0, float(np.mean(ly)))
    if not offset:
        p0 = np.array([intercept, -slope])

        def residual(p: np.ndarray) -> np.ndarray:
            return p[0] - p[1] * lx - ly

        jac0 = np.stack([np.ones_like(lx), -lx], axis=1)
        return least_squares(residual, p0, jac=lambda p: jac0, loss=loss, f_scale=f_scale).x

    y = np.exp(ly)
    c0 = 0.5 * float(y.min())
    shifted = np.log(np.maximum(y - c0, 1e-12 * y.max()))
    s2, i2 = np.polyfit(lx, shifted, 1) if np.ptp(lx) > 0 else (0.0, float(np.mean(shifted)))
    p0 = np.array([i2, max(-s2, 1e-3), math.log(c0)])

    def residual_c(p: np.ndarray) -> np.ndarray:
        # log(a x^-b + c) computed stably as logaddexp(log a - b log x, log c).
        return np.logaddexp(p[0] - p[1] * lx, p[2]) - ly

    def jac_c(p: np.ndarray) -> np.ndarray:
        t = p[0] - p[1] * lx
        w = np.exp(t - np.logaddexp(t, p[2]))
        return np.stack([w, -w * lx, 1.0 - w], axis=1)

    lower = [-np.inf, -10.0, math.log(y.min()) - 40.0]
    upper = [np.inf, 10.0, math.log(y.max())]
    p0[1] = min(max(p0[1], lower[1] + 1e-6), upper[1] - 1e-6)
    p0[2] = min(max(p0[2], lower[2] + 1e-6), upper[2] - 1e-6)
    return least_squares(residual_c, p0, jac=jac_c, loss=loss, f_scale=f_scale, bounds=(lower, upper),
                         max_nfev=200).x


def fit_power_law(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    *,
    offset: bool = True,
    loss: str = "soft_l1",
    f_scale: float = 0.1,
    n_bootstrap: int = 500,
    ci: float = 0.95,
    seed: int = 0,
) -> PowerLawFit:
    """Fit ``y = a * x**(-b) + c`` (or without ``c``) by robust least squares in log space.

    Parameters
    ----------
    x, y:
        Positive values of equal length, e.g. parameter counts and test errors; repeated ``x``
        (several seeds) are allowed and are what the bootstrap resamples.
    offset:
        Fit the irreducible error ``c >= 0`` too. Needs at least 3 distinct ``x``.
    loss:
        Robust loss of :func:`scipy.optimize.least_squares` (``"soft_l1"``, ``"huber"``, ...).
    f_scale:
        Residual scale (in natural-log units) above which the robust loss down-weights a point.
    n_bootstrap:
        Number of bootstrap resamples for the CI of ``b``; 0 skips the bootstrap.
    ci:
        Confidence level of the interval, in (0, 1).
    seed:
        Seed of the bootstrap's own ``numpy.random.Generator``.

    Returns
    -------
    PowerLawFit

    Raises
    ------
    ValueError
        On non-positive or non-finite data, mismatched lengths, too few distinct ``x`` or an
        unknown loss.
    """
    x, y = _check_xy(x, y)
    if loss not in LOSSES:
        raise ValueError(f"fit_power_law: unknown loss {loss!r}; choose from {', '.join(LOSSES)}")
    if not 0.0 < ci < 1.0:
        raise ValueError(f"fit_power_law: ci must be in (0, 1), got {ci}")
    need = 3 if offset else 2
    if np.unique(x).size < need:
        raise ValueError(
            f"fit_power_law: need at least {need} distinct x values to fit "
            f"{'a*x^-b + c' if offset else 'a*x^-b'}, got {np.unique(x).size}"
        )
    lx, ly = np.log(x), np.log(y)
    p = _fit_once(lx, ly, offset, loss, f_scale)
    a, b = math.exp(p[0]), float(p[1])
    c = math.exp(p[2]) if offset else 0.0
    pred = a * x ** (-b) + c
    rms = float(np.sqrt(np.mean((np.log(pred) - ly) ** 2)))

    rng = np.random.default_rng(seed)
    bs: list[float] = []
    for _ in range(int(n_bootstrap)):
        idx = rng.integers(0, x.size, size=x.size)
        if np.unique(x[idx]).size < need:
            continue
        bs.append(float(_fit_once(lx[idx], ly[idx], offset, loss, f_scale)[1]))
    if bs:
        alpha = (1.0 - ci) / 2.0
        b_ci = (float(np.quantile(bs, alpha)), float(np.quantile(bs, 1.0 - alpha)))
    else:
        b_ci = (math.nan, math.nan)
    return PowerLawFit(
        a=a, b=b, c=c, offset=offset, b_ci=b_ci, ci=ci, n_points=int(x.size),
        n_bootstrap=len(bs), rms_log_residual=rms, loss=loss,
    )


def fit_groups(
    rows: Sequence[dict[str, Any]],
    *,
    group: str,
    x: str,
    y: str,
    offset: bool = True,
    **kwargs: Any,
) -> dict[str, dict[str, Any]]:
    """Fit one power law per value of ``row[group]`` (e.g. per model family).

    Rows whose ``y`` is missing, non-finite or non-positive are left out (and counted). A group
    that cannot be fitted gets ``{"error": message}`` instead of a fit, so one short group does not
    hide the others.

    Returns
    -------
    dict
        ``{group_value: {"with_offset"|"no_offset": PowerLawFit.to_dict(), "dropped": n}}``.
    """
    out: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(str(r[group]) for r in rows):
        sel = [r for r in rows if str(r[group]) == name]
        ok = [
            r for r in sel
            if isinstance(r.get(y), (int, float)) and math.isfinite(r[y]) and r[y] > 0 and r.get(x, 0) > 0
        ]
        entry: dict[str, Any] = {"dropped": len(sel) - len(ok)}
        xs = [float(r[x]) for r in ok]
        ys = [float(r[y]) for r in ok]
        for key, off in (("no_offset", False), ("with_offset", True)):
            if off and not offset:
                continue
            try:
                entry[key] = fit_power_law(xs, ys, offset=off, **kwargs).to_dict()
            except ValueError as exc:
                entry[key] = {"error": str(exc)}
        out[name] = entry
    return out


def exponent_table(fits: dict[str, dict[str, Any]], *, variable: str) -> list[dict[str, Any]]:
    """Rows ``family | b | CI | a | c`` for both fit forms, side by side, for a Markdown table."""
    rows = []
    for name, entry in fits.items():
        row: dict[str, Any] = {"family": name, "variable": variable}
        for key, label in (("no_offset", "a·X^-b"), ("with_offset", "a·X^-b+c")):
            f = entry.get(key)
            if f is None:
                continue
            if "error" in f:
                row[f"b ({label})"] = "n/a"
                continue
            lo, hi = f["b_ci"]
            row[f"b ({label})"] = f"{f['b']:.3f} [{lo:.3f}, {hi:.3f}]"
            if key == "with_offset":
                row["c"] = f["c"]
        rows.append(row)
    return rows
