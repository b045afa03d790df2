"""Multi-process training with ``torch.distributed``: set-up from ``torchrun`` and small helpers.

``torchrun --nproc_per_node=K -m pdesurrogates train ...`` starts K processes with the environment
variables ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``;
:func:`init_distributed` reads them and joins the process group (NCCL on CUDA devices, gloo on
the CPU). Without them it returns a single-process context and touches nothing.

Each process holds a :class:`DistContext`, passed explicitly; there is no module-level state.
Rank 0 logs, evaluates and writes checkpoints; :meth:`DistContext.barrier` keeps the others in step.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from pdesurrogates.errors import UserInputError

_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass
class DistContext:
    """Where this process stands in a (possibly single-process) run.

    Attributes
    ----------
    rank, world_size, local_rank : int
    device : torch.device
        The device this process trains on (``cuda:LOCAL_RANK`` under torchrun on GPUs).
    backend : str or None
        ``"nccl"``, ``"gloo"``, or None for a single process.
    owns_group : bool
        True when :func:`init_distributed` created the process group (and
        :meth:`shutdown` should destroy it).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that logs and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of ``value`` over processes (a copy; ``value`` itself is unchanged)."""
        if not self.distributed:
            return value
        out = value.detach().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out / self.world_size

    def shutdown(self) -> None:
        """Destroy the process group if this context created it."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False


def env_world_size(environ: Any = None) -> int:
    """``WORLD_SIZE`` from the environment (1 when unset)."""
    environ = os.environ if environ is None else environ
    try:
        return int(environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise UserInputError(f"WORLD_SIZE must be an integer, got {environ.get('WORLD_SIZE')!r}") from None


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` -> CUDA when available, else CPU; a string is checked against what is available."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserInputError(f"device {str(device)!r} requested but this machine has no usable CUDA device "
                             f"(torch {torch.__version__}, CUDA build: {torch.version.cuda}); use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise UserInputError(f"device must be 'cpu' or 'cuda', got {str(device)!r}")
    return device


def init_distributed(device: str | torch.device | None = None, environ: Any = None,
                     timeout_s: float = 600.0) -> DistContext:
    """Join the process group described by torchrun's environment variables, if any.

    Parameters
    ----------
    device : str or torch.device, optional
        ``"cpu"`` or ``"cuda"``; default CUDA when available. Under torchrun on CUDA each process
        takes ``cuda:LOCAL_RANK``.
    environ : mapping, optional
        Environment to read (default ``os.environ``).
    timeout_s : float
        Timeout of collective operations.

    Returns
    -------
    DistContext
    """
    environ = os.environ if environ is None else environ
    device = resolve_device(device)
    world = env_world_size(environ)
    if world <= 1:
        return DistContext(device=device)
    missing = [k for k in _ENV if k not in environ]
    if missing:
        raise UserInputError(f"WORLD_SIZE={world} but the torchrun variables {missing} are not set")
    rank, local_rank = int(environ["RANK"]), int(environ["LOCAL_RANK"])
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise UserInputError(f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} CUDA devices")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    owns = False
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world,
                                timeout=_dt.timedelta(seconds=timeout_s))
        owns = True
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, device=device,
                       backend=backend, owns_group=owns)


def wrap_model(model: torch.nn.Module, ctx: DistContext) -> torch.nn.Module:
    """``DistributedDataParallel(model)`` in a multi-process run, else ``model`` itself."""
    if not ctx.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DDP wrapper (or ``model`` itself)."""
    return getattr(model, "module", model)
