"""The gradient-flow experiment: RNN vs LSTM vs GRU gradient norms ||dL/dh_t|| across time.

A loss is put on the last hidden state (or on every step); one backward pass through additive zero
probes gives dL/dcarry_t for all t (both h and c for an LSTM). Each curve is the batch mean of the
per-example norms divided by ||dL/dh_T||, against the distance T - t from the loss. With
``train_steps > 0`` the cells are also trained (Adam, gradient clipping) on the task and measured
again at ``num_snapshots`` points, on the same evaluation batch.

``run(config, workdir)`` writes flags.json, gradient_norms.csv (one row per curve, snapshot, carry
part and time step), summary.json (ratios at fixed distances, losses, spectral radii) and
gradient_flow.png. The command-line entry point is ``experiments/gradient_flow.py``.

Attention vs recurrence (opt-in): ``"attention"`` among the cells adds a single causal self-attention
layer reading the same inputs (``attention_outputs``), with the same readout, loss and training. It
has no carry, so for every model the gradient with respect to the *inputs*, ||dL/dx_t||, is measured
too (measure ``input_grad`` in the CSV, ``input_ratio_at_steps_back`` in the summary) and drawn in
``input_gradient_flow.png``; the dL/dh_t curves of the recurrent cells are unchanged. Without
``"attention"`` nothing of this is computed and the outputs are exactly as before.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from seqjax import attention, gradflow, initializers, parallel, plots, train, workdir
from seqjax.cells import Cell, cell_by_name, rnn
from seqjax.data import synthetic
from seqjax.scan import Unrolled, unroll

TASKS = ("adding", "adding_hochreiter", "random")
ATTENTION = "attention"  # the --cells entry of the self-attention layer
TASK_BASELINES = {
    "adding": synthetic.ADDING_LE_BASELINE_MSE,
    "adding_hochreiter": synthetic.ADDING_HOCHREITER_BASELINE_MSE,
}


@dataclasses.dataclass(frozen=True)
class Config:
    cells: tuple[str, ...] = ("rnn", "lstm", "gru")
    seq_len: int = 100
    hidden: int = 128
    input_size: int = 32
    batch: int = 32
    recurrent_init: str = "orthogonal"
    recurrent_scales: tuple[float, ...] = (1.0,)
    spectral_radius: float = 1.0
    forget_biases: tuple[float, ...] = (1.0,)
    loss: str = "last"
    task: str = "adding"
    train_steps: int = 300
    num_snapshots: int = 2
    learning_rate: float = 1e-3
    clip: float = 1.0
    jacobian_examples: int = 0
    linear: bool = False
    num_devices: int = 1  # train data-parallel over this many devices (the batch must split); 0: all visible
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class Setting:
    """One curve family: a cell with one recurrent scale (and one forget bias, for LSTMs), or the
    self-attention layer (``cell_name == ATTENTION``, ``cell`` None)."""

    cell_name: str
    recurrent_scale: float
    forget_bias: float | None
    cell: Cell | None

    @property
    def label(self) -> str:
        parts = [self.cell_name if self.cell_name != "linear" else "linear RNN"]
        if self.recurrent_scale != 1.0 or self.cell_name == "linear":
            parts.append(f"x{self.recurrent_scale:g}")
        if self.forget_bias is not None:
            parts.append(f"b_f={self.forget_bias:g}")
        return " ".join(parts)


def settings(config: Config) -> list[Setting]:
    """The curves to draw: every cell x scale, and LSTMs also x forget bias; attention (no recurrent
    weights to scale) once."""
    result = []
    for i, scale in enumerate(config.recurrent_scales):
        if config.linear:
            init = initializers.recurrent_init("identity", scale)
            result.append(Setting("linear", scale, None, rnn("identity", recurrent_init=init)))
            continue
        init = initializers.recurrent_init(config.recurrent_init, scale, config.spectral_radius)
        for name in config.cells:
            if name == ATTENTION:
                if i == 0:
                    result.append(Setting(ATTENTION, 1.0, None, None))
                continue
            biases = config.forget_biases if name.startswith("lstm") else (None,)
            for bias in biases:
                cell = cell_by_name(name, init, forget_bias=1.0 if bias is None else bias)
                result.append(Setting(name, scale, bias, cell))
    return result


def task_input_size(config: Config) -> int:
    return config.input_size if config.task == "random" else 2


def task_batch(config: Config, key):
    """``(xs [b, t, d], targets)`` for the configured task."""
    if config.task == "random":
        return synthetic.random_inputs(key, config.batch, config.seq_len, config.input_size, 1, config.loss == "every")
    variant = "le" if config.task == "adding" else "hochreiter"
    return synthetic.adding_problem(key, config.batch, config.seq_len, variant)


def init_model(cell: Cell, key, config: Config):
    """Cell params plus a linear readout ``h -> 1``."""
    k_cell, k_out = jax.random.split(key)
    readout = initializers.lecun_normal(k_out, (config.hidden, 1))
    return {"cell": cell.init_params(k_cell, task_input_size(config), config.hidden), "readout": readout}


def init_attention_model(key, config: Config):
    """Params of ``attention_outputs`` plus the same linear readout ``h -> 1`` as ``init_model``.

    ``input``: ``[d -> h]`` dense, ``attention``: one head of size h (``attention.init_multi_head``),
    Glorot-uniform kernels and zero biases.
    """
    k_input, k_attention, k_out = jax.random.split(key, 3)
    return {
        "input": attention.init_dense(k_input, task_input_size(config), config.hidden),
        "attention": attention.init_multi_head(k_attention, config.hidden, num_heads=1),
        "readout": initializers.lecun_normal(k_out, (config.hidden, 1)),
    }


def attention_outputs(params, xs: jax.Array) -> jax.Array:
    """A single causal self-attention layer with a residual connection over the inputs ``[b, t, d]``.

        z_t = x_t W_in + b_in + PE_t                     PE: sinusoidal positions, [t, h]
        a_t = sum_{s <= t} softmax_s(q_t . k_s / sqrt(h)) v_s,   q, k, v = z W_q + b_q, z W_k + b_k, z W_v + b_v
        y_t = z_t + a_t W_o + b_o                        [b, t, h]

    Every x_s (s <= t) reaches y_t through one attention weight, whatever t - s: no product of
    per-step Jacobians as in a recurrence.
    """
    z = attention.dense(params["input"], xs)  # [b, t, h]
    z = z + jnp.broadcast_to(attention.sinusoidal_positions(z.shape[1], z.shape[2]), z.shape)
    attended, _ = attention.multi_head_attention(params["attention"], z, z, attention.causal_mask(z.shape[1]))
    return z + attended


def model_outputs(cell: Cell | None, params, xs: jax.Array) -> jax.Array:
    """``[b, t, h]``: the unrolled cell's outputs, or the attention layer's for ``cell=None``."""
    return attention_outputs(params, xs) if cell is None else unroll(cell, params["cell"], xs).outputs


def output_loss(readout, outputs: jax.Array, targets, loss: str):
    """Mean squared error of a linear readout of the last output ``[b, h]`` or of every output ``[b, t, h]``."""
    outputs = outputs[:, -1] if loss == "last" else outputs
    return jnp.mean(jnp.square(outputs @ readout - targets))


def task_loss(readout, unrolled: Unrolled, targets, loss: str):
    """``output_loss`` of an unrolled cell."""
    return output_loss(readout, unrolled.outputs, targets, loss)


def measure(cell: Cell | None, config: Config, params, xs, targets):
    """Batch-mean ``||dL/dcarry_t||`` per carry part ``{part: [t]}``, the loss, and optional Jacobian norms;
    with attention requested also ``||dL/dx_t||`` (``("input_grad", "input")``), the only measure of
    the attention layer (``cell=None``)."""
    result = {}
    if ATTENTION in config.cells:

        def loss_of_inputs(inputs):
            return output_loss(params["readout"], model_outputs(cell, params, inputs), targets, config.loss)

        loss, input_grads = gradflow.input_gradients(loss_of_inputs, xs)
        result[("input_grad", "input")] = gradflow.mean_over_batch(gradflow.step_norms(input_grads))
    if cell is None:
        return loss, result

    def loss_fn(unrolled):
        return task_loss(params["readout"], unrolled, targets, config.loss)

    loss, grads = gradflow.carry_gradients(loss_fn, cell, params["cell"], xs)
    carry_norms = gradflow.mean_over_batch(gradflow.step_norms(grads))
    result = {("grad_norm", part): v for part, v in _by_part(carry_norms)} | result
    if config.jacobian_examples:
        jacobians = gradflow.final_output_jacobians(cell, params["cell"], xs[: config.jacobian_examples])
        frobenius, spectral = gradflow.jacobian_norms(jacobians)
        for name, norms in (("jacobian_frobenius", frobenius), ("jacobian_spectral", spectral)):
            result.update({(name, part): v for part, v in _by_part(gradflow.mean_over_batch(norms))})
    return loss, result


def _by_part(tree) -> list[tuple[str, jax.Array]]:
    """Names the leaves of a carry-shaped pytree: 'hidden', 'cell' for an LSTM, paths for others."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [(jax.tree_util.keystr(path).lstrip(".") or "hidden", leaf) for path, leaf in leaves]


def make_train_segment(cell: Cell | None, config: Config, mesh: Mesh | None = None):
    """``seqjax.train`` with Adam and global-norm clipping, and a jitted function running ``n`` steps
    with ``lax.scan``; the batch of step k is drawn from ``fold_in(state.key, k)``. With a ``mesh`` (and the
    state laid out by ``parallel.place_state``) each drawn batch is split by rows over its devices: data
    parallel, the same steps as one device."""
    clipping = train.Clipping("global_norm", config.clip) if config.clip > 0 else train.Clipping()

    def loss_fn(params, batch, key):
        del key
        xs, targets = batch
        return output_loss(params["readout"], model_outputs(cell, params, xs), targets, config.loss), {}

    training = train.make_training(loss_fn, train.optimizer("adam", config.learning_rate), clipping)

    def segment(state: train.TrainState, num_steps: int):
        def body(state, _):
            batch = task_batch(config, jax.random.fold_in(state.key, state.step))
            if mesh is not None:
                batch = jax.lax.with_sharding_constraint(batch, parallel.by_rows(mesh))
            state, metrics = training.step(state, batch)
            return state, metrics["loss"]

        return jax.lax.scan(body, state, None, length=num_steps)

    return training, jax.jit(segment, donate_argnums=0, static_argnums=1)


def snapshot_steps(config: Config) -> list[int]:
    if config.train_steps == 0:
        return [0]
    points = np.linspace(0, config.train_steps, config.num_snapshots + 1).round().astype(int)
    return sorted(set(points.tolist()))


def spectral_radii(params) -> list[float] | None:
    """Spectral radius of each recurrent gate block, for cells that store ``w_hh``."""
    cell_params = params.get("cell")
    if not isinstance(cell_params, dict) or "w_hh" not in cell_params:
        return None
    return [float(r) for r in gradflow.block_spectral_radii(cell_params["w_hh"])]


def run(config: Config, out_dir: str | Path) -> dict:
    """Measures (and trains) every setting; writes the CSV, summary and figure; returns the summary."""
    mesh = parallel.mesh_for(config.num_devices, config.batch)  # before the claim: a bad count writes nothing
    # Nothing here resumes (each run recomputes everything), so no flag is fixed: a rerun overwrites.
    out_dir = workdir.claim(out_dir, "gradient_flow", dataclasses.asdict(config))
    key = jax.random.key(config.seed)
    init_key, eval_key, train_key = (jax.random.fold_in(key, i) for i in range(3))
    eval_xs, eval_targets = task_batch(config, eval_key)
    snapshots = snapshot_steps(config)
    rows, summary, learning_curves = [], {"settings": []}, []
    started = time.perf_counter()
    for setting in settings(config):
        if setting.cell is None:
            params = init_attention_model(init_key, config)
        else:
            params = init_model(setting.cell, init_key, config)
        measure_fn = jax.jit(lambda p, cell=setting.cell: measure(cell, config, p, eval_xs, eval_targets))
        training, segment = make_train_segment(setting.cell, config, mesh)
        state = training.init(params, train_key)
        if mesh is not None:
            state = parallel.place_state(state, mesh)
        losses, record = [], {"label": setting.label, "snapshots": []}
        done = 0
        for step in snapshots:
            if step > done:
                state, segment_losses = segment(state, step - done)
                losses.extend(np.asarray(segment_losses).tolist())
                done = step
            eval_loss, norms = measure_fn(state.params)
            record["snapshots"].append(_snapshot_summary(config, step, float(eval_loss), norms, state.params))
            rows.extend(_rows(config, setting, step, norms))
        if losses:
            learning_curves.append(
                plots.Curve(setting.label, np.arange(1, len(losses) + 1), np.array(losses), setting.label)
            )
            record["final_train_loss"] = float(np.mean(losses[-10:]))
        summary["settings"].append(record)
        print(f"  {setting.label:<24} " + "  ".join(_headline(s) for s in record["snapshots"]), flush=True)
    summary["wall_time_s"] = round(time.perf_counter() - started, 2)
    summary["task_baseline_mse"] = TASK_BASELINES.get(config.task)
    _write_outputs(config, out_dir, rows, summary, learning_curves, snapshots)
    return summary


def _reference(norms, measure_name: str) -> float:
    """The normaliser of a measure's curves: its largest last-step value over the carry parts.

    For the built-in cells this is ||dL/dh_T||; an LSTM's dL/dc_T is 0 when the loss reads h_T only.
    """
    return max(float(v[-1]) for (name, _), v in norms.items() if name == measure_name)


def _rows(config: Config, setting: Setting, step: int, norms) -> list[dict]:
    rows = []
    for (measure_name, part), values in norms.items():
        values = np.asarray(values, dtype=np.float64)
        last = _reference(norms, measure_name)
        for t, value in enumerate(values):
            rows.append(
                {
                    "cell": setting.cell_name,
                    "label": setting.label,
                    "recurrent_scale": setting.recurrent_scale,
                    "forget_bias": "" if setting.forget_bias is None else setting.forget_bias,
                    "train_step": step,
                    "measure": measure_name,
                    "carry": part,
                    "t": t,
                    "steps_back": config.seq_len - 1 - t,
                    "value": value,
                    "ratio": value / last if last > 0 else float("nan"),
                }
            )
    return rows


def _snapshot_summary(config: Config, step: int, eval_loss: float, norms, params) -> dict:
    distances = sorted({d for d in (10, 50, config.seq_len - 1) if d < config.seq_len})
    ratios, input_ratios = {}, {}
    for (measure_name, part), values in norms.items():
        if measure_name not in ("grad_norm", "input_grad"):
            continue
        values = np.asarray(values, dtype=np.float64)
        last = _reference(norms, measure_name)
        at = {str(d): float(values[-1 - d] / last) if last > 0 else None for d in distances}
        (ratios if measure_name == "grad_norm" else input_ratios)[part] = at
    summary = {
        "train_step": step,
        "eval_loss": eval_loss,
        "ratio_at_steps_back": ratios,
        "spectral_radii": spectral_radii(params),
    }
    if input_ratios:
        summary["input_ratio_at_steps_back"] = input_ratios["input"]
    return summary


def _headline(snapshot: dict) -> str:
    parts = []
    named = dict(snapshot["ratio_at_steps_back"])
    if "input_ratio_at_steps_back" in snapshot:
        named["x"] = snapshot["input_ratio_at_steps_back"]
    for part, ratios in named.items():
        d = max(int(k) for k in ratios if int(k) <= 50)
        value = ratios[str(d)]
        parts.append(f"{part}[T-{d}]/[T]={value:.2e}" if value is not None else f"{part}: n/a")
    return f"step {snapshot['train_step']:>5}: loss {snapshot['eval_loss']:.4f} " + " ".join(parts)


def _write_outputs(config: Config, out_dir: Path, rows, summary, learning_curves, snapshots) -> None:
    workdir.write_csv(out_dir / "gradient_norms.csv", rows)
    if config.linear:
        summary["closed_form_max_rel_error"] = _closed_form_error(config, rows)
    workdir.write_json(out_dir / "summary.json", summary)
    panels = []
    for step in snapshots:
        curves = []
        for label in dict.fromkeys(r["label"] for r in rows if r["measure"] == "grad_norm"):
            parts = dict.fromkeys(r["carry"] for r in rows if r["label"] == label and r["measure"] == "grad_norm")
            for part in sorted(parts, key=lambda p: p != "hidden"):
                selected = [
                    r
                    for r in rows
                    if r["label"] == label
                    and r["carry"] == part
                    and r["train_step"] == step
                    and r["measure"] == "grad_norm"
                ]
                name = label if part == "hidden" else f"{label} ({part})"
                style = "-" if part == "hidden" else "--"
                curves.append(
                    plots.Curve(
                        name,
                        np.array([r["steps_back"] for r in selected]),
                        np.array([r["ratio"] for r in selected]),
                        label,
                        style,
                    )
                )
        if config.linear:
            for scale in config.recurrent_scales:
                distance = np.arange(config.seq_len)
                curves.append(
                    plots.Curve(
                        f"a^(T-t), a={scale:g}", distance, float(scale) ** distance, f"linear RNN x{scale:g}", ":"
                    )
                )
        title = "at initialisation" if step == 0 else f"after {step} training steps"
        panels.append((title, curves))
    title = (
        f"task={config.task}, loss={config.loss}, T={config.seq_len}, H={config.hidden}, "
        f"init={'identity' if config.linear else config.recurrent_init}, batch mean of {config.batch} examples"
    )
    plots.gradient_flow_figure(
        panels,
        out_dir / "gradient_flow.png",
        learning_curves=learning_curves,
        baseline=TASK_BASELINES.get(config.task),
        title=title,
    )
    if any(r["measure"] == "input_grad" for r in rows):
        plots.gradient_flow_figure(
            _input_gradient_panels(rows, snapshots),
            out_dir / INPUT_FIGURE,
            ylabel="||dL/dx_t|| / ||dL/dx_T||",
            title=f"gradient w.r.t. the inputs, same inputs for every model; {title}",
        )


INPUT_FIGURE = "input_gradient_flow.png"


def _input_gradient_panels(rows, snapshots) -> list[tuple[str, list[plots.Curve]]]:
    """One panel per snapshot: ``||dL/dx_t|| / ||dL/dx_T||`` against T - t, one curve per model."""
    panels = []
    for step in snapshots:
        curves = []
        measured = [r for r in rows if r["measure"] == "input_grad" and r["train_step"] == step]
        for label in dict.fromkeys(r["label"] for r in measured):
            selected = [r for r in measured if r["label"] == label]
            x = np.array([r["steps_back"] for r in selected])
            curves.append(plots.Curve(label, x, np.array([r["ratio"] for r in selected]), label))
        panels.append(("at initialisation" if step == 0 else f"after {step} training steps", curves))
    return panels


def _closed_form_error(config: Config, rows) -> dict:
    """Max relative error of the measured ratio against a^(T-t), over the steps where a^(T-t) fits float32."""
    errors = {}
    for scale in config.recurrent_scales:
        selected = [r for r in rows if r["recurrent_scale"] == scale and r["measure"] == "grad_norm"]
        worst = 0.0
        for r in selected:
            expected = float(scale) ** r["steps_back"]
            if 1e-30 < expected < 1e30:
                worst = max(worst, abs(r["ratio"] - expected) / expected)
        errors[f"{scale:g}"] = float(worst)
    return errors
