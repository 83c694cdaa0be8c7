// word2vec's sparse SGD with negative sampling, one chunk of batches per call, as an XLA FFI handler.
//
// Each batch does what seqjax.models.word2vec.sgd_step does: every example's gradient is taken from the tables as
// they were before the batch, then the updates are added, a row touched m times getting its m updates in example
// order (output rows: the targets' updates, then the noise words'; input rows: the examples' context slots). For an
// example with input vector h, target t, noise words n_k and weight w (0 for padding):
//
//   loss = w (-log σ(u_t.h) - Σ_k m_k log σ(-u_{n_k}.h)),   m_k = w [n_k != t]
//   g_t = w (σ(u_t.h) - 1),   g_k = w m_k σ(u_{n_k}.h)
//   u_t -= lr g_t h,   u_{n_k} -= lr g_k h,   v_c -= lr dh  with  dh = g_t u_t + Σ_k g_k u_{n_k}
//
// where h = v_c (skip-gram) or Σ_c a_c v_c over the context slots (CBOW, a_c = 1/|C|), and in CBOW every context
// vector in use moves by the whole dh, as word2vec.c and gensim do.
//
// The noise words are drawn here, exactly as seqjax.models.word2vec.draw_negatives draws them in JAX: batch i's
// key is fold_in(key, first_step + i), its P x K uniform floats come from JAX's Threefry-2x32 bits (counter = the
// flat index), and each float picks its id through the noise table (guide and cumulative sum). The same ids, so the
// two paths differ in the order of float sums only.
//
// Threads: the examples' gradients are split into contiguous ranges; the updates are split by row (thread j owns
// the rows r with r % threads == j and adds their updates in the order above), so the result does not depend on
// the number of threads. Three barriers per batch keep the phases apart.

#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr int64_t kLanes = 16;  // independent partial sums: the dot product vectorises without reassociation

float Dot(const float* a, const float* b, int64_t n) {
  float lanes[kLanes] = {};
  int64_t d = 0;
  for (; d + kLanes <= n; d += kLanes) {
    for (int64_t l = 0; l < kLanes; ++l) lanes[l] += a[d + l] * b[d + l];
  }
  float sum = 0.0f;
  for (; d < n; ++d) sum += a[d] * b[d];
  for (int64_t l = 0; l < kLanes; ++l) sum += lanes[l];
  return sum;
}

// y += a x
void Axpy(float a, const float* x, float* y, int64_t n) {
  for (int64_t d = 0; d < n; ++d) y[d] += a * x[d];
}

// σ(x) and σ(-x) from one exponential, without overflow on either side.
struct Sigmoids {
  float of_x;
  float of_minus_x;
};

Sigmoids SigmoidsOf(float x) {
  const float e = std::exp(-std::fabs(x));  // in (0, 1]
  const float r = 1.0f / (1.0f + e);
  return x >= 0.0f ? Sigmoids{r, e * r} : Sigmoids{e * r, r};
}

// -log σ(x), accurate where σ(x) is near 1 (there log(σ) of the rounded σ would lose the small loss).
float MinusLogSigmoid(float x) {
  const float e = std::log1p(std::exp(-std::fabs(x)));
  return x >= 0.0f ? e : e - x;
}

uint32_t RotateLeft(uint32_t v, int r) { return (v << r) | (v >> (32 - r)); }

// Threefry-2x32, 20 rounds (Salmon et al. 2011), as jax.random computes it: (x0, x1) hashed under key (k0, k1).
void Threefry(uint32_t k0, uint32_t k1, uint32_t& x0, uint32_t& x1) {
  static constexpr int kRotations[2][4] = {{13, 15, 26, 6}, {17, 29, 16, 24}};
  const uint32_t ks[3] = {k0, k1, k0 ^ k1 ^ 0x1BD11BDAu};
  x0 += ks[0];
  x1 += ks[1];
  for (uint32_t r = 0; r < 5; ++r) {
    for (int j = 0; j < 4; ++j) {
      x0 += x1;
      x1 = RotateLeft(x1, kRotations[r % 2][j]);
      x1 ^= x0;
    }
    x0 += ks[(r + 1) % 3];
    x1 += ks[(r + 2) % 3] + r + 1;
  }
}

// The noise distribution as word2vec.noise_table lays it out.
struct NoiseTable {
  const float* cumulative;  // [V]
  int64_t vocab;
  const int32_t* guide;     // [M]
  int64_t slices;           // M
  int64_t reach;
};

// jax.random.fold_in(key, step) followed by uniform(key, [count]) * cumulative[-1] and the table's search: the ids
// of flat positions [begin, end) of the batch's draws.
void DrawNoise(const NoiseTable& t, const uint32_t key[2], int32_t step, int64_t begin, int64_t end, int32_t* ids) {
  uint32_t k0 = 0, k1 = static_cast<uint32_t>(step);
  Threefry(key[0], key[1], k0, k1);
  const float total = t.cumulative[t.vocab - 1];
  const float per_slice = static_cast<float>(t.slices) / total;
  for (int64_t j = begin; j < end; ++j) {
    uint32_t hi = 0, lo = static_cast<uint32_t>(j);
    Threefry(k0, k1, hi, lo);
    const uint32_t mantissa = ((hi ^ lo) >> 9) | 0x3F800000u;  // a float in [1, 2)
    float one_to_two;
    std::memcpy(&one_to_two, &mantissa, sizeof one_to_two);
    const float u = std::max(0.0f, one_to_two - 1.0f) * total;
    const int64_t slice = std::clamp<int64_t>(static_cast<int32_t>(u * per_slice), 0, t.slices - 1);
    const int64_t below = t.guide[slice];
    int64_t id = below;
    for (int64_t r = 0; r < t.reach; ++r) {
      if (below + r < t.vocab && t.cumulative[below + r] <= u) ++id;
    }
    ids[j] = static_cast<int32_t>(std::min<int64_t>(id, t.vocab - 1));
  }
}

struct Chunk {
  float* input;   // [V, D]
  float* output;  // [V, D]
  int64_t dim;
  const int32_t* contexts;         // [N, P, C]
  const float* context_weights;    // [N, P, C]
  int64_t slots;                   // C (1 for skip-gram)
  const int32_t* targets;          // [N, P]
  const float* weights;            // [N, P]
  NoiseTable noise;
  uint32_t key[2];                 // the noise key's data
  int32_t first_step;              // the step number of batch 0 (its noise key is fold_in(key, first_step))
  int64_t negatives;               // K
  const float* learning_rates;     // [N]
  int64_t batch;                   // P
  bool cbow;
};

// What the gradient phase leaves for the update phases, for one batch.
struct Scratch {
  std::vector<float> hidden;        // [P, D], CBOW only (skip-gram reads v_c, unchanged until the input phase)
  std::vector<float> coefficients;  // [P, 1 + K]: g_t, then g_k
  std::vector<float> dh;            // [P, D]
  std::vector<float> loss;          // [P]
  std::vector<int32_t> noise;       // [P, K]: the batch's noise ids
};

const float* HiddenOf(const Chunk& c, const Scratch& s, int64_t i, int64_t p) {
  if (!c.cbow) return c.input + int64_t{c.contexts[i * c.batch + p]} * c.dim;
  return s.hidden.data() + p * c.dim;
}

void Prefetch(const float* row, int64_t dim) {
  for (int64_t d = 0; d < dim; d += 16) __builtin_prefetch(row + d);
}

// Asks for the rows example e reads, ahead of reading them: they are scattered over tables larger than a core's cache.
void PrefetchExample(const Chunk& c, const Scratch& s, int64_t e, int64_t p) {
  if (!c.cbow) Prefetch(c.input + int64_t{c.contexts[e]} * c.dim, c.dim);
  Prefetch(c.output + int64_t{c.targets[e]} * c.dim, c.dim);
  for (int64_t k = 0; k < c.negatives; ++k) Prefetch(c.output + int64_t{s.noise[p * c.negatives + k]} * c.dim, c.dim);
}

constexpr int64_t kAhead = 2;  // examples

void Gradients(const Chunk& c, Scratch& s, int64_t i, int64_t begin, int64_t end) {
  const int64_t k1 = 1 + c.negatives;
  std::vector<const float*> rows(k1);
  DrawNoise(c.noise, c.key, c.first_step + static_cast<int32_t>(i), begin * c.negatives, end * c.negatives,
            s.noise.data());
  for (int64_t p = begin; p < end; ++p) {
    const int64_t e = i * c.batch + p;
    if (p + kAhead < end) PrefetchExample(c, s, e + kAhead, p + kAhead);
    const float w = c.weights[e];
    float* g = s.coefficients.data() + p * k1;
    float* dh = s.dh.data() + p * c.dim;
    if (w == 0.0f) {
      std::fill(g, g + k1, 0.0f);
      s.loss[p] = 0.0f;
      continue;
    }
    if (c.cbow) {
      float* h = s.hidden.data() + p * c.dim;
      std::fill(h, h + c.dim, 0.0f);
      for (int64_t slot = 0; slot < c.slots; ++slot) {
        const float a = c.context_weights[e * c.slots + slot];
        if (a != 0.0f) Axpy(a, c.input + int64_t{c.contexts[e * c.slots + slot]} * c.dim, h, c.dim);
      }
    }
    const float* h = HiddenOf(c, s, i, p);
    const int32_t t = c.targets[e];
    rows[0] = c.output + int64_t{t} * c.dim;
    const float positive = Dot(h, rows[0], c.dim);
    const Sigmoids sp = SigmoidsOf(positive);
    g[0] = w * (sp.of_x - 1.0f);
    float likelihood = sp.of_x;
    for (int64_t k = 0; k < c.negatives; ++k) {
      const int32_t n = s.noise[p * c.negatives + k];
      rows[1 + k] = c.output + int64_t{n} * c.dim;
      if (n == t) {  // skipped, as word2vec.c does
        g[1 + k] = 0.0f;
        continue;
      }
      const Sigmoids sn = SigmoidsOf(Dot(h, rows[1 + k], c.dim));
      g[1 + k] = w * w * sn.of_x;
      likelihood *= sn.of_minus_x;
    }
    // loss = w (-log σ(u_t.h) - w Σ_k log σ(-u_k.h)): one logarithm of the product where w = 1 and it is not tiny.
    if (w == 1.0f && likelihood > 1e-30f) {
      s.loss[p] = -std::log(likelihood);
    } else {
      float loss = MinusLogSigmoid(positive);
      for (int64_t k = 0; k < c.negatives; ++k) {
        if (g[1 + k] != 0.0f) loss += w * MinusLogSigmoid(-Dot(h, rows[1 + k], c.dim));
      }
      s.loss[p] = w * loss;
    }
    for (int64_t d = 0; d < c.dim; ++d) dh[d] = g[0] * rows[0][d];
    for (int64_t k = 0; k < c.negatives; ++k) {
      if (g[1 + k] != 0.0f) Axpy(g[1 + k], rows[1 + k], dh, c.dim);
    }
  }
}

void UpdateOutput(const Chunk& c, const Scratch& s, int64_t i, float lr, int64_t thread, int64_t threads) {
  const int64_t k1 = 1 + c.negatives;
  const int32_t* targets = c.targets + i * c.batch;
  for (int64_t p = 0; p < c.batch; ++p) {
    if (p + kAhead < c.batch && targets[p + kAhead] % threads == thread) {
      Prefetch(c.output + int64_t{targets[p + kAhead]} * c.dim, c.dim);
    }
    const float g = s.coefficients[p * k1];
    if (g != 0.0f && targets[p] % threads == thread) {
      Axpy(-lr * g, HiddenOf(c, s, i, p), c.output + int64_t{targets[p]} * c.dim, c.dim);
    }
  }
  const int32_t* noise = s.noise.data();
  const int64_t entries = c.batch * c.negatives;
  const int64_t ahead = kAhead * c.negatives;
  for (int64_t j = 0; j < entries; ++j) {
    if (j + ahead < entries && noise[j + ahead] % threads == thread) {
      Prefetch(c.output + int64_t{noise[j + ahead]} * c.dim, c.dim);
    }
    const int64_t p = j / c.negatives;
    const float g = s.coefficients[p * k1 + 1 + j % c.negatives];
    if (g != 0.0f && noise[j] % threads == thread) {
      Axpy(-lr * g, HiddenOf(c, s, i, p), c.output + int64_t{noise[j]} * c.dim, c.dim);
    }
  }
}

void UpdateInput(const Chunk& c, const Scratch& s, int64_t i, float lr, int64_t thread, int64_t threads) {
  const int64_t entries = c.batch * c.slots;
  const int32_t* contexts = c.contexts + i * entries;
  const int64_t ahead = kAhead * c.slots;
  for (int64_t j = 0; j < entries; ++j) {
    if (j + ahead < entries && contexts[j + ahead] % threads == thread) {
      Prefetch(c.input + int64_t{contexts[j + ahead]} * c.dim, c.dim);
    }
    const int64_t p = j / c.slots;
    const bool used = c.weights[i * c.batch + p] != 0.0f && (!c.cbow || c.context_weights[i * entries + j] > 0.0f);
    if (used && contexts[j] % threads == thread) Axpy(-lr, s.dh.data() + p * c.dim, c.input + int64_t{contexts[j]} * c.dim, c.dim);
  }
}

float Sum(const std::vector<float>& values) {
  float sum = 0.0f;
  for (float v : values) sum += v;
  return sum;
}

// Checks the noise table's buffers; fills `t`.
ffi::Error ReadNoiseTable(ffi::Buffer<ffi::U32> key, ffi::Buffer<ffi::F32> cumulative, ffi::Buffer<ffi::S32> guide,
                          int64_t reach, NoiseTable& t, uint32_t key_data[2]) {
  if (key.element_count() != 2 || cumulative.element_count() < 1 || guide.element_count() < 1 || reach < 0) {
    return ffi::Error::InvalidArgument("word2vec_sgd: the key must be 2 uint32 and the noise table non-empty");
  }
  t = NoiseTable{cumulative.typed_data(), static_cast<int64_t>(cumulative.element_count()), guide.typed_data(),
                 static_cast<int64_t>(guide.element_count()), reach};
  key_data[0] = key.typed_data()[0];
  key_data[1] = key.typed_data()[1];
  return ffi::Error::Success();
}

ffi::Error SgdChunk(ffi::Buffer<ffi::F32> input, ffi::Buffer<ffi::F32> output, ffi::Buffer<ffi::S32> contexts,
                    ffi::Buffer<ffi::F32> context_weights, ffi::Buffer<ffi::S32> targets,
                    ffi::Buffer<ffi::F32> weights, ffi::Buffer<ffi::F32> learning_rates, ffi::Buffer<ffi::U32> key,
                    ffi::Buffer<ffi::F32> cumulative, ffi::Buffer<ffi::S32> guide, ffi::Buffer<ffi::S32> valid,
                    ffi::Buffer<ffi::S32> first_step, ffi::Buffer<ffi::S32> nonfinite_in,
                    ffi::ResultBuffer<ffi::F32> input_out, ffi::ResultBuffer<ffi::F32> output_out,
                    ffi::ResultBuffer<ffi::F32> loss_sum_out, ffi::ResultBuffer<ffi::S32> nonfinite_out,
                    int64_t threads, int64_t cbow, int64_t negatives, int64_t reach) {
  const auto table = input.dimensions();
  const auto ctx = contexts.dimensions();
  if (table.size() != 2 || output.dimensions() != table || ctx.size() != 3 || context_weights.dimensions() != ctx ||
      targets.dimensions().size() != 2 || targets.dimensions()[0] != ctx[0] || targets.dimensions()[1] != ctx[1] ||
      weights.dimensions() != targets.dimensions() || learning_rates.element_count() != static_cast<size_t>(ctx[0]) ||
      threads < 1 || negatives < 1) {
    return ffi::Error::InvalidArgument("word2vec_sgd: inconsistent shapes, threads < 1 or negatives < 1");
  }
  NoiseTable noise;
  uint32_t key_data[2];
  if (auto error = ReadNoiseTable(key, cumulative, guide, reach, noise, key_data); error.failure()) return error;
  // The tables are aliased to the results; should XLA hand over separate buffers, start from a copy.
  if (input_out->untyped_data() != input.untyped_data()) {
    std::memcpy(input_out->untyped_data(), input.untyped_data(), input.size_bytes());
  }
  if (output_out->untyped_data() != output.untyped_data()) {
    std::memcpy(output_out->untyped_data(), output.untyped_data(), output.size_bytes());
  }
  const Chunk c{input_out->typed_data(), output_out->typed_data(), table[1], contexts.typed_data(),
                context_weights.typed_data(), ctx[2], targets.typed_data(), weights.typed_data(), noise,
                {key_data[0], key_data[1]}, first_step.typed_data()[0], negatives, learning_rates.typed_data(),
                ctx[1], cbow != 0};
  Scratch s;
  if (c.cbow) s.hidden.resize(c.batch * c.dim);
  s.coefficients.resize(c.batch * (1 + c.negatives));
  s.dh.resize(c.batch * c.dim);
  s.loss.resize(c.batch);
  s.noise.resize(c.batch * c.negatives);

  const int64_t steps = std::min<int64_t>(valid.typed_data()[0], ctx[0]);
  const int32_t nonfinite_before = nonfinite_in.typed_data()[0];
  float loss_sum = 0.0f;
  int32_t nonfinite = nonfinite_before;
  std::barrier sync(threads);

  // Every thread runs the same batch loop and reaches the same decisions (each sums the same losses in order).
  auto worker = [&](int64_t thread) {
    float sum = 0.0f;
    int32_t stop_at = nonfinite_before;
    const int64_t share = (c.batch + threads - 1) / threads;
    const int64_t begin = std::min(c.batch, thread * share), end = std::min(c.batch, begin + share);
    for (int64_t i = 0; i < steps && stop_at < 0; ++i) {
      const float lr = c.learning_rates[i];
      Gradients(c, s, i, begin, end);
      sync.arrive_and_wait();
      const float batch_loss = Sum(s.loss);  // read before the next batch's gradients overwrite it
      UpdateOutput(c, s, i, lr, thread, threads);
      sync.arrive_and_wait();
      UpdateInput(c, s, i, lr, thread, threads);
      sync.arrive_and_wait();
      sum += batch_loss;
      if (!std::isfinite(batch_loss)) stop_at = c.first_step + static_cast<int32_t>(i);
    }
    if (thread == 0) {
      loss_sum = sum;
      nonfinite = stop_at;
    }
  };
  std::vector<std::thread> pool;
  for (int64_t t = 1; t < threads; ++t) pool.emplace_back(worker, t);
  worker(0);
  for (auto& t : pool) t.join();
  loss_sum_out->typed_data()[0] = loss_sum;
  nonfinite_out->typed_data()[0] = nonfinite;
  return ffi::Error::Success();
}

// The noise ids the chunk's batches draw, [N, P, K] (what SgdChunk draws; for tests).
ffi::Error NoiseChunk(ffi::Buffer<ffi::U32> key, ffi::Buffer<ffi::F32> cumulative, ffi::Buffer<ffi::S32> guide,
                      ffi::Buffer<ffi::S32> first_step, ffi::ResultBuffer<ffi::S32> ids, int64_t reach) {
  NoiseTable noise;
  uint32_t key_data[2];
  if (auto error = ReadNoiseTable(key, cumulative, guide, reach, noise, key_data); error.failure()) return error;
  const auto shape = ids->dimensions();
  if (shape.size() != 3) return ffi::Error::InvalidArgument("word2vec_sgd: noise ids must be [N, P, K]");
  const int64_t per_batch = shape[1] * shape[2];
  for (int64_t i = 0; i < shape[0]; ++i) {
    DrawNoise(noise, key_data, first_step.typed_data()[0] + static_cast<int32_t>(i), 0, per_batch,
              ids->typed_data() + i * per_batch);
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(Word2VecSgdChunk, SgdChunk,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // input table [V, D]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // output table [V, D]
                                  .Arg<ffi::Buffer<ffi::S32>>()  // context ids [N, P, C]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // context weights [N, P, C]
                                  .Arg<ffi::Buffer<ffi::S32>>()  // targets [N, P]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // example weights [N, P]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // learning rates [N]
                                  .Arg<ffi::Buffer<ffi::U32>>()  // the noise key's data [2]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // the noise table's cumulative sum [V]
                                  .Arg<ffi::Buffer<ffi::S32>>()  // the noise table's guide [M]
                                  .Arg<ffi::Buffer<ffi::S32>>()  // batches to run, scalar
                                  .Arg<ffi::Buffer<ffi::S32>>()  // step number of batch 0, scalar
                                  .Arg<ffi::Buffer<ffi::S32>>()  // first non-finite step so far (-1), scalar
                                  .Ret<ffi::Buffer<ffi::F32>>()  // input table
                                  .Ret<ffi::Buffer<ffi::F32>>()  // output table
                                  .Ret<ffi::Buffer<ffi::F32>>()  // summed loss, scalar
                                  .Ret<ffi::Buffer<ffi::S32>>()  // first non-finite step (-1), scalar
                                  .Attr<int64_t>("threads")
                                  .Attr<int64_t>("cbow")
                                  .Attr<int64_t>("negatives")
                                  .Attr<int64_t>("reach"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(Word2VecNoiseChunk, NoiseChunk,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::U32>>()  // the noise key's data [2]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // the noise table's cumulative sum [V]
                                  .Arg<ffi::Buffer<ffi::S32>>()  // the noise table's guide [M]
                                  .Arg<ffi::Buffer<ffi::S32>>()  // step number of batch 0, scalar
                                  .Ret<ffi::Buffer<ffi::S32>>()  // noise ids [N, P, K]
                                  .Attr<int64_t>("reach"));
