"""Gradient probes of a user's cell whose output is not the very carry array it returns: ``return h, h * 1.0``,
``return h, tanh(h)``, an LSTM-like ``return (h, c), h * 1.0``, a declared ``readout``, a stack; and the
gradient-flow experiment, which writes no ratio it cannot take without saying why.

Reference: ``reference.loop_carry_gradients``, jax.grad of a Python loop over the step with eps_t added to the carry
at step t and y_t computed again from the perturbed carry by the readout written here."""

import csv
from pathlib import Path

import gradient_flow
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import assert_tree_close, loop_carry_gradients, normal
from test_user_cell_edges import init_mgu, mgu_step

from seqjax import Cell, gradflow, layers
from seqjax import experiment as ex

B, T, D, H = 2, 4, 3, 3


def mgu_times_one(params, h, x):
    h, _ = mgu_step(params, h, x)
    return h, h * 1.0  # the same values as h, another array


def mgu_tanh(params, h, x):
    h, _ = mgu_step(params, h, x)
    return h, jnp.tanh(h)


def init_pair(key, input_size, hidden_size):
    return init_mgu(key, input_size, hidden_size)


def pair_step(params, carry, x):  # an LSTM-like carry (h, c): c is the MGU's state, h = tanh(c)
    _, c = carry
    c, _ = mgu_step(params, c, x)
    h = jnp.tanh(c)
    return (h, c), h * 1.0


def pair_zeros(params, batch_shape):
    return (jnp.zeros((*batch_shape, H)), jnp.zeros((*batch_shape, H)))


CASES = {  # cell, and how its output reads the (perturbed) carry, written again
    "h_times_one": (Cell(init_mgu, mgu_times_one, name="mgu_times_one"), lambda h: h * 1.0),
    "tanh_h": (Cell(init_mgu, mgu_tanh, name="mgu_tanh"), jnp.tanh),
    "declared": (Cell(init_mgu, mgu_tanh, name="mgu_readout", readout=lambda p, h, u: jnp.tanh(h)), jnp.tanh),
    "pair": (Cell(init_pair, pair_step, pair_zeros, name="pair"), lambda carry: carry[0] * 1.0),
    "stacked": (layers.stacked([Cell(init_mgu, mgu_tanh), Cell(init_mgu, mgu_times_one)]), lambda c: c[1] * 1.0),
}


@pytest.mark.parametrize("name", CASES)
def test_probe_reads_the_output_from_the_probed_carry(name):
    """dL/dcarry_t, output path included, for a loss on every output and on the last: the old probe saw the output
    path only when y_t was the carry's very array, and gave dL/dh_T = 0 for all of these."""
    cell, readout = CASES[name]
    params = cell.init_params(jax.random.key(0), D, H)
    xs, v, w = normal(1, (B, T, D)), normal(2, (B, H)), normal(3, (B, T, H))

    def loss(outputs):
        return jnp.sum(outputs[:, -1] * v) + jnp.sum(jnp.sin(outputs) * w)

    _, grads = jax.jit(lambda p, x: gradflow.carry_gradients(lambda r: loss(r.outputs), cell, p, x))(params, xs)
    reference = jax.jit(lambda p, x: loop_carry_gradients(cell, p, x, loss, readout=readout))(params, xs)
    assert_tree_close(grads, reference)


def test_an_output_that_reads_none_of_the_returned_carry_is_one_line_naming_readout():
    """y_t made apart from the carry it returns (computed again, or both from one jitted call): no probe reaches
    it, and saying dL/dh_T has no output path would be wrong for what the user meant."""

    def recomputed(params, h, x):
        new, _ = mgu_step(params, h, x)
        return new, mgu_step(params, h, x)[1]  # the same values, made by a second computation

    params, xs = init_mgu(jax.random.key(0), D, H), normal(1, (B, T, D))
    for step in (recomputed, jax.jit(mgu_times_one)):
        cell = Cell(init_mgu, step, name="mgu_apart")
        with pytest.raises(ValueError, match=r"^cell 'mgu_apart': its step's output y_t is computed from none") as e:
            gradflow.carry_gradients(lambda r: jnp.sum(r.outputs), cell, params, xs)
        assert "\n" not in str(e.value) and "readout=lambda params, carry, u" in str(e.value)
    wrong = Cell(init_mgu, mgu_step, name="mgu_wrong", readout=lambda p, h, u: h[..., :1])
    with pytest.raises(ValueError, match=r"^cell 'mgu_wrong': its readout gives .* but its step's output is"):
        gradflow.carry_gradients(lambda r: jnp.sum(r.outputs), wrong, params, xs)


def test_gradient_flow_experiment_of_a_user_cell_writes_every_ratio(tmp_path):
    """A tiny run of the cell returning h * 1.0, given by file: every ratio is a number (the old probe gave
    dL/dh_T = 0, so every ratio was NaN and the printed line said "n/a")."""
    spec = f"{Path(__file__).resolve()}:times_one_cell"
    config = gradient_flow.Config(cells=(spec,), seq_len=4, hidden=3, batch=2, train_steps=0, task="random")
    with jax.numpy_dtype_promotion("standard"):
        summary = ex.run(gradient_flow.EXPERIMENT, config, tmp_path)
    with open(tmp_path / "gradient_norms.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == config.seq_len and all(np.isfinite(float(r["ratio"])) for r in rows)
    assert float(rows[-1]["ratio"]) == 1.0 and all(r["ratio_note"] == "" for r in rows)
    snapshot = summary["settings"][0]["snapshots"][0]
    assert None not in snapshot["ratio_at_steps_back"]["hidden"].values() and "ratio_notes" not in snapshot


def test_gradient_flow_ratios_it_cannot_take_are_empty_and_say_why():
    """A last-step norm of 0 (an output no loss can feel) or not finite, or a value that is not finite: the ratio
    is empty (null in the summary) and the row, the summary and the printed line say why, in one line."""
    setting = gradient_flow.Setting("silent", 1.0, None, None)
    config = gradient_flow.Config(cells=("rnn",), seq_len=3, train_steps=0)
    zero = "no grad_norm ratio: its value at the last step is 0 (the loss does not depend on it)"
    cases = {  # norms over t -> the note of each row
        (0.0, 0.0, 0.0): [zero] * 3,
        (1.0, 2.0, np.inf): ["no grad_norm ratio: its value at the last step is inf, not finite"] * 3,
        (np.nan, 2.0, 4.0): ["no ratio: the value is nan, not finite", "", ""],
    }
    for values, notes in cases.items():
        norms = {("grad_norm", "hidden"): np.array(values)}
        rows = gradient_flow._rows(config, setting, 0, norms)
        assert [r["ratio_note"] for r in rows] == notes
        assert [r["ratio"] for r in rows] == [None if n else v / values[-1] for v, n in zip(values, notes, strict=True)]
        snapshot = gradient_flow._snapshot_summary(config, 0, {"eval_loss": 1.0}, norms, None)
        missing = {d for d, r in snapshot["ratio_at_steps_back"]["hidden"].items() if r is None}
        assert {k: n for k, n in snapshot.get("ratio_notes", {}).items()} == {
            f"hidden at T-{d}": notes[-1 - int(d)] for d in missing
        }
        line = gradient_flow._headline(snapshot)
        assert "\n" not in line and (f"hidden: {notes[0]}" in line) == (notes[0] != "")


times_one_cell = CASES["h_times_one"][0]  # the experiment's cell, by this file's path
