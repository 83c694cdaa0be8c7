"""The lecture's toy language model: a character RNN that learns "hello".

Vocabulary (h, e, l, o); inputs "hell", targets "ello" (teacher forcing); a tanh RNN with 8 hidden
units, trained with Adam on that one window. Greedy sampling from "h" then gives "ello": after "l"
the model must answer "l" the first time and "o" the second, which only its hidden state can tell.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from seqjax import train
from seqjax.models import lm, lm_training
from seqjax.models.sampling import sample

CHARS = ("h", "e", "l", "o")


def train_hello(steps: int = 300, seed: int = 0) -> tuple[lm.LMConfig, dict, float]:
    """``(config, params, final NLL per character)`` after ``steps`` Adam updates on "hello"."""
    ids = np.array([CHARS.index(c) for c in "hello"], np.int32)
    config = lm.LMConfig(vocab_size=len(CHARS), cell="rnn", num_layers=1, hidden_size=8, init_scale=0.5)
    training = train.make_training(
        lm_training.window_loss(config, bptt=4), train.optimizer("adam", 0.05), stateful=True
    )
    init_key, train_key = jax.random.split(jax.random.key(seed))
    params = lm.init_params(config, init_key)
    state = training.init(params, train_key, lm.init_carry(config, params, 1))
    step = jax.jit(training.step)
    batch = (jnp.asarray(ids[None]), jnp.int32(0), jnp.bool_(True))
    with jax.numpy_dtype_promotion("standard"):  # optax's Adam computes b ** count with an int32 count
        for _ in range(steps):
            state, metrics = step(state, batch)
    return config, state.params, float(metrics["nll_per_token"])


def greedy_continuation(config: lm.LMConfig, params: dict, prime: str, length: int) -> str:
    tokens = sample(
        config, params, jnp.asarray([CHARS.index(c) for c in prime]), jax.random.key(0), length=length, greedy=True
    )
    return "".join(CHARS[int(t)] for t in tokens)
