r"""Sample text from a trained language model (a workdir of experiments/language_model.py).

    python experiments/sample.py --run=runs/shakespeare --prime="ROMEO:" --length=300 --temperature=0.8
    python experiments/sample.py --run=runs/ptb_small --prime="the company said" --length=30 --top_k=20
    python experiments/sample.py --run=runs/hello --prime=h --length=4 --greedy

Character models take --prime as text; word models as space-separated words (each must be in the
vocabulary). The same --seed gives the same text. A Transformer LM (--model=transformer) rereads the
last `context` tokens at every step.
"""

import jax
import jax.numpy as jnp
from absl import app, flags
from language_model import load_trained

from seqjax import command_line
from seqjax.data.text import DataError, join_tokens, split_prime
from seqjax.models.sampling import sample

RUN = flags.DEFINE_string("run", None, "The workdir of a language_model.py run.", required=True)
PRIME = flags.DEFINE_string("prime", None, "Text the model reads before sampling (at least one token).", required=True)
LENGTH = flags.DEFINE_integer("length", 200, "Tokens to sample.", lower_bound=1)
TEMPERATURE = flags.DEFINE_float("temperature", 1.0, "Softmax temperature (> 0).")
TOP_K = flags.DEFINE_integer("top_k", 0, "Sample among the k most likely tokens only (0: all).", lower_bound=0)
GREEDY = flags.DEFINE_bool("greedy", False, "Take the most likely token at every step.")
SEED = flags.DEFINE_integer("seed", 0, "Random seed.")

flags.register_validator("temperature", lambda t: t > 0, "--temperature must be > 0")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        model, fmt, vocab, params, _ = load_trained(RUN.value)
        prime_tokens = split_prime(PRIME.value, fmt)
        if not prime_tokens:
            raise DataError("--prime is empty: give at least one token")
        prime = jnp.asarray(vocab.encode(prime_tokens, source="--prime"))
    except (FileNotFoundError, ValueError) as e:
        raise app.UsageError(str(e)) from e
    if TOP_K.value > len(vocab):
        raise app.UsageError(f"--top_k={TOP_K.value} exceeds the vocabulary ({len(vocab)} tokens)")
    tokens = sample(
        model, params, prime, jax.random.key(SEED.value), length=LENGTH.value, temperature=TEMPERATURE.value,
        top_k=TOP_K.value, greedy=GREEDY.value,
    )  # fmt: skip
    text = join_tokens(prime_tokens + vocab.decode(tokens), fmt)
    print(text)


if __name__ == "__main__":
    command_line.run(main)
