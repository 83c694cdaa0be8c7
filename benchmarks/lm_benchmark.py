"""The language model's training step as benchmark rows: seqjax against PyTorch's word_language_model recipe.

One step of a ``language_model.py`` preset on random tokens (B streams x bptt steps, vocabulary V: Penn
Treebank's 10k words, or tiny Shakespeare's 65 characters for ``char_rnn``): embedding -> stacked LSTM ->
softmax cross-entropy summed over the window and averaged over the batch, its gradient, global-norm clipping and
the preset's optimizer (SGD; Adam for ``char_rnn``). seqjax runs the experiment's own jitted step
(``make_lm_training``, the carry handed on in ``TrainState.model_state``) as the runner calls it on an update
it does not log (``diagnose=False``: no parameter and update norms, as PyTorch's recipe computes none); PyTorch
runs ``nn.Embedding``, ``nn.LSTM`` and ``nn.Linear`` with ``clip_grad_norm_`` and ``torch.optim.SGD`` (or
``Adam``), carrying the detached state, as its word_language_model example does. Dropout, where the preset has
it, sits at the same places in both: the embeddings, between the layers and on the top layer's outputs. Each
runs in its own subprocess (the benchmark's worker).

FLOPs count the matrix products: per token and layer ``2 (e or h + h) 4h`` forward for the LSTM and
``2 h V`` for the output layer, times 3 for forward plus backward.
"""

from __future__ import annotations

from typing import Any

from harness import sibling_experiments

from seqjax import config as config_lib

sibling_experiments()
from language_model import PRESETS, Config, training_step  # noqa: E402  (experiments/language_model.py's own step)

LM_VOCAB = 10_000  # Penn Treebank's words
CHAR_VOCAB = 65  # tiny Shakespeare's characters
LM_PRESETS = ("zaremba_small", "zaremba_medium", "zaremba_large", "char_rnn")


def lm_vocab(preset: str) -> int:
    """The vocabulary the preset trains on: PTB's 10k words, or tiny Shakespeare's 65 characters."""
    return CHAR_VOCAB if lm_config(preset).corpus == "chars" else LM_VOCAB


def lm_config(preset: str) -> Config:
    return config_lib.build(Config, PRESETS[preset])


def lm_shape(preset: str) -> str:
    config = lm_config(preset)
    return f"{config.batch_size}x{config.bptt}x{config.hidden}"


def lm_step_flops(preset: str) -> int:
    config = lm_config(preset)
    tokens, h = config.batch_size * config.bptt, config.hidden
    e = config.embed or h
    lstm = sum(2 * ((e if layer == 0 else h) + h) * 4 * h for layer in range(config.num_layers))
    return 3 * tokens * (lstm + 2 * h * lm_vocab(preset))


def build_lm_specs(presets, impls, steps: int, warmup: int, budget_s: float) -> list[dict[str, Any]]:
    specs = []
    for preset in presets:
        base = {"cell": f"lm {preset}", "shape": lm_shape(preset), "preset": preset, "steps": steps, "warmup": warmup,
                "budget_s": budget_s}  # fmt: skip
        if "seqjax" in impls:
            specs.append({**base, "impl": "seqjax_lm", "label": "seqjax language_model.py step"})
        if "torch" in impls:
            specs.append({**base, "impl": "torch_lm", "label": "torch word_language_model step"})
    return specs


def _tokens(config: Config, vocab: int = LM_VOCAB):
    import numpy as np

    rng = np.random.default_rng(0)
    return rng.integers(0, vocab, size=(config.batch_size, 8 * config.bptt + 1), dtype=np.int32)


def seqjax_lm_step(config: Config, vocab: int):
    """``(step, updates)``: ``step() -> loss`` runs the next ``updates`` updates of ``config``'s own jitted training
    step over eight windows of random tokens in turn (the state donated and kept), as the runner runs updates it
    does not log: one call of ``--steps_per_call`` updates (a ``lax.scan`` inside it when more than one)."""
    import jax.numpy as jnp

    from seqjax import runner

    training, initial = training_step(config, vocab, steps_per_epoch=8)
    streams = jnp.asarray(_tokens(config, vocab))  # [b, 8 * bptt + 1]: eight windows
    updates = config.run.steps_per_call

    def batches(k):
        index = k % 8
        return streams, jnp.int32(index), jnp.bool_(index == 0)

    never = 2**31 - 1  # no update of these is logged (nor the last of the run)
    call = runner.step_function(training, batches, runner.Options(log_every=never, steps_per_call=updates), never)
    held = {"state": initial, "done": 0}

    def step():
        held["state"], metrics = call(held["state"], held["done"], updates)
        held["done"] += updates
        return metrics["loss"]

    return step, updates


def measure_seqjax_lm(spec: dict[str, Any], time_steps) -> dict[str, Any]:
    import jax

    step, updates = seqjax_lm_step(lm_config(spec["preset"]), lm_vocab(spec["preset"]))
    first, times = time_steps(step, jax.block_until_ready, spec["steps"], spec["warmup"], spec["budget_s"])
    device = jax.devices()[0]
    return {
        "first_call_s": first,
        "step_times_s": [t / updates for t in times],  # per update
        "updates_per_call": updates,
        "loss": float(jax.numpy.mean(step())),
        "platform": device.platform,
        "device": f"{device.platform}:{device.device_kind}",
        "framework_version": jax.__version__,
    }


def measure_torch_lm(spec: dict[str, Any], time_steps, threads: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    config = lm_config(spec["preset"])
    h, e = config.hidden, config.embed or config.hidden
    vocab = lm_vocab(spec["preset"])
    embedding = torch.nn.Embedding(vocab, e)
    lstm = torch.nn.LSTM(e, h, num_layers=config.num_layers, batch_first=True, dropout=config.dropout)
    output = torch.nn.Linear(h, vocab)
    modules = torch.nn.ModuleList([embedding, lstm, output])
    for p in modules.parameters():
        torch.nn.init.uniform_(p, -config.init_scale, config.init_scale)
    optimizers = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}
    optimizer = optimizers[config.optimization.optimizer](modules.parameters(), lr=config.optimization.learning_rate)
    streams = torch.from_numpy(_tokens(config, vocab)).long()
    carry = {"k": 0, "state": None}

    def step():
        k = carry["k"] % 8
        carry["k"] += 1
        window = streams[:, k * config.bptt : (k + 1) * config.bptt + 1]
        state = None if k == 0 else tuple(s.detach() for s in carry["state"])
        optimizer.zero_grad(set_to_none=True)
        outputs, carry["state"] = lstm(torch.nn.functional.dropout(embedding(window[:, :-1]), config.dropout), state)
        logits = output(torch.nn.functional.dropout(outputs, config.dropout))
        nll = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), window[:, 1:].reshape(-1), reduction="sum")
        loss = nll / config.batch_size  # summed over the window, averaged over the batch
        loss.backward()
        torch.nn.utils.clip_grad_norm_(modules.parameters(), config.optimization.clip)
        optimizer.step()
        return loss

    first, times = time_steps(step, lambda loss: loss, spec["steps"], spec["warmup"], spec["budget_s"])
    return {
        "first_call_s": first,
        "step_times_s": times,
        "loss": float(step().item()),
        "platform": "cpu",
        "device": "cpu",
        "framework_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
