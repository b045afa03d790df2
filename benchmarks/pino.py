"""PINO on CPU: data-only vs data + physics vs physics-only training, zero-shot 2x resolution, and
instance-wise fine-tuning, for Darcy (2D) and Burgers (1D).

Small sizes so that the whole run fits in about ten CPU minutes on one core; the numbers show
trends, not the published PINO accuracies (Li et al., 2021, train for hundreds of epochs on
1000 samples at 61^2).

Setting
-------
* **Darcy**: the FNO coefficient (GRF, tau 3, alpha 2, thresholded to 12 / 3), ``f = 1``, ``u = 0`` on
  the boundary; training and test at 33 x 33 nodes, zero-shot test at 65 x 65 (fresh coefficients
  solved on their own grid). Physics loss: the finite-volume residual of the generator in the discrete
  ``H^-1`` norm (``DarcyLoss(norm="h-1")``, see :mod:`pdesurrogates.losses.physics`); one extra
  physics-only run uses the plain ``l2`` residual norm of the PINO paper. The network output is
  multiplied by the bump ``16 x(1-x) y(1-y)`` so ``u = 0`` holds exactly on the boundary.
* **Burgers**: ``nu = 0.1``, ``u0 ~ N(0, 100^2 (-Laplace + 25)^-2)`` (amplitude 100 instead of the FNO
  paper's 625, whose fronts need far more than 64 nodes), 20 snapshots to ``t = 0.5``; the model maps
  ``u0`` to the 20 snapshots (channels); solved at 512 nodes and subsampled to 64 (training) and
  128 (zero-shot). Physics loss: ``BurgersLoss(time_scheme="solver")``, the one-interval residual
  ``u_{k+1} - S(u_k)`` with ``S`` the generator's own pseudo-spectral ETDRK4 propagator (about 1e-4 on
  the reference data at 64 nodes, a resolution effect). One extra physics-only run uses the
  spectral-space / 4th-order finite-difference-time residual instead, which is biased by ~1 % on the
  reference (the initial viscous layer of the rough ``u0`` is not resolved by 20 snapshots).
* **Same budget** per variant: same model, initialisation seed, inputs, epochs, batch, lr (Adam,
  cosine). Data + physics weights 5 : 1 (PINO's Darcy setting). Physics-only never sees a solution.
* **Fine-tuning**: the data-only model is fine-tuned with the physics loss alone on one test input
  (in distribution), one out-of-distribution Darcy input (coefficient 12 / 1), and one Burgers input;
  error against the solver recorded vs steps.

Run::

    OMP_NUM_THREADS=1 python benchmarks/pino.py            # about 10 minutes, writes results
    OMP_NUM_THREADS=1 python benchmarks/pino.py --quick    # seconds, smoke test, writes nothing
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from pdesurrogates.bench.report import RESULTS, device_name, write_results
from pdesurrogates.losses import (
    BurgersLoss,
    DarcyLoss,
    LossConfig,
    ZeroDirichletOutput,
    build_loss,
    relative_lp,
)
from pdesurrogates.models import FNOConfig, build
from pdesurrogates.physics.problems import get_problem
from pdesurrogates.train.pino import finetune_instance, train_pino

NAME = "pino"

FULL = {
    "darcy_train": 64, "darcy_test": 16, "darcy_s": 33, "darcy_epochs": 40, "darcy_width": 16,
    "darcy_modes": 8, "burgers_train": 64, "burgers_test": 16, "burgers_s": 64, "burgers_epochs": 100,
    "burgers_width": 32, "burgers_modes": 16, "burgers_sigma": 100.0, "burgers_t_final": 0.5,
    "burgers_n_times": 20, "finetune_steps": 300, "record_every": 25, "lr": 3e-3, "finetune_lr": 1e-3,
    "batch_size": 8, "seed": 0,
}
QUICK = dict(FULL, darcy_train=8, darcy_test=2, darcy_s=17, darcy_epochs=2, burgers_train=8,
             burgers_test=2, burgers_s=32, burgers_epochs=2, finetune_steps=4, record_every=2)


class Affine(torch.nn.Module):
    """``out_scale * model((x - in_shift) / in_scale)``; the constants come from the inputs only."""

    def __init__(self, model, in_shift: float, in_scale: float, out_scale: float):
        super().__init__()
        self.model, self.in_shift, self.in_scale, self.out_scale = model, in_shift, in_scale, out_scale

    def forward(self, x):
        return self.out_scale * self.model((x - self.in_shift) / self.in_scale)


def _tensors(problem, n, seed):
    x, y = problem.generate(range(n), seed)
    return torch.from_numpy(x), torch.from_numpy(y)


def variants(physics: str, physics_params: dict) -> dict[str, LossConfig]:
    return {
        "data-only": LossConfig(data="l2"),
        "data+physics": LossConfig(data="l2", data_weight=5.0, physics=physics, physics_weight=1.0,
                                   physics_params=physics_params),
        "physics-only": LossConfig(data="none", physics=physics, physics_params=physics_params),
    }


def _evaluate(model, x, y, physics_loss):
    with torch.no_grad():
        pred = model(x)
        return float(relative_lp(pred, y)), float(physics_loss(pred, x))


def run_darcy(cfg: dict) -> tuple[list[dict], dict]:
    s = cfg["darcy_s"]
    train = get_problem("darcy", resolution=s)
    x, y = _tensors(train, cfg["darcy_train"] + cfg["darcy_test"], cfg["seed"])
    x_tr, y_tr, x_te, y_te = x[:cfg["darcy_train"]], y[:cfg["darcy_train"]], x[cfg["darcy_train"]:], y[cfg["darcy_train"]:]
    x2, y2 = _tensors(get_problem("darcy", resolution=2 * s - 1), cfg["darcy_test"], cfg["seed"] + 1)
    shift, scale = float(x_tr.mean()), float(x_tr.std())
    out_scale = 1.0 / shift  # f / mean(a): the size of u, known without any solution

    def make():
        torch.manual_seed(cfg["seed"])
        net = build(FNOConfig(width=cfg["darcy_width"], modes=cfg["darcy_modes"], n_layers=4))
        return ZeroDirichletOutput(Affine(net, shift, scale, out_scale), mode="bump")

    physics = DarcyLoss(norm="h-1")
    runs = variants("darcy", {"norm": "h-1"})
    runs["physics-only (l2 residual)"] = LossConfig(data="none", physics="darcy", physics_params={"norm": "l2"})
    rows, models = [], {}
    for name, lc in runs.items():
        model = make()
        hist = train_pino(model, x_tr, y_tr if lc.data != "none" else None, build_loss(lc),
                          epochs=cfg["darcy_epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"], seed=cfg["seed"])
        err, res = _evaluate(model, x_te, y_te, physics)
        err2, res2 = _evaluate(model, x2, y2, physics)
        rows.append({"pde": "darcy", "variant": name, "train_res": s, "test_rel_l2": err, "test_residual": res,
                     "zero_shot_res": 2 * s - 1, "zero_shot_rel_l2": err2, "zero_shot_residual": res2,
                     "train_s": hist.seconds})
        models[name] = model
        print(rows[-1], flush=True)
    with torch.no_grad():
        ref_res = float(physics(y_te, x_te))
    return rows, {"models": models, "test": (x_te, y_te), "reference_residual": ref_res}


def run_burgers(cfg: dict) -> tuple[list[dict], dict]:
    s, T, tf = cfg["burgers_s"], cfg["burgers_n_times"], cfg["burgers_t_final"]
    common = {"nu": 0.1, "sigma": cfg["burgers_sigma"], "t_final": tf, "n_times": T, "solver_resolution": 8 * s}
    x, y = _tensors(get_problem("burgers", resolution=s, **common), cfg["burgers_train"] + cfg["burgers_test"], cfg["seed"])
    y = y[:, 0]  # (N, T, s): snapshots as channels
    n = cfg["burgers_train"]
    x_tr, y_tr, x_te, y_te = x[:n], y[:n], x[n:], y[n:]
    x2, y2 = _tensors(get_problem("burgers", resolution=2 * s, **common), cfg["burgers_test"], cfg["seed"] + 1)
    y2 = y2[:, 0]
    scale = float(x_tr.std())

    def make():
        torch.manual_seed(cfg["seed"])
        net = build(FNOConfig(ndim=1, in_channels=1, out_channels=T, width=cfg["burgers_width"],
                              modes=cfg["burgers_modes"], n_layers=4))
        return Affine(net, 0.0, scale, scale)

    params = {"nu": 0.1, "t_final": tf, "n_times": T, "time_scheme": "solver"}
    physics = BurgersLoss(**params)
    fd_params = {"nu": 0.1, "t_final": tf, "n_times": T, "time_order": 4, "time_scheme": "fd"}
    runs = variants("burgers", params)
    runs["physics-only (fd4 time)"] = LossConfig(data="none", physics="burgers", physics_params=fd_params)
    rows, models = [], {}
    for name, lc in runs.items():
        model = make()
        hist = train_pino(model, x_tr, y_tr if lc.data != "none" else None, build_loss(lc),
                          epochs=cfg["burgers_epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"], seed=cfg["seed"])
        err, res = _evaluate(model, x_te, y_te, physics)
        err2, res2 = _evaluate(model, x2, y2, physics)
        rows.append({"pde": "burgers", "variant": name, "train_res": s, "test_rel_l2": err, "test_residual": res,
                     "zero_shot_res": 2 * s, "zero_shot_rel_l2": err2, "zero_shot_residual": res2,
                     "train_s": hist.seconds})
        models[name] = model
        print(rows[-1], flush=True)
    with torch.no_grad():
        ref_res = float(physics(y_te, x_te))
        ref_fd = float(BurgersLoss(**fd_params)(y_te, x_te))
    return rows, {"models": models, "test": (x_te, y_te), "reference_residual": ref_res,
                  "reference_residual_fd4": ref_fd}


def run_finetuning(cfg: dict, darcy: dict, burgers: dict) -> dict[str, dict]:
    curves = {}
    steps, every, lr = cfg["finetune_steps"], cfg["record_every"], cfg["finetune_lr"]
    x_te, y_te = darcy["test"]
    ood = get_problem("darcy", resolution=cfg["darcy_s"], low=1.0)
    x_o, y_o = _tensors(ood, 1, cfg["seed"] + 2)
    cases = {
        "darcy in-distribution": (darcy["models"]["data-only"], x_te[:1], y_te[:1], DarcyLoss(norm="h-1")),
        "darcy OOD (a = 12 / 1)": (darcy["models"]["data-only"], x_o, y_o, DarcyLoss(norm="h-1")),
        "burgers": (burgers["models"]["data-only"], burgers["test"][0][:1], burgers["test"][1][:1],
                    BurgersLoss(nu=0.1, t_final=cfg["burgers_t_final"], n_times=cfg["burgers_n_times"],
                                time_scheme="solver")),
    }
    for name, (model, x, y, loss) in cases.items():
        start = time.perf_counter()
        res = finetune_instance(model, x, loss, steps=steps, lr=lr, reference=y, record_every=every)
        recorded = list(range(0, steps, every)) + [steps]
        curves[name] = {"steps": recorded, "rel_l2": res.error, "physics": res.physics,
                        "seconds": time.perf_counter() - start}
        print(name, [round(e, 4) for e in res.error], flush=True)
    return curves


def plot(payload: dict, path: Path) -> None:
    """Bar chart of test errors and fine-tuning curves, from the JSON payload only."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = payload["rows"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, pde in zip(axes[:2], ("darcy", "burgers")):
        sub = [r for r in rows if r["pde"] == pde]
        idx = np.arange(len(sub))
        ax.bar(idx - 0.2, [r["test_rel_l2"] for r in sub], 0.4, label=f"test at {sub[0]['train_res']}")
        ax.bar(idx + 0.2, [r["zero_shot_rel_l2"] for r in sub], 0.4, label=f"zero-shot at {sub[0]['zero_shot_res']}")
        ax.set_xticks(idx, [r["variant"].replace(" (", "\n(") for r in sub], fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("relative L2 error vs solver")
        ax.set_title(f"{pde}: same budget")
        ax.legend(fontsize=8)
    ax = axes[2]
    for name, c in payload["finetune"].items():
        ax.semilogy(c["steps"], c["rel_l2"], marker="o", ms=3, label=name)
    ax.set_xlabel("fine-tuning steps (physics loss only)")
    ax.set_ylabel("relative L2 error vs solver")
    ax.set_title("instance-wise fine-tuning of the data-only model")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run; writes nothing unless --out-dir")
    parser.add_argument("--out-dir", default=None, help="results folder (default benchmarks/results/cpu)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot-only", action="store_true", help="redraw the PNG from the existing JSON")
    args = parser.parse_args(argv)
    folder = Path(args.out_dir) if args.out_dir else RESULTS / device_name("cpu")
    if args.plot_only:
        plot(json.loads((folder / f"{NAME}.json").read_text()), folder / f"{NAME}.png")
        return
    cfg = dict(QUICK if args.quick else FULL, seed=args.seed)
    start = time.perf_counter()
    d_rows, darcy = run_darcy(cfg)
    b_rows, burgers = run_burgers(cfg)
    curves = run_finetuning(cfg, darcy, burgers)
    total = time.perf_counter() - start
    rows = d_rows + b_rows
    if args.quick and not args.out_dir:
        print(f"quick run done in {total:.0f} s (nothing written)")
        return

    def ratio(curve):
        return curve["rel_l2"][0] / curve["rel_l2"][-1]

    ft = "; ".join(f"{k}: {c['rel_l2'][0]:.4f} -> {c['rel_l2'][-1]:.4f} ({ratio(c):.1f}x in {c['steps'][-1]} steps, "
                   f"{c['seconds']:.0f} s)" for k, c in curves.items())
    notes = (
        f"Small CPU sizes (one core, {total / 60:.1f} min in all): Darcy {cfg['darcy_train']} training inputs at "
        f"{cfg['darcy_s']}^2, {cfg['darcy_epochs']} epochs; Burgers {cfg['burgers_train']} at {cfg['burgers_s']} nodes, "
        f"{cfg['burgers_epochs']} epochs; {cfg['darcy_test']} / {cfg['burgers_test']} test samples. `*_residual` is the "
        "relative physics loss of the prediction (Darcy: FV residual in the H^-1 norm; Burgers: one-interval "
        "residual against the generator's propagator). Residual of the solver's own (float32) reference: Darcy "
        f"{darcy['reference_residual']:.1e}, Burgers {burgers['reference_residual']:.1e} (and "
        f"{burgers['reference_residual_fd4']:.1e} with 4th-order differences over {cfg['burgers_n_times']} "
        "snapshots).\n\n"
        f"Fine-tuning (physics loss only, Adam lr {cfg['finetune_lr']}): {ft}.\n\n"
        "Regenerate the plot from the JSON: `python benchmarks/pino.py --plot-only`."
    )
    paths = write_results(NAME, rows, config=cfg, title="PINO: data vs data+physics vs physics-only, fine-tuning",
                          notes=notes, extra={"finetune": curves, "total_seconds": total}, out_dir=folder)
    plot(json.loads(paths["json"].read_text()), paths["json"].with_suffix(".png"))
    print(f"wrote {paths['json']}, {paths['md']} and the PNG")


if __name__ == "__main__":
    main()
