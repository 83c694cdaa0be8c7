r"""RNN vs LSTM vs GRU: the gradient norm ||dL/dh_t|| at every time step, at initialisation and in training.

    python experiments/gradient_flow.py --workdir=runs/gradient_flow
    python experiments/gradient_flow.py --linear --recurrent_scale=3,0.2 --seq_len=30 --workdir=runs/linear
    python experiments/gradient_flow.py --cells=lstm --forget_bias=0,1,3 --train_steps=0 --workdir=runs/fb
    python experiments/gradient_flow.py --cells=rnn,lstm,gru,attention --workdir=runs/gf_attention

A loss is put on the last hidden state (or on every step); one backward pass through additive zero probes gives
dL/dcarry_t for all t (both h and c for an LSTM). Each curve is the batch mean of the per-example norms divided by
||dL/dh_T||, against the distance T - t from the loss. With --train_steps > 0 every cell is also trained (Adam,
gradient clipping) on --task through the runner, in <workdir>/runs/<curve>, and measured again at
--num_snapshots points on the same evaluation batch (the measurements are the run's evaluations).

'attention' in --cells adds a single causal self-attention layer on the same inputs and measures ||dL/dx_t||
(the gradient w.r.t. the inputs) for every model, drawn in input_gradient_flow.png.

Writes into --workdir: flags.json, gradient_norms.csv (one row per curve, snapshot, carry part and time step),
summary.json (ratios at fixed distances, losses, spectral radii, the top Lyapunov exponent of each cell's
recurrence along the first evaluation sequences, ``seqjax.lyapunov``) and gradient_flow.png. A ratio that cannot
be taken (the last step's norm is 0 or not finite, or the value is not finite) is left empty in the CSV (null in
the summary), and its row's ratio_note (the summary's ratio_notes, the printed line) says why.
"""

import dataclasses
import json
import re
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from seqjax import attention, config, gradflow, initializers, lyapunov, plots, runner, workdir
from seqjax import experiment as ex
from seqjax.cells import Cell, cell_by_name, rnn
from seqjax.data import synthetic
from seqjax.scan import Unrolled, unroll

TASKS = ("adding", "adding_hochreiter", "random")
ATTENTION = "attention"  # the --cells entry of the self-attention layer
TASK_BASELINES = {
    "adding": synthetic.ADDING_LE_BASELINE_MSE,
    "adding_hochreiter": synthetic.ADDING_HOCHREITER_BASELINE_MSE,
}


def _cell_or_attention(name: str) -> None:
    if name != ATTENTION:
        cell_by_name(name)


LYAPUNOV_SEQUENCES = 4  # of the evaluation batch: the exponent is their mean


@config.declare
class Config:
    cells: tuple[str, ...] = config.cells(
        ("rnn", "lstm", "gru"),
        f"Cells to compare. {config.CELL_HELP} '{ATTENTION}' adds a causal self-attention layer and the "
        "input-gradient figure.",
        check=_cell_or_attention,
    )
    seq_len: int = config.setting(100, "Sequence length T.", at_least=2)
    hidden: int = config.setting(128, "Hidden size H.", at_least=1)
    input_size: int = config.setting(32, "Input size D of --task=random.", at_least=1)
    batch: int = config.setting(32, "Batch size (measurement and training).", at_least=1)
    recurrent_init: str = config.setting(
        "orthogonal", "Initialiser of each recurrent [H, H] block.", choices=initializers.RECURRENT_INITS
    )
    recurrent_scale: tuple[float, ...] = config.setting(
        (1.0,), "Multipliers of the recurrent init: one curve each.", above=0
    )
    spectral_radius: float = config.setting(1.0, "Target radius of --recurrent_init=gaussian.", above=0)
    forget_bias: tuple[float, ...] = config.setting((1.0,), "Initial LSTM forget-gate biases: one LSTM curve each.")
    loss: str = config.setting("last", "Loss on the last step only, or on every step.", choices=("last", "every"))
    task: str = config.setting("adding", "adding (Le et al. 2015), adding_hochreiter (1997), random.", choices=TASKS)
    train_steps: int = config.setting(300, "0: at initialisation only; N: also train N steps.", at_least=0)
    num_snapshots: int = config.setting(2, "Measurements spread over training (after step 0).", at_least=1)
    jacobian_examples: int = config.setting(
        0, "Also record ||dy_T/dcarry_t|| (Frobenius, spectral) for this many examples.", at_least=0
    )
    linear: bool = config.setting(
        False, "Lecture example: linear RNN h_t = a h_(t-1) + x_t W (W_hh = aI, a from --recurrent_scale)."
    )
    seed: int = config.setting(0, "Random seed.")
    optimization: config.Optimization = config.Optimization(learning_rate=1e-3, clip=1.0)
    devices: config.Devices = config.Devices(num_devices=1)

    def validate(self):
        if self.loss == "every" and self.task != "random":
            raise config.ConfigError("--loss=every needs --task=random (the adding problem has one target, at the end)")


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
    for i, scale in enumerate(config.recurrent_scale):
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
            biases = config.forget_bias if name.startswith("lstm") else (None,)
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


def task_loss_fn(cell: Cell | None, c: Config):
    """The training loss ``(params, (xs, targets), key) -> (mse, {})`` of a model (``cell=None``: attention)."""

    def loss_fn(params, batch, key):
        del key
        xs, targets = batch
        return output_loss(params["readout"], model_outputs(cell, params, xs), targets, c.loss), {}

    return loss_fn


def curve_dir(out: Path, setting: Setting) -> Path:
    """Where one curve's model trains: ``<workdir>/runs/<label>``."""
    return out / "runs" / re.sub(r"[^A-Za-z0-9.=_-]+", "_", setting.label)


def measure_setting(c: Config, setting: Setting, out: Path, keys, eval_batch) -> tuple[list[dict], list[float]]:
    """Trains one curve's model (if --train_steps) and measures it at every snapshot: the measurements (one per
    snapshot, ``{"step", "eval_loss", "<measure>:<part>": [t] norms}``) and the training losses, one per update."""
    init_key, train_key = keys
    params = init_attention_model(init_key, c) if setting.cell is None else init_model(setting.cell, init_key, c)
    measure_fn = jax.jit(lambda p: measure(setting.cell, c, p, *eval_batch))
    exponent_fn = None
    if setting.cell is not None:  # the top Lyapunov exponent along the first sequences' trajectories
        sequences = eval_batch[0][:LYAPUNOV_SEQUENCES]
        exponent_fn = jax.jit(lambda p: lyapunov.lyapunov_exponents(setting.cell, p["cell"], sequences)[0])

    def evaluate(params):
        loss, norms = measure_fn(params)
        radii = spectral_radii(params)
        return {
            "eval_loss": loss,
            **({} if exponent_fn is None else {"lyapunov": exponent_fn(params)}),
            **({} if radii is None else {"spectral_radii": radii}),
            **{f"{name}:{part}": v for (name, part), v in norms.items()},
        }

    training = ex.training(task_loss_fn(setting.cell, c), c.optimization, c.devices.compute_dtype, 1, c.train_steps)
    path = curve_dir(out, setting)
    fit = runner.fit(
        training,
        training.init(params, train_key),
        lambda step: task_batch(c, jax.random.fold_in(train_key, step)),  # drawn inside the jitted steps
        c.train_steps,
        path,
        evaluation=runner.Evaluation(evaluate, at=tuple(snapshot_steps(c))),
        options=runner.Options(
            log_every=1,  # every update's loss: the learning curves
            checkpoint_every=0,
            tensorboard=False,
            steps_per_call=max(c.train_steps, 1),
            progress=False,
            mesh=ex.mesh(c, "batch"),
            shard_params_over=c.devices.shard_params_over,
        ),
    )
    losses = []
    if c.train_steps:
        losses = [json.loads(line)["loss"] for line in (path / "metrics.jsonl").read_text().splitlines()]
    return fit.history, losses


def norms_of(measurement: dict) -> dict[tuple[str, str], np.ndarray]:
    """A measurement's ``{(measure, part): [t] norms}``."""
    return {tuple(k.split(":", 1)): np.asarray(v) for k, v in measurement.items() if ":" in k}


def run(c: Config, _, out: Path) -> dict:
    """Measures (and trains) every setting; writes the CSV, summary and figure; returns the summary."""
    print(f"gradient flow: {', '.join(s.label for s in settings(c))} on {c.task}, T={c.seq_len}", flush=True)
    key = jax.random.key(c.seed)
    init_key, eval_key, train_key = (jax.random.fold_in(key, i) for i in range(3))
    eval_batch = task_batch(c, eval_key)
    snapshots = snapshot_steps(c)
    rows, summary, learning_curves = [], {"settings": []}, []
    started = time.perf_counter()
    with ex.claimed(EXPERIMENT, c, out):
        for setting in settings(c):
            history, losses = measure_setting(c, setting, out, (init_key, train_key), eval_batch)
            record = {"label": setting.label, "snapshots": []}
            for measurement in history:
                step, norms, radii = measurement["step"], norms_of(measurement), measurement.get("spectral_radii")
                record["snapshots"].append(_snapshot_summary(c, step, measurement, norms, radii))
                rows.extend(_rows(c, setting, step, norms))
            if losses:
                learning_curves.append(
                    plots.Curve(setting.label, np.arange(1, len(losses) + 1), np.array(losses), setting.label)
                )
                record["final_train_loss"] = float(np.mean(losses[-10:]))
            summary["settings"].append(record)
            print(f"  {setting.label:<24} " + "  ".join(_headline(s) for s in record["snapshots"]), flush=True)
        summary["wall_time_s"] = round(time.perf_counter() - started, 2)
        summary["task_baseline_mse"] = TASK_BASELINES.get(c.task)
        _write_outputs(c, out, rows, summary, learning_curves, snapshots)
    return summary


def _reference(norms, measure_name: str) -> tuple[float, str]:
    """The normaliser of a measure's curves, its largest last-step value over the carry parts, and "" or why it
    cannot divide (then every ratio of that measure is left empty, and the reason is written where it would be).

    For the built-in cells this is ||dL/dh_T||; an LSTM's dL/dc_T is 0 when the loss reads h_T only.
    """
    last = max(float(v[-1]) for (name, _), v in norms.items() if name == measure_name)
    if not np.isfinite(last):
        return last, f"no {measure_name} ratio: its value at the last step is {last}, not finite"
    if last == 0:
        return last, f"no {measure_name} ratio: its value at the last step is 0 (the loss does not depend on it)"
    return last, ""


def _ratio(value: float, last: float, reason: str) -> tuple[float | None, str]:
    """``value / last``, or None and why not: the measure's reason (``_reference``), or a value that is not finite."""
    if reason:
        return None, reason
    if not np.isfinite(value):
        return None, f"no ratio: the value is {value}, not finite"
    return value / last, ""


def _rows(config: Config, setting: Setting, step: int, norms) -> list[dict]:
    rows = []
    for (measure_name, part), values in norms.items():
        values = np.asarray(values, dtype=np.float64)
        last, reason = _reference(norms, measure_name)
        for t, value in enumerate(values):
            ratio, note = _ratio(float(value), last, reason)
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
                    "ratio": ratio,  # None (an empty field) where ratio_note says why
                    "ratio_note": note,
                }
            )
    return rows


def _snapshot_summary(config: Config, step: int, measurement: dict, norms, radii: list[float] | None) -> dict:
    distances = sorted({d for d in (10, 50, config.seq_len - 1) if d < config.seq_len})
    ratios, input_ratios, notes = {}, {}, {}
    for (measure_name, part), values in norms.items():
        if measure_name not in ("grad_norm", "input_grad"):
            continue
        values = np.asarray(values, dtype=np.float64)
        last, reason = _reference(norms, measure_name)
        at = {str(d): _ratio(float(values[-1 - d]), last, reason) for d in distances}
        (ratios if measure_name == "grad_norm" else input_ratios)[part] = {d: r for d, (r, _) in at.items()}
        notes.update({f"{part} at T-{d}": note for d, (_, note) in at.items() if note})
    summary = {
        "train_step": step,
        "eval_loss": measurement["eval_loss"],
        "ratio_at_steps_back": ratios,
        "spectral_radii": radii,
    }
    if "lyapunov" in measurement:
        summary["lyapunov_exponent"] = measurement["lyapunov"]
    if input_ratios:
        summary["input_ratio_at_steps_back"] = input_ratios["input"]
    if notes:  # a null ratio above, and why
        summary["ratio_notes"] = notes
    return summary


def _headline(snapshot: dict) -> str:
    parts = []
    named = dict(snapshot["ratio_at_steps_back"])
    if "input_ratio_at_steps_back" in snapshot:
        named["x"] = snapshot["input_ratio_at_steps_back"]
    notes = snapshot.get("ratio_notes", {})
    for part, ratios in named.items():
        d = max(int(k) for k in ratios if int(k) <= 50)
        value = ratios[str(d)]
        note = notes.get(f"{'input' if part == 'x' else part} at T-{d}", "")
        parts.append(f"{part}[T-{d}]/[T]={value:.2e}" if value is not None else f"{part}: {note}")
    if "lyapunov_exponent" in snapshot:
        parts.append(f"lyapunov {snapshot['lyapunov_exponent']:+.3f}")
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
            for scale in config.recurrent_scale:
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
    """Max relative error of the measured ratio against a^(T-t), over the steps where a^(T-t) fits float32; None
    where one of those ratios is missing (its row's ratio_note says why)."""
    errors = {}
    for scale in config.recurrent_scale:
        selected = [r for r in rows if r["recurrent_scale"] == scale and r["measure"] == "grad_norm"]
        worst = 0.0
        for r in selected:
            expected = float(scale) ** r["steps_back"]
            if not 1e-30 < expected < 1e30:
                continue
            if r["ratio"] is None:
                worst = None
                break
            worst = max(worst, abs(r["ratio"] - expected) / expected)
        errors[f"{scale:g}"] = worst
    return errors


def report_line(summary: dict) -> str:
    line = f"wrote gradient_flow.png, gradient_norms.csv and summary.json ({summary['wall_time_s']:.1f} s)"
    if "closed_form_max_rel_error" in summary:
        line += f"\nclosed form a^(T-t): max relative error {summary['closed_form_max_rel_error']}"
    return line


EXPERIMENT = ex.Experiment("gradient_flow", Config, load=lambda c: None, run=run, summary=report_line)

if __name__ == "__main__":
    ex.main(EXPERIMENT)
