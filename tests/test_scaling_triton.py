"""jtln.scaling_triton: the GPU's one-launch Sinkhorn loop, run here by Triton's interpreter on CPU tensors.

The same program a GPU compiles (``tests/conftest.py`` sets ``TRITON_INTERPRET=1``
where there is no GPU), held to :mod:`reference.algorithm1` and to the torch
loop (:func:`jtln.sinkhorn._scaling_iterations`) on the grid of
``tests/test_scaling_kernel.py`` (a part of it in the default run, all of it
with ``-m slow``: the interpreter runs Python per block operation); and
compiled for the GPUs the paper profile runs on, without one.
"""

import numpy as np
import pytest
import torch

import jtln.sinkhorn
from jtln import scaling_triton
from jtln.host_reads import counting
from jtln.ot import ot_loss, ot_loss_with_logits
from jtln.sinkhorn import GibbsKernel, _scaling_iterations, default_tol, sinkhorn
from reference.algorithm1 import ot_loss as reference_ot_loss
from reference.algorithm1 import ot_loss_grad
from tests.conftest import RTOL, random_histograms
from tests.test_scaling_kernel import grid
from tests.test_sinkhorn import peaked_histograms

#: where the program runs: compiled on a GPU (the GPU check), interpreted on CPU tensors elsewhere
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
pytestmark = pytest.mark.skipif(not scaling_triton.available(DEVICE), reason="Triton is not installed, or does not interpret here")


def force_triton_loop(monkeypatch):
    """Every kernel built from now on runs the Triton loop."""
    build = GibbsKernel.of.__func__
    monkeypatch.setattr(GibbsKernel, "of", classmethod(lambda cls, C, lam, loop=None: build(cls, C, lam, loop="triton")))


def run_both(a, b, C, lam, tol, max_iter=10_000, check_every=10, extrapolate=True):
    """The Triton loop's ``(log_u, log_v, cost, n_iter, error, status)``, the torch loop's results on the same problem, and K."""
    kernel = GibbsKernel.of(C, lam, loop="triton")
    triton = scaling_triton.iterate(a, b, kernel.K, kernel.KC, kernel.tiny, tol, max_iter, check_every, extrapolate)
    loop = _scaling_iterations(a, b, kernel.K, kernel.K_T, kernel.KC, kernel.tiny, tol, max_iter, check_every, extrapolate)
    return triton, loop, kernel.K


def _agree(case, triton, loop, K, dtype):
    log_u, log_v, cost, n_iter, error, status = triton
    tol = default_tol(dtype)
    assert loop[:2] == (True, True) and status.tolist() == [scaling_triton.CONVERGED] * len(status), case
    assert bool((error < tol).all()), case
    # each row stops at its own convergence, the torch loop at the worst row's: two plans within tol of the marginals, so
    # the plans and line 6 agree to the tolerance (not their logarithms: an entry of mass 1e-8 moves its log by 1e-2)
    plans = [(x[:, :, None] + y[:, None, :]).exp() * K for x, y in ((log_u, log_v), (loop[2], loop[3]))]
    torch.testing.assert_close(plans[0], plans[1], rtol=0, atol=10 * tol, msg=case)
    torch.testing.assert_close(cost, loop[4], rtol=0, atol=10 * tol, msg=case)  # costs in [0, 1]


def _grid(full, dtype):
    cases = list(grid())
    if full:
        return cases
    # at lam 10: in float32 (a training step's) every shape, checked every 10 iterations with Aitken's step; in float64 one
    # shape with every check option
    if dtype == torch.float32:
        return [c for c in cases if c[3:] == (3.0, 10.0, 10, True)]
    return [c for c in cases if c[:5] == (16, 10, 3, 3.0, 10.0)]


@pytest.mark.parametrize("full", [pytest.param(False, id="part"), pytest.param(True, id="full", marks=pytest.mark.slow)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_the_triton_loop_reaches_the_torch_loops_fixed_point(dtype, full):
    rng = np.random.default_rng(0)
    for B, L_s, L_t, scale, lam, check_every, extrapolate in _grid(full, dtype):
        a, b = peaked_histograms(rng, B, L_s, scale).to(DEVICE, dtype), peaked_histograms(rng, B, L_t, scale).to(DEVICE, dtype)
        C = torch.tensor(rng.random((L_s, L_t)), dtype=dtype, device=DEVICE)
        triton, loop, K = run_both(a, b, C, lam, default_tol(dtype), check_every=check_every, extrapolate=extrapolate)
        _agree(f"B={B} L={L_s}x{L_t} scale={scale} lam={lam} check_every={check_every} extrapolate={extrapolate}", triton, loop,
               K, dtype)


@pytest.mark.parametrize("lam", [1.0, 20.0])
def test_loss_and_gradients_match_the_reference_on_the_triton_loop(monkeypatch, rng, dtype, lam):
    """As ``tests/test_torch_branch.py`` holds the torch loop: the loss to the reference, Eq. 11 to the reference's gradient."""
    force_triton_loop(monkeypatch)
    B, L_s, L_t = 5, 7, 4
    h_s, h_t, C = random_histograms(rng, B, L_s), random_histograms(rng, B, L_t), rng.random((L_s, L_t))
    Hs, Ht = (torch.tensor(h, dtype=dtype, device=DEVICE, requires_grad=True) for h in (h_s, h_t))
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    losses = ot_loss(Hs, Ht, torch.tensor(C, dtype=dtype, device=DEVICE), lam, tol=tol)
    losses.sum().backward()
    for b in range(B):
        ref = reference_ot_loss(h_s[b], h_t[b], C, lam, tol=1e-14)
        np.testing.assert_allclose(losses[b].item(), ref.loss, rtol=RTOL[dtype])
        alpha, beta = ot_loss_grad(ref.u, ref.v, lam)
        scale = max(np.abs(alpha).max(), np.abs(beta).max())
        np.testing.assert_allclose(Hs.grad[b].cpu().numpy(), alpha, atol=10 * RTOL[dtype] * scale)
        np.testing.assert_allclose(Ht.grad[b].cpu().numpy(), beta, atol=10 * RTOL[dtype] * scale)


def test_the_triton_and_torch_loops_give_one_loss_and_gradient(monkeypatch):
    generator = torch.Generator().manual_seed(0)
    logits_s, logits_t = (torch.randn(8, L, generator=generator).to(DEVICE).requires_grad_() for L in (6, 3))
    C = torch.rand(6, 3, generator=generator).to(DEVICE)
    results, build = [], GibbsKernel.of.__func__
    for loop in ("torch", "triton"):
        monkeypatch.setattr(GibbsKernel, "of", classmethod(lambda cls, C, lam, loop=None, _loop=loop: build(cls, C, lam, loop=_loop)))
        loss = ot_loss_with_logits(logits_s, logits_t, C, 20.0, reduction="sum")
        results.append((loss.detach(), *torch.autograd.grad(loss, (logits_s, logits_t))))
    for a, b in zip(*results):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)  # float32, two orders of summation


def test_deferred_reads_nothing_and_a_failed_solve_is_a_nan_loss(monkeypatch):
    force_triton_loop(monkeypatch)
    generator = torch.Generator().manual_seed(0)
    logits_s, logits_t, C = (x.to(DEVICE) for x in (torch.randn(8, 6, generator=generator), torch.randn(8, 3, generator=generator),
                                                     torch.rand(6, 3, generator=generator)))
    kernel = GibbsKernel.of(C, 10.0)
    with counting() as counts:
        loss = ot_loss_with_logits(logits_s, logits_t, C, 10.0, reduction="mean", kernel=kernel, deferred=True)
    assert counts["reads"] == jtln.sinkhorn.READS["triton_deferred"] == 0
    torch.testing.assert_close(loss, ot_loss_with_logits(logits_s, logits_t, C, 10.0, reduction="mean"), rtol=1e-6, atol=0)
    # two iterations cannot place the mass: not an exception at the step (that would be a read), a NaN loss for its reader
    peaked = logits_s * 8
    failed = ot_loss_with_logits(peaked, logits_t, C, 10.0, max_iter=2, check_every=1, kernel=kernel, deferred=True)
    assert torch.isnan(failed).all()
    with pytest.raises(FloatingPointError, match="did not converge"):
        ot_loss_with_logits(peaked, logits_t, C, 10.0, max_iter=2, check_every=1, kernel=kernel)


def test_an_overflowing_row_is_redone_in_the_log_domain_and_not_converging_warns(monkeypatch, rng):
    """What the other loops do (tests/test_scaling_kernel.py), read once: an overflow is not finite, then the log domain."""
    a, b = peaked_histograms(rng, 4, 6, 1.0).float().to(DEVICE), peaked_histograms(rng, 4, 5, 1.0).float().to(DEVICE)
    C = torch.tensor(rng.random((6, 5)), dtype=torch.float32, device=DEVICE)
    C[0] = 0.95 + 0.05 * C[0]
    C[1, 0] = 0.0
    kernel = GibbsKernel.of(C, 150.0, loop="triton")
    assert scaling_triton.iterate(a, b, kernel.K, kernel.KC, kernel.tiny, 1e-6, 10_000, 10, True)[5].eq(scaling_triton.OVERFLOW).any()
    result = sinkhorn(a, b, C, 150.0, domain="scaling", kernel=kernel)
    assert result.domain == "log" and result.marginal_error < 1e-6
    C64 = torch.tensor(rng.random((6, 4)), device=DEVICE)
    a64, b64 = peaked_histograms(rng, 8, 6, 3.0).to(DEVICE), peaked_histograms(rng, 8, 4, 3.0).to(DEVICE)
    with pytest.warns(RuntimeWarning, match=r"did not converge in 7 iterations: marginal error [0-9.e+-]+ > tol 1\.0e-14"):
        sinkhorn(a64, b64, C64, 30.0, tol=1e-14, max_iter=7, check_every=3, kernel=GibbsKernel.of(C64, 30.0, loop="triton"))


def test_the_kernel_chooses_triton_on_cuda_for_float32_only_and_refuses_what_it_cannot_hold():
    C = torch.rand(3, 2, device=DEVICE)
    assert GibbsKernel.of(C, 5.0).loop == ("triton" if DEVICE.type == "cuda" else "numba")  # each device's default
    assert GibbsKernel.of(C.double(), 5.0).loop == ("torch" if DEVICE.type == "cuda" else "numba")
    assert GibbsKernel.of(C, 5.0, loop="triton").loop == "triton"  # on the CPU, interpreted
    with pytest.raises(ValueError, match=r"'triton' for float32/float64 C of at most 128 classes"):
        GibbsKernel.of(torch.rand(129, 3, device=DEVICE), 5.0, loop="triton")
    with pytest.raises(ValueError, match=r"got 'triton' for torch.float16 C"):
        GibbsKernel.of(C.half(), 5.0, loop="triton")


@pytest.mark.parametrize("arch", [90, 80], ids=["H100", "A100"])
def test_the_program_compiles_for_the_gpus_of_the_paper_profile(arch):
    """Triton's compiler, down to the cubin, with no GPU here (in a process of its own: this one interprets): the JIT path
    of a GPU machine meets no compile error in the program a training step runs (float32, the paper profile's 100 classes)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    code = (f"from jtln.scaling_triton import compile_for; out = compile_for({arch}); "
            "assert out['cubin'] and '.entry sinkhorn_rows' in out['ptx']; print(len(out['cubin']))")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and int(done.stdout) > 0, done.stderr[-3000:]


def test_shapes_of_the_registered_operator_under_fake_tensors():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode(allow_non_fake_inputs=True):
        a, b = torch.rand(4, 6, device="cuda"), torch.rand(4, 3, device="cuda")
        K = torch.rand(6, 3, device="cuda")
        out = torch.ops.jtln.sinkhorn_scaling(a, b, K, K, 1e-30, 1e-6, 100, 10, True)
    assert [tuple(x.shape) for x in out] == [(4, 6), (4, 3), (4,), (4,), (4,), (4,)]
    assert [x.dtype for x in out] == [torch.float32] * 3 + [torch.int32, torch.float64, torch.int32]
    assert all(x.device.type == "cuda" for x in out)

