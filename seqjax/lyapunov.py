"""Lyapunov exponents of a cell's recurrence along a trajectory: how fast nearby states separate, per step.

Along the carries ``c_0, c_1, ..., c_T`` that a cell visits reading ``xs``, each step has a Jacobian
``J_t = d c_t / d c_{t-1}`` (``[n, n]``, n the size of the flattened carry: ``2h`` for an LSTM's ``(h, c)``).
The top-k exponents are the average log growth rates of k independent directions under ``J_T ... J_2 J_1``,
found by repeated QR (Benettin et al. 1980)::

    Q_0 = k random orthonormal columns (a fixed draw: the first columns of I would never leave the
          coordinate axes under a diagonal Jacobian, e.g. minGRU's, and measure one unit, not the top)
    Q_t R_t = J_t Q_{t-1}                     (QR decomposition, R_t upper triangular)
    lambda_i = (1 / T) sum_t log |R_t[i, i]|

lambda_1 < 0: perturbations of the state shrink, by e^{lambda_1} a step on average, and so do the gradients
that flow back through the same Jacobians (the vanishing regime). lambda_1 > 0: they grow (the exploding or
chaotic regime). For a linear RNN ``h_t = a h_{t-1} + x_t W`` every exponent is ``log |a|``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from seqjax.cells.base import Carry, Cell, Params, step_input
from seqjax.scan import unroll


def step_jacobians(cell: Cell, params: Params, xs: jax.Array, initial_carry: Carry | None = None) -> jax.Array:
    """``J_t = d c_t / d c_{t-1}`` at every step of one sequence ``xs [t, d]``: ``[t, n, n]``, n the carry's size.

    The trajectory is the one ``unroll`` runs from ``initial_carry`` (zeros if omitted); the carry is flattened
    leaf by leaf (``jax.flatten_util.ravel_pytree``), a complex leaf as its real and imaginary parts (so ``n = 2h``
    for the LRU, whose complex eigenvalue ``lambda`` is a 2 x 2 rotation scaled by ``|lambda|``).
    """
    carry0 = cell.init_carry(params, (1,)) if initial_carry is None else jax.tree.map(lambda c: c[None], initial_carry)
    carries = unroll(cell, params, xs[None], initial_carry=carry0, return_carries=True, parallel=False).carries
    before = jax.tree.map(
        lambda c0, cs: jnp.concatenate([c0, cs[0, :-1]], axis=0), carry0, carries
    )  # c_{t-1}, [t, ...]
    example = jax.tree.map(lambda c: c[0], carry0)
    _, unflatten = ravel_pytree(_real_parts(example))

    def step(flat, x):
        carry = jax.tree.map(lambda c: c[None], _from_real_parts(unflatten(flat), example))
        new, _ = step_input(cell, params, carry, x[None])
        return ravel_pytree(_real_parts(jax.tree.map(lambda c: c[0], new)))[0]

    flats = jax.vmap(lambda carry: ravel_pytree(_real_parts(carry))[0])(before)  # [t, n]
    return jax.vmap(jax.jacfwd(step))(flats, xs)


def _real_parts(carry: Carry) -> Carry:
    """Each complex leaf ``[...]`` as its stacked real and imaginary parts ``[2, ...]``; real leaves as they are."""
    return jax.tree.map(lambda c: jnp.stack([jnp.real(c), jnp.imag(c)]) if jnp.iscomplexobj(c) else c, carry)


def _from_real_parts(parts: Carry, like: Carry) -> Carry:
    """``_real_parts`` undone, leaf by leaf as in ``like``."""
    return jax.tree.map(lambda p, c: jax.lax.complex(p[0], p[1]) if jnp.iscomplexobj(c) else p, parts, like)


def exponents(jacobians: jax.Array, k: int = 1) -> jax.Array:
    """The top-``k`` Lyapunov exponents ``[k]`` (largest first, per step, natural log) of ``[t, n, n]`` Jacobians."""
    n = jacobians.shape[-1]
    if not 1 <= k <= n:
        raise ValueError(f"k must be in 1..{n} (the carry's size), got {k}")

    def body(q, jacobian):
        q, r = jnp.linalg.qr(jacobian @ q)
        return q, jnp.log(jnp.abs(jnp.diagonal(r)))

    start, _ = jnp.linalg.qr(jax.random.normal(jax.random.key(0), (n, k), jacobians.dtype))
    _, logs = jax.lax.scan(body, start, jacobians)
    return jnp.sort(jnp.mean(logs, axis=0))[::-1]


def lyapunov_exponents(
    cell: Cell, params: Params, xs: jax.Array, k: int = 1, initial_carry: Carry | None = None
) -> jax.Array:
    """The top-``k`` Lyapunov exponents of ``cell`` along its trajectory over ``xs [b, t, d]``, averaged over the
    ``b`` sequences: ``[k]``."""
    per_sequence = jax.vmap(lambda x: exponents(step_jacobians(cell, params, x, initial_carry), k))(xs)
    return jnp.mean(per_sequence, axis=0)
