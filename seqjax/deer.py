"""DEER and quasi-DEER: any cell evaluated in parallel over time by Newton's method.

Lim et al. (2024), "Parallelizing non-linear sequential models over the sequence length" (DEER); Gonzalez et al.
(2024), "Towards scalable and stable parallelization of nonlinear RNNs" (quasi-DEER). The carries ``s_1 .. s_T`` of
a cell (each flattened to a vector of size n: ``2h`` for an LSTM's ``(h, c)``) are the solution of the T equations

    s_t = f_t(s_{t-1}),    f_t(s) = cell.step(params, s, u_t)'s carry,    s_0 = the initial carry.

Newton's method linearises every step at a guess ``S = (s_1 .. s_T)`` (``p_t = s_{t-1}``, the guess's previous
state, ``p_1 = s_0``) and solves the linear recurrence for the update ``delta``, all steps at once:

    r_t = f_t(p_t) - s_t                      (the residual of step t, all t in parallel)
    J_t = d f_t / d s (p_t)                   ([n, n], all t in parallel)
    delta_t = J_t delta_{t-1} + r_t,  delta_0 = 0,    S <- S + delta

The affine maps ``x -> J_t x + r_t`` compose associatively, ``(J, r) then (J', r') = (J' J, J' r + r')``, so
``jax.lax.associative_scan`` solves the recurrence in O(log T) depth: O(n^3 log T) work per element with the full
``J_t`` (``jacobian="full"``, DEER), O(n log T) with its diagonal (``jacobian="diagonal"``, quasi-DEER). Either
way the fixed point is the sequential trajectory; quasi-DEER only converges more slowly (linearly, not
quadratically). With the full Jacobian the system is triangular in time: after k iterations the first k carries
are exact (in exact arithmetic), so T iterations always suffice.

Convergence is decided on the trajectory itself: the iteration stops when every step holds,

    residual = max_{t, b, i} |f_t(p_t) - s_t| / (1 + |f_t(p_t)|)  <=  tol,

and returns the step's values at that guess (``carries_t = f_t(p_t)``, ``outputs_t`` = its output). When it does
not converge within ``max_iterations``, or an iterate is not finite (Newton's method can diverge on a chaotic
cell), the result says so (``converged=False``) and, by default, its carry and outputs are NaN.

Gradients are those of the fixed point (implicit function theorem): the adjoint ``lambda`` of the trajectory solves
``lambda_t = g_t + J_{t+1}^T lambda_{t+1}`` (``g`` the cotangent of the carries), and one batched VJP of every
step with cotangents ``lambda_t`` gives those of the parameters, the inputs and the initial carry.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from seqjax.cells.base import Carry, Cell, Params
from seqjax.scan import _to_time_major, outputs_in_weights_dtype, time_major_inputs

JACOBIANS = ("full", "diagonal")
ON_FAILURE = ("nan", "keep")
TOLERANCE = 1e-5  # ~80 float32 ulps of (1 + |s|): well above the rounding of a converged iterate
DIAGONAL_ABOVE = 128  # jacobian=None: the full Jacobian up to this carry size n, its diagonal above
DIAGONAL_CHUNK = 32  # basis vectors pushed forward at once for a diagonal Jacobian: memory [32, t, b, n]


class DeerUnrolled(NamedTuple):
    """What ``unroll`` returns.

    Attributes:
      carry: the final carry (as ``seqjax.scan.unroll``'s).
      outputs: ``y [b, t, h]`` (``[t, b, h]`` if time-major), zero at padded steps.
      carries: every step's carry stacked along time like ``outputs``, or ``None`` unless ``return_carries``.
      iterations: int32 scalar, the Newton iterations taken (each one solve over the whole sequence).
      converged: bool scalar: ``residual <= tol`` with every value finite.
      residual: float32 scalar, ``max |f_t(p_t) - s_t| / (1 + |f_t(p_t)|)`` at the returned trajectory
        (``inf`` if an iterate was not finite).
      tol: the tolerance it was held to.
    """

    carry: Carry
    outputs: jax.Array
    carries: Carry | None
    iterations: jax.Array
    converged: jax.Array
    residual: jax.Array
    tol: float


class DeerNotConverged(ValueError):
    """``check``: the iteration did not reach its tolerance."""


def check(result: DeerUnrolled) -> DeerUnrolled:
    """Returns ``result`` if it converged; raises ``DeerNotConverged`` (one line) if not. Call it outside ``jit``."""
    if not bool(result.converged):
        raise DeerNotConverged(
            f"DEER did not converge in {int(result.iterations)} iterations (residual {float(result.residual):.3g} > "
            f"tol {result.tol:.3g}); raise max_iterations or use seqjax.scan.unroll"
        )
    return result


def jacobian_by_default(size: int) -> str:
    """The Jacobian ``unroll`` uses when ``jacobian=None``, by the flattened carry's size n: ``"full"`` up to
    ``DIAGONAL_ABOVE`` = 128, ``"diagonal"`` above.

    Measured on a 2-core x86 CPU, forward pass at B = 8, T = 256, D = H, ms full / ms diagonal (iterations full /
    diagonal): GRU n = 8: 5.7 / 8.5 (4 / 13), 16: 38 / 22 (4 / 12), 32: 198 / 176 (4 / 12), 64: 839 / 846 (4 / 12),
    128: 4252 / 5488 (4 / 12); LSTM n = 16: 27 / 49 (4 / 23), 32: 148 / 280 (4 / 24), 64: 624 / 945 (4 / 25),
    128: 3258 / 4932 (4 / 24). The full Jacobian was faster at 7 of 9 sizes: both modes spend most of an iteration
    on the n forward-mode derivatives that build ``J_t`` (its diagonal costs as many), and the diagonal needs 3-6
    times the iterations. The full one's cost is its memory, ``4 T b n^2`` bytes of float32 Jacobians (134 MB at
    T = 256, b = 8, n = 128; the associative scan holds a few times that), and its O(n^3) products: above the
    sizes measured, the diagonal. The measuring script is in docs/parallel_evaluation.md.
    """
    return "full" if size <= DIAGONAL_ABOVE else "diagonal"


def unroll(
    cell: Cell,
    params: Params,
    xs: jax.Array,
    *,
    initial_carry: Carry | None = None,
    lengths: jax.Array | None = None,
    reverse: bool = False,
    time_major: bool = False,
    resets: jax.Array | None = None,
    jacobian: str | None = None,
    tol: float = TOLERANCE,
    max_iterations: int | None = None,
    initial_guess: Carry | None = None,
    return_carries: bool = False,
    on_failure: str = "nan",
) -> DeerUnrolled:
    """Runs ``cell`` over ``xs`` by Newton's method over the whole sequence: ``seqjax.scan.unroll``'s values.

    ``carry``, ``outputs`` and ``carries`` mean what they mean for ``seqjax.scan.unroll`` (padded steps leave the
    carry unchanged and output 0; ``reverse`` reads from last to first, outputs keeping their positions; a reset
    step starts again from the initial carry), to within ``tol`` per step.

    Args:
      cell: any cell; its ``project`` is applied to all inputs at once, before the iteration.
      params: its parameters.
      xs: inputs ``[b, t, d]`` (``[t, b, d]`` if ``time_major``).
      initial_carry: carry before the first step; zeros (``cell.init_carry``) if omitted.
      lengths: ``[b]`` int, true lengths of right-padded sequences.
      reverse: read the sequence from last step to first.
      time_major: layout of ``xs``, ``outputs``, ``carries``, ``resets`` and ``initial_guess``.
      resets: ``[b, t]`` bool: True where a new segment starts (as ``seqjax.scan.unroll``'s).
      jacobian: ``"full"`` (DEER: ``J_t``, ``[t, b, n, n]``), ``"diagonal"`` (quasi-DEER: ``diag J_t``,
        ``[t, b, n]``), or ``None``: ``jacobian_by_default(n)``.
      tol: the iteration stops once ``|f_t(p_t) - s_t| <= tol (1 + |f_t(p_t)|)`` at every step, batch element and
        carry entry. The default 1e-5 suits float32 (machine epsilon 1.2e-7).
      max_iterations: at most this many Newton iterations; default T (enough for the full Jacobian in exact
        arithmetic). A smaller cap is the caller's bet.
      initial_guess: carries ``[b, t, ...]`` (a pytree like ``carries``) to start from; default: the initial
        carry at every step. Not differentiated.
      return_carries: also return every step's carry.
      on_failure: when not converged, ``"nan"`` (default) fills ``carry``, ``outputs`` and ``carries`` with NaN;
        ``"keep"`` returns the last iterate's values. Gradients through a result that did not converge are NaN
        either way.

    Returns:
      ``DeerUnrolled(carry, outputs, carries, iterations, converged, residual, tol)``.

    Gradients (``jax.grad`` through ``carry``, ``outputs`` or ``carries``) w.r.t. ``params``, ``xs`` and
    ``initial_carry`` are the fixed point's: the adjoint recurrence is solved with a reverse associative scan of
    ``J_t^T`` with ``jacobian="full"``, and with a reverse ``jax.lax.scan`` of step VJPs with ``"diagonal"`` (the
    diagonal is not exact for the adjoint, and the full transposes would cost the memory the diagonal saves).
    """
    if jacobian not in (None, *JACOBIANS):
        raise ValueError(f"jacobian must be one of {', '.join(JACOBIANS)} or None, got {jacobian!r}")
    if on_failure not in ON_FAILURE:
        raise ValueError(f"on_failure must be one of {', '.join(ON_FAILURE)}, got {on_failure!r}")
    if max_iterations is not None and max_iterations < 1:
        raise ValueError(f"max_iterations must be >= 1, got {max_iterations}")
    xs_t, carry0, valid, restart = time_major_inputs(
        cell, params, xs, initial_carry, lengths, resets, reverse, time_major, "deer.unroll"
    )
    num_steps = xs_t.shape[0]
    guess_t = None
    if initial_guess is not None:
        guess_t = initial_guess if time_major else _to_time_major(initial_guess)
    us = xs_t if cell.project is None else cell.project(params, xs_t)
    if reverse:
        us, valid, restart = (None if a is None else a[::-1] for a in (us, valid, restart))
        guess_t = None if guess_t is None else jax.tree.map(lambda a: a[::-1], guess_t)

    flat = _Flat.of(cell, carry0)
    s0 = flat.ravel(carry0)  # [b, n]
    mode = jacobian or jacobian_by_default(s0.shape[-1])
    guess = jnp.broadcast_to(s0, (num_steps, *s0.shape)) if guess_t is None else flat.ravel(guess_t)
    solver = _Solver(flat, mode, tol, num_steps if max_iterations is None else max_iterations)
    trajectory, iterations, residual = solver.solve(params, us, s0, valid, restart, jax.lax.stop_gradient(guess))
    converged = residual <= tol

    carries, ys = flat.transition(params, _previous(s0, trajectory), us, valid, restart, s0)
    ys = outputs_in_weights_dtype(ys, params)  # as seqjax.scan.unroll gives a user's cell's outputs
    if valid is not None:
        ys = jnp.where(valid[..., None], ys, jnp.zeros_like(ys))
    if on_failure == "nan":
        carries, ys = (jnp.where(converged, a, jnp.full_like(a, jnp.nan)) for a in (carries, ys))
    carry = flat.unravel(carries[-1])
    if reverse:
        carries, ys = carries[::-1], ys[::-1]
    carries = flat.unravel(carries) if return_carries else None
    if not time_major:
        ys = _to_time_major(ys)
        carries = None if carries is None else _to_time_major(carries)
    return DeerUnrolled(carry, ys, carries, iterations, converged, residual, tol)


def _narrower_than(params: Params, dtype) -> bool:
    """Whether a floating parameter is narrower than ``dtype`` (bfloat16 weights with a float32 carry)."""
    itemsize = jnp.dtype(dtype).itemsize
    return any(
        jnp.issubdtype(leaf.dtype, jnp.floating) and jnp.dtype(leaf.dtype).itemsize < itemsize
        for leaf in jax.tree.leaves(params)
    )


def _previous(s0: jax.Array, trajectory: jax.Array) -> jax.Array:
    """``p_t = s_{t-1}``: ``[t, b, n]`` from ``s_0 [b, n]`` and ``s_1 .. s_T [t, b, n]``."""
    return jnp.concatenate([s0[None], trajectory[:-1]], axis=0)


class _Flat(NamedTuple):
    """The cell's step on flattened carries: each example's carry a vector of size n, under any leading axes."""

    cell: Cell
    treedef: Any
    shapes: tuple[tuple[int, ...], ...]  # each leaf's shape for one example (no leading axes)
    dtypes: tuple[Any, ...]
    dtype: Any  # the flat vector's: the leaves' common dtype

    @classmethod
    def of(cls, cell: Cell, carry0: Carry) -> _Flat:
        """From the initial carry, leaves ``[b, ...]``."""
        leaves, treedef = jax.tree.flatten(carry0)
        dtype = jnp.result_type(*leaves)
        return cls(cell, treedef, tuple(leaf.shape[1:] for leaf in leaves), tuple(leaf.dtype for leaf in leaves), dtype)

    @property
    def size(self) -> int:
        return sum(math.prod(shape) for shape in self.shapes)

    def ravel(self, carry: Carry) -> jax.Array:
        """A carry with leaves ``[*lead, ...]`` -> ``[*lead, n]``, the leaves concatenated in tree order."""
        leaves = self.treedef.flatten_up_to(carry)
        lead = leaves[0].shape[: leaves[0].ndim - len(self.shapes[0])]
        flats = [leaf.reshape(*lead, -1).astype(self.dtype) for leaf in leaves]
        return flats[0] if len(flats) == 1 else jnp.concatenate(flats, axis=-1)

    def unravel(self, flat: jax.Array) -> Carry:
        """``[*lead, n]`` -> the carry with leaves ``[*lead, ...]``."""
        lead = flat.shape[:-1]
        bounds = list(itertools.accumulate(math.prod(shape) for shape in self.shapes))[:-1]
        pieces = jnp.split(flat, bounds, axis=-1)
        leaves = [
            p.reshape(*lead, *shape).astype(dtype)
            for p, shape, dtype in zip(pieces, self.shapes, self.dtypes, strict=True)
        ]
        return jax.tree.unflatten(self.treedef, leaves)

    def step(self, params: Params, previous: jax.Array, us: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(f(p), y)`` for ``p [*lead, n]`` and ``u [*lead, k]``: one call of ``cell.step`` on the batch ``lead``."""
        lead = previous.shape[:-1]
        carry = self.unravel(previous.reshape(-1, previous.shape[-1]))
        new, y = self.cell.step(params, carry, us.reshape(-1, *us.shape[len(lead) :]))
        return self.ravel(new).reshape(*lead, -1), y.reshape(*lead, *y.shape[1:])

    def transition(self, params, previous, us, valid, restart, s0) -> tuple[jax.Array, jax.Array]:
        """``(f_t(p_t) [t, b, n], y_t [t, b, h])`` for ``p [t, b, n]``: a restart step reads ``s_0 [b, n]``, a padded
        step keeps ``p_t`` (its output is left for the caller to zero)."""
        if restart is not None:
            previous = jnp.where(restart[..., None], jnp.broadcast_to(s0, previous.shape), previous)
        new, ys = self.step(params, previous, us)
        if valid is not None:
            new = jnp.where(valid[..., None], new, previous)
        return new, ys


class _Solver(NamedTuple):
    """The Newton iteration and its adjoint, for one cell, Jacobian mode, tolerance and iteration cap."""

    flat: _Flat
    mode: str
    tol: float
    max_iterations: int

    def solve(self, params, us, s0, valid, restart, guess) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``(s_1 .. s_T [t, b, n], iterations, residual)``, differentiable as the fixed point."""
        return _fixed_point(self, params, us, s0, valid, restart, guess)

    def steps(self, params, us, s0, valid, restart):
        """``S [t, b, n] -> f(p(S)) [t, b, n]``: every step at once on the trajectory's previous states."""
        return lambda trajectory: self.flat.transition(params, _previous(s0, trajectory), us, valid, restart, s0)[0]

    def iterate(self, params, us, s0, valid, restart, guess) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Newton's method from ``guess [t, b, n]`` until the residual is within ``tol`` (see the module docstring)."""
        steps = self.steps(params, us, s0, valid, restart)

        def evaluate(trajectory):
            new = steps(trajectory)
            return new, _residual(new, trajectory)

        def unfinished(state):
            k, _, _, residual = state
            return (k < self.max_iterations) & (residual > self.tol) & jnp.isfinite(residual)

        def newton(state):
            k, trajectory, new, _ = state
            jacobians = self.jacobians(params, _previous(s0, trajectory), us, valid, restart, s0)
            trajectory = trajectory + self.linear_solve(jacobians, new - trajectory)
            return (k + 1, trajectory, *evaluate(trajectory))

        state = (jnp.zeros((), jnp.int32), guess, *evaluate(guess))
        iterations, trajectory, _, residual = jax.lax.while_loop(unfinished, newton, state)
        return trajectory, iterations, residual

    def jacobians(self, params, previous, us, valid, restart, s0) -> jax.Array:
        """``J_t = d f_t / d p_t`` at ``previous [t, b, n]``: ``[t, b, n, n]`` (full) or its diagonal ``[t, b, n]``.

        Column i is one forward-mode derivative of every step at once along the basis vector ``e_i``; the diagonal
        keeps entry i of column i, pushing ``DIAGONAL_CHUNK`` basis vectors at a time. With parameters narrower than
        the carry (mixed precision: the built-in cells' products have custom VJPs, which forward mode cannot enter)
        row i is a reverse-mode derivative ``e_i^T J_t`` instead, all rows from one forward pass.
        """

        def step(p):
            return self.flat.transition(params, p, us, valid, restart, s0)[0]

        if _narrower_than(params, previous.dtype):
            _, pullback = jax.vjp(step, previous)
            derivative, axis = (lambda e: pullback(jnp.broadcast_to(e, previous.shape))[0]), -2
        else:
            derivative, axis = (lambda e: jax.jvp(step, (previous,), (jnp.broadcast_to(e, previous.shape),))[1]), -1

        size = previous.shape[-1]
        basis = jnp.eye(size, dtype=previous.dtype)
        if self.mode == "full":
            return jax.vmap(derivative, out_axes=axis)(basis)
        diagonal = jax.lax.map(lambda i: derivative(basis[i])[..., i], jnp.arange(size), batch_size=DIAGONAL_CHUNK)
        return jnp.moveaxis(diagonal, 0, -1)

    def linear_solve(self, jacobians, offsets) -> jax.Array:
        """``x_t = J_t x_{t-1} + c_t`` from ``x_0 = 0`` for all t, by ``jax.lax.associative_scan``: ``[t, b, n]``."""
        combine = _compose_matrices if self.mode == "full" else _compose_diagonals
        return jax.lax.associative_scan(combine, (jacobians, offsets), axis=0)[1]

    def adjoint(self, params, us, s0, valid, restart, trajectory, cotangent) -> jax.Array:
        """``lambda_t = g_t + J_{t+1}^T lambda_{t+1}`` (``lambda_T = g_T``) for ``g = cotangent [t, b, n]``.

        Full: a reverse associative scan of the transposes. Diagonal: a reverse ``jax.lax.scan`` of one step's VJP.
        """
        previous = _previous(s0, trajectory)
        if self.mode == "full":
            jacobians = self.jacobians(params, previous, us, valid, restart, s0)
            later = jnp.concatenate([jacobians[1:], jnp.zeros_like(jacobians[:1])], axis=0)  # J_{t+1}, J_{T+1} = 0
            transposed = jnp.swapaxes(later, -1, -2)[::-1]
            return jax.lax.associative_scan(_compose_matrices, (transposed, cotangent[::-1]), axis=0)[1][::-1]

        def back(pulled, inputs):  # pulled = J_{t+1}^T lambda_{t+1}
            g, p, u, valid_t, restart_t = inputs
            adjoint_t = g + pulled
            one = (None if a is None else a[None] for a in (valid_t, restart_t))
            _, pullback = jax.vjp(lambda q: self.flat.transition(params, q[None], u[None], *one, s0)[0][0], p)
            return pullback(adjoint_t)[0], adjoint_t

        inputs = (cotangent, previous, us, valid, restart)
        return jax.lax.scan(back, jnp.zeros_like(cotangent[0]), inputs, reverse=True)[1]


def _residual(new: jax.Array, trajectory: jax.Array) -> jax.Array:
    """``max |f - s| / (1 + |f|)`` over everything, float32; ``inf`` if any value is not finite."""
    scaled = jnp.max(jnp.abs(new - trajectory) / (1.0 + jnp.abs(new))).astype(jnp.float32)
    finite = jnp.all(jnp.isfinite(new)) & jnp.all(jnp.isfinite(trajectory))
    return jnp.where(finite, scaled, jnp.inf)


def _compose_matrices(earlier, later):
    """``x -> A x + c`` composed: first ``earlier``, then ``later``; ``A [..., n, n]``, ``c [..., n]``."""
    a1, c1 = earlier
    a2, c2 = later
    return a2 @ a1, jnp.einsum("...ij,...j->...i", a2, c1) + c2


def _compose_diagonals(earlier, later):
    """``x -> a * x + c`` composed (``seqjax.cells.linear.combine``)."""
    a1, c1 = earlier
    a2, c2 = later
    return a2 * a1, a2 * c1 + c2


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _fixed_point(solver: _Solver, params, us, s0, valid, restart, guess):
    return solver.iterate(params, us, s0, valid, restart, guess)


def _fixed_point_forward(solver: _Solver, params, us, s0, valid, restart, guess):
    trajectory, iterations, residual = solver.iterate(params, us, s0, valid, restart, guess)
    return (trajectory, iterations, residual), (params, us, s0, valid, restart, trajectory, residual)


def _fixed_point_backward(solver: _Solver, saved, cotangents):
    """The implicit function theorem at ``S = f(p(S))``: ``lambda = (I - df/dS)^{-T} g``, then the VJP of ``f``
    w.r.t. ``(params, us, s0)`` with ``lambda``. NaN when the forward pass did not converge."""
    params, us, s0, valid, restart, trajectory, residual = saved
    cotangent = cotangents[0]
    cotangent = cotangent * jnp.where(residual <= solver.tol, 1.0, jnp.nan).astype(cotangent.dtype)
    adjoint = solver.adjoint(params, us, s0, valid, restart, trajectory, cotangent)

    def steps(params, us, s0):
        return solver.flat.transition(params, _previous(s0, trajectory), us, valid, restart, s0)[0]

    _, pullback = jax.vjp(steps, params, us, s0)
    return (*pullback(adjoint), None, None, None)


_fixed_point.defvjp(_fixed_point_forward, _fixed_point_backward)
