"""The Transformer as the encoder of the sentiment classifier and the tagger: vs Flax's own modules with the
same weights, padding and batch-mate invariance, config errors, and the tagging experiment end to end."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tagging
from test_tagging import TINY, padded, synthetic_conllu

from seqjax import config as config_lib
from seqjax import experiment as ex
from seqjax.models import classifier, tagger, token_encoder

V, E, D, HEADS, LAYERS = 20, 12, 16, 4, 2
SENTENCE = [3, 7, 2, 9, 4]


def sinusoids(t: int, d: int) -> np.ndarray:
    """PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(p / 10000^(2i/d)) (Vaswani et al. 3.5)."""
    pe = np.zeros((t, d))
    for p in range(t):
        for i in range(0, d, 2):
            pe[p, i] = np.sin(p / 10000 ** (i / d))
            pe[p, i + 1] = np.cos(p / 10000 ** (i / d))
    return pe.astype(np.float32)


class FlaxFeedForward(nn.Module):
    d_ff: int

    @nn.compact
    def __call__(self, x):
        return nn.Dense(x.shape[-1], name="dense_2")(nn.gelu(nn.Dense(self.d_ff, name="dense_1")(x), approximate=False))


class FlaxPreLNBlock(nn.Module):
    d_ff: int

    @nn.compact
    def __call__(self, x, mask):
        y = nn.LayerNorm(epsilon=1e-6, name="norm_attention")(x)
        x = x + nn.MultiHeadDotProductAttention(num_heads=HEADS, name="attention")(y, y, mask=mask)
        y = nn.LayerNorm(epsilon=1e-6, name="norm_feed_forward")(x)
        return x + FlaxFeedForward(self.d_ff, name="feed_forward")(y)


class FlaxTokenEncoder(nn.Module):
    """``LN(x W + b) + PE``, pre-LN blocks over valid keys, a final LN: the encoder from Flax's own modules."""

    d_ff: int

    @nn.compact
    def __call__(self, x, lengths):
        t = x.shape[1]
        z = nn.LayerNorm(epsilon=1e-6, name="in_norm")(nn.Dense(D, name="in")(x)) + sinusoids(t, D)[None]
        mask = (np.arange(t)[None, :] < lengths[:, None])[:, None, None, :]  # [b, 1, 1, t]: valid keys
        for layer in range(LAYERS):
            z = FlaxPreLNBlock(self.d_ff, name=f"block_{layer}")(z, mask)
        return nn.LayerNorm(epsilon=1e-6, name="final_norm")(z)


def flax_params(ours: dict) -> dict:
    """Our token-encoder params, renamed into the Flax module's tree."""
    encoder = ours["encoder"]
    blocks = {f"block_{i}": block for i, block in enumerate(encoder["blocks"])}
    return {"params": {"in": ours["in"], "in_norm": ours["in_norm"], **blocks, "final_norm": encoder["final_norm"]}}


def config(pooling: str, mlp_ratio: int = 2) -> classifier.ClassifierConfig:
    return classifier.ClassifierConfig(vocab_size=V, encoder="transformer", num_layers=LAYERS, hidden_size=D,
                                       embed_size=E, num_heads=HEADS, mlp_ratio=mlp_ratio, pooling=pooling)  # fmt: skip


def test_classifier_sentence_vectors_equal_flax_modules_with_our_weights(key):
    """Every pooling of the Transformer classifier = the same pooling of Flax's composition, per sentence."""
    configs = [config(pooling) for pooling in classifier.POOLINGS]
    params = classifier.init_params(configs[0], key)
    tokens = jnp.asarray([[3, 7, 2, 9, 4, 5], [8, 1, 0, 0, 0, 0]], jnp.int32)
    lengths = jnp.asarray([5, 2], jnp.int32)
    with jax.numpy_dtype_promotion("standard"), jax.numpy_rank_promotion("allow"):  # Flax's own code
        reference = FlaxTokenEncoder(d_ff=2 * D).apply(
            flax_params(params["encoder"]), params["embedding"][tokens], lengths
        )
    reference = np.asarray(reference)
    vectors = jax.jit(lambda p, t, n: [classifier.sentence_vectors(cfg, p, t, n) for cfg in configs])
    for cfg, ours in zip(configs, vectors(params, tokens, lengths), strict=True):
        ours = np.asarray(ours)
        for b, n in enumerate(np.asarray(lengths)):
            valid = reference[b, :n]
            expected = {"last": valid[-1], "mean": valid.mean(axis=0), "max": valid.max(axis=0)}[cfg.pooling]
            np.testing.assert_allclose(ours[b], expected, rtol=0, atol=2e-5, err_msg=cfg.pooling)


def test_classifier_and_tagger_ignore_padding_and_batch_mates(key):
    model = config("mean")
    params = classifier.init_params(model, key)
    logits = jax.jit(lambda p, t, n: classifier.apply(model, p, t, n))

    def batch(rows, steps, seed):
        words, _, lengths = padded(rows, steps, seed)
        return jnp.minimum(words, V - 1), lengths

    alone = logits(params, *batch([SENTENCE], 5, 0))[0]
    mates = logits(params, *batch([[5] * 9, SENTENCE, [8, 1]], 9, 1))
    np.testing.assert_allclose(mates[1], alone, rtol=0, atol=1e-5)
    assert np.abs(mates[0] - alone).max() > 1e-3

    tag_model = tagger.TaggerConfig(vocab_size=20, char_vocab_size=12, num_tags=5, num_layers=1, hidden_size=D,
                                    embed_size=E, char_embed_size=8, char_features=8, bidirectional=False,
                                    encoder="transformer", num_heads=HEADS)  # fmt: skip
    tag_params = tagger.init_params(tag_model, key)
    tag_logits = jax.jit(lambda p, w, c, n: tagger.apply(tag_model, p, w, c, n))
    alone = tag_logits(tag_params, *padded([SENTENCE], 5))[0]
    mates = tag_logits(tag_params, *padded([[5] * 9, SENTENCE, [8, 1]], 9, seed=1))
    np.testing.assert_allclose(mates[1, :5], alone, rtol=0, atol=1e-5)
    assert np.abs(alone[0] - alone[1]).max() > 1e-4  # per position
    # the first word sees the last one: attention reads both ways
    words, chars, lengths = padded([SENTENCE], 5)
    changed = tag_logits(tag_params, words.at[0, 4].set(11), chars, lengths)[0]
    assert np.abs(changed[0] - alone[0]).max() > 1e-5


def test_bad_transformer_configs_are_one_line_errors():
    with pytest.raises(ValueError, match="bidirectional does not apply"):
        classifier.ClassifierConfig(vocab_size=V, encoder="transformer", bidirectional=True, hidden_size=16)
    with pytest.raises(ValueError, match="not divisible by num_heads=4"):
        tagger.TaggerConfig(vocab_size=5, char_vocab_size=5, num_tags=2, encoder="transformer", bidirectional=False,
                            hidden_size=30)  # fmt: skip
    with pytest.raises(ValueError, match="unknown encoder 'cnn'"):
        classifier.ClassifierConfig(vocab_size=V, encoder="cnn")
    assert token_encoder.ENCODERS == ("rnn", "transformer")


def test_tagging_experiment_with_the_transformer_learns_synthetic_tags(tmp_path):
    tiny = dict(TINY, hidden=24, learning_rate=3e-3)
    cfg = tagging.Config(data=str(synthetic_conllu(tmp_path / "data")), epochs=3, encoder="transformer",
                         num_heads=2, bidirectional=False, **tiny)  # fmt: skip
    out = tmp_path / "run"
    with jax.numpy_dtype_promotion("standard"):  # optax's Adam: b ** count with an int32 count
        results = ex.run(tagging.EXPERIMENT, cfg, out)
    # chance: ~0.3 (the commonest tag); the unseen stems' words are <unk>: only the characters tell
    assert results["best"]["dev_accuracy"] >= 0.9 and results["best"]["test_accuracy"] >= 0.9, results
    assert "encoder" in config_lib.fixed_names(cfg) and cfg.stack.encoder == "transformer"
