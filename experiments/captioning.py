r"""Captioning images of handwritten digits (one-to-many): a CNN encoder sets the state of a recurrent decoder.

    python experiments/captioning.py --workdir=runs/captions_lstm
    python experiments/captioning.py --cell=gru --workdir=runs/captions_gru
    python experiments/captioning.py --min_digits=1 --digits_per_image=4 --workdir=runs/captions_1to4

Data (``seqjax.data.digit_captions``): scikit-learn's 8 x 8 digits in disjoint train/dev/test pools, composed
side by side and captioned by their names ("three one four <eos>"), all made from --seed. Model
(``seqjax.models.captioner``): a Flax CNN's image vector sets the initial carry of any seqjax cell, which
writes the caption word by word (teacher forcing in training, greedy decoding in evaluation). After every
epoch the dev set is decoded; the state with the best dev exact-caption accuracy (the decoded caption,
``<eos>`` included, is the true one) is kept and decoded on test once, after training. Writes results.json,
test_captions.png, eval/metrics.jsonl and checkpoints into --workdir.
"""

import jax.numpy as jnp
import numpy as np

from seqjax import config, plots
from seqjax import experiment as ex
from seqjax.data import digit_captions as data_lib
from seqjax.data.text import DataError
from seqjax.models import captioner

FIGURE = "test_captions.png"


@config.declare
class Config:
    cell: str = config.cell()
    digits_per_image: int = config.setting(
        3, "Digits per image (the most, with --min_digits): 8 x 8k pixels.", at_least=1
    )
    min_digits: int = config.setting(0, "The fewest digits per image (0: always --digits_per_image).", at_least=0)
    train_size: int = config.setting(20000, "Composed training images.", at_least=1)
    dev_size: int = config.setting(1000, "Composed dev images (model selection).", at_least=1)
    test_size: int = config.setting(2000, "Composed test images.", at_least=1)
    dev_fraction: float = config.setting(
        0.1, "Share of each digit's source images kept for dev images.", above=0, below=1
    )
    test_fraction: float = config.setting(
        0.2, "Share of each digit's source images kept for test images.", above=0, below=1
    )
    conv1: int = config.setting(16, "Filters of the first convolution.", at_least=1)
    conv2: int = config.setting(32, "Filters of the second convolution.", at_least=1)
    image_features: int = config.setting(
        128, "Size of the image vector that sets the decoder's initial state.", at_least=1
    )
    embed: int = config.setting(32, "Word embedding size.", at_least=1)
    hidden: int = config.setting(128, "Hidden size of the decoder cell.", at_least=1)
    embed_scale: float = config.setting(0.1, "Embeddings start N(0, embed_scale^2).", above=0)
    batch_size: int = config.setting(64, "Images per update.", at_least=1)
    eval_batch_size: int = config.setting(500, "Images per batch when decoding (speed only).", at_least=1, fixed=False)
    figure_examples: int = config.setting(
        12, "Test images shown in test_captions.png (0: no figure).", at_least=0, fixed=False
    )
    optimization: config.Optimization = config.Optimization(learning_rate=2e-3)
    epochs: config.Epochs = config.Epochs(epochs=10)
    run: config.Run = config.Run()
    devices: config.Devices = config.Devices()

    def validate(self):
        if self.min_digits > self.digits_per_image:
            raise config.ConfigError("--min_digits must be at most --digits_per_image")


def load_data(c: Config) -> data_lib.CaptionData:
    data = data_lib.make_data(
        c.run.seed,
        c.train_size,
        c.dev_size,
        c.test_size,
        c.digits_per_image,
        c.min_digits,
        c.dev_fraction,
        c.test_fraction,
    )
    if len(data.train) < c.batch_size:
        raise DataError(f"--train_size={len(data.train)} is smaller than --batch_size={c.batch_size}")
    return data


def model_config(c: Config) -> captioner.CaptionerConfig:
    return captioner.CaptionerConfig(
        vocab_size=len(data_lib.VOCAB),
        image_height=data_lib.DIGIT_SIZE,
        image_width=data_lib.DIGIT_SIZE * c.digits_per_image,
        cell=c.cell,
        hidden_size=c.hidden,
        embed_size=c.embed,
        conv_features=(c.conv1, c.conv2),
        image_features=c.image_features,
        embed_scale=c.embed_scale,
        bos_id=data_lib.BOS,
        eos_id=data_lib.EOS,
    )


def decode_split(model, params, split: data_lib.CaptionSplit, batch_size: int):
    """Greedy ``(tokens [n, t], lengths [n])`` of every image of ``split`` and its teacher-forced mean cross-entropy
    (nats per token), in batches of ``batch_size`` (the last padded with copies of the first image)."""
    size, max_len = min(batch_size, len(split)), split.captions.shape[1]
    tokens, lengths, nll = [], [], 0.0
    for start in range(0, len(split), size):
        real = min(size, len(split) - start)
        images, captions, caption_lengths = (
            jnp.asarray(np.concatenate([a[start : start + real], np.repeat(a[:1], size - real, axis=0)]))
            for a in split[:3]
        )
        decoded = captioner.decode(model, params, images, max_len)
        tokens.append(np.asarray(decoded.tokens)[:real])
        lengths.append(np.asarray(decoded.lengths)[:real])
        logits = np.asarray(captioner.predict(model, params, images, captions, caption_lengths), np.float64)[:real]
        log_probs = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
        picked = np.take_along_axis(log_probs, split.captions[start : start + real, :, None], axis=-1)[..., 0]
        nll -= float(np.sum(picked[np.arange(max_len)[None, :] < split.lengths[start : start + real, None]]))
    return np.concatenate(tokens), np.concatenate(lengths), nll / int(np.sum(split.lengths))


def evaluate(model, params, split: data_lib.CaptionSplit, c: Config) -> tuple[dict, np.ndarray]:
    """``{"exact", "word_accuracy", "loss"}`` of greedy captions of ``split``, and the decoded tokens."""
    tokens, lengths, nll = decode_split(model, params, split, c.eval_batch_size)
    return {**captioner.caption_metrics(tokens, lengths, split.captions, split.lengths), "loss": nll}, tokens


def plan(c: Config, data: data_lib.CaptionData) -> ex.Plan:
    model = model_config(c)
    steps_per_epoch = len(data.train) // c.batch_size

    def batches(k: int):
        epoch, index = divmod(k, steps_per_epoch)
        rows = np.random.default_rng([c.run.seed, 2, epoch]).permutation(len(data.train))[
            index * c.batch_size : (index + 1) * c.batch_size
        ]
        return tuple(jnp.asarray(a[rows]) for a in data.train[:3])

    def describe(m: dict) -> str:
        return f"dev exact-caption accuracy {m['dev_exact']:.4f}, per-word {m['dev_word_accuracy']:.4f} " + (
            f"(loss {m['dev_loss']:.4f})"
        )

    return ex.Plan(
        params=captioner.init_params(model, ex.keys(c.run.seed)[0]),
        loss=ex.model_loss(captioner.batch_loss, model),
        batches=batches,
        steps_per_epoch=steps_per_epoch,
        evaluate=lambda params: {f"dev_{k}": v for k, v in evaluate(model, params, data.dev, c)[0].items()},
        select="dev_exact",
        describe=describe,
        files={"vocab.json": data_lib.VOCAB.save},
    )


def report(c: Config, data: data_lib.CaptionData, plan: ex.Plan, fit, out) -> dict:
    best_state = ex.restore_best(c, plan, out)
    test, tokens = evaluate(model_config(c), best_state.params, data.test, c)
    words = lambda ids: " ".join(data_lib.caption_words(ids))
    shown = min(c.figure_examples, len(data.test))
    predicted, truth = [words(t) for t in tokens[:shown]], [words(t) for t in data.test.captions[:shown]]
    if shown:
        plots.captions_figure(data.test.images[:shown], predicted, truth, out / FIGURE)
    best = fit.best
    print(
        f"best dev exact-caption accuracy {best['dev_exact']:.4f} (epoch {best['epoch']:.2f}); from that state, "
        f"test exact-caption accuracy {test['exact']:.4f}, per-word accuracy {test['word_accuracy']:.4f}"
    )
    return {
        **ex.summary(fit, plan, examples=c.batch_size),
        "examples": {name: len(getattr(data, name)) for name in data_lib.SPLITS},
        "source_digits": {name: len(pool) for name, pool in data.pools.items()},
        "dev_exact": [h["dev_exact"] for h in fit.history],
        "dev_word_accuracy": [h["dev_word_accuracy"] for h in fit.history],
        "best": {k: best[k] for k in ("step", "epoch", "dev_exact", "dev_word_accuracy", "dev_loss")},
        "test": {"step": int(best_state.step), **test},
        "final": {k: fit.history[-1][k] for k in ("step", "epoch", "dev_exact", "dev_word_accuracy")},
        "test_examples": [{"decoded": p, "truth": t} for p, t in zip(predicted, truth, strict=True)],
    }


EXPERIMENT = ex.Experiment("captioning", Config, load=load_data, plan=plan, report=report)

if __name__ == "__main__":
    ex.main(EXPERIMENT)
