"""In-process A/B of ``unroll``'s two paths: the fused sequence against the scanned step.

For each cell and shape B x T x H (input size D = H), both training steps (loss = mean of the squared
outputs, gradient w.r.t. the parameters, ``jax.jit``) are compiled, then timed alternately, ``steps``
times each, so that both see the same machine state. The ratio ``scan_s / fused_s`` > 1 means the
fused sequence is faster; ``default`` is what ``seqjax.scan.fused_by_default`` picks there.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from seqjax.cells import cell_by_name
from seqjax.experiments.benchmark import inputs, parse_shape
from seqjax.scan import fused_by_default, unroll

SEED = 0


def _train_step(cell, fused: bool):
    def loss(params, xs):
        return jnp.mean(jnp.square(unroll(cell, params, xs, fused=fused).outputs))

    return jax.jit(jax.value_and_grad(loss))


def compare(cell_name: str, shape_text: str, steps: int) -> dict[str, Any]:
    """One row: the median step time of each path over ``steps`` alternating calls, after two warm-up calls."""
    shape = parse_shape(shape_text)
    cell = cell_by_name(cell_name)
    params = cell.init_params(jax.random.key(SEED), shape.input_size, shape.hidden)
    xs = jnp.asarray(inputs(shape))
    paths = {"fused": _train_step(cell, True), "scan": _train_step(cell, False)}
    for step in paths.values():
        for _ in range(2):
            jax.block_until_ready(step(params, xs))
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(steps):
        for name, step in paths.items():
            start = time.perf_counter()
            jax.block_until_ready(step(params, xs))
            times[name].append(time.perf_counter() - start)
    fused_s, scan_s = statistics.median(times["fused"]), statistics.median(times["scan"])
    default = fused_by_default(shape.batch, shape.hidden, jax.default_backend())
    return {
        "cell": cell_name,
        "shape": shape_text,
        "fused_s": fused_s,
        "scan_s": scan_s,
        "scan_over_fused": scan_s / fused_s,
        "default": "fused" if default else "scan",
        "platform": jax.default_backend(),
    }


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    header = "| cell | B x T x H | fused ms | scan ms | scan / fused | unroll's default |"
    lines = [header, "|---|---|---:|---:|---:|---|"]
    for r in rows:
        lines.append(
            f"| {r['cell']} | {r['shape']} | {1e3 * r['fused_s']:.1f} | {1e3 * r['scan_s']:.1f} | "
            f"{r['scan_over_fused']:.2f} | {r['default']} |"
        )
    return "\n".join(lines) + "\n"
