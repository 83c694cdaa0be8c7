r"""word2vec: skip-gram or CBOW on a text corpus, evaluated on analogies and word similarity.

    python experiments/word2vec.py --workdir=runs/w2v_sg                   # skip-gram on PTB
    python experiments/word2vec.py --model=cbow --workdir=runs/w2v_cbow
    python experiments/word2vec.py --workdir=runs/w2v_sg --query="king - man + woman"
    python experiments/word2vec.py --workdir=runs/w2v_sg --query="good ~ great"

Writes vectors.bin / vectors.txt (word2vec's C formats, readable by gensim), vocab.tsv, results.json
and per-epoch checkpoints into --workdir; rerunning a command resumes. With --query nothing is
trained: the saved vectors answer it. See seqjax.experiments.word2vec.
"""

import dataclasses
import sys

from absl import app, flags

from seqjax import parallel, workdir
from seqjax.checkpoints import CheckpointMismatch
from seqjax.data.text import DataError
from seqjax.experiments import config_flags, entry
from seqjax.experiments.word2vec import FIXED_FLAGS, Config, load_vectors, prepare, query, run
from seqjax.models.word2vec_training import LOSSES, MODELS, OPTIMIZERS

HELP = {
    "corpus": "Text file, one sentence per line, words separated by whitespace.",
    "encoding": "The corpus's text encoding (e.g. latin-1 for the Lee corpus).",
    "model": f"{' or '.join(MODELS)}.",
    "loss": "negative: negative sampling; softmax: full softmax (small vocabularies only).",
    "dim": "Vector size.",
    "init_scale": "Input vectors start uniform in [-s/dim, s/dim]: 1 is gensim's range, 0.5 word2vec.c's.",
    "window": "Maximum distance between the center and a context word (each position draws 1..window).",
    "negative": "Noise words per example (the negative loss).",
    "shared_negatives": "If > 0, one set of this many noise words per batch, weighted negative/S (faster).",
    "ns_exponent": "Noise distribution: unigram counts to this power.",
    "sample": "Subsampling threshold for frequent words (0: none).",
    "min_count": "Ignore words with fewer occurrences.",
    "max_vocab": "Keep at most this many most frequent words (0: no limit).",
    "alpha": "Initial learning rate.",
    "min_alpha": "Final learning rate (linear decay).",
    "epochs": "Passes over the corpus.",
    "optimizer": "sparse_sgd: word2vec.c's update of the rows a batch touches; sgd, momentum, adam, rmsprop,"
    " adagrad: optax on the dense gradient of the whole tables (small vocabularies); all decay alpha linearly.",
    "batch_size": "Examples per SGD step.",
    "num_devices": config_flags.DEVICE_HELP["num_devices"],
    "seed": "Random seed (initialisation, subsampling, windows, noise words).",
    "eval_dir": "Folder with questions-words.txt, wordsim353.tsv, simlex999.txt (missing files are skipped).",
    "restrict_vocab": "Analogies use only this many most frequent words, as word2vec's compute-accuracy.",
}
POSITIVE = {"dim", "window", "epochs", "batch_size", "min_count", "restrict_vocab"}

WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.", required=True)
QUERY = flags.DEFINE_string("query", None, "Answer this from the workdir's vectors instead of training.")
TOPN = flags.DEFINE_integer("topn", 10, "Neighbours listed for a --query.", lower_bound=1)
config_flags.define_flags(Config, HELP, POSITIVE)
flags.register_validator("model", lambda v: v in MODELS, f"--model must be one of {', '.join(MODELS)}")
flags.register_validator("loss", lambda v: v in LOSSES, f"--loss must be one of {', '.join(LOSSES)}")
flags.register_validator("optimizer", lambda v: v in OPTIMIZERS, f"--optimizer must be one of {', '.join(OPTIMIZERS)}")
flags.register_validator("alpha", lambda v: v > 0, "--alpha must be positive")
flags.register_validator("negative", lambda v: v >= 1, "--negative must be >= 1")
flags.register_validator("sample", lambda v: v < 1, "--sample must be in [0, 1)")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    entry.quiet_orbax()
    try:
        if QUERY.value is not None:
            vectors = load_vectors(WORKDIR.value)
            for word, score in query(vectors, QUERY.value, TOPN.value):
                print(f"{score:+.4f}  {word}")
            return
        config = config_flags.config_from_flags(Config)
        parallel.mesh_for(config.num_devices, config.batch_size)  # a count the batch cannot split: nothing written
        prepared = prepare(config)  # bad data: nothing written
        print(f"{config.corpus}: {prepared.raw_words:,} words, vocabulary {len(prepared.vocab):,}")
        out = workdir.claim(WORKDIR.value, "word2vec", dataclasses.asdict(config), fixed=FIXED_FLAGS)
        results = run(config, out, prepared)
    except (workdir.WorkdirError, CheckpointMismatch, DataError, ValueError) as e:
        raise app.UsageError(str(e).splitlines()[0]) from e
    except KeyError as e:
        raise app.UsageError(f"--query: {e.args[0]}") from e
    rate = results["raw_words_per_s"]
    speed = f"{rate:,.0f} words/s; " if rate else "all epochs were done already; "
    print(f"{speed}wrote vectors.bin, vectors.txt, results.json into {out}")


if __name__ == "__main__":
    sys.exit(app.run(main))
