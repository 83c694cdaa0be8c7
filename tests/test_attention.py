"""Attention and Transformer blocks against NumPy float64 references, Flax's MultiHeadDotProductAttention,
closed-form residual wiring, exact causality (vector-Jacobian products) and padding invariance.

Speed (compilation is nearly all of it): the tests run eagerly on the same few shapes (B, T, D, H, F, S, M
below; every self-attention mask [B, 1, T, T]), so the library's jitted pieces compile once and later tests
hit the cache; inputs come from NumPy, keys are "rbg", and shapes alone come from ``jax.eval_shape``.
"""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqjax import attention as att

B, T, D, H, F = 2, 5, 8, 2, 16  # batch, time, d_model, heads, d_ff
K = D // H  # per-head size
S, M = 4, 6  # memory (source) length and width for cross-attention
V = 11  # vocabulary; also the learned-position tables' max_len (one [V, D] normal initialiser to compile)
LENGTHS = jnp.array([3, 5])


def rkey(seed):
    """An "rbg" PRNG key: XLA:CPU compiles its bit generator far faster than threefry's (the library takes any key)."""
    return jax.random.key(seed, impl="rbg")


def normal(seed, shape):
    """float32 N(0, 1) from NumPy: test inputs cost no XLA compilation."""
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def max_abs_diff(a, b):
    return np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max()


@pytest.fixture(scope="module")
def encoder_params():
    return att.init_encoder_block(rkey(0), D, H, F)


@pytest.fixture(scope="module")
def decoder_params():
    return att.init_decoder_block(rkey(1), D, H, F, memory_dim=M)


def np_softmax_attention(q, k, v, mask):
    """float64 softmax(q k^T / sqrt(d_k)) v; masked weights 0, a fully masked row all zeros."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    s = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    mask = np.broadcast_to(np.asarray(mask), s.shape)
    s = np.where(mask, s, -np.inf)
    row_max = np.max(s, axis=-1, keepdims=True)
    e = np.where(mask, np.exp(s - np.where(np.isfinite(row_max), row_max, 0.0)), 0.0)
    total = np.sum(e, axis=-1, keepdims=True)
    w = np.divide(e, total, out=np.zeros_like(e), where=total > 0)
    return w @ v, w


def np_layer_norm(x, scale, bias, eps):
    x = np.asarray(x, np.float64)
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * np.asarray(scale) + np.asarray(bias)


# --------------------------------------------------------------------------- scaled dot-product attention


def test_sdpa_vs_numpy():
    """Self-attention shapes with no mask, a padding mask, a causal mask and both; cross-attention (Tq != Tk)."""
    q, k, v = normal(1, (B, H, T, K)), normal(2, (B, H, T, K)), normal(3, (B, H, T, K))
    pad, causal = att.padding_mask(LENGTHS, T), att.causal_mask(T)
    for mask in (None, pad, causal, att.combine_masks(pad, causal)):
        out, w = att.scaled_dot_product_attention(q, k, v, mask)
        ref_out, ref_w = np_softmax_attention(q, k, v, True if mask is None else mask)
        assert out.shape == (B, H, T, K) and w.shape == (B, H, T, T) and w.dtype == jnp.float32
        np.testing.assert_allclose(w, ref_w, atol=1e-6)
        np.testing.assert_allclose(out, ref_out, atol=1e-5)
    k, v = normal(4, (B, H, S, K)), normal(5, (B, H, S, K))
    mask = att.padding_mask(jnp.array([2, 4]), S)
    out, w = att.scaled_dot_product_attention(q, k, v, mask)
    ref_out, ref_w = np_softmax_attention(q, k, v, mask)
    np.testing.assert_allclose(w, ref_w, atol=1e-6)
    np.testing.assert_allclose(out, ref_out, atol=1e-5)


def test_masked_weights_exactly_zero_and_fully_masked_row():
    q, k, v = normal(7, (B, H, T, K)), normal(8, (B, H, T, K)), normal(9, (B, H, T, K))
    # Query row 0 sees nothing; the others see keys j <= i except key 4, which nobody sees.
    mask = np.tril(np.ones((T, T), bool))
    mask[0, :] = False
    mask[:, 4] = False
    mask = np.broadcast_to(mask, (B, 1, T, T))  # the shape the blocks' masks have: shared compilations
    out, w = (np.asarray(a) for a in att.scaled_dot_product_attention(q, k, v, mask))
    visible = np.broadcast_to(np.asarray(mask), w.shape)
    np.testing.assert_array_equal(w[~visible], 0.0)
    np.testing.assert_array_equal(w[:, :, 0], 0.0)
    np.testing.assert_array_equal(out[:, :, 0], 0.0)
    np.testing.assert_allclose(w[:, :, 1:].sum(-1), 1.0, atol=1e-6)

    def loss(q, k, v):
        return jnp.vdot(att.scaled_dot_product_attention(q, k, v, mask)[0], cotangent)

    cotangent = normal(6, (B, H, T, K))
    gq, gk, gv = (np.asarray(g) for g in jax.grad(loss, argnums=(0, 1, 2))(q, k, v))
    for g in (gq, gk, gv):
        assert np.all(np.isfinite(g))
    np.testing.assert_array_equal(gq[:, :, 0], 0.0)  # the fully masked query has no influence
    np.testing.assert_array_equal(gk[:, :, 4], 0.0)  # nor does the key nobody may see
    np.testing.assert_array_equal(gv[:, :, 4], 0.0)
    assert np.abs(gq[:, :, 1:]).max() > 0.0


def test_sdpa_bfloat16_softmax_in_float32():
    qkv = [jnp.asarray(normal(i, (B, H, T, K)), jnp.bfloat16) for i in (10, 11, 12)]
    mask = att.padding_mask(LENGTHS, T)
    out, w = att.scaled_dot_product_attention(*qkv, mask)
    assert w.dtype == jnp.float32 and out.dtype == jnp.bfloat16
    ref_out, ref_w = np_softmax_attention(*(np.asarray(a).astype(np.float32) for a in qkv), mask)
    np.testing.assert_allclose(w, ref_w, atol=1e-5)  # float32 softmax of exact bf16 products
    np.testing.assert_allclose(np.asarray(out, np.float32), ref_out, atol=3e-2)


def test_masks():
    pad = att.padding_mask(jnp.array([0, 3]), T)
    assert pad.shape == (B, 1, 1, T) and pad.dtype == jnp.bool_
    np.testing.assert_array_equal(pad[:, 0, 0], [[False] * 5, [True] * 3 + [False] * 2])
    causal = att.causal_mask(T)
    assert causal.shape == (1, 1, T, T)
    np.testing.assert_array_equal(causal[0, 0], np.tril(np.ones((T, T), bool)))
    both = att.combine_masks(pad, None, causal)
    assert both.shape == (B, 1, T, T)
    np.testing.assert_array_equal(both, np.logical_and(np.asarray(pad), np.asarray(causal)))
    assert att.combine_masks(None, None) is None
    x = normal(0, (1, 2, 2))
    with pytest.raises(TypeError, match="bool"):
        att.scaled_dot_product_attention(x, x, x, mask=jnp.ones((1, 2, 2), jnp.float32))


# --------------------------------------------------------------------------- multi-head attention vs Flax


@pytest.mark.parametrize("cross", [False, True], ids=["self", "cross"])
def test_multi_head_vs_flax(encoder_params, decoder_params, cross):
    """Ours vs flax.linen.MultiHeadDotProductAttention with our weights, without and with masks."""
    if cross:
        params, x_q, x_kv = decoder_params["cross_attention"], normal(20, (B, T, D)), normal(21, (B, S, M))
        masks = [np.broadcast_to(np.asarray(att.padding_mask(jnp.array([2, 4]), S)), (B, 1, T, S))]
    else:
        params, x_q = encoder_params["attention"], normal(20, (B, T, D))
        x_kv = x_q
        masks = [None, att.combine_masks(att.padding_mask(LENGTHS, T), att.causal_mask(T))]
    module = nn.MultiHeadDotProductAttention(num_heads=H, qkv_features=D, out_features=D)
    flax_shapes = jax.eval_shape(module.init, jax.random.key(0), x_q, x_kv)["params"]
    # Flax's tree and shapes are ours; its leaves become our arrays.
    assert jax.tree.structure(flax_shapes) == jax.tree.structure(params)
    flax_params = jax.tree.map(lambda f, o: jnp.asarray(o).reshape(f.shape), flax_shapes, params)
    assert jax.tree.map(jnp.shape, flax_params) == jax.tree.map(jnp.shape, params)
    for mask in masks:
        ref, state = module.apply(
            {"params": flax_params}, x_q, x_kv, mask=mask, sow_weights=True, mutable=["intermediates"]
        )
        (ref_w,) = state["intermediates"]["attention_weights"]
        out, w = att.multi_head_attention(params, x_q, x_kv, mask, num_heads=H)
        assert out.shape == (B, T, D) and w.shape == (B, H, T, x_kv.shape[1])
        np.testing.assert_allclose(out, ref, atol=1e-5)
        np.testing.assert_allclose(w, ref_w, atol=1e-6)


def test_init_multi_head_shapes_and_range(encoder_params, key):
    p = jax.eval_shape(lambda k: att.init_multi_head(k, 12, 3, d_k=5, d_v=2, kv_dim=7), key)  # shapes only
    assert jax.tree.map(jnp.shape, p) == {
        "query": {"kernel": (12, 3, 5), "bias": (3, 5)},
        "key": {"kernel": (7, 3, 5), "bias": (3, 5)},
        "value": {"kernel": (7, 3, 2), "bias": (3, 2)},
        "out": {"kernel": (3, 2, 12), "bias": (12,)},
    }
    out, w = jax.eval_shape(att.multi_head_attention, p, jnp.ones((1, 4, 12)), jnp.ones((1, 3, 7)))
    assert out.shape == (1, 4, 12) and w.shape == (1, 3, 4, 3)
    p = encoder_params["attention"]
    limit = math.sqrt(6 / (D + D))  # Glorot uniform over the [d, h*k] matrix
    for name in ("query", "key", "value", "out"):
        kernel = np.asarray(p[name]["kernel"])
        assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.5 * limit
        np.testing.assert_array_equal(p[name]["bias"], 0.0)
    with pytest.raises(ValueError, match="heads"):
        att.multi_head_attention(p, normal(0, (B, T, D)), normal(0, (B, T, D)), num_heads=4)
    with pytest.raises(ValueError, match="divisible"):
        att.init_multi_head(key, 10, 3)


# --------------------------------------------------------------------------- positions, layer norm, FFN


@pytest.mark.parametrize("d", [6, 7])
def test_sinusoidal_positions_formula(d):
    t = 7
    ref = np.zeros((t, d))
    for pos in range(t):
        for i in range(0, d, 2):
            ref[pos, i] = math.sin(pos / 10000 ** (i / d))
            if i + 1 < d:
                ref[pos, i + 1] = math.cos(pos / 10000 ** (i / d))
    pe = att.sinusoidal_positions(t, d)
    assert pe.shape == (t, d) and pe.dtype == jnp.float32
    np.testing.assert_allclose(pe, ref, atol=1e-7)


def test_learned_positions():
    p = att.init_learned_positions(rkey(2), V, D)
    np.testing.assert_array_equal(att.learned_positions(p, T), np.asarray(p["embedding"])[:T])
    with pytest.raises(ValueError, match="max_len"):
        att.learned_positions(p, V + 1)


def test_layer_norm_vs_numpy():
    x = 3 * normal(30, (B, T, D)) + np.float32(1.5)
    params = {"scale": normal(31, (D,)), "bias": normal(32, (D,))}
    for eps in (1e-6, 1e-2):
        np.testing.assert_allclose(att.layer_norm(params, x, eps), np_layer_norm(x, *params.values(), eps), atol=1e-5)
    assert att.layer_norm(att.init_layer_norm(D), jnp.asarray(x, jnp.bfloat16)).dtype == jnp.bfloat16


def test_feed_forward_vs_numpy(encoder_params):
    p = jax.tree.map(lambda a: np.asarray(a) + np.float32(0.1), encoder_params["feed_forward"])  # nonzero biases
    x = normal(33, (B, T, D))
    w1, b1, w2, b2 = (
        np.asarray(p[layer][name], np.float64) for layer in ("dense_1", "dense_2") for name in ("kernel", "bias")
    )
    acts = {
        "relu": lambda z: np.maximum(z, 0.0),
        "gelu": np.vectorize(lambda z: 0.5 * z * (1 + math.erf(z / math.sqrt(2)))),
    }
    for name, act in acts.items():
        ref = act(np.asarray(x, np.float64) @ w1 + b1) @ w2 + b2
        np.testing.assert_allclose(att.feed_forward(p, x, name), ref, atol=1e-5)
    with pytest.raises(ValueError, match="activation"):
        att.feed_forward(p, x, "swish")


# --------------------------------------------------------------------------- blocks

MEMORY = normal(40, (B, S, M))
MEMORY_MASK = (np.arange(S)[None, :] < np.array([2, 4])[:, None])[:, None, None, :]  # [B, 1, 1, S]
# Every self-attention mask below is [B, 1, T, T], so the jitted attention compiles once for all blocks.
SELF_MASK = np.broadcast_to((np.arange(T)[None, :] < np.asarray(LENGTHS)[:, None])[:, None, None, :], (B, 1, T, T))


def run_block(kind, params, x, *, pre_norm, mask=None, key=None, rate=0.0):
    if kind == "encoder":
        return att.encoder_block(params, x, mask, num_heads=H, pre_norm=pre_norm, dropout_rate=rate, key=key)
    return att.decoder_block(
        params, x, MEMORY, mask, MEMORY_MASK, num_heads=H, pre_norm=pre_norm, dropout_rate=rate, key=key
    )


BLOCKS = [
    pytest.param(kind, pre_norm, id=f"{kind}-{'pre' if pre_norm else 'post'}")
    for kind in ("encoder", "decoder")
    for pre_norm in (True, False)
]


@pytest.fixture
def block_params(request, encoder_params, decoder_params):
    return encoder_params if request.node.callspec.params["kind"] == "encoder" else decoder_params


@pytest.mark.parametrize(("kind", "pre_norm"), BLOCKS)
def test_causal_block_has_no_future_dependence(block_params, kind, pre_norm):
    """d out_t / d x_s is exactly zero for s > t and nonzero for every s <= t (one VJP per output step t)."""
    params = jax.tree.map(lambda a: np.asarray(a) + np.float32(0.05), block_params)  # nonzero biases, LN scale != 1
    x = normal(41, (B, T, D))
    if kind == "encoder":
        mask = np.broadcast_to(np.tril(np.ones((T, T), bool)), (B, 1, T, T))
    else:
        mask = np.ones((B, 1, T, T), bool)  # no padding; the decoder adds its own causal mask
    _, vjp = jax.vjp(lambda params, x: run_block(kind, params, x, pre_norm=pre_norm, mask=mask), params, x)
    cotangent = normal(42, (B, T, D))
    for t in range(T):
        _, dx = vjp(cotangent * (np.arange(T) == t).astype(np.float32)[None, :, None])
        per_step = np.abs(np.asarray(dx)).sum(axis=-1)  # [b, s]
        np.testing.assert_array_equal(per_step[:, t + 1 :], 0.0)
        assert np.all(per_step[:, : t + 1] > 1e-6)


@pytest.mark.parametrize(("kind", "pre_norm"), BLOCKS)
def test_block_shapes_dropout_and_gradients(block_params, kind, pre_norm):
    params, x = block_params, normal(43, (B, T, D))
    run = functools.partial(run_block, kind, pre_norm=pre_norm, mask=SELF_MASK)
    det = run(params, x)
    assert det.shape == (B, T, D) and det.dtype == jnp.float32
    np.testing.assert_array_equal(run(params, x), det)  # key=None: deterministic
    np.testing.assert_array_equal(run(params, x, key=rkey(3), rate=0.0), det)  # rate 0: no dropout
    dropped = run(params, x, key=rkey(3), rate=0.5)
    assert max_abs_diff(dropped, det) > 1e-3
    np.testing.assert_array_equal(run(params, x, key=rkey(3), rate=0.5), dropped)  # same key, same masks
    assert max_abs_diff(run(params, x, key=rkey(4), rate=0.5), dropped) > 1e-3

    def loss(params, x):
        return jnp.sum(jnp.square(run(params, x, key=rkey(5), rate=0.1)))

    grads = jax.tree.map(np.asarray, jax.grad(loss, argnums=(0, 1))(params, x))
    for g in jax.tree.leaves(grads):
        assert np.all(np.isfinite(g))
    assert np.abs(grads[0]["feed_forward"]["dense_1"]["kernel"]).max() > 0.0


@pytest.mark.parametrize(("kind", "pre_norm"), BLOCKS)
def test_block_residual_wiring(block_params, kind, pre_norm):
    """Sub-layers whose output projections are zero: pre-LN is the identity, post-LN is one LN per sub-layer."""
    params = dict(block_params)
    for name in ("attention", "self_attention", "cross_attention"):
        if name in params:
            params[name] = {**params[name], "out": jax.tree.map(np.zeros_like, params[name]["out"])}
    ffn = params["feed_forward"]
    params["feed_forward"] = {**ffn, "dense_2": jax.tree.map(np.zeros_like, ffn["dense_2"])}
    x = normal(44, (B, T, D))
    out = run_block(kind, params, x, pre_norm=pre_norm)
    if pre_norm:
        np.testing.assert_array_equal(out, x)
    else:
        ref = np.asarray(x, np.float64)
        for _ in range(2 if kind == "encoder" else 3):
            ref = np_layer_norm(ref, np.ones(D), np.zeros(D), 1e-6)
        np.testing.assert_allclose(out, ref, atol=1e-5)


# --------------------------------------------------------------------------- the encoder stack


def encoder_config(**kw):
    return att.EncoderConfig(**{"num_layers": 2, "d_model": D, "num_heads": H, "d_ff": F, "vocab_size": V, **kw})


def test_encoder_padding_invariance():
    """A sentence's outputs do not change with its padding or its batch mates; padded outputs are zero."""
    config = encoder_config()
    params = att.init_transformer_encoder(rkey(6), config)
    batch_1 = jnp.array([[3, 1, 4, 1, 0], [2, 7, 1, 8, 2]])  # [B, T]
    batch_2 = jnp.array([[5, 9, 0, 0, 0, 0, 0], [3, 1, 4, 1, 5, 9, 2], [6, 5, 3, 5, 8, 9, 7]])  # junk after length
    out_1 = np.asarray(att.transformer_encoder(params, batch_1, jnp.array([4, 5]), config=config))
    out_2 = np.asarray(
        jax.jit(functools.partial(att.transformer_encoder, config=config))(params, batch_2, jnp.array([2, 4, 7]))
    )
    assert out_1.shape == (B, T, D) and out_2.shape == (3, 7, D)
    np.testing.assert_allclose(out_1[0, :4], out_2[1, :4], atol=1e-5)
    np.testing.assert_array_equal(out_1[0, 4:], 0.0)
    np.testing.assert_array_equal(out_2[0, 2:], 0.0)
    assert np.abs(out_1[0, :4]).sum(-1).min() > 0.0
    assert max_abs_diff(out_1[1], out_2[2, :T]) > 1e-3  # different sentences differ


def test_encoder_params_embeddings_dropout_and_gradients():
    post = encoder_config(pre_norm=False, positions="learned", max_len=V, dropout_rate=0.3)
    params = att.init_transformer_encoder(rkey(7), post)
    assert "final_norm" not in params and params["positions"]["embedding"].shape == (V, D)
    assert len(params["blocks"]) == 2 and params["embedding"].shape == (V, D)
    tokens = jnp.array([[1, 2, 3, 0, 0], [4, 5, 6, 7, 8]])
    det = att.transformer_encoder(params, tokens, LENGTHS, config=post)
    dropped = att.transformer_encoder(params, tokens, LENGTHS, config=post, key=rkey(1))
    assert max_abs_diff(det, dropped) > 1e-3
    np.testing.assert_array_equal(np.asarray(dropped)[0, 3:], 0.0)
    # Embeddings in: the same as looking the tokens up (times sqrt(d)) ourselves.
    embedded = np.asarray(params["embedding"])[np.asarray(tokens)] * np.float32(math.sqrt(D))
    np.testing.assert_allclose(att.transformer_encoder(params, embedded, LENGTHS, config=post), det, atol=1e-6)
    with pytest.raises(ValueError, match="pre_norm"):
        att.transformer_encoder(params, tokens, LENGTHS, config=post._replace(pre_norm=True))

    def loss(params):
        return jnp.sum(jnp.square(att.transformer_encoder(params, tokens, LENGTHS, config=post, key=rkey(2))))

    grads = jax.tree.map(np.asarray, jax.grad(loss)(params))
    for g in jax.tree.leaves(grads):
        assert np.all(np.isfinite(g))
    np.testing.assert_array_equal(grads["embedding"][9:], 0.0)  # tokens 9, 10 do not occur
    np.testing.assert_array_equal(grads["embedding"][0], 0.0)  # token 0 only at padded positions
    np.testing.assert_array_equal(grads["positions"]["embedding"][T:], 0.0)  # beyond the sequence

    pre = encoder_config(vocab_size=None)
    params = att.init_transformer_encoder(rkey(8), pre)
    assert "final_norm" in params and "embedding" not in params
    out = att.transformer_encoder(params, normal(45, (B, T, D)), config=pre)
    np.testing.assert_allclose(np.asarray(out).mean(-1), 0.0, atol=1e-5)  # final LN, scale 1 and bias 0
