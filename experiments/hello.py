r"""The lecture's toy language model: a character RNN learns "hello", then continues "h" greedily.

    python experiments/hello.py                          # into runs/hello
    python experiments/hello.py --workdir=runs/hello_gru --cell=gru

Vocabulary (h, e, l, o); inputs "hell", targets "ello" (teacher forcing); a tanh RNN with 8 hidden units trained
with Adam on that one window. Greedy sampling from "h" then gives "ello": after "l" the model must answer "l" the
first time and "o" the second, which only its hidden state can tell.
"""

import jax
import jax.numpy as jnp
import numpy as np

from seqjax import config
from seqjax import experiment as ex
from seqjax.models import lm, lm_training
from seqjax.models.sampling import sample

CHARS = ("h", "e", "l", "o")


@config.declare
class Config:
    cell: str = config.cell("rnn")
    hidden: int = config.setting(8, "Hidden size.", at_least=1)
    optimization: config.Optimization = config.Optimization(learning_rate=0.05, clip=0.0)
    epochs: config.Epochs = config.Epochs(epochs=300)  # one window an epoch: an epoch is one update
    run: config.Run = config.Run(log_every=50)


def model_config(c: Config) -> lm.LMConfig:
    return lm.LMConfig(vocab_size=len(CHARS), cell=c.cell, num_layers=1, hidden_size=c.hidden, init_scale=0.5)


def continuation(model: lm.LMConfig, params, prime: str = "h", length: int = 4) -> str:
    """The greedy continuation of ``prime``."""
    tokens = sample(
        model, params, jnp.asarray([CHARS.index(ch) for ch in prime]), jax.random.key(0), length=length, greedy=True
    )
    return "".join(CHARS[int(t)] for t in tokens)


def plan(c: Config, _) -> ex.Plan:
    model = model_config(c)
    params = lm.init_params(model, ex.keys(c.run.seed)[0])
    window = (jnp.asarray(np.array([[CHARS.index(ch) for ch in "hello"]], np.int32)), jnp.int32(0), jnp.bool_(True))
    return ex.Plan(
        params=params,
        loss=ex.model_loss(lm_training.window_loss, model, 4),
        batches=lambda k: window,
        steps_per_epoch=1,
        model_state=lm.init_carry(model, params, 1),
    )


def report(c: Config, _, plan: ex.Plan, fit, out) -> dict:
    text = continuation(model_config(c), fit.state.params)
    print(f"h -> {text}")
    return {**ex.summary(fit, plan), "continuation": "h" + text}


EXPERIMENT = ex.Experiment("hello", Config, load=lambda c: None, plan=plan, report=report, workdir="runs/hello")

if __name__ == "__main__":
    ex.main(EXPERIMENT)
