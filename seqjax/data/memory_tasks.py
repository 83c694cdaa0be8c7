"""Token tasks that probe what a recurrence can track, copy and recall, generated on the fly from a key.

Every generator is a pure, jittable function ``name(key, batch, length, ...) -> TokenBatch`` (``batch`` and
``length`` static): int32 input ids ``tokens [b, t]``, int32 class ids ``targets [b, t]`` (0 where no answer is
defined) and a bool ``mask [b, t]`` of the positions whose prediction is scored. The models are causal: the output
at step t has seen ``tokens[:, :t + 1]`` only, so every answer is asked for at or after the last token it depends
on. ``TASKS`` names each task with its vocabulary, classes, shortest length, chance level and source.

- State tracking (Deletang et al. 2023, "Neural Networks and the Chomsky Hierarchy", ICLR; regular tasks of
  appendix A.3): ``parity``, ``modular_arithmetic``, ``cycle_navigation``. ``targets[:, t]`` is the answer for the
  prefix ending at t wherever that prefix is a well-formed input, and ``mask`` scores the whole string's answer
  (the last such position). ``sample_lengths`` and ``final_positions_mask`` give each example its own length
  within one ``[b, t]`` batch, without padding. The paper appends an empty token after the input and reads the
  answer there (appendix A.3, A.4); here the answer is read at the last input token, so no token announces the
  end: a model must hold the answer of every prefix.
- ``selective_copying`` (Gu & Dao 2023, "Mamba", section 3.1 and appendix E.1).
- ``associative_recall``: multi-query associative recall (Arora et al. 2023, "Zoology", section 3).
- ``copy_memory_tokens`` and ``temporal_order_tokens``: ``synthetic.copy_memory`` and ``synthetic.temporal_order``
  as TokenBatches.

Scoring a model's logits on these batches: ``seqjax.models.task_training``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from seqjax.data import synthetic


class TokenBatch(NamedTuple):
    """A batch of a token task.

    Attributes:
      tokens: ``[b, t]`` int32 input token ids.
      targets: ``[b, t]`` int32 class ids (0 where no answer is defined).
      mask: ``[b, t]`` bool, the positions whose prediction is scored.
    """

    tokens: jax.Array
    targets: jax.Array
    mask: jax.Array


@dataclasses.dataclass(frozen=True)
class TokenTask:
    """A registered task: ``generate(key, batch, length) -> TokenBatch`` with the defaults of its generator.

    Attributes:
      name: the key in ``TASKS``.
      vocab_size: input ids are in ``[0, vocab_size)``.
      num_classes: targets are in ``[0, num_classes)``.
      generate: ``(key, batch, length) -> TokenBatch``.
      min_length: the shortest length the task is defined at.
      chance: the accuracy of the best input-independent guess at the scored positions. For
        ``modular_arithmetic`` and ``cycle_navigation`` it depends on the length; this is its limit for long
        strings (1/5), and ``state_tracking_chance(name, length)`` is the exact value at a length.
      reference: the paper and section that define the task.
    """

    name: str
    vocab_size: int
    num_classes: int
    generate: Callable[..., TokenBatch]
    min_length: int
    chance: float
    reference: str


def _last_position_mask(batch: int, length: int, position: int) -> jax.Array:
    """``[b, t]`` bool, True at ``position`` only."""
    return jnp.broadcast_to(jnp.arange(length) == position, (batch, length))


def _check_length(name: str, length: int, min_length: int) -> None:
    if length < min_length:
        raise ValueError(f"{name} needs length >= {min_length}, got {length}")


# ---------------------------------------------------------------------------------------------------------------------
# State tracking (Deletang et al. 2023)

PARITY_VOCAB_SIZE = 2  # tokens 0 and 1; the ones are counted
CYCLE_LENGTH = 5  # states 0..4 of the cycle
CYCLE_VOCAB_SIZE = 3  # token a moves by a - 1: 0 left (-1), 1 stay, 2 right (+1)
MODULUS = 5
# Modular arithmetic: 0..4 the residues, then the operators.
PLUS, MINUS, TIMES = MODULUS, MODULUS + 1, MODULUS + 2
MODULAR_VOCAB_SIZE = MODULUS + 3
MODULAR_ORDERS = ("precedence", "left_to_right")
STATE_TRACKING = ("parity", "modular_arithmetic", "cycle_navigation")


def parity(key, batch: int, length: int) -> TokenBatch:
    """Parity check (Deletang et al. 2023, appendix A.3, "Parity Check"; reference code
    google-deepmind/neural_networks_chomsky_hierarchy ``tasks/regular/parity_check.py``, ``ParityCheck``).

    Tokens: bits drawn independently and uniformly from {0, 1}. Answer: the number of ones modulo 2 (class 1: odd,
    class 0: even), as in the reference code (the paper writes the bits as a, b, counts the b's and names the
    classes by letters, a relabelling).

    Args:
      key: a ``jax.random`` key.
      batch: b.
      length: t >= 1.

    Returns:
      ``TokenBatch``: tokens ``[b, t]`` in {0, 1}; ``targets[:, i]`` the parity of ``tokens[:, :i + 1]``, in {0, 1};
      ``mask`` the last position.
    """
    _check_length("parity", length, 1)
    bits = jax.random.randint(key, (batch, length), 0, PARITY_VOCAB_SIZE, dtype=jnp.int32)
    targets = jnp.cumsum(bits, axis=1, dtype=jnp.int32) % 2
    return TokenBatch(bits, targets, _last_position_mask(batch, length, length - 1))


def cycle_navigation(key, batch: int, length: int) -> TokenBatch:
    """Cycle navigation (Deletang et al. 2023, appendix A.3, "Cycle Navigation"; reference code
    ``tasks/regular/cycle_navigation.py``, ``CycleNavigation``).

    An agent starts at state 0 of a cycle of 5 states. Tokens: moves drawn independently and uniformly from
    {0, 1, 2}, token a moving the agent by a - 1 (0 one step back, 1 stay, 2 one step on), the reference code's
    encoding (``sum(actions - 1) % 5``). The paper's appendix lists 0, 1, 2 as stay, increase, decrease instead, a
    relabelling of the same task. Answer: the final state, ``sum(a - 1) mod 5``.

    Args:
      key: a ``jax.random`` key.
      batch: b.
      length: t >= 1.

    Returns:
      ``TokenBatch``: tokens ``[b, t]`` in {0, 1, 2}; ``targets[:, i]`` the state after ``tokens[:, :i + 1]``, in
      {0, ..., 4}; ``mask`` the last position.
    """
    _check_length("cycle_navigation", length, 1)
    moves = jax.random.randint(key, (batch, length), 0, CYCLE_VOCAB_SIZE, dtype=jnp.int32)
    targets = jnp.cumsum(moves - 1, axis=1, dtype=jnp.int32) % CYCLE_LENGTH
    return TokenBatch(moves, targets, _last_position_mask(batch, length, length - 1))


def last_well_formed(task_name: str, lengths):
    """The position whose target answers for a string of ``lengths`` tokens: ``lengths - 1``, except for
    ``modular_arithmetic``, where an even length is rounded down to the odd length below it (an expression ends on
    a number), as the reference code does for an even sampled length. Works on ints and on arrays."""
    if task_name not in STATE_TRACKING:
        raise ValueError(f"{task_name!r} is not a state-tracking task; known: {', '.join(STATE_TRACKING)}")
    last = lengths - 1
    return last - last % 2 if task_name == "modular_arithmetic" else last


def _evaluate_prefixes(numbers, operators, order: str):
    """The value mod 5 of every prefix that ends on a number.

    Args:
      numbers: ``[b, n]`` int32 residues n_0 .. n_{n-1}.
      operators: ``[b, n - 1]`` int32 operator ids; ``operators[:, i]`` stands between n_i and n_{i + 1}.
      order: "precedence" or "left_to_right".

    Returns:
      ``[b, n]`` int32: column i is the value of ``n_0 op_0 n_1 ... n_i``.
    """

    def step(carry, x):
        # The prefix's value is acc + term: acc the finished terms, term the signed product still growing.
        acc, term = carry
        op, n = x
        if order == "precedence":
            times = op == TIMES
            acc = jnp.where(times, acc, (acc + term) % MODULUS)
            term = jnp.where(times, term * n, jnp.where(op == MINUS, -n, n)) % MODULUS
        else:  # left to right: acc stays 0 and term is the value so far
            term = jnp.where(op == TIMES, term * n, jnp.where(op == MINUS, term - n, term + n)) % MODULUS
        return (acc, term), (acc + term) % MODULUS

    first = numbers[:, 0]
    _, rest = jax.lax.scan(step, (jnp.zeros_like(first), first), (operators.T, numbers[:, 1:].T))
    return jnp.concatenate([first[:, None], rest.T], axis=1)


def modular_arithmetic(key, batch: int, length: int, *, order: str = "precedence") -> TokenBatch:
    """Modular arithmetic, simple form (Deletang et al. 2023, appendix A.3, "Modular Arithmetic (Simple)"; reference
    code ``tasks/regular/modular_arithmetic.py``, ``ModularArithmetic`` with its defaults: modulus 5, operators
    +, -, *).

    Tokens alternate a residue and an operator: ``n_0 op_0 n_1 op_1 ...``, residues uniform in {0, ..., 4} (token
    ids 0..4), operators uniform over + (id 5), - (id 6), * (id 7), the reference code's ids (its one-hot input also
    has an unused blank symbol, id 8, left out here). The answer is the expression's value mod 5.

    order="precedence" (default): * binds tighter than + and -, which are left-associative; the reference code
      does this (``_perform_multiplications`` multiplies out each product before the sum, a - b counts as
      a + (-b)), e.g. 1 + 2 * 3 = 7 = 2 mod 5. The paper's appendix calls the task solvable by a 5-state automaton
      "with the state being equal to the current result", which holds for the other order only; this order tracks
      the finished sum and the pending product (up to 25 states).
    order="left_to_right": each operator is applied to the value so far, ((n_0 op_0 n_1) op_1 n_2) ...; a 5-state
      automaton. Not the paper's task; an option for contrast. Its answers are not uniform even for long strings:
      0 tends to probability 3/11 (a * 0 sends any value to 0).

    An expression has odd length. For an even ``length`` the last token is an operator that no answer depends on,
    and the scored position is ``length - 2``: the reference code also rounds an even length down to odd (the
    paper's appendix says it adds one; rounding down keeps the string inside ``[b, t]``).

    Args:
      key: a ``jax.random`` key.
      batch: b.
      length: t >= 1.
      order: "precedence" or "left_to_right".

    Returns:
      ``TokenBatch``: tokens ``[b, t]`` in {0, ..., 7}; ``targets[:, i]`` for even i the value of
      ``tokens[:, :i + 1]`` in {0, ..., 4}, for odd i 0 (a prefix ending on an operator has no value); ``mask``
      the last even position.
    """
    _check_length("modular_arithmetic", length, 1)
    if order not in MODULAR_ORDERS:
        raise ValueError(f"unknown modular arithmetic order {order!r}; known: {', '.join(MODULAR_ORDERS)}")
    k_n, k_o = jax.random.split(key)
    num_numbers = (length + 1) // 2
    numbers = jax.random.randint(k_n, (batch, num_numbers), 0, MODULUS, dtype=jnp.int32)
    operators = jax.random.randint(k_o, (batch, length // 2), PLUS, TIMES + 1, dtype=jnp.int32)
    values = _evaluate_prefixes(numbers, operators[:, : num_numbers - 1], order)
    # Interleave: [b, n, 2] -> [b, 2n], then cut to t (drops the padding operator slot of an odd length).
    pad = jnp.zeros((batch, num_numbers - operators.shape[1]), jnp.int32)
    tokens = jnp.stack([numbers, jnp.concatenate([operators, pad], axis=1)], axis=2).reshape(batch, -1)[:, :length]
    targets = jnp.stack([values, jnp.zeros_like(values)], axis=2).reshape(batch, -1)[:, :length]
    mask = _last_position_mask(batch, length, last_well_formed("modular_arithmetic", length))
    return TokenBatch(tokens, targets, mask)


def final_positions_mask(task_name: str, length: int, lengths) -> jax.Array:
    """Scores each example of a state-tracking batch at its own length.

    A batch generated at length t holds, for every example, the answers of all its prefixes. An example of length
    ``l_b <= t`` is answered at position ``l_b - 1`` (rounded down to an even position for ``modular_arithmetic``:
    ``last_well_formed``); a causal model has not seen the tokens after it there, so they need no padding::

        batch = TASKS[name].generate(k_data, b, t)
        batch = batch._replace(mask=final_positions_mask(name, t, sample_lengths(k_len, name, b, t)))

    Args:
      task_name: one of ``STATE_TRACKING``.
      length: t.
      lengths: ``[b]`` int, each in ``[TASKS[task_name].min_length, t]`` (not checked: traced values may arrive).

    Returns:
      ``[b, t]`` bool, True at ``last_well_formed(task_name, lengths)`` only.
    """
    last = last_well_formed(task_name, jnp.asarray(lengths, jnp.int32))
    return jnp.arange(length)[None, :] == last[:, None]


def sample_lengths(key, task_name: str, batch: int, length: int) -> jax.Array:
    """Per-example lengths ``[b]`` int32, independent and uniform in ``[min_length, length]``.

    The paper trains on lengths uniform in 1..N = 40 (appendix A.4), one length per batch in the reference code
    (``experiments/example.py``, ``UniformCurriculum(range(1, N + 1))``); here each example draws its own. For
    ``modular_arithmetic`` an even draw l is answered at length l - 1 (``final_positions_mask``), as the reference
    code does: with ``length`` = t and min_length 1, each odd length below t has probability 2/t, and an odd t
    itself 1/t.
    """
    min_length = TASKS[task_name].min_length
    _check_length(task_name, length, min_length)
    return jax.random.randint(key, (batch,), min_length, length + 1, dtype=jnp.int32)


def final_answer_distribution(task_name: str, length: int, *, order: str = "precedence") -> np.ndarray:
    """The exact distribution ``[c]`` (float64) of the answer for a whole string of ``length`` tokens.

    By dynamic programming over the automaton's states: parity is uniform; cycle navigation is the 5-state walk
    from 0; modular arithmetic tracks (finished sum, pending product) for "precedence" and the value for
    "left_to_right", over ``last_well_formed(length) + 1`` tokens.
    """
    _check_length(task_name, length, 1)
    if task_name == "parity":
        return np.full(2, 0.5)
    if task_name == "cycle_navigation":
        p = np.eye(CYCLE_LENGTH)[0]
        for _ in range(length):
            p = (np.roll(p, -1) + p + np.roll(p, 1)) / 3.0
        return p
    if task_name != "modular_arithmetic":
        raise ValueError(f"{task_name!r} is not a state-tracking task; known: {', '.join(STATE_TRACKING)}")
    if order not in MODULAR_ORDERS:
        raise ValueError(f"unknown modular arithmetic order {order!r}; known: {', '.join(MODULAR_ORDERS)}")
    residues = np.arange(MODULUS)
    # p[acc, term]; "left_to_right" keeps acc = 0 and term = the value.
    p = np.zeros((MODULUS, MODULUS))
    p[0, :] = 1.0 / MODULUS
    for _ in range(last_well_formed("modular_arithmetic", length) // 2):
        new = np.zeros_like(p)
        for acc in residues:
            for term in residues:
                for n in residues:
                    w = p[acc, term] / (3 * MODULUS)
                    if order == "precedence":
                        new[(acc + term) % MODULUS, n] += w  # +
                        new[(acc + term) % MODULUS, -n % MODULUS] += w  # -
                        new[acc, term * n % MODULUS] += w  # *
                    else:
                        new[0, (term + n) % MODULUS] += w
                        new[0, (term - n) % MODULUS] += w
                        new[0, term * n % MODULUS] += w
        p = new
    answer = np.zeros(MODULUS)
    for acc in residues:
        for term in residues:
            answer[(acc + term) % MODULUS] += p[acc, term]
    return answer


def state_tracking_chance(task_name: str, length: int) -> float:
    """The accuracy of the best input-independent guess for a whole string of ``length`` tokens (the registered
    task's order): the largest probability in ``final_answer_distribution``. E.g. cycle navigation at length 1:
    1/3; both tasks tend to 1/5 as the length grows."""
    return float(np.max(final_answer_distribution(task_name, length)))


# ---------------------------------------------------------------------------------------------------------------------
# Selective copying (Gu & Dao 2023)


def selective_copying(key, batch: int, length: int, *, num_tokens: int = 16, vocab_size: int = 16) -> TokenBatch:
    """Selective copying (Gu & Dao 2023, "Mamba: Linear-time sequence modeling with selective state spaces",
    section 3.1, figure 2 and appendix E.1; after the denoising task of Jing et al. 2019, "Gated orthogonal
    recurrent units: on learning to forget"). The layout follows the generator the S4 repository uses for it
    (state-spaces/s4, ``src/dataloaders/datasets/copying.py``, ``torch_copying_data`` with ``variable=True``).

    Vocabulary of ``vocab_size`` = A tokens: 0 noise, 1..A-2 data symbols, A-1 the marker. With k = ``num_tokens``:

    - the first ``length - k`` positions hold k data symbols, drawn independently and uniformly from 1..A-2, at k
      distinct positions drawn uniformly (in increasing order), and noise (0) everywhere else;
    - the last k positions hold the marker;
    - at the i-th marker the target is the i-th data symbol; ``mask`` is the last k positions.

    The paper's setting is length 4096 with A = 16 tokens ("including the white noise token") and k = 16, the
    defaults here; with the marker that leaves 14 data symbols, as in the S4 generator. ``length`` is the total
    length 2k + (number of noise tokens), so the noise grows with it; the S4 generator's ``L`` counts the noise only.

    Args:
      key: a ``jax.random`` key.
      batch: b.
      length: t >= 2k.
      num_tokens: k >= 1, the number of data symbols to copy.
      vocab_size: A >= 3.

    Returns:
      ``TokenBatch``: tokens ``[b, t]`` in {0, ..., A - 1}; targets ``[b, t]``, the data symbols at the last k
      positions and 0 elsewhere; mask ``[b, t]``, the last k positions. Chance: 1 / (A - 2).
    """
    if num_tokens < 1 or vocab_size < 3:
        raise ValueError(f"selective copying needs num_tokens >= 1 and vocab_size >= 3, got {num_tokens}, {vocab_size}")
    _check_length("selective_copying", length, 2 * num_tokens)
    k_data, k_pos = jax.random.split(key)
    data = jax.random.randint(k_data, (batch, num_tokens), 1, vocab_size - 1, dtype=jnp.int32)
    region = length - num_tokens  # where the data and the noise go
    # A uniformly random k-subset of the region: the k largest of i.i.d. uniform scores.
    _, positions = jax.lax.top_k(jax.random.uniform(k_pos, (batch, region)), num_tokens)
    positions = jnp.sort(positions, axis=1)
    rows = jnp.arange(batch)[:, None]
    markers = jnp.full((batch, num_tokens), vocab_size - 1, jnp.int32)
    tokens = jnp.zeros((batch, region), jnp.int32).at[rows, positions].set(data)
    tokens = jnp.concatenate([tokens, markers], axis=1)
    targets = jnp.concatenate([jnp.zeros((batch, region), jnp.int32), data], axis=1)
    mask = jnp.broadcast_to(jnp.arange(length) >= region, (batch, length))
    return TokenBatch(tokens, targets, mask)


# ---------------------------------------------------------------------------------------------------------------------
# Multi-query associative recall (Arora et al. 2023)


def associative_recall(
    key, batch: int, length: int, *, num_pairs: int = 4, vocab_size: int = 64, power_a: float = 0.01
) -> TokenBatch:
    """Multi-query associative recall, MQAR (Arora et al. 2023, "Zoology: Measuring and improving recall in
    efficient language models", section 3 and appendix; the layout of the Zoology generator, HazyResearch/zoology
    ``zoology/data/multiquery_ar.py``, ``multiquery_ar``, formerly ``zoology/data/associative_recall.py``).

    With V = ``vocab_size`` and D = ``num_pairs``:

    - D distinct keys, uniform among the key tokens 1 .. V//2 - 1, and D distinct values, uniform among the value
      tokens V//2 .. V - 1 (disjoint vocabularies; token 0 is the filler);
    - positions 0 .. 2D - 1 hold the pairs ``k_1 v_1 k_2 v_2 ... k_D v_D``;
    - every key is queried once, in the query region after the pairs: query j sits at ``2D + 2 g_j``, with D
      distinct gaps g_j in ``[0, (t - 2D) // 2)`` drawn one after another without replacement with probability
      proportional to ``(g + 1) ** (power_a - 1)``: a power law that puts most queries near the pairs for the default
      ``power_a`` = 0.01 (Zoology's), uniform for ``power_a`` = 1;
    - every other position holds the filler 0;
    - at each query the target is the value bound to its key (the token a language model would predict next) and
      the mask is True; elsewhere the target is 0 and the mask False.

    Differences from the Zoology generator: the filler is always 0 (Zoology's ``random_non_queries=False``, the
    setting of its figure-2 configurations; its default draws random fillers from the whole vocabulary); any
    ``length >= 4D`` is allowed (Zoology also asks for an even length and ``vocab_size > length``, neither of which
    the task needs: an odd length leaves a last filler position); the defaults are small (Zoology: V = 8192,
    D = 4..64 for t = 64..512).

    Args:
      key: a ``jax.random`` key.
      batch: b.
      length: t >= 4D.
      num_pairs: D >= 1, at most V//2 - 1.
      vocab_size: V.
      power_a: the power law's exponent, > 0.

    Returns:
      ``TokenBatch``: tokens ``[b, t]`` in {0, ..., V - 1}; targets ``[b, t]``, value tokens in {V//2, ..., V - 1}
      at the queries and 0 elsewhere (so ``num_classes`` = V); mask ``[b, t]``, True at the D queries. Chance:
      1 / (V - V//2).
    """
    key_vocab = vocab_size // 2
    if not 1 <= num_pairs <= key_vocab - 1:
        raise ValueError(
            f"associative recall needs 1 <= num_pairs <= vocab_size // 2 - 1, got {num_pairs}, {vocab_size}"
        )
    if power_a <= 0:
        raise ValueError(f"associative recall needs power_a > 0, got {power_a}")
    _check_length("associative_recall", length, 4 * num_pairs)
    k_keys, k_values, k_gaps = jax.random.split(key, 3)
    # Distinct draws without replacement: the top D of i.i.d. scores (uniform: a uniform subset in random order).
    keys = jax.lax.top_k(jax.random.uniform(k_keys, (batch, key_vocab - 1)), num_pairs)[1] + 1
    values = jax.lax.top_k(jax.random.uniform(k_values, (batch, vocab_size - key_vocab)), num_pairs)[1] + key_vocab
    keys, values = keys.astype(jnp.int32), values.astype(jnp.int32)
    # Sequential weighted sampling without replacement is the top D of log p + Gumbel noise, in order.
    context = 2 * num_pairs
    space = (length - context) // 2
    log_p = (power_a - 1.0) * jnp.log(jnp.arange(1, space + 1, dtype=jnp.float32))
    _, gaps = jax.lax.top_k(log_p[None, :] + jax.random.gumbel(k_gaps, (batch, space)), num_pairs)
    queries = context + 2 * gaps.astype(jnp.int32)  # [b, D]
    pairs = jnp.stack([keys, values], axis=2).reshape(batch, context)
    rows = jnp.arange(batch)[:, None]
    filler = jnp.zeros((batch, length - context), jnp.int32)
    tokens = jnp.concatenate([pairs, filler], axis=1).at[rows, queries].set(keys)
    targets = jnp.zeros((batch, length), jnp.int32).at[rows, queries].set(values)
    mask = jnp.zeros((batch, length), bool).at[rows, queries].set(True)
    return TokenBatch(tokens, targets, mask)


# ---------------------------------------------------------------------------------------------------------------------
# The copying memory and temporal order problems of seqjax.data.synthetic as TokenBatches


def copy_memory_tokens(key, batch: int, length: int) -> TokenBatch:
    """``synthetic.copy_memory`` (Arjovsky, Shah & Bengio 2016, section 4.1) with ``delay = length - 20``.

    Returns:
      ``TokenBatch``: its inputs and targets (``[b, t]`` int32 in {0, ..., 9}), mask the last 10 positions, where
      the targets are the 10 data symbols (1..8). Needs ``length >= 21``. Chance: 1/8.
    """
    _check_length("copy", length, 2 * synthetic.COPY_LENGTH + 1)
    inputs, targets = synthetic.copy_memory(key, batch, length - 2 * synthetic.COPY_LENGTH)
    mask = jnp.broadcast_to(jnp.arange(length) >= length - synthetic.COPY_LENGTH, (batch, length))
    return TokenBatch(inputs, targets, mask)


def temporal_order_tokens(key, batch: int, length: int) -> TokenBatch:
    """``synthetic.temporal_order`` (Hochreiter & Schmidhuber 1997, experiment 6a) at ``seq_len = length``.

    Returns:
      ``TokenBatch``: its inputs (``[b, t]`` int32 in {0, ..., 7}); targets the class (XX 0, XY 1, YX 2, YY 3) at
      the last position, where the end marker arrives, and 0 elsewhere; mask the last position. Needs
      ``length >= 10``. Chance: 1/4.
    """
    inputs, labels = synthetic.temporal_order(key, batch, length)
    targets = jnp.zeros((batch, length), jnp.int32).at[:, -1].set(labels)
    return TokenBatch(inputs, targets, _last_position_mask(batch, length, length - 1))


# ---------------------------------------------------------------------------------------------------------------------
# Registry

_CHOMSKY = 'Deletang et al. 2023, "Neural Networks and the Chomsky Hierarchy", ICLR 2023, appendix A.3'
TASKS: dict[str, TokenTask] = {
    task.name: task
    for task in (
        TokenTask("parity", PARITY_VOCAB_SIZE, 2, parity, 1, 0.5, f"{_CHOMSKY}, Parity Check"),
        TokenTask(
            "modular_arithmetic",
            MODULAR_VOCAB_SIZE,
            MODULUS,
            modular_arithmetic,
            1,
            1.0 / MODULUS,
            f"{_CHOMSKY}, Modular Arithmetic (Simple)",
        ),
        TokenTask(
            "cycle_navigation",
            CYCLE_VOCAB_SIZE,
            CYCLE_LENGTH,
            cycle_navigation,
            1,
            1.0 / CYCLE_LENGTH,
            f"{_CHOMSKY}, Cycle Navigation",
        ),
        TokenTask(
            "selective_copying",
            16,
            16,
            selective_copying,
            32,
            1.0 / 14.0,
            'Gu & Dao 2023, "Mamba", section 3.1 and appendix E.1',
        ),
        TokenTask(
            "associative_recall",
            64,
            64,
            associative_recall,
            16,
            1.0 / 32.0,
            'Arora et al. 2023, "Zoology", section 3 (multi-query associative recall)',
        ),
        TokenTask(
            "copy",
            synthetic.COPY_VOCAB_SIZE,
            synthetic.COPY_VOCAB_SIZE,
            copy_memory_tokens,
            2 * synthetic.COPY_LENGTH + 1,
            1.0 / synthetic.COPY_NUM_SYMBOLS,
            'Arjovsky, Shah & Bengio 2016, "Unitary evolution recurrent neural networks", section 4.1',
        ),
        TokenTask(
            "temporal_order",
            len(synthetic.TEMPORAL_ORDER_VOCAB),
            len(synthetic.TEMPORAL_ORDER_CLASSES),
            temporal_order_tokens,
            10,
            synthetic.TEMPORAL_ORDER_BASELINE_ACCURACY,
            'Hochreiter & Schmidhuber 1997, "Long short-term memory", experiment 6a',
        ),
    )
}
