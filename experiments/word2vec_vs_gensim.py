r"""word2vec in seqjax vs gensim on the same corpus and settings, over several seeds (needs gensim).

    pip install -e '.[benchmark]'
    python experiments/word2vec_vs_gensim.py --workdir=runs/w2v_vs_gensim           # PTB, 3 seeds
    python experiments/word2vec_vs_gensim.py --corpus=text8.txt --seeds=0 --workdir=runs/w2v_text8

Prints per-run lines and a table (mean ± spread over seeds, and seqjax / gensim ratios); writes
results.json and results.md into --workdir. See seqjax.experiments.word2vec_vs_gensim.
"""

import dataclasses
import sys

from absl import app, flags

from seqjax import workdir
from seqjax.data.text import DataError
from seqjax.experiments import entry
from seqjax.experiments import word2vec_vs_gensim as comparison
from seqjax.models.word2vec_training import MODELS

HELP = {
    "corpus": "Text file, one sentence per line.",
    "dim": "Vector size.",
    "window": "Maximum window.",
    "negative": "Noise words per example.",
    "sample": "Subsampling threshold.",
    "min_count": "Minimum word count.",
    "epochs": "Passes over the corpus.",
    "alpha": "Initial learning rate.",
    "min_alpha": "Final learning rate.",
    "workers": "gensim's worker threads.",
    "batch_size": "seqjax's examples per SGD step.",
    "shared_negatives": "seqjax: if > 0, this many noise words shared by a batch.",
    "eval_dir": "Folder with questions-words.txt, wordsim353.tsv, simlex999.txt.",
    "restrict_vocab": "Analogies use this many most frequent words.",
}
WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.", required=True)
MODELS_FLAG = flags.DEFINE_list("models", list(MODELS), f"Any of {', '.join(MODELS)}.")
SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds; each system runs once per seed.")
for field in dataclasses.fields(comparison.Settings):
    define = {int: flags.DEFINE_integer, float: flags.DEFINE_float, str: flags.DEFINE_string}[type(field.default)]
    define(field.name, field.default, HELP[field.name])
flags.register_validator("models", lambda v: bool(v) and set(v) <= set(MODELS), f"--models: any of {', '.join(MODELS)}")
flags.register_validator(
    "seeds", lambda v: bool(v) and all(s.isdigit() for s in v), "--seeds: non-negative integers, comma-separated"
)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    entry.quiet_orbax()
    settings = comparison.Settings(
        **{field.name: flags.FLAGS[field.name].value for field in dataclasses.fields(comparison.Settings)}
    )
    seeds = [int(s) for s in SEEDS.value]
    try:
        comparison.import_gensim()
        out = workdir.prepare(WORKDIR.value)
        rows = comparison.compare(settings, MODELS_FLAG.value, seeds)
    except (ImportError, DataError, workdir.WorkdirError) as e:
        raise app.UsageError(str(e)) from e
    workdir.write_json(out / "results.json", {"settings": dataclasses.asdict(settings), "rows": rows})
    table = comparison.summarize(rows)
    report = comparison.markdown(table)
    print(report)
    workdir.write_json(out / "results.json", {"settings": dataclasses.asdict(settings), "rows": rows, "table": table})
    workdir.write_atomic(out / "results.md", report + "\n")


if __name__ == "__main__":
    sys.exit(app.run(main))
