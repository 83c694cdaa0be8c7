r"""Language-model baselines: Kneser-Ney n-grams and Bengio et al. (2003)'s neural n-gram model (NNLM).

    python experiments/lm_baselines.py --model=kn --order=5 --workdir=runs/ptb_kn5
    python experiments/lm_baselines.py --model=nnlm --workdir=runs/ptb_nnlm
    python experiments/lm_baselines.py --model=nnlm --direct --workdir=runs/ptb_nnlm_direct

Both score every token of each evaluation split, the split read as one stream (the first token predicted from a
sentence boundary), through ``lm_metrics.summary``, the perplexity code of every model. kn: interpolated modified
Kneser-Ney (``seqjax.baselines.ngram``), fitted on the training stream. nnlm (``seqjax.baselines.nnlm``): every
training position is one example (its n - 1 previous tokens, padded at the start); epoch e visits them in a
permutation seeded by (seed, e), in batches of --batch_size (the last partial batch of each epoch left out); the
validation split is evaluated after every epoch. Writes results.json, and for the NNLM eval/metrics.jsonl,
metrics.jsonl and checkpoints (a rerun resumes).
"""

import functools
import time
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from seqjax import config, parallel, workdir
from seqjax import experiment as ex
from seqjax.baselines import nnlm
from seqjax.baselines.ngram import KneserNey
from seqjax.data.corpus import Corpus, load_corpus
from seqjax.data.text import EOS, FORMATS, DataError, Vocab
from seqjax.models import lm_metrics

MODELS = ("kn", "nnlm")


def nnlm_only(c) -> bool:
    return c.model == "nnlm"


@config.declare
class Config:
    model: str = config.setting("", "kn: Kneser-Ney n-grams; nnlm: Bengio et al. 2003.", choices=MODELS, required=True)
    corpus: str = config.setting("ptb_words", "Corpus format.", choices=FORMATS, fixed=nnlm_only)
    data: str = config.setting(
        "../shared/data/ptb", "PTB directory (ptb_words, ptb_chars) or text file (chars).", fixed=nnlm_only
    )
    order: int = config.setting(5, "kn: the n-gram order.", at_least=1, fixed=False)
    context: int = config.setting(4, "nnlm: n - 1, the previous tokens the model sees.", at_least=1, fixed=nnlm_only)
    embed: int = config.setting(100, "nnlm: embedding size per token (m).", at_least=1, fixed=nnlm_only)
    hidden: int = config.setting(200, "nnlm: tanh hidden layer size (h).", at_least=1, fixed=nnlm_only)
    direct: bool = config.setting(False, "nnlm: direct connections from the embeddings to the output.", fixed=nnlm_only)
    dropout: float = config.setting(
        0.0, "nnlm: dropout on the embeddings and the hidden layer.", at_least=0, below=1, fixed=nnlm_only
    )
    batch_size: int = config.setting(256, "nnlm: training positions per update.", at_least=1, fixed=nnlm_only)
    eval_batch_size: int = config.setting(
        1024, "nnlm: predictions per batch when evaluating (speed only).", at_least=1, fixed=False
    )
    optimization: config.Optimization = config.Optimization()
    epochs: config.Epochs = config.Epochs(epochs=5)
    run: config.Run = config.Run()
    devices: config.Devices = config.Devices()


def boundary_id(vocab: Vocab) -> int:
    """The id that pads the NNLM's contexts: ``<eos>`` (PTB), else the newline (plain text)."""
    for token in (EOS, "\n"):
        if token in vocab.tokens:
            return vocab.tokens.index(token)
    raise DataError(f"the vocabulary ({len(vocab)} tokens) has neither {EOS!r} nor a newline to pad contexts with")


def load_data(c: Config) -> Corpus:
    corpus = load_corpus(c.corpus, c.data)
    if c.model == "nnlm":
        boundary_id(corpus.vocab)
        if len(corpus.train) < c.batch_size:
            raise DataError(
                f"the training split has {len(corpus.train)} tokens, fewer than --batch_size={c.batch_size}"
            )
    return corpus


def splits(corpus: Corpus) -> dict[str, np.ndarray]:
    return {name: ids for name, ids in (("valid", corpus.valid), ("test", corpus.test)) if ids is not None}


def finish(results: dict[str, Any]) -> dict[str, Any]:
    for split in ("valid", "test"):
        if split in results:
            print(f"{split} perplexity {results[split]['perplexity']:.2f}", flush=True)
    return results


def run_kn(c: Config, corpus: Corpus, out: Path) -> dict[str, Any]:
    """Fits KN on the training stream and scores valid and test as one stream each."""
    with ex.claimed(EXPERIMENT, c, out):
        corpus.vocab.save(out / "vocab.json")
        start = time.perf_counter()
        model = KneserNey.fit([corpus.train], len(corpus.vocab), order=c.order)
        results: dict[str, Any] = {"model": "kn", "order": c.order, "vocab_size": len(corpus.vocab)}
        fit_s, start = time.perf_counter() - start, time.perf_counter()
        for name, ids in splits(corpus).items():
            results[name] = lm_metrics.summary(*model.nll([ids]))
        results.update(fit_s=fit_s, eval_s=time.perf_counter() - start, discounts=[list(d) for d in model.discounts])
        workdir.write_json(out / ex.RESULTS_JSON, results)
    return finish(results)


@functools.lru_cache(maxsize=2)
def epoch_permutation(seed: int, epoch: int, num_positions: int) -> np.ndarray:
    """The order in which epoch ``epoch`` visits the training positions, ``[N]`` int32."""
    return np.random.default_rng([seed, epoch]).permutation(num_positions).astype(np.int32)


def batch_indices(step: int, num_positions: int, batch_size: int, seed: int) -> np.ndarray:
    """The training positions of step ``step``, ``[batch_size]`` int32: a function of the step alone."""
    epoch, index = divmod(step, num_positions // batch_size)
    return epoch_permutation(seed, epoch, num_positions)[index * batch_size : (index + 1) * batch_size]


def model_config(c: Config, vocab_size: int) -> nnlm.NNLMConfig:
    return nnlm.NNLMConfig(vocab_size, c.context, c.embed, c.hidden, c.direct, c.dropout)


def plan(c: Config, corpus: Corpus) -> ex.Plan:
    model, pad_id = model_config(c, len(corpus.vocab)), boundary_id(corpus.vocab)
    contexts, targets = nnlm.contexts_and_targets(corpus.train, c.context, pad_id)
    mesh = ex.mesh(c)  # the whole split stays on the device(s) for the run; each batch gathers its rows
    placed = (
        (jnp.asarray(contexts), jnp.asarray(targets)) if mesh is None else parallel.replicate((contexts, targets), mesh)
    )

    def batches(k: int):
        return (*placed, jnp.asarray(batch_indices(k, len(targets), c.batch_size, c.run.seed)))

    def evaluate(params) -> dict[str, float]:
        valid = nnlm.evaluate(model, params, corpus.valid, pad_id, c.eval_batch_size)
        return {f"valid_{k}": v for k, v in lm_metrics.summary(*valid).items()}

    return ex.Plan(
        params=nnlm.init_params(model, ex.keys(c.run.seed)[0]),
        loss=ex.model_loss(nnlm.batch_loss, model),
        batches=batches,
        steps_per_epoch=len(targets) // c.batch_size,
        evaluate=evaluate,
        describe=lambda m: f"valid perplexity {m['valid_perplexity']:.2f}",
        files={"vocab.json": corpus.vocab.save},
    )


def report(c: Config, corpus: Corpus, plan: ex.Plan, fit, out: Path) -> dict[str, Any]:
    results = {"model": "nnlm", **ex.summary(fit, plan, tokens=c.batch_size)}
    model, pad_id = model_config(c, len(corpus.vocab)), boundary_id(corpus.vocab)
    for name, ids in splits(corpus).items():
        if name == "valid":  # evaluated after the last update
            results[name] = {k.removeprefix("valid_"): v for k, v in fit.history[-1].items() if k.startswith("valid_")}
        else:
            results[name] = lm_metrics.summary(*nnlm.evaluate(model, fit.state.params, ids, pad_id, c.eval_batch_size))
    return finish(results)


def run(c: Config, corpus: Corpus, out: Path) -> dict[str, Any]:
    return run_kn(c, corpus, out) if c.model == "kn" else ex.run_plan(NNLM, c, corpus, out)


NNLM = ex.Experiment("lm_baselines", Config, load=load_data, plan=plan, report=report)
EXPERIMENT = NNLM._replace(run=run)

if __name__ == "__main__":
    ex.main(EXPERIMENT)
