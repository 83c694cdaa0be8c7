"""The gensim comparison's table from fixed rows, and a tiny run of both systems when gensim is installed."""

import numpy as np
import pytest
import word2vec_vs_gensim as comparison


def row(system, seed, words_per_s, analogy):
    return {"system": system, "model": "skipgram", "seed": seed, "words_per_s": words_per_s, "analogy": analogy,
            "semantic": analogy, "syntactic": analogy, "wordsim353": 0.2, "simlex999": None}  # fmt: skip


def test_summary_means_spreads_ratio_and_differences():
    rows = [row("gensim", 0, 200.0, 0.03), row("seqjax", 0, 100.0, 0.02),
            row("gensim", 1, 220.0, 0.05), row("seqjax", 1, 140.0, 0.04)]  # fmt: skip
    gensim, seqjax, versus = comparison.summarize(rows)
    assert (gensim["words_per_s"], gensim["words_per_s_spread"]) == (210.0, 20.0)
    np.testing.assert_allclose([seqjax["analogy"], seqjax["analogy_spread"]], [0.03, 0.02])
    assert "simlex999" not in seqjax  # no values: left out, not zero
    np.testing.assert_allclose([versus["words_per_s"], versus["analogy"]], [120 / 210, -0.01])
    table = comparison.markdown([gensim, seqjax, versus])
    assert "| skipgram | gensim | 210 ± 20 | 4.00% ± 2.00% |" in table
    assert "| skipgram | seqjax vs gensim | 0.57x | -1.00 points |" in table


def test_both_systems_train_on_a_tiny_corpus(tmp_path):
    pytest.importorskip("gensim")
    rng = np.random.default_rng(0)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(" ".join(f"w{i}" for i in rng.integers(30, size=10)) for _ in range(300)) + "\n")
    settings = comparison.Settings(corpus=str(corpus), dim=8, epochs=1, eval_dir=str(tmp_path), batch_size=64)
    rows = comparison.compare(settings, ["skipgram"], [0], log=lambda _: None)
    assert [r["system"] for r in rows] == ["gensim", "seqjax"]
    assert all(r["words_per_s"] > 0 and r["analogy"] is None for r in rows)
