r"""The lecture's toy: a character RNN learns "hello" in seconds, then continues "h" greedily.

python experiments/hello.py
"""

import sys
import time

from absl import app, flags

from seqjax.experiments.hello import greedy_continuation, train_hello

STEPS = flags.DEFINE_integer("steps", 300, "Adam updates.", lower_bound=1)
SEED = flags.DEFINE_integer("seed", 0, "Random seed.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    start = time.perf_counter()
    config, params, nll = train_hello(STEPS.value, SEED.value)
    print(f"trained {STEPS.value} steps in {time.perf_counter() - start:.1f} s: {nll:.4f} nats per character")
    print(f"h -> {greedy_continuation(config, params, 'h', 4)}")


if __name__ == "__main__":
    sys.exit(app.run(main))
