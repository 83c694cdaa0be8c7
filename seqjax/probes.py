"""The probed step: a cell's step whose carry gets an additive probe, and whose output reads the probed carry.

``unroll(..., probe=zeros)`` runs ``probed_step`` at every step t::

    carry_t, y_t = step(params, carry_{t-1}, u_t)
    carry_t = carry_t + probe_t
    y_t = the output read from the probed carry_t

so that dL/dprobe_t is the total dL/dcarry_t: the paths through later steps and through the output y_t. How
``y_t`` reads the carry, in this order:

1. the cell declares it, ``Cell(..., readout=lambda params, carry, u: y)`` (the LRU's ``Re(C h_t) + D u_t``);
2. ``y_t`` is one of the carry's leaves (``return h, h``, as every built-in cell): that leaf, probed;
3. otherwise it is read from the step's own computation (``return h, h * 1.0``, ``return h, jnp.tanh(h)``,
   ``return (h, c), o * jnp.tanh(c)``): the step is traced to a jaxpr and every value it derives from the carry
   leaves it returns, ``y_t`` among them, is derived again from the probed leaves. Each carry leaf keeps its own
   value plus its own probe: in ``h = o tanh(c)``, ``c``'s probe does not reach ``h``, so an LSTM-like cell's
   ``dL/dc_t`` is taken at fixed ``h_t``, as for the built-in LSTM;
4. a step whose ``y_t`` derives from none of the carry leaves it returns (an output computed before the update, or
   carry and output made in one call such as a jitted step) is refused in one line naming the cell and
   ``readout``: a probe there would say dL/dh_t has no output path, which is rarely what was meant.
"""

from __future__ import annotations

from typing import Any

import jax
from jax.extend.core import Literal

from seqjax.cells.base import Carry, Cell, Params, first_line


def probed_step(cell: Cell, params: Params, carry: Carry, u: Any, probe: Carry) -> tuple[Carry, Any]:
    """One step of ``cell`` from ``carry`` on the (projected) input ``u``, the new carry plus ``probe`` (shaped like
    it), and ``y_t`` read from that probed carry (see the module docstring).

    Returns:
      ``(carry_t + probe_t, y_t)``.
    """
    new_carry, y = cell.step(params, carry, u)
    leaves, treedef = jax.tree.flatten(new_carry)
    probe_leaves = treedef.flatten_up_to(probe)
    if cell.readout is None and not any(leaf is y for leaf in leaves):
        probed, y = _read_by_the_step(cell, params, carry, u, probe_leaves)
        return jax.tree.unflatten(treedef, probed), y
    probed = [leaf + p for leaf, p in zip(leaves, probe_leaves, strict=True)]
    if cell.readout is None:
        return jax.tree.unflatten(treedef, probed), probed[[leaf is y for leaf in leaves].index(True)]
    y_read = cell.readout(params, jax.tree.unflatten(treedef, probed), u)
    _check_readout(cell, y, y_read)
    return jax.tree.unflatten(treedef, probed), y_read


def _check_readout(cell: Cell, y, y_read) -> None:
    def shapes(tree):
        return jax.tree.map(lambda a: (a.shape, a.dtype), tree)

    if shapes(y) != shapes(y_read):
        raise ValueError(
            f"cell {cell.name!r}: its readout gives {shapes(y_read)} but its step's output is {shapes(y)}; "
            "readout(params, carry, u) must give the step's y_t from the carry the step returns"
        )


def _read_by_the_step(cell: Cell, params: Params, carry: Carry, u, probe_leaves: list) -> tuple[list, Any]:
    """Case 3 of the module docstring: the step as a jaxpr, evaluated once as it is (the carry leaves it returns,
    plus their probes), then again from the probed carry leaves for every equation that reads one (directly or
    not), the carry leaves themselves left as probed. Returns the probed carry's leaves and ``y_t`` from that pass.
    (The step's own first call, which showed that ``y_t`` is no carry leaf, is then unused: XLA drops it.)"""
    fix = f"give Cell(..., readout=lambda params, carry, u: <y_t from carry>) for cell {cell.name!r}"
    try:
        closed, out_shape = jax.make_jaxpr(cell.step, return_shape=True)(params, carry, u)
    except Exception as e:  # a step that cannot be traced on its own (e.g. non-array params): say what to do
        raise ValueError(
            f"cannot trace the step to read its output from the probed carry ({first_line(e)}); {fix}"
        ) from None
    jaxpr, num_carry = closed.jaxpr, len(jax.tree.leaves(out_shape[0]))
    env = dict(zip(jaxpr.constvars, closed.consts, strict=True))
    env.update(zip(jaxpr.invars, jax.tree.leaves((params, carry, u)), strict=True))
    for eqn in jaxpr.eqns:
        env.update(zip(eqn.outvars, _bind(eqn, [_read(v, env) for v in eqn.invars]), strict=True))
    carry_vars, output_vars = jaxpr.outvars[:num_carry], jaxpr.outvars[num_carry:]
    probed = [_read(v, env) + p for v, p in zip(carry_vars, probe_leaves, strict=True)]
    held = {}
    for var, leaf in zip(carry_vars, probed, strict=True):
        if not isinstance(var, Literal):
            held.setdefault(var, leaf)  # a leaf returned twice: values that read it read its first probe
    derived = dict(held)
    for eqn in jaxpr.eqns:
        if any(_reads(v, derived) for v in eqn.invars):
            again = _bind(eqn, [_read(v, derived, env) for v in eqn.invars])
            derived.update((v, value) for v, value in zip(eqn.outvars, again, strict=True) if v not in held)
    if not any(_reads(v, derived) for v in output_vars):
        raise ValueError(
            f"cell {cell.name!r}: its step's output y_t is computed from none of the carry leaves it returns, so a "
            f"probe on the carry cannot reach y_t; {fix}"
        )
    outputs = [_read(v, derived, env) for v in output_vars]
    return probed, jax.tree.unflatten(jax.tree.structure(out_shape[1]), outputs)


def _reads(var, values: dict) -> bool:
    """Whether jaxpr atom ``var`` (a variable or a literal constant) is one of ``values``'."""
    return not isinstance(var, Literal) and var in values


def _read(var, *envs: dict) -> Any:
    """The value of jaxpr atom ``var``: a literal's own, or a variable's from the first of ``envs`` that has it."""
    if isinstance(var, Literal):
        return var.val
    return next(env[var] for env in envs if var in env)


def _bind(eqn, invals: list) -> list:
    """One jaxpr equation applied to ``invals`` (as ``jax.core.eval_jaxpr`` applies it); its outputs as a list."""
    with eqn.ctx.manager:
        out = eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(eqn.params))
    return list(out) if eqn.primitive.multiple_results else [out]
