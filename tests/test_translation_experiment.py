"""Translation: the pair readers, tokenization and split, and the experiment end to end on a generated task."""

import json
from pathlib import Path

import jax
import numpy as np
import pytest
import translation
from refusals import refusal

from seqjax import config as config_lib
from seqjax import experiment as ex
from seqjax.data import translation as data_lib
from seqjax.data.text import DataError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- tokenization and the readers ---------------------------------------------------------------------------------


def test_tokenize_and_detokenize():
    assert data_lib.tokenize("¡Vamos!") == ("¡", "vamos", "!")
    assert data_lib.tokenize("Let's go!") == ("let's", "go", "!")
    assert data_lib.tokenize("¿Está bien, Tom?") == ("¿", "está", "bien", ",", "tom", "?")
    assert data_lib.tokenize("Zwei junge weiße Männer.") == ("zwei", "junge", "weiße", "männer", ".")
    assert data_lib.tokenize("Cafe\u0301 a las 2:30") == ("café", "a", "las", "2", ":", "30")  # NFC: one é
    assert data_lib.tokenize("Cafe\u0301")[0] == "caf\u00e9"
    assert data_lib.detokenize(("¿", "está", "bien", ",", "tom", "?")) == "¿está bien, tom?"
    assert data_lib.detokenize(("i", "don't", "know", "(", "yet", ")", ".")) == "i don't know (yet)."


def test_spa_eng_reader_direction_and_one_line_errors(tmp_path):
    path = write(tmp_path / "spa.txt", "Go.\tVe.\nLet's go!\t¡Vamos!\tCC-BY 2.0 (France) Attribution\n")
    pairs = data_lib.read_spa_eng(path)  # Spanish -> English by default; a third column is ignored
    assert pairs.source == (("ve", "."), ("¡", "vamos", "!")) and pairs.target == (("go", "."), ("let's", "go", "!"))
    assert pairs.reference == ("go.", "let's go!")
    assert data_lib.read_spa_eng(path, "eng-spa").source[1] == ("let's", "go", "!")
    for text, line, message in (
        ("Go.\tVe.\nno tab here\n", 2, "expected 'English<TAB>Spanish', found no tab"),
        ("Go.\tVe.\nHi.\t  \n", 2, "an empty sentence"),
    ):
        with pytest.raises(DataError) as info:
            data_lib.read_spa_eng(write(tmp_path / "bad.txt", text))
        assert str(info.value).startswith(f"{tmp_path / 'bad.txt'}:{line}: ") and message in str(info.value)
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="unknown direction 'en-de' for spa_eng"):
        data_lib.read_spa_eng(path, "en-de")


def test_multi30k_reader_refuses_misaligned_files(tmp_path):
    for stem, (en, de) in {"train": (3, 3), "val": (2, 2), "test_2016_flickr": (2, 1)}.items():
        write(tmp_path / f"{stem}.en", "".join(f"A dog runs {i}.\n" for i in range(en)))
        write(tmp_path / f"{stem}.de", "".join(f"Ein Hund läuft {i}.\n" for i in range(de)))
    with pytest.raises(DataError) as info:
        data_lib.load_pairs("multi30k", tmp_path)
    message = str(info.value)
    assert message == (
        f"{tmp_path / 'test_2016_flickr.en'}: 2 lines, but {tmp_path / 'test_2016_flickr.de'} has 1; "
        "expected line-aligned files"
    )
    write(tmp_path / "test_2016_flickr.de", "Ein Hund.\nZwei Hunde.\n")
    splits = data_lib.load_pairs("multi30k", tmp_path, max_pairs=2)  # max_pairs: training pairs only
    assert [len(splits[name]) for name in data_lib.SPLITS] == [2, 2, 2]
    assert splits["test"].target[1] == ("zwei", "hunde", ".") and splits["train"].source[0][:2] == ("a", "dog")


def test_split_is_deterministic_disjoint_by_source_and_complete():
    sources = [f"s{i % 37}" for i in range(100)]  # 37 distinct sources, most with several translations
    targets = [f"t{i} a b" if i % 3 else f"t{i} a b c d e f" for i in range(100)]
    pairs = data_lib._pairs(sources, targets)
    short = data_lib.filter_pairs(pairs, max_len=3, max_pairs=50)
    assert len(short) == 50 and all(len(t) <= 3 for t in short.target) and short.target[0] == ("t1", "a", "b")
    splits = data_lib.split_pairs(pairs, seed=3, dev_fraction=0.2, test_fraction=0.1)
    again = data_lib.split_pairs(pairs, seed=3, dev_fraction=0.2, test_fraction=0.1)
    other = data_lib.split_pairs(pairs, seed=4, dev_fraction=0.2, test_fraction=0.1)
    assert splits == again and splits["test"] != other["test"]
    by_split = {name: set(split.source) for name, split in splits.items()}
    assert [len(by_split[name]) for name in ("train", "dev", "test")] == [37 - 7 - 3, 7, 3]  # int(0.2 * 37) = 7
    assert not (by_split["train"] & by_split["dev"] or by_split["train"] & by_split["test"] or by_split["dev"]
                & by_split["test"])  # fmt: skip
    everything = [pair for split in splits.values() for pair in zip(split.source, split.target, strict=True)]
    assert sorted(everything) == sorted(zip(pairs.source, pairs.target, strict=True))  # every pair exactly once


def test_vocabulary_and_teacher_forcing_batches():
    pairs = data_lib._pairs(["a b", "b c a"], ["x y", "y"])
    data = data_lib.prepare({"train": pairs, "dev": pairs, "test": data_lib._pairs(["a z"], ["q x"])}, min_count=1)
    assert data.src_vocab.tokens == ("<pad>", "<bos>", "<eos>", "<unk>", "a", "b", "c")
    assert data.tgt_vocab.tokens == ("<pad>", "<bos>", "<eos>", "<unk>", "y", "x")
    src, src_lengths, tgt_in, tgt_out, tgt_lengths = data_lib.take(data.train, np.array([1, 0]), pad_multiple=4)
    np.testing.assert_array_equal(src, [[5, 6, 4, 0], [4, 5, 0, 0]])
    np.testing.assert_array_equal(tgt_in, [[1, 4, 0, 0], [1, 5, 4, 0]])
    np.testing.assert_array_equal(tgt_out, [[4, 2, 0, 0], [5, 4, 2, 0]])
    assert src_lengths.tolist() == [3, 2] and tgt_lengths.tolist() == [2, 3]
    np.testing.assert_array_equal(data.test.src[0], [4, 3])  # z: <unk>
    np.testing.assert_array_equal(data.test.tgt[0], [3, 5])


# -- the experiment -----------------------------------------------------------------------------------------------

WORDS = ("ka", "lo", "mi", "nu", "pe", "ro", "su")


def reversal_data(directory: Path, pairs=600, seed=0) -> Path:
    """``spa.txt`` whose English side is the Spanish side reversed: 3 or 4 of 7 words."""
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(pairs):
        words = list(rng.choice(WORDS, size=int(rng.integers(3, 5))))
        lines.append(f"{' '.join(words[::-1])}.\t{' '.join(words)}.\n")
    directory.mkdir()
    write(directory / "spa.txt", "".join(lines))
    return directory


TINY = dict(max_len=0, max_pairs=0, min_count=1, cell="lstm", attention="luong", embed=32, hidden=32, dropout=0.0,
            batch_size=16, pad_multiple=8, learning_rate=0.01, beam_size=3, dev_subset=0, eval_batch_size=128,
            examples=3, heatmaps=1, log_every=20, checkpoint_every=1000)  # fmt: skip


def test_learns_to_reverse_and_resumes(tmp_path):
    data = reversal_data(tmp_path / "data")
    config = translation.Config(data=str(data), epochs=4, **TINY)
    out = tmp_path / "run"
    with jax.numpy_dtype_promotion("standard"):  # optax's Adam: b ** count with an int32 count
        results = ex.run(translation.EXPERIMENT, config, out)
    steps_per_epoch = results["steps_per_epoch"]
    assert results["steps"] == 4 * steps_per_epoch and len(results["dev_bleu"]) == 4
    assert results["best"]["dev_bleu"] == max(results["dev_bleu"])
    # chance is far below: the test sources were never seen in training (split by source sentence)
    assert results["test"]["bleu_greedy"] >= 70 and results["test"]["bleu_beam"] >= 70, results["test"]
    assert json.loads((out / "results.json").read_text()) == results
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["attention_0.png"]
    example = results["examples"][0]
    assert set(example) == {"source", "reference", "greedy", "beam"}

    longer = config_lib.replace(config, epochs=5)  # resumes from the last checkpoint, keeps the history
    with jax.numpy_dtype_promotion("standard"):
        resumed = ex.run(translation.EXPERIMENT, longer, tmp_path / "run")
    assert resumed["steps"] == 5 * steps_per_epoch and resumed["dev_bleu"][:4] == results["dev_bleu"]
    assert (out / "eval" / "metrics.jsonl").read_text().count("\n") == 5


def test_a_malformed_file_is_refused_in_one_line_before_the_workdir(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    write(data / "spa.txt", "Go.\tVe.\nRun!\n")
    out = tmp_path / "run"
    line = refusal(translation, f"--workdir={out}", f"--data={data}")
    assert f"{data / 'spa.txt'}:2: expected 'English<TAB>Spanish', found no tab: 'Run!'" in line and not out.exists()
