r"""The copy task of the minimal-LRU reference code, learned by a deep LRU network (Orvieto et al. 2023).

    python experiments/lru_copy.py --workdir=runs/lru_copy                 # the reference's settings, 4 epochs
    python experiments/lru_copy.py --train_size=2000 --epochs=2 --workdir=runs/lru_copy_small

Task (``seqjax.data.bit_copy``): a pattern of 20 steps of 7 random bits, 7 blank steps, a stop token, then the
pattern to be output on the 20 steps after it (48 steps); 20,000 training, 1,000 validation and 1,000 test
sequences drawn from --data_seed. Model (``seqjax.models.lru_stack``): a dense encoder, 4 layers of LRU -> GELU ->
dropout -> GLU -> dropout -> residual with pre-layer norm (d_model 256, LRU state 128), a dense decoder giving two
logits per bit at every step. Loss: cross-entropy per bit, averaged over the bits and the 20 masked steps.
Optimizer (``seqjax.models.lru_optimizer``): Adam at half the rate for the LRU's eigenvalues, normalisation and B,
AdamW (weight decay 0.05) for the rest, cosine from 1e-3 to 1e-7 over the run, batches of 64.

After every epoch the validation and test sets are evaluated: per-bit accuracy over the masked steps (the
reference's metric) and exact match (every bit of every recalled step right). The best-validation state is kept in
best/; results.json reports the last epoch's test numbers and the test numbers at the best validation epoch.
docs/lru_copy.md lists every difference from the reference.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from seqjax import config
from seqjax import experiment as ex
from seqjax.data import batching, bit_copy
from seqjax.models import lru_optimizer, lru_stack

EVAL_SPLITS = ("val", "test")


@config.declare
class Config:
    pattern_length: int = config.setting(bit_copy.PATTERN_LENGTH, "Steps of the pattern to recall (l).", at_least=1)
    pad_length: int = config.setting(
        bit_copy.PAD_LENGTH, "Blank steps between the pattern and the stop token (p).", at_least=0
    )
    bits: int = config.setting(bit_copy.BITS, "Bits per pattern step (k); the inputs have k + 1 channels.", at_least=1)
    train_size: int = config.setting(20000, "Training sequences (an epoch is every full batch of them).", at_least=1)
    val_size: int = config.setting(1000, "Validation sequences.", at_least=1)
    test_size: int = config.setting(1000, "Test sequences.", at_least=1)
    data_seed: int = config.setting(0, "Seed of the patterns; --seed draws the parameters, batch order and dropout.")
    d_model: int = config.setting(256, "Width of the encoder, every layer and the decoder's input (h).", at_least=1)
    state_size: int = config.setting(128, "State size of every LRU (n, complex).", at_least=1)
    num_layers: int = config.setting(4, "LRU sequence layers.", at_least=1)
    dropout: float = config.setting(
        0.1, "Dropout after the GELU and after the GLU of every layer.", at_least=0, below=1
    )
    norm: str = config.setting("layer", "Normalisation in every layer.", choices=lru_stack.NORMS)
    prenorm: bool = config.setting(True, "Normalise each layer's input (else its output, after the residual).")
    r_min: float = config.setting(0.0, "Smallest initial |lambda| of the LRUs.", at_least=0, below=1)
    r_max: float = config.setting(1.0, "Largest initial |lambda| of the LRUs.", above=0, at_most=1)
    max_phase: float = config.setting(6.28, "Largest initial phase of the LRUs' eigenvalues.", above=0)
    parallel: bool = config.setting(
        True, "Associative scan over time (else jax.lax.scan): the same values, to float rounding.", fixed=False
    )
    batch_size: int = config.setting(64, "Sequences per update.", at_least=1)
    learning_rate: float = config.setting(1e-3, "Base learning rate (AdamW group).", above=0)
    lr_factor: float = config.setting(0.5, "The LRU's nu, theta, gamma and B learn at lr_factor x the rate.", above=0)
    lr_min: float = config.setting(1e-7, "--schedule=cosine: the rate at the last update.", at_least=0)
    weight_decay: float = config.setting(0.05, "AdamW's decoupled weight decay (not on the LRU group).", at_least=0)
    schedule: str = config.setting("cosine", "Learning-rate schedule over the run.", choices=lru_optimizer.SCHEDULES)
    eval_batch_size: int = config.setting(500, "Sequences per batch when evaluating (speed only).", at_least=1,
                                          fixed=False)  # fmt: skip
    epochs: config.Epochs = config.Epochs(epochs=4)
    run: config.Run = config.Run(log_every=52, checkpoint_every=104)
    devices: config.Devices = config.Devices()

    def validate(self):
        if self.r_min >= self.r_max:
            raise config.ConfigError(f"--r_min={self.r_min} must be below --r_max={self.r_max}")
        if self.lr_min >= self.learning_rate:
            raise config.ConfigError(f"--lr_min={self.lr_min} must be below --learning_rate={self.learning_rate}")
        if self.batch_size > self.train_size:
            raise config.ConfigError(f"--batch_size={self.batch_size} exceeds --train_size={self.train_size}")


def load_data(c: Config) -> dict[str, np.ndarray]:
    """The train, val and test patterns ``{split: [size, l, k]}`` drawn from --data_seed."""
    sizes = (c.train_size, c.val_size, c.test_size)
    return bit_copy.splits(jax.random.key(c.data_seed), sizes, c.pattern_length, c.bits)


def model_config(c: Config) -> lru_stack.LRUStackConfig:
    return lru_stack.LRUStackConfig(
        input_size=c.bits + 1,
        output_size=2 * c.bits,
        d_model=c.d_model,
        state_size=c.state_size,
        num_layers=c.num_layers,
        dropout=c.dropout,
        norm=c.norm,
        prenorm=c.prenorm,
        r_min=c.r_min,
        r_max=c.r_max,
        max_phase=c.max_phase,
        parallel=c.parallel,
    )


def bit_log_probs(outputs: jax.Array) -> jax.Array:
    """``[b, t, 2k] -> [b, t, k, 2]``: the log-probabilities of 0 and 1 for every bit (outputs 2j, 2j + 1 are bit
    j's logits, as the reference reshapes its decoder's output)."""
    b, t, o = outputs.shape
    return jax.nn.log_softmax(outputs.reshape(b, t, o // 2, 2), axis=-1)


def per_sequence(outputs: jax.Array, batch: bit_copy.Batch) -> dict[str, jax.Array]:
    """Each sequence's ``loss`` (cross-entropy in nats, averaged over its bits and masked steps), ``bit_accuracy``
    (the fraction of its masked bits right) and ``exact`` (1 if all are right), ``[b]`` each."""
    log_probs = bit_log_probs(outputs)
    targets = jnp.asarray(batch.targets)
    nll = -jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]  # [b, t, k]
    right = (jnp.argmax(log_probs, axis=-1) == targets).astype(jnp.float32)  # [b, t, k]
    mask = jnp.asarray(batch.mask)
    steps = jnp.sum(mask, axis=1)

    def masked_mean(per_bit):
        return jnp.sum(mask * jnp.mean(per_bit, axis=-1), axis=1) / steps

    wrong_bits = jnp.sum(mask[..., None] * (1.0 - right), axis=(1, 2))
    exact = (wrong_bits == 0).astype(jnp.float32)
    return {"loss": masked_mean(nll), "bit_accuracy": masked_mean(right), "exact": exact}


def copy_loss(model: lru_stack.LRUStackConfig):
    """``(params, batch, key) -> (loss, {"bit_accuracy"})``: the batch's mean masked cross-entropy, with dropout."""

    def loss(params, batch: bit_copy.Batch, key):
        values = per_sequence(lru_stack.apply(model, params, jnp.asarray(batch.inputs), key), batch)
        return jnp.mean(values["loss"]), {"bit_accuracy": jnp.mean(values["bit_accuracy"])}

    return loss


@functools.cache
def evaluator(model: lru_stack.LRUStackConfig):
    """``(params, batch) -> per_sequence`` without dropout, jitted once per model."""
    return jax.jit(lambda params, batch: per_sequence(lru_stack.apply(model, params, batch.inputs), batch))


def evaluate(model: lru_stack.LRUStackConfig, params, patterns: np.ndarray, c: Config) -> dict[str, float]:
    """``{"bit_accuracy", "exact_match", "loss"}``, each the mean over every sequence of ``patterns``."""
    run = evaluator(model)
    sums = {"loss": 0.0, "bit_accuracy": 0.0, "exact": 0.0}
    for start in range(0, len(patterns), c.eval_batch_size):
        values = run(params, bit_copy.sequences(patterns[start : start + c.eval_batch_size], c.pad_length))
        for name, v in values.items():
            sums[name] += float(np.sum(np.asarray(v, np.float64)))
    n = len(patterns)
    return {"bit_accuracy": sums["bit_accuracy"] / n, "exact_match": sums["exact"] / n, "loss": sums["loss"] / n}


def describe(m: dict) -> str:
    return (
        f"val bit accuracy {m['val_bit_accuracy']:.4f}, test bit accuracy {m['test_bit_accuracy']:.4f}, "
        f"test exact match {m['test_exact_match']:.4f} (test loss {m['test_loss']:.4g})"
    )


def plan(c: Config, data: dict[str, np.ndarray]) -> ex.Plan:
    model = model_config(c)
    steps_per_epoch = c.train_size // c.batch_size
    take = lambda indices: bit_copy.sequences(data["train"][indices], c.pad_length)
    seq_len = bit_copy.sequence_length(c.pattern_length, c.pad_length)
    batches = batching.step_batches(np.full(c.train_size, seq_len), c.batch_size, c.run.seed, take, bucket=False)
    optimizer = ex.model_loss(lru_optimizer.optimizer, c.learning_rate, c.lr_factor, c.weight_decay, c.lr_min,
                              ex.total_steps(c, steps_per_epoch), c.schedule)  # fmt: skip

    def evaluate_splits(params) -> dict[str, float]:
        return {
            f"{split}_{name}": value
            for split in EVAL_SPLITS
            for name, value in evaluate(model, params, data[split], c).items()
        }

    return ex.Plan(
        params=lru_stack.init_params(model, ex.keys(c.run.seed)[0]),
        loss=ex.model_loss(copy_loss, model),
        batches=batches,
        steps_per_epoch=steps_per_epoch,
        evaluate=evaluate_splits,
        select="val_bit_accuracy",
        describe=describe,
        optimizer=optimizer,
    )


def report(c: Config, data, plan: ex.Plan, fit, out) -> dict:
    last, best = fit.history[-1], fit.best
    return {
        **ex.summary(fit, plan, sequences=c.batch_size),
        "sequence_length": bit_copy.sequence_length(c.pattern_length, c.pad_length),
        "test_bit_accuracy": last["test_bit_accuracy"],
        "test_exact_match": last["test_exact_match"],
        "best_val_epoch": best["epoch"],
        "test_bit_accuracy_at_best_val": best["test_bit_accuracy"],
        "test_exact_match_at_best_val": best["test_exact_match"],
    }


def summary(results: dict) -> str:
    return (
        f"test bit accuracy {results['test_bit_accuracy']:.4f}, exact match {results['test_exact_match']:.4f} after "
        f"{results['epochs']:g} epochs; wrote results.json"
    )


EXPERIMENT = ex.Experiment("lru_copy", Config, load=load_data, plan=plan, report=report, summary=summary)

if __name__ == "__main__":
    ex.main(EXPERIMENT)
