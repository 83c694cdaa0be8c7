"""Sentiment (many-to-one): the SST-2 loader, the classifier against hand-run cells, the experiment end to end."""

import functools
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sentiment
from reference import CELLS, cell_context
from refusals import refusal

from seqjax import config as config_lib
from seqjax import experiment as ex
from seqjax import workdir
from seqjax.cells import lstm, step_input
from seqjax.data import batching
from seqjax.data import sentiment as data_lib
from seqjax.data.text import DataError
from seqjax.models import classifier

ROOT = Path(__file__).resolve().parents[1]
SST2 = ROOT.parent / "shared" / "data" / "sst2"

POSITIVE, NEGATIVE = ("good", "great", "superb", "fine"), ("bad", "awful", "dull", "poor")
NOISE = ("the", "film", "movie", "a", "plot", "is", "was", "actors", "story", "this", "and", "of", "it", "very")


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- the loader ---------------------------------------------------------------------------------------------------


def test_reader_vocabulary_and_encoding(tmp_path):
    train = write(tmp_path / "train.tsv", "label\tsentence\n1\tA Great film\n0\ta bad , BAD film\n1\tgreat\n")
    write(tmp_path / "dev.tsv", "label\tcontent\r\n0\tan awful film\r\n")  # CRLF, as SST-2 is distributed
    write(tmp_path / "test.tsv", "label\tcontent\n1\tgreat great great film\n")
    split = data_lib.read_split(train)
    assert split.sentences == (("a", "great", "film"), ("a", "bad", ",", "bad", "film"), ("great",))
    np.testing.assert_array_equal(split.labels, [1, 0, 1])
    assert split.labels.dtype == np.int32 and split.source == str(train)

    # Counts: a 2, bad 2, film 2, great 2, "," 1. Ties in string order; "," (once) is <unk> at min_count=2.
    assert data_lib.build_vocab(split.sentences, min_count=2).tokens == ("<pad>", "<unk>", "a", "bad", "film", "great")
    assert data_lib.build_vocab(split.sentences).tokens[-1] == ","

    data = data_lib.load_sst2(tmp_path, min_count=2, max_len=3)
    assert data.vocab.tokens[:2] == (data_lib.PAD, data_lib.UNK) and (data_lib.PAD_ID, data_lib.UNK_ID) == (0, 1)
    np.testing.assert_array_equal(data.train.ids, [[2, 5, 4], [2, 3, 1], [5, 0, 0]])  # cut to 3 tokens, right-padded
    np.testing.assert_array_equal(data.train.lengths, [3, 3, 1])
    np.testing.assert_array_equal(data.dev.ids, [[1, 1, 4]])  # "an", "awful": not in train's vocabulary
    np.testing.assert_array_equal(data.test.ids, [[5, 5, 5]])
    assert data.dev.labels.tolist() == [0] and data.test.labels.tolist() == [1]

    tokens, lengths, labels = data_lib.take(data.train, np.array([2, 0]), pad_multiple=4)
    np.testing.assert_array_equal(tokens, [[5, 0, 0, 0], [2, 5, 4, 0]])
    assert lengths.tolist() == [1, 3] and labels.tolist() == [1, 1] and tokens.dtype == np.int32


@pytest.mark.parametrize(
    ("content", "line", "message"),
    [
        ("sentence\tlabel\ngood\t1\n", 1, "expected the header 'label<TAB>sentence' or 'label<TAB>content'"),
        ("label text\n1\tgood\n", 1, "expected the header"),
        ("label\tsentence\n1\tgood\n0 bad\n", 3, "expected 2 tab-separated fields (label, text), found 1"),
        ("label\tsentence\n1\tgood\t!\n", 2, "found 3"),
        ("label\tsentence\n1\tgood\n\n0\tbad\n", 3, "found 1"),
        ("label\tsentence\n2\tgood\n", 2, "the label must be 0 or 1, found '2'"),
        ("label\tsentence\n1\tok\npositive\tgood\n", 3, "the label must be 0 or 1, found 'positive'"),
        ("label\tsentence\n1\t  \n", 2, "empty text"),
    ],
    ids=["glue-order", "no-tab-header", "one-field", "three-fields", "blank-line", "label-2", "label-word", "empty"],
)
def test_malformed_files_are_one_line_errors_naming_file_and_line(tmp_path, content, line, message):
    path = write(tmp_path / "train.tsv", content)
    with pytest.raises(DataError) as info:
        data_lib.read_split(path)
    text = str(info.value)
    assert "\n" not in text and text.startswith(f"{path}:{line}: ") and message in text


def test_missing_or_empty_files(tmp_path):
    for path, message in ((tmp_path / "nowhere.tsv", "no such file"), (write(tmp_path / "e.tsv", ""), "empty file")):
        with pytest.raises(DataError, match=message) as info:
            data_lib.read_split(path)
        assert str(info.value).startswith(f"{path}: ")
    write(tmp_path / "train.tsv", "label\tsentence\n1\tgood\n")
    with pytest.raises(DataError, match=f"{tmp_path / 'dev.tsv'}: no such file"):
        data_lib.load_sst2(tmp_path)


def test_epoch_batches_shuffle_bucket_and_repeat():
    lengths = np.random.default_rng(0).integers(1, 40, size=1000).astype(np.int32)
    first = batching.epoch_batches(lengths, 32, seed=3, epoch=0, bucket_pool=10)
    assert first.shape == (31, 32) and len(set(first.ravel().tolist())) == 31 * 32  # full batches, no repeats
    np.testing.assert_array_equal(first, batching.epoch_batches(lengths, 32, seed=3, epoch=0, bucket_pool=10))
    assert not np.array_equal(first, batching.epoch_batches(lengths, 32, seed=3, epoch=1, bucket_pool=10))
    plain = batching.epoch_batches(lengths, 32, seed=3, epoch=0, bucket=False)

    def padded_steps(batches):
        return sum(int(lengths[b].max()) * len(b) - int(lengths[b].sum()) for b in batches)

    assert padded_steps(first) < padded_steps(plain) / 4  # bucketing removes most of the padding


# -- the classifier -----------------------------------------------------------------------------------------------

SENTENCE = [3, 7, 2, 9, 4]
V, E, H = 20, 4, 5  # one set of sizes for every model test: initialisers compile once per shape


def padded(rows, steps, seed=0):
    """``(tokens [b, steps], lengths [b])``: each row followed by random non-pad ids, which must be ignored."""
    tokens = np.random.default_rng(seed).integers(1, 20, size=(len(rows), steps)).astype(np.int32)
    for i, row in enumerate(rows):
        tokens[i, : len(row)] = row
    return jnp.asarray(tokens), jnp.asarray([len(row) for row in rows], jnp.int32)


def run_by_hand(cell, params, xs):
    """A Python loop over ``cell.step`` (after the cell's input projection): the outputs and the final hidden state."""
    carry, ys = cell.init_carry(params, (1,)), []
    for x in xs:
        carry, y = step_input(cell, params, carry, x)
        ys.append(y)
    return ys, getattr(carry, "hidden", carry)


def last_pooling_by_hand(cell, bidirectional, params, sentence):
    """The logits of ``last`` pooling for one unpadded sentence, one step at a time: an independent reference."""
    xs = [params["embedding"][jnp.asarray([w])] for w in sentence]  # each [1, e]
    for layer in params["layers"]:
        if bidirectional:
            forward_ys, forward_h = run_by_hand(cell, layer[0], xs)
            backward_ys, backward_h = run_by_hand(cell, layer[1], xs[::-1])
            xs = [jnp.concatenate([f, b], axis=-1) for f, b in zip(forward_ys, backward_ys[::-1], strict=True)]
            final = jnp.concatenate([forward_h, backward_h], axis=-1)
        else:
            xs, final = run_by_hand(cell, layer, xs)
    return final[0] @ params["out_w"] + params["out_b"]


@pytest.mark.parametrize("bidirectional", [False, True], ids=["lstm", "bilstm-2-layers"])
def test_logits_ignore_padding_and_batch_mates_and_last_pooling_equals_the_cell_by_hand(key, bidirectional):
    """For every pooling: a sentence's logits alone (no padding) = with padding and mates, in two batches.
    For ``last``: = the cell run by hand over the unpadded sentence."""
    configs = [
        classifier.ClassifierConfig(vocab_size=V, num_layers=1 + bidirectional, hidden_size=H, embed_size=E,
                                    bidirectional=bidirectional, pooling=pooling)
        for pooling in classifier.POOLINGS
    ]  # fmt: skip
    params = classifier.init_params(configs[0], key)  # the same shapes for every pooling

    @jax.jit
    def logits(params, tokens, lengths):  # [poolings, b, C]: one compilation per shape for all three
        return jnp.stack([classifier.apply(config, params, tokens, lengths) for config in configs])

    alone = logits(params, *padded([SENTENCE], len(SENTENCE)))[:, 0]
    mates = logits(params, *padded([[5] * 9, SENTENCE, [8, 1]], 9, seed=1))
    other_mates = logits(params, *padded([[11, 12, 13], [2] * 7, SENTENCE], 9, seed=2))
    np.testing.assert_allclose(mates[:, 1], alone, rtol=0, atol=1e-5)
    np.testing.assert_allclose(other_mates[:, 2], alone, rtol=0, atol=1e-5)
    assert np.abs(mates[:, 0] - alone).max(axis=1).min() > 1e-3  # not constant: other sentences, other logits
    assert np.abs(alone[0] - alone[1]).max() > 1e-4 and np.abs(alone[1] - alone[2]).max() > 1e-4  # three poolings

    by_hand = jax.jit(functools.partial(last_pooling_by_hand, classifier.classifier_cell(configs[0]), bidirectional))
    np.testing.assert_allclose(alone[0], by_hand(params, SENTENCE), rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["indrnn", "lstmp"])
def test_a_cell_object_reads_like_a_builtin_one(key, name):
    """IndRNN from examples/my_cells.py, a plain ``Cell`` (array carry), and the LSTM with a projection (its output
    and hidden state of 2 features, not H), read both ways: ``last`` = by hand."""
    cell = CELLS["indrnn"] if name == "indrnn" else lstm(proj_size=2)
    config = classifier.ClassifierConfig(vocab_size=V, cell=cell, hidden_size=H, embed_size=E, bidirectional=True,
                                         pooling="last")  # fmt: skip
    params = classifier.init_params(config, key)
    with cell_context(name):  # the user's IndRNN broadcasts u [h] against h [b, h]
        got = jax.jit(functools.partial(classifier.apply, config))(params, *padded([[4, 4], SENTENCE], 8))[1]
        expected = jax.jit(functools.partial(last_pooling_by_hand, cell, True))(params, SENTENCE)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


# -- the experiment -----------------------------------------------------------------------------------------------


def synthetic_sst(directory: Path, sizes=(("train", 480), ("dev", 100), ("test", 100)), seed=0) -> Path:
    """SST-format files: noise words around one sentiment word ("good", "awful", ...) that decides the label."""
    rng = np.random.default_rng(seed)
    directory.mkdir()
    for split, size in sizes:
        lines = ["label\tsentence" if split == "train" else "label\tcontent"]
        for _ in range(size):
            label = int(rng.integers(2))
            words = list(rng.choice(NOISE, size=int(rng.integers(2, 8))))
            words.insert(int(rng.integers(len(words) + 1)), str(rng.choice(POSITIVE if label else NEGATIVE)).title())
            lines.append(f"{label}\t{' '.join(words)}")
        write(directory / f"{split}.tsv", "\n".join(lines) + "\n")
    return directory


TINY = dict(embed=16, hidden=16, dropout=0.1, min_count=1, batch_size=16, learning_rate=0.01, eval_batch_size=64,
            log_every=10, checkpoint_every=1000)  # fmt: skip


def test_learns_synthetic_sentiment_and_reloads_the_best_dev_model(tmp_path):
    data = synthetic_sst(tmp_path / "data")
    config = sentiment.Config(data=str(data), epochs=3, **TINY)
    out = tmp_path / "run"
    with jax.numpy_dtype_promotion("standard"):  # optax's Adam: b ** count with an int32 count (and the
        # context is part of every compilation's key: everything below runs in it, nothing compiles twice)
        results = ex.run(sentiment.EXPERIMENT, config, out)
        assert ex.run(sentiment.EXPERIMENT, config, out) == results  # a rerun restores the last checkpoint: done
        model, vocab, params, step = sentiment.load_trained(out)  # the best-dev model, for predictions
        dev = sentiment.evaluate(model, params, sentiment.load_data(config).data.dev, config)
    assert results["steps"] == 3 * 30 and results["epochs"] == 3.0 and results["steps_per_epoch"] == 480 // 16
    assert [h["step"] for h in results["history"]] == [30, 60, 90]
    assert results["best"]["dev_accuracy"] >= 0.95 and results["final"]["test_accuracy"] >= 0.9  # chance: 0.5
    best = int(np.argmax(results["dev_accuracy"]))  # the first epoch with the best dev accuracy
    assert results["best"]["epoch"] == best + 1 and results["best"]["test_accuracy"] == results["test_accuracy"][best]
    assert json.loads((out / "results.json").read_text()) == results
    assert (out / "metrics.jsonl").read_text().count("\n") == 90 // 10  # training metrics, once per logged step
    assert (out / "eval" / "metrics.jsonl").read_text().count("\n") == 3 and (out / "tensorboard").is_dir()
    assert step == results["best"]["step"] and vocab.tokens == sentiment.load_data(config).data.vocab.tokens
    assert dev["accuracy"] == results["best"]["dev_accuracy"]


def synthetic_mr(directory: Path, per_label: int, seed: int = 0) -> Path:
    """MR-format Latin-1 files (rt-polarity.pos/.neg) like ``synthetic_sst``'s sentences, "film" spelt "cliché"
    (a non-ASCII byte): the same 24-token vocabulary, the same model, the same compiled steps."""
    rng = np.random.default_rng(seed)
    noise = tuple("clich\u00e9" if word == "film" else word for word in NOISE)
    directory.mkdir()
    for name, words in (("rt-polarity.pos", POSITIVE), ("rt-polarity.neg", NEGATIVE)):
        lines = []
        for _ in range(per_label):
            sentence = list(rng.choice(noise, size=int(rng.integers(2, 8))))
            sentence.insert(int(rng.integers(len(sentence) + 1)), str(rng.choice(words)))
            lines.append(" ".join(sentence) + " \n")
        (directory / name).write_bytes("".join(lines).encode("latin-1"))
    return directory


def test_mr_fold_end_to_end_with_init_embeddings_and_resume(tmp_path):
    data = synthetic_mr(tmp_path / "mr", per_label=250)
    vectors = np.random.default_rng(1).normal(size=(3, 16)).round(3)
    w2v = write(tmp_path / "w2v.txt", "3 16\n" + "".join(
        f"{word} {' '.join(map(str, row))}\n" for word, row in zip(("good", "zz", "clich\u00e9"), vectors, strict=True)
    ))  # fmt: skip
    config = sentiment.Config(data=str(data), dataset="mr", folds=5, fold=1, epochs=3, init_embeddings=str(w2v), **TINY)
    out = tmp_path / "run"
    with jax.numpy_dtype_promotion("standard"):
        results = ex.run(sentiment.EXPERIMENT, config, out)
        assert ex.run(sentiment.EXPERIMENT, config, out) == results  # a rerun resumes: done
    # 500 sentences, 5 folds: test 100; of the other 400, 40 dev and 360 train = 22 batches of 16.
    assert results["examples"] == {"train": 360, "dev": 40, "test": 100} and results["steps"] == 3 * 22
    assert results["fold"] == 1 and results["folds"] == 5 and results["dataset"] == "mr"
    assert results["vocab_size"] == 24 and results["init_embeddings_found"] == 2  # good, cliché; zz in no sentence
    assert results["best"]["dev_accuracy"] >= 0.9 and results["best"]["test_accuracy"] >= 0.9  # chance: 0.5
    assert json.loads((out / "results.json").read_text()) == results
    with pytest.raises(workdir.WorkdirError, match="--fold=1, this run has --fold=2"):
        ex.check_workdir(sentiment.EXPERIMENT, config_lib.replace(config, fold=2), out)


def test_mr_every_fold_in_turn_reports_mean_and_std(tmp_path):
    data = synthetic_mr(tmp_path / "mr", per_label=40, seed=2)
    config = sentiment.Config(data=str(data), dataset="mr", folds=2, fold=-1, epochs=1, **TINY)
    out = tmp_path / "cv"
    with jax.numpy_dtype_promotion("standard"):
        results = ex.run(sentiment.EXPERIMENT, config, out)
    per_fold = [json.loads((out / f"fold_{k}" / "results.json").read_text()) for k in range(2)]
    tests = [r["best"]["test_accuracy"] for r in per_fold]
    assert [r["examples"]["test"] for r in per_fold] == [40, 40] and results["test_accuracy"] == tests
    assert results["test_accuracy_mean"] == pytest.approx((tests[0] + tests[1]) / 2)
    assert results["test_accuracy_std"] == pytest.approx(abs(tests[0] - tests[1]) / 2**0.5)  # ddof=1, two folds
    assert json.loads((out / "results.json").read_text()) == results


def test_a_malformed_file_is_refused_in_one_line_before_the_workdir(tmp_path):
    data = synthetic_sst(tmp_path / "data", sizes=(("train", 40), ("dev", 10), ("test", 10)))
    dev = data / "dev.tsv"
    lines = dev.read_text().splitlines()
    lines[2] = "positive\t" + lines[2].split("\t")[1]
    write(dev, "\n".join(lines) + "\n")
    workdir = tmp_path / "run"
    line = refusal(sentiment, f"--workdir={workdir}", f"--data={data}")
    assert f"{dev}:3: the label must be 0 or 1, found 'positive'" in line and not workdir.exists()


@pytest.mark.skipif(not SST2.is_dir(), reason=f"{SST2} not present (the shared SST-2 data)")
def test_a_slice_of_sst2_end_to_end(tmp_path):
    full = data_lib.load_sst2(SST2, min_count=2, max_len=64)  # the real files read and checked in full
    assert (len(full.train), len(full.dev), len(full.test)) == (67349, 872, 1821)
    assert [int(np.sum(s.labels == 1)) for s in (full.train, full.dev, full.test)] == [37569, 444, 909]
    data = tmp_path / "sst2"
    data.mkdir()
    for split, lines in (("train", 400), ("dev", 100), ("test", 100)):
        source = (SST2 / f"{split}.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
        write(data / f"{split}.tsv", "".join(source[: lines + 1]))  # the header and the first lines
    tiny = {**TINY, "min_count": 2, "batch_size": 32, "max_len": 16, "pad_multiple": 16, "eval_batch_size": 128}
    config = sentiment.Config(data=str(data), epochs=1, **tiny)  # one padded shape: [32, 16]
    out = tmp_path / "run"
    with jax.numpy_dtype_promotion("standard"):
        results = ex.run(sentiment.EXPERIMENT, config, out)
    assert results["steps"] == 400 // 32 and results["examples"] == {"train": 400, "dev": 100, "test": 100}
    assert 0 <= results["best"]["dev_accuracy"] <= 1 and 0 <= results["best"]["test_accuracy"] <= 1
    assert results["vocab_size"] == len(json.loads((out / "vocab.json").read_text())["tokens"]) > 2
