"""The unroller: any ``Cell`` over a sequence with ``jax.lax.scan``.

Layouts: public arrays are batch-major ``[b, t, ...]`` unless ``time_major=True`` (``[t, b, ...]``);
the scan itself always runs time-major.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from seqjax.cells import linear as linear_lib
from seqjax.cells.base import Carry, Cell, Params, first_line, init_in_dtype, step_input
from seqjax.probes import probed_step


class Unrolled(NamedTuple):
    """What ``unroll`` returns.

    Attributes:
      carry: the final carry; with ``lengths``, each example's carry at its true last step (first
        step when ``reverse``).
      outputs: ``y [b, t, h]`` (``[t, b, h]`` if time-major), zero at padded steps.
      carries: every step's carry stacked along time like ``outputs`` (a pytree of ``[b, t, ...]``),
        or ``None`` unless ``return_carries=True``.
    """

    carry: Carry
    outputs: jax.Array
    carries: Carry | None


def _to_time_major(tree: Any) -> Any:
    return jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1), tree)


def _where_valid(valid: jax.Array, new: Carry, old: Carry) -> Carry:
    """Per example, ``new`` where ``valid [b]`` else ``old``."""

    def select(n, o):
        return jnp.where(valid.reshape(valid.shape + (1,) * (n.ndim - 1)), n, o)

    return jax.tree.map(select, new, old)


RESET_TO = ("initial", "zeros")


def hoist_by_default(batch: int, hidden: int, platform: str) -> bool:
    """Whether ``unroll`` hoists the input projection out of the scan when ``hoist=None``.

    Accelerators: always (one large matrix product instead of T small ones). XLA:CPU: only for small
    batches. Measured on a 2-core x86 CPU (training step, seqjax vs the same cell projecting inside
    the step): hoisting wins at B=8 (LSTM H=512: 155 vs 261 ms) and B=16, H=128 (LSTM 24 vs 27 ms,
    GRU 19 vs 21 ms); it loses at B=16, H=256 (74 vs 68 ms), B=32 (LSTM H=128: 54 vs 36 ms;
    H=256: 167 vs 147 ms) and B=64, H=512 (506 vs 424 ms). With a small batch the per-step weight
    gradient x_t^T dz_t is too skinny for the CPU GEMM; with a large one the stored [t, b, g*h]
    projection costs more memory traffic than it saves.
    """
    if platform != "cpu":
        return True
    return batch <= 8 or batch * hidden <= 2048


def fused_by_default(batch: int, hidden: int, platform: str) -> bool:
    """Whether ``unroll`` takes a cell's ``fused`` sequence when ``fused=None`` (and it applies).

    The fused backward moves the per-step weight-gradient products ``h_{t-1}^T dz_t`` ([h, b] x [b, g h])
    out of the loop into one large product, at the price of storing the gate activations [t, b, g h].
    The per-step products are skinny, and so worth removing, when the batch is small next to the hidden
    size; from h = 512 on, the large products win at every batch measured. Accelerators: always (cuDNN's
    RNN backward does the same; not yet measured here). XLA:CPU: when ``batch * hidden <= 2048``, when
    ``hidden >= 8 * batch`` and ``batch * hidden <= 32768``, or when ``hidden >= 512``. Measured on a 2-core
    AMD EPYC with ``benchmarks/fused_vs_scan.py`` (scanned / fused step time for rnn, lstm, gru; T=64):
    B=16 H=1024: 1.95, 1.77, 2.20; B=64 H=1024: 1.19, 1.20, 1.16; B=128 H=1024: 1.08, 1.08, 1.08 and
    repeated 1.09, 1.08, 1.12; B=32 H=512: 1.12, 1.22, 1.10; B=64 H=512: 1.05, 1.12, 1.03 and 1.11, 1.13,
    1.06; B=128 H=512: 1.11, 1.04, 1.05 and 1.06, 1.09, 1.05; B=32 H=256: 1.16, 1.25, 0.83; B=64 H=256:
    1.14, 0.96, 0.88 and 1.16, 1.20, 0.87 (the GRU loses: scan); B=16 H=128 (T=100): 1.34, 1.31, 1.40.

    A cell may take its fused sequence at more shapes (``Cell.fused_faster``, read by ``takes_fused``): the LSTM
    wherever its native loops run (``seqjax.cells.lstm_native``). Scanned / fused LSTM step with them, where this
    rule says scan (``fused_vs_scan.py --cells=lstm``, T=64, same machine, 21 s wall): B=32 H=128 1.56, B=64 H=128
    1.67, B=128 H=128 1.27, B=64 H=256 1.10, B=128 H=256 1.06, B=256 H=256 1.01.
    """
    if platform != "cpu":
        return True
    size = batch * hidden
    return size <= 2048 or (hidden >= 8 * batch and size <= 32768) or hidden >= 512


def takes_fused(cell: Cell, params: Params, xs_t, carry, valid=None, remat: bool = False, restart=None) -> bool:
    """Whether ``unroll`` with ``fused=None`` (and neither probes nor ``return_carries``) runs ``cell.fused`` on these
    time-major inputs ``xs_t [t, b, d]``: where ``fused_by_default`` says so, and wherever the cell's
    ``fused_faster`` does (the LSTM's native loops, faster than the scanned step at every shape measured; see
    ``fused_by_default``). Reads shapes and dtypes only."""
    if cell.fused is None:
        return False
    batch, hidden = xs_t.shape[1], jax.tree.leaves(carry)[0].shape[-1]
    if fused_by_default(batch, hidden, jax.default_backend()):
        return True
    return cell.fused_faster is not None and cell.fused_faster(params, xs_t, carry, valid, remat, restart)


def default_is_fused(cell: Cell, batch: int, steps: int, input_size: int, hidden: int, dtype=jnp.float32) -> bool:
    """``takes_fused`` for a cell's float32 (or ``dtype``) parameters and zero carry at ``B x T x D``, ``hidden``
    units: the path ``unroll`` takes with no options, for tables that label it."""
    params = jax.eval_shape(lambda: init_in_dtype(cell.init_params, jax.random.key(0), input_size, hidden, dtype))
    carry = jax.eval_shape(lambda p: cell.init_carry(p, (batch,)), params)
    return takes_fused(cell, params, jax.ShapeDtypeStruct((steps, batch, input_size), dtype), carry)


def parallel_by_default(steps: int, batch: int, hidden: int, platform: str) -> bool:
    """Whether ``unroll`` evaluates a linear recurrence with an associative scan when ``parallel=None``.

    Accelerators: yes (many cores to spread the log-depth tree over; not yet measured here). XLA:CPU: never.
    The associative scan does about twice the work of the sequential one in O(log T) depth, and two cores
    cannot spend the depth. Measured on a 2-core x86 CPU with ``benchmarks/parallel_vs_scan.py``: the training
    step of minGRU and minLSTM at B in {8, 32}, H in {64, 256}, T in {256, 1024, 4096}, 24 shapes. Scan time over
    associative time was 0.56-0.85 for minGRU (the scan faster at every shape) and 0.80-1.14 for minLSTM (the
    scan faster at 9 of 12; 1.14, 1.09 and 1.05 where it was not). ``steps``, ``batch`` and ``hidden`` are taken
    so that a rule that needs them (a many-core CPU) can use them.
    """
    del steps, batch, hidden
    return platform != "cpu"


def unroll(
    cell: Cell,
    params: Params,
    xs: jax.Array,
    *,
    initial_carry: Carry | None = None,
    lengths: jax.Array | None = None,
    reverse: bool = False,
    unroll: int | None = None,
    remat: bool = False,
    return_carries: bool = False,
    probe: Carry | None = None,
    time_major: bool = False,
    hoist: bool | None = None,
    fused: bool | None = None,
    segment_len: int | None = None,
    parallel: bool | None = None,
    resets: jax.Array | None = None,
    reset_to: str = "initial",
) -> Unrolled:
    """Runs ``cell`` over ``xs`` with one ``jax.lax.scan``.

    For each step t (in reverse order when ``reverse``)::

        carry_{t-1} = initial_carry if t starts a segment      (only with ``resets``; zeros with reset_to="zeros")
        carry_t, y_t = cell.step(params, carry_{t-1}, u_t)     u = project(params, x) if the cell has it
        carry_t = carry_t + probe_t                             (only with ``probe``)
        y_t = y_t read from the probed carry_t                  (only with ``probe``: ``seqjax.probes``)
        carry_t = carry_t if t < length else carry_{t-1}       (only with ``lengths``)
        y_t = y_t if t < length else 0

    Args:
      cell: the cell.
      params: its parameters.
      xs: inputs ``[b, t, d]`` (``[t, b, d]`` if ``time_major``).
      initial_carry: carry before the first step; zeros (``cell.init_carry``) if omitted.
      lengths: ``[b]`` int, true lengths of right-padded sequences. Padded steps leave the carry
        unchanged, so a reverse pass starts at each sequence's own last element.
      reverse: read the sequence from last step to first; outputs keep their positions.
      unroll: ``jax.lax.scan``'s unroll factor; ``None`` takes the cell's own (``cell.unroll``).
      remat: ``jax.checkpoint`` the step, recomputing its internals in the backward pass.
      return_carries: also return every step's carry.
      probe: additive probe, a pytree shaped like the stacked carries (``[b, t, ...]`` per leaf, or
        time-major). Pass zeros: the gradient of a loss w.r.t. ``probe`` is dL/dcarry_t for all t,
        the sensitivity of the loss to the state that step t hands on, output path included: ``y_t`` is
        read from the probed carry (the cell's ``readout``, the carry leaf the step returns as ``y_t``, or
        the step's own computation of ``y_t`` from its carry; ``seqjax.probes``), so losses on ``outputs``
        see the probe too. Probes at padded steps have no effect (their gradient is zero).
      time_major: layout of ``xs``, ``outputs``, ``probe`` and ``carries``.
      hoist: for a cell with ``project``: apply it to the whole sequence before the scan (True) or
        inside each step (False). ``None`` chooses by batch, hidden size and platform
        (``hoist_by_default``). The results are the same either way.
      fused: run the cell's ``fused`` sequence function (e.g. one custom-VJP scan after one input
        matrix product) instead of scanning ``step``. It applies when the cell has one and neither
        ``probe`` nor ``return_carries`` is asked for (``hoist`` and ``unroll`` then do not apply).
        ``None`` takes it where it applies and is faster by batch, hidden size and platform
        (``fused_by_default``); ``True`` takes it where it applies and raises ``ValueError`` elsewhere;
        ``False`` never takes it.
        The results are the same either way, to float rounding.
      segment_len: checkpoint the sequence in segments of this many steps (the last may be
        shorter): the backward pass keeps only the carry entering each segment and recomputes the
        segment's forward pass, so the stored state grows as T / segment_len carries plus one
        segment's residuals (segment_len ~ sqrt(T) minimises it) instead of T steps' residuals.
        Combines with ``remat`` (inside the segment) but not with ``probe`` or ``return_carries``.
      parallel: for a cell linear in its carry (``cell.linear``, ``seqjax.cells.linear``): evaluate the whole
        sequence with ``jax.lax.associative_scan`` over its coefficients (in log space when the cell gives
        them so) instead of step by step. ``None`` chooses by length, batch, hidden size and platform
        (``parallel_by_default``); ``True`` for a cell that is not linear raises ``ValueError``. The values
        and gradients are the same either way, to float rounding; ``hoist``, ``unroll``, ``remat`` and
        ``fused`` do not apply to the parallel path.

      resets: ``[b, t]`` bool (``[t, b]`` if time-major): True where a new segment starts, e.g. the first token of
        each document packed into one row. The carry entering that step is the initial carry again, so each
        segment runs as if alone (values and gradients); reading in reverse, each segment restarts at its own
        last step. Every path takes it: the per-step scan, the parallel one and a cell's ``fused`` sequence.
      reset_to: the carry a reset step starts from: ``"initial"`` (``initial_carry``) or ``"zeros"``
        (``cell.init_carry``), e.g. for a language model whose ``initial_carry`` is the state carried over from
        the previous window while the documents packed in this one each start from zeros.

    Returns:
      ``Unrolled(carry, outputs, carries)``.
    """
    xs_t, carry0, valid, restart = time_major_inputs(
        cell, params, xs, initial_carry, lengths, resets, reverse, time_major, "unroll"
    )
    batch = xs_t.shape[1]
    probe_t = probe if probe is None or time_major else _to_time_major(probe)
    if reset_to not in RESET_TO:
        raise ValueError(f"reset_to must be one of {', '.join(RESET_TO)}, got {reset_to!r}")
    reset_carry = None
    if resets is not None:
        reset_carry = carry0 if reset_to == "initial" else cell.init_carry(params, (batch,))
    options = _Options(unroll, remat, hoist, fused, parallel, restart, reset_carry)
    if segment_len is not None:
        if segment_len < 1:
            raise ValueError(f"segment_len must be >= 1, got {segment_len}")
        if probe is not None or return_carries:
            raise ValueError("segment_len stores no per-step state: it cannot be combined with probe or return_carries")
        if resets is not None:
            raise ValueError("segment_len cannot be combined with resets")
        carry, ys = _segmented(cell, params, xs_t, carry0, valid, reverse, segment_len, options)
        carries = None
    else:
        carry, ys, carries = _run(cell, params, xs_t, carry0, valid, reverse, return_carries, probe_t, options)
    ys = outputs_in_weights_dtype(ys, params)
    if not time_major:
        ys = _to_time_major(ys)
        carries = None if carries is None else _to_time_major(carries)
    return Unrolled(carry, ys, carries)


def outputs_in_weights_dtype(ys: jax.Array, params: Params) -> jax.Array:
    """``ys`` in the parameters' floating dtype where that is narrower (bfloat16 weights, float32 outputs), as the
    built-in cells return them (``seqjax.precision``): a user's step that keeps its float32 carry's dtype for
    ``y_t`` gives the same output dtype as a built-in cell. Parameters of several floating dtypes change nothing."""
    dtypes = {leaf.dtype for leaf in jax.tree.leaves(params) if jnp.issubdtype(leaf.dtype, jnp.floating)}
    if len(dtypes) != 1 or not jnp.issubdtype(ys.dtype, jnp.floating):
        return ys
    (dtype,) = dtypes
    return ys.astype(dtype) if jnp.dtype(dtype).itemsize < ys.dtype.itemsize else ys


class TimeMajorInputs(NamedTuple):
    """An unroll's inputs in the scan's layout (``time_major_inputs``)."""

    xs: jax.Array  # [t, b, d]
    carry0: Carry
    valid: jax.Array | None  # [t, b]: t < length
    restart: jax.Array | None  # [t, b]: the steps whose incoming carry is the reset one (in reading order's terms)


def time_major_inputs(
    cell: Cell, params: Params, xs, initial_carry, lengths, resets, reverse: bool, time_major: bool, caller: str
) -> TimeMajorInputs:
    """``xs``, ``initial_carry``, ``lengths`` and ``resets`` as ``unroll`` documents them, checked and turned
    time-major: the preparation every unroller shares (``unroll``, ``seqjax.deer.unroll``). ``caller`` names the
    function in the error raised for ``xs`` of the wrong rank."""
    if jnp.ndim(xs) != 3:
        raise ValueError(f"{caller} expects xs of rank 3 ([batch, time, features]), got shape {jnp.shape(xs)}")
    xs_t = xs if time_major else _to_time_major(xs)
    num_steps, batch = xs_t.shape[:2]
    carry0 = cell.init_carry(params, (batch,)) if initial_carry is None else initial_carry
    if initial_carry is None and getattr(cell.init_carry, "derived", False):
        check_derived_carry(cell, params, carry0, xs_t[0])
    valid = None if lengths is None else jnp.arange(num_steps)[:, None] < jnp.asarray(lengths)[None, :]
    restart = None
    if resets is not None:
        resets_t = jnp.asarray(resets, bool) if time_major else jnp.swapaxes(jnp.asarray(resets, bool), 0, 1)
        if resets_t.shape != (num_steps, batch):
            raise ValueError(f"resets must be [batch, time] = {(batch, num_steps)} like xs, got {jnp.shape(resets)}")
        restart = _restarts(resets_t, reverse)
    return TimeMajorInputs(xs_t, carry0, valid, restart)


def check_derived_carry(cell: Cell, params: Params, carry0: Carry, x0: jax.Array) -> None:
    """``ValueError`` (one line) if ``cell``'s step cannot take or does not return the one array ``[b, h]`` derived
    as the zero carry of a cell without ``init_carry``, which would otherwise surface as an error inside JAX's scan
    (its carry-structure check, or a shape error deep in the step)."""
    fix = "Cell(..., init_carry=lambda params, batch_shape: <zeros of that carry>)"
    head = f"cell {cell.name!r} has no init_carry, so its zero carry is one [batch, hidden] array"
    try:
        returned, _ = jax.eval_shape(lambda p, c, x: step_input(cell, p, c, x), params, carry0, x0)
    except Exception as e:  # any failure of the user's step on that carry, reported in one line
        raise ValueError(
            f"{head}, and its step failed on it ({first_line(e)}); if its carry is not one such array, give {fix}"
        ) from None
    if jax.tree.structure(returned) != jax.tree.structure(carry0):
        raise ValueError(
            f"{head}, but its step returns a carry of {len(jax.tree.leaves(returned))} leaves "
            f"({jax.tree.structure(returned)}): give {fix}"
        )


class _Options(NamedTuple):
    """``unroll``'s choices of how (not what) to compute."""

    unroll: int | None
    remat: bool
    hoist: bool | None
    fused: bool | None
    parallel: bool | None = None
    restart: jax.Array | None = None  # [t, b]: the steps whose incoming carry is ``reset_carry``
    reset_carry: Carry | None = None


def _run(cell, params, xs_t, carry0, valid, reverse, return_carries, probe_t, options: _Options):
    """The time-major core of ``unroll``: ``(carry, ys [t, b, h], carries or None)``."""
    if cell.linear is None and options.parallel:
        raise ValueError(f"unroll(parallel=True): cell {cell.name!r} is not linear in its carry (no cell.linear)")
    if cell.linear is not None:
        steps, batch, hidden = xs_t.shape[0], xs_t.shape[1], jax.tree.leaves(carry0)[0].shape[-1]
        parallel = options.parallel
        if parallel is None:
            parallel = parallel_by_default(steps, batch, hidden, jax.default_backend())
        if parallel:
            restart = options.restart
            return _run_parallel(cell, params, xs_t, carry0, valid, reverse, return_carries, probe_t, restart,
                                 options.reset_carry)  # fmt: skip
    reason = fused_unavailable(cell, probe_t, return_carries)
    if options.fused and reason:
        raise ValueError(f"unroll(fused=True): {reason}")
    batch, hidden, platform = xs_t.shape[1], jax.tree.leaves(carry0)[0].shape[-1], jax.default_backend()
    fused = options.fused
    if fused is None:
        fused = takes_fused(cell, params, xs_t, carry0, valid, options.remat, options.restart)
    if fused and not reason:
        carry, ys = _run_fused(cell, params, xs_t, carry0, valid, reverse, options.remat, options.restart,
                               options.reset_carry)  # fmt: skip
        return carry, ys, None
    hoist = options.hoist if options.hoist is not None else hoist_by_default(batch, hidden, platform)
    project_in_step = cell.project is not None and not hoist
    us = cell.project(params, xs_t) if cell.project is not None and hoist else xs_t

    def cell_step(carry, u, probe_step):
        if project_in_step:
            u = cell.project(params, u)
        if probe_step is not None:
            return probed_step(cell, params, carry, u, probe_step)
        return cell.step(params, carry, u)

    if options.remat:
        cell_step = jax.checkpoint(cell_step)

    def body(carry, inputs):
        u, valid_t, probe_step, restart_t = inputs
        if restart_t is not None:
            carry = _where_valid(restart_t, options.reset_carry, carry)
        new_carry, y = cell_step(carry, u, probe_step)
        if valid_t is not None:
            new_carry = _where_valid(valid_t, new_carry, carry)
            y = jnp.where(valid_t[:, None], y, jnp.zeros_like(y))
        return new_carry, (y, new_carry if return_carries else None)

    factor = cell.unroll if options.unroll is None else options.unroll
    inputs = (us, valid, probe_t, options.restart)
    carry, (ys, carries) = jax.lax.scan(body, carry0, inputs, reverse=reverse, unroll=factor)
    return carry, ys, carries


def _run_parallel(cell, params, xs_t, h0, valid, reverse, return_carries, probe_t, restart, reset_carry=None):
    """``_run`` for a cell linear in its carry: every ``h_t`` at once from the coefficients of every step.

    A padded step is the identity map ``(a, b) = (1, 0)``; a probe adds to ``b``; a restart is ``(0, a r + b)``,
    ``r`` the reset carry; reading in reverse is the forward recurrence on flipped time. With ``cell.readout``,
    ``y_t`` reads the probed carry, as the scanned step's output does. The log-space form cannot hold a zero ``a`` or a
    negative ``b``: with resets or probes a cell that offers it runs on its plain coefficients; an initial carry of
    any sign enters as ``A_t h_0`` (``A_t`` the product of ``a`` up to t) beside the log-space sum from zero.
    """
    linear = cell.linear
    us = xs_t if cell.project is None else cell.project(params, xs_t)
    if reverse:
        us, valid = _flip_time(us, valid)
        probe_t = None if probe_t is None else probe_t[::-1]
        restart = None if restart is None else restart[::-1]
    mask = None if valid is None else valid[..., None]
    again = None if restart is None else restart[..., None]
    if linear.log_coefficients is not None and probe_t is None and restart is None:
        log_a, log_b = linear.log_coefficients(params, us)
        if mask is not None:
            log_a, log_b = jnp.where(mask, log_a, 0.0), jnp.where(mask, log_b, linear_lib.LOG_ZERO)
        # h_t = A_t h_0 + (the recurrence from h_0 = 0): log space holds the second term only, so h_0 may be negative
        zero_start = jnp.full(log_b.shape[1:], linear_lib.LOG_ZERO, log_b.dtype)
        hs = linear_lib.log_scan(log_a, log_b, zero_start) + jnp.exp(jnp.cumsum(log_a, axis=0)) * h0[None]
    else:
        a, b = linear.coefficients(params, us)
        if probe_t is not None:
            b = b + probe_t
        if again is not None:
            b = jnp.where(again, b + a * jnp.broadcast_to(h0 if reset_carry is None else reset_carry, a.shape), b)
            a = jnp.where(again, jnp.zeros_like(a), a)
        if mask is not None:
            a, b = jnp.where(mask, a, jnp.ones_like(a)), jnp.where(mask, b, jnp.zeros_like(b))
        hs = linear_lib.associative_scan(a, b, h0)
    hs = hs.astype(jnp.result_type(h0, hs))
    ys = hs if cell.readout is None else cell.readout(params, hs, us)
    if mask is not None:
        ys = jnp.where(mask, ys, jnp.zeros_like(ys))
    carry = hs[-1]
    if reverse:
        hs, ys = hs[::-1], ys[::-1]
    return carry, ys, hs if return_carries else None


def _restarts(resets_t: jax.Array, reverse: bool) -> jax.Array:
    """The steps ``[t, b]`` whose incoming carry is the initial one: the first of each segment, or reading in
    reverse, the last (the step before the next segment's first)."""
    if not reverse:
        return resets_t
    return jnp.concatenate([resets_t[1:], jnp.zeros_like(resets_t[:1])], axis=0)


def _segmented(cell, params, xs_t, carry0, valid, reverse, segment_len: int, options: _Options):
    """``_run`` over segments of ``segment_len`` steps, each under ``jax.checkpoint``.

    The backward pass keeps only the carry entering each segment (T / segment_len of them) and
    recomputes one segment's forward pass at a time, so its memory holds one segment's residuals.
    Reading in reverse is the forward recurrence over flipped time.
    """
    if reverse:
        xs_t, valid = _flip_time(xs_t, valid)
    num_steps = xs_t.shape[0]
    num_full = num_steps // segment_len

    @jax.checkpoint
    def run_segment(params, carry, xs_seg, valid_seg):
        carry, ys, _ = _run(cell, params, xs_seg, carry, valid_seg, False, False, None, options)
        return carry, ys

    def split(a):
        return None if a is None else a[: num_full * segment_len].reshape(num_full, segment_len, *a.shape[1:])

    outputs, carry = [], carry0
    if num_full:
        carry, ys = jax.lax.scan(lambda c, inputs: run_segment(params, c, *inputs), carry, (split(xs_t), split(valid)))
        outputs.append(ys.reshape(num_full * segment_len, *ys.shape[2:]))
    if num_steps % segment_len:
        tail = slice(num_full * segment_len, None)
        carry, ys = run_segment(params, carry, xs_t[tail], None if valid is None else valid[tail])
        outputs.append(ys)
    ys = outputs[0] if len(outputs) == 1 else jnp.concatenate(outputs, axis=0)
    return carry, ys[::-1] if reverse else ys


def fused_unavailable(cell: Cell, probe: Carry | None, return_carries: bool) -> str:
    """Why ``unroll`` cannot take ``cell.fused`` here ("" when it can)."""
    if cell.fused is None:
        return f"cell {cell.name!r} has no fused recurrence"
    if probe is not None:
        return "probes need the per-step scan"
    if return_carries:
        return "return_carries needs the per-step scan"
    return ""


def _flip_time(xs_t, valid):
    return xs_t[::-1], None if valid is None else valid[::-1]


def _run_fused(cell: Cell, params: Params, xs_t, carry0, valid, reverse: bool, remat: bool, restart=None,
               reset_carry=None):  # fmt: skip
    """``cell.fused`` on time-major inputs; reading in reverse is the forward recurrence on flipped time."""
    if reverse:
        xs_t, valid = _flip_time(xs_t, valid)
        restart = None if restart is None else restart[::-1]
    if restart is None:
        carry, ys = cell.fused(params, xs_t, carry0, valid, remat)
    else:
        carry, ys = cell.fused(params, xs_t, carry0, valid, remat, restart=restart, reset_carry=reset_carry)
    return carry, ys[::-1] if reverse else ys


# truncated_unroll's ``unroll`` argument (the scan unroll factor) shadows the function inside it.
_unroll = unroll


def truncated_unroll(
    cell: Cell,
    params: Params,
    xs: jax.Array,
    chunk_len: int,
    *,
    initial_carry: Carry | None = None,
    lengths: jax.Array | None = None,
    unroll: int | None = None,
    remat: bool = False,
    hoist: bool | None = None,
) -> Unrolled:
    """Truncated BPTT: ``unroll`` in chunks of ``chunk_len`` steps, cutting the gradient between chunks.

    The forward values equal one ``unroll`` over the whole sequence: the carry flows from chunk to
    chunk. The gradient does not (``stop_gradient`` on the carry entering each chunk), so a loss at
    step t reaches back only to the start of t's chunk. A last, shorter chunk takes the remainder
    when ``chunk_len`` does not divide the length.

    Args:
      cell, params, initial_carry: as in ``unroll``.
      xs: inputs ``[b, t, d]`` (batch-major).
      chunk_len: steps per chunk, ``k >= 1``.
      lengths: ``[b]`` true lengths of right-padded sequences.
      unroll, remat, hoist: as in ``unroll``, for each chunk. (Reading in reverse is not offered: truncated
        BPTT cuts the gradient going back in time, so chunks run in time order.)

    Returns:
      ``Unrolled(carry, outputs [b, t, h], None)``.
    """
    if chunk_len < 1:
        raise ValueError(f"chunk_len must be >= 1, got {chunk_len}")
    batch, num_steps = xs.shape[:2]
    carry = cell.init_carry(params, (batch,)) if initial_carry is None else initial_carry
    lengths = None if lengths is None else jnp.asarray(lengths)
    num_full = num_steps // chunk_len

    def run_chunk(carry, chunk, start):
        chunk_lengths = None if lengths is None else jnp.clip(lengths - start, 0, chunk.shape[1])
        result = _unroll(
            cell,
            params,
            chunk,
            initial_carry=jax.lax.stop_gradient(carry),
            lengths=chunk_lengths,
            unroll=unroll,
            remat=remat,
            hoist=hoist,
        )
        return result.carry, result.outputs

    outputs = []
    if num_full:
        full = xs[:, : num_full * chunk_len].reshape(batch, num_full, chunk_len, *xs.shape[2:])
        chunks = jnp.swapaxes(full, 0, 1)  # [n, b, k, d]
        starts = jnp.arange(num_full) * chunk_len
        carry, ys = jax.lax.scan(lambda c, inp: run_chunk(c, *inp), carry, (chunks, starts))
        outputs.append(jnp.swapaxes(ys, 0, 1).reshape(batch, num_full * chunk_len, *ys.shape[3:]))
    if num_steps % chunk_len:
        carry, ys = run_chunk(carry, xs[:, num_full * chunk_len :], num_full * chunk_len)
        outputs.append(ys)
    return Unrolled(carry, jnp.concatenate(outputs, axis=1), None)
