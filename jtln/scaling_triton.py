r"""Algorithm 1's scaling-domain loop as one GPU kernel (Triton): one launch per Sinkhorn call, no read by the host.

On a GPU the torch loop (:func:`jtln.sinkhorn._scaling_iterations`) costs
about seven kernel launches per iteration and a blocking read of its
marginal error at every check: 10 to 150 iterations at a training step's
sizes (B = 32, L <= 100), where each kernel does microseconds of work.
Here one program per batch row keeps ``K`` [L_s, L_t] (at most 128 x 128
after padding) and the row's scalings on chip and runs the whole loop: lines
3-4 of Algorithm 1, the row's marginal error every ``check_every``
iterations (the convergence test, on the device), Aitken's extrapolation of
``log v`` from the last three iterates at each check that has not converged
(:func:`jtln.sinkhorn.aitken`, until a check finds the row's error grown),
and line 6.  Its outputs stay on the device: the scalings' logarithms and the
cost per row, and per row the iterations, the last error and a status
(:data:`CONVERGED`, :data:`RUNNING` out of iterations, :data:`OVERFLOW`).

Each row stops at its own convergence, where the torch and the compiled CPU
loops stop when the worst row does: the criterion (every row's error below
``tol``) is the same, so results agree to the tolerance, and a row's
iteration count is at most the batch's.

:func:`iterate` is registered as the operator ``jtln::sinkhorn_scaling``
(``torch.library``), with a fake implementation, so that fake tensors and
``torch.compile`` see its shapes.  On CPU tensors it runs in Triton's
interpreter (``TRITON_INTERPRET=1`` set before Triton is first imported, as
``tests/conftest.py`` does where there is no GPU): slow, but the same
program, which is how the tests hold it to :mod:`reference.algorithm1` and
the torch loop on a machine without a GPU.
"""

import torch

#: a row's status: its error met ``tol`` / it ran out of iterations / its scalings over- or underflowed (or its input was NaN)
CONVERGED, RUNNING, OVERFLOW = 1, 0, 2
#: the largest class count a row's program holds (K is padded to a power of two up to this)
MAX_CLASSES = 128
#: the compute dtypes the kernel takes (a GPU runs it by default for float32 only: :class:`jtln.sinkhorn.GibbsKernel`)
DTYPES = (torch.float32, torch.float64)


def available(device):
    """Whether the kernel can run where ``device`` is: a CUDA device with Triton installed, or the CPU under Triton's
    interpreter."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    kind = torch.device(device).type
    return kind == "cuda" or (kind == "cpu" and interpreted())


def fits(shape, dtype):
    """Whether a cost matrix of ``shape`` and ``dtype`` fits one row's program."""
    return max(shape) <= MAX_CLASSES and dtype in DTYPES


def warps(block_s, block_t):
    """Warps per program: about 16 entries of the padded K per thread (128 x 128 takes 16 warps, 512 threads)."""
    return max(1, min(16, block_s * block_t // 512))


def interpreted():
    """Whether Triton runs its interpreter in this process (``TRITON_INTERPRET=1`` when Triton was first imported)."""
    import triton

    return bool(triton.knobs.runtime.interpret)


@torch.library.custom_op("jtln::sinkhorn_scaling", mutates_args=())
def iterate(a: torch.Tensor, b: torch.Tensor, K: torch.Tensor, KC: torch.Tensor, tiny: float, tol: float, max_iter: int,
            check_every: int, extrapolate: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                                                          torch.Tensor]:
    """Algorithm 1 in the scaling domain, one program per row of ``a`` [B, L_s] and ``b`` [B, L_t] (module docstring).

    Returns ``(log_u, log_v, cost, n_iter, error, status)``, all on the
    inputs' device: the floored logarithms of the scalings, line 6 per row,
    and per row the iterations run, the last check's marginal error
    (float64; inf before the first check) and the status.
    """
    from jtln._triton_sinkhorn import kernel, next_power_of_2

    B, L_s = a.shape
    L_t = b.shape[1]
    a, b, K, KC = a.contiguous(), b.contiguous(), K.contiguous(), KC.contiguous()
    log_u, log_v = torch.empty_like(a), torch.empty_like(b)
    cost = torch.empty(B, dtype=a.dtype, device=a.device)
    n_iter = torch.empty(B, dtype=torch.int32, device=a.device)
    error = torch.empty(B, dtype=torch.float64, device=a.device)
    status = torch.empty(B, dtype=torch.int32, device=a.device)
    if B:
        from jtln.scaling_kernel import EXTRAPOLATE_BELOW, TINY

        block_s, block_t = max(2, next_power_of_2(L_s)), max(2, next_power_of_2(L_t))
        kernel[(B,)](a, b, K, KC, log_u, log_v, cost, n_iter, error, status, L_s, L_t, tiny, tol, max_iter, check_every,
                     int(extrapolate), EXTRAPOLATE_BELOW=EXTRAPOLATE_BELOW, FLOOR=TINY, BLOCK_S=block_s, BLOCK_T=block_t,
                     num_warps=warps(block_s, block_t))
    return log_u, log_v, cost, n_iter, error, status


@iterate.register_fake
def _(a, b, K, KC, tiny, tol, max_iter, check_every, extrapolate):
    B = a.shape[0]
    rows = (torch.empty(B, dtype=torch.int32, device=a.device) for _ in range(2))
    return (torch.empty_like(a), torch.empty_like(b), torch.empty(B, dtype=a.dtype, device=a.device), next(rows),
            torch.empty(B, dtype=torch.float64, device=a.device), next(rows))


def summary(n_iter, error):
    """The batch's iterations and marginal error as the other loops report them: the worst row's (device tensors)."""
    return n_iter.amax() if len(n_iter) else n_iter.sum(), error.amax() if len(error) else error.sum()


def compile_for(arch, dtype=torch.float32, classes=MAX_CLASSES):
    """The program compiled by Triton for CUDA compute capability ``arch`` (90: H100, 80: A100) without a GPU, down to the
    cubin: ``{"cubin": bytes, "ptx": str}``.  Needs a process where Triton is not interpreting (no ``TRITON_INTERPRET``)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from jtln._triton_sinkhorn import kernel

    if interpreted():
        raise RuntimeError("Triton interprets in this process (TRITON_INTERPRET=1): compile in a process without it")
    element = {torch.float32: "fp32", torch.float64: "fp64"}[dtype]
    pointers = dict.fromkeys(("a_ptr", "b_ptr", "K_ptr", "KC_ptr", "log_u_ptr", "log_v_ptr", "cost_ptr"), f"*{element}")
    signature = {**pointers, "n_iter_ptr": "*i32", "error_ptr": "*fp64", "status_ptr": "*i32", "L_s": "i32", "L_t": "i32",
                 "tiny": "fp32", "tol": "fp32", "max_iter": "i32", "check_every": "i32", "extrapolate": "i32",
                 **dict.fromkeys(("EXTRAPOLATE_BELOW", "FLOOR", "BLOCK_S", "BLOCK_T"), "constexpr")}
    block = triton.next_power_of_2(classes)
    from jtln.scaling_kernel import EXTRAPOLATE_BELOW, TINY

    constants = {"EXTRAPOLATE_BELOW": EXTRAPOLATE_BELOW, "FLOOR": TINY, "BLOCK_S": block, "BLOCK_T": block}
    compiled = triton.compile(ASTSource(fn=kernel, signature=signature, constexprs=constants), target=GPUTarget("cuda", arch, 32),
                              options={"num_warps": warps(block, block)})
    return {"cubin": compiled.asm["cubin"], "ptx": compiled.asm["ptx"]}
