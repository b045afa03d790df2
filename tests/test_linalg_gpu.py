"""The linalg solvers on a CUDA device give the CPU's answers (skipped without a GPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pdesurrogates.linalg import (
    IC0Preconditioner,
    SSORPreconditioner,
    cg,
    fcg,
    gallery,
    pcg,
    sor,
    ssor,
)

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _pair(m=16, batch=3):
    A = gallery.poisson2d(m)
    b = torch.from_numpy(np.random.default_rng(0).standard_normal((batch, m * m)))
    return A, b


@pytest.mark.parametrize("ordering", ["lexicographic", "red-black"])
def test_sor_on_gpu_equals_cpu(ordering):
    A, b = _pair()
    omega = torch.tensor([1.0, 1.4, 1.8], dtype=torch.float64)
    cpu = sor(A, b, omega=omega, ordering=ordering, rtol=1e-9)
    gpu = sor(A.cuda(), b.cuda(), omega=omega.cuda(), ordering=ordering, rtol=1e-9)
    assert gpu.x.device.type == "cuda" and gpu.iterations.device.type == "cuda"
    assert gpu.iterations.cpu().tolist() == cpu.iterations.tolist()
    torch.testing.assert_close(gpu.x.cpu(), cpu.x, rtol=0, atol=1e-10)
    s_cpu = ssor(A, b, omega=1.5, ordering=ordering, rtol=1e-9)
    s_gpu = ssor(A.cuda(), b.cuda(), omega=1.5, ordering=ordering, rtol=1e-9)
    assert s_gpu.iterations.cpu().tolist() == s_cpu.iterations.tolist()


def test_krylov_on_gpu_equals_cpu():
    A, b = _pair(24)
    for solver, M in ((cg, None), (pcg, SSORPreconditioner(A, 1.3)), (fcg, IC0Preconditioner(A))):
        cpu = solver(A, b, M=M, rtol=1e-10)
        gpu = solver(A.cuda(), b.cuda(), M=M, rtol=1e-10)
        assert gpu.x.device.type == "cuda"
        assert (gpu.iterations.cpu() - cpu.iterations).abs().max() <= 1
        torch.testing.assert_close(gpu.x.cpu(), cpu.x, rtol=0, atol=1e-8)


def test_neural_multigrid_preconditioner_on_gpu_equals_cpu():
    from pdesurrogates.physics.grid import Grid
    from pdesurrogates.solvers.learned.multigrid_preconditioner import (
        MultigridNeuralOperator,
        NeuralMultigridPreconditioner,
    )

    A, b = _pair(30)
    grid = Grid((32, 32))  # gallery.poisson2d(30) is the Laplacian on this grid's interior
    net = MultigridNeuralOperator().double()
    cpu = fcg(A, b, M=NeuralMultigridPreconditioner(net, grid), rtol=1e-10)
    gpu = fcg(A.cuda(), b.cuda(), M=NeuralMultigridPreconditioner(net.cuda(), grid), rtol=1e-10)
    assert gpu.x.device.type == "cuda"
    assert (gpu.iterations.cpu() - cpu.iterations).abs().max() <= 1
    torch.testing.assert_close(gpu.x.cpu(), cpu.x, rtol=0, atol=1e-8)
