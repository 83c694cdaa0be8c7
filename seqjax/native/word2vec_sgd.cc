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

struct Chunk {
  float* input;   // [V, D]
  float* output;  // [V, D]
  int64_t dim;
  const int32_t* contexts;         // [N, P, C]
  const float* context_weights;    // [N, P, C]
  int64_t slots;                   // C (1 for skip-gram)
  const int32_t* targets;          // [N, P]
  const float* weights;            // [N, P]
  const int32_t* noise;            // [N, P, K]
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
};

const float* HiddenOf(const Chunk& c, const Scratch& s, int64_t i, int64_t p) {
  if (!c.cbow) return c.input + int64_t{c.contexts[i * c.batch + p]} * c.dim;
  return s.hidden.data() + p * c.dim;
}

void Prefetch(const float* row, int64_t dim) {
  for (int64_t d = 0; d < dim; d += 16) __builtin_prefetch(row + d);
}

// Asks for the rows example e reads, ahead of reading them: they are scattered over tables larger than a core's cache.
void PrefetchExample(const Chunk& c, int64_t e) {
  if (!c.cbow) Prefetch(c.input + int64_t{c.contexts[e]} * c.dim, c.dim);
  Prefetch(c.output + int64_t{c.targets[e]} * c.dim, c.dim);
  for (int64_t k = 0; k < c.negatives; ++k) Prefetch(c.output + int64_t{c.noise[e * c.negatives + k]} * c.dim, c.dim);
}

constexpr int64_t kAhead = 2;  // examples

void Gradients(const Chunk& c, Scratch& s, int64_t i, int64_t begin, int64_t end) {
  const int64_t k1 = 1 + c.negatives;
  std::vector<const float*> rows(k1);
  for (int64_t p = begin; p < end; ++p) {
    const int64_t e = i * c.batch + p;
    if (p + kAhead < end) PrefetchExample(c, e + kAhead);
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
      const int32_t n = c.noise[e * c.negatives + k];
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
  const int32_t* noise = c.noise + i * c.batch * c.negatives;
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

ffi::Error SgdChunk(ffi::Buffer<ffi::F32> input, ffi::Buffer<ffi::F32> output, ffi::Buffer<ffi::S32> contexts,
                    ffi::Buffer<ffi::F32> context_weights, ffi::Buffer<ffi::S32> targets,
                    ffi::Buffer<ffi::F32> weights, ffi::Buffer<ffi::S32> noise, ffi::Buffer<ffi::F32> learning_rates,
                    ffi::Buffer<ffi::S32> valid, ffi::Buffer<ffi::S32> first_step, ffi::Buffer<ffi::S32> nonfinite_in,
                    ffi::ResultBuffer<ffi::F32> input_out, ffi::ResultBuffer<ffi::F32> output_out,
                    ffi::ResultBuffer<ffi::F32> loss_sum_out, ffi::ResultBuffer<ffi::S32> nonfinite_out,
                    int64_t threads, int64_t cbow) {
  const auto table = input.dimensions();
  const auto ctx = contexts.dimensions();
  const auto nz = noise.dimensions();
  if (table.size() != 2 || output.dimensions() != table || ctx.size() != 3 || context_weights.dimensions() != ctx ||
      targets.dimensions().size() != 2 || nz.size() != 3 || nz[0] != ctx[0] || nz[1] != ctx[1] ||
      targets.dimensions()[0] != ctx[0] || targets.dimensions()[1] != ctx[1] || weights.dimensions() != targets.dimensions() ||
      learning_rates.element_count() != static_cast<size_t>(ctx[0]) || threads < 1) {
    return ffi::Error::InvalidArgument("word2vec_sgd: inconsistent shapes or threads < 1");
  }
  // The tables are aliased to the results; should XLA hand over separate buffers, start from a copy.
  if (input_out->untyped_data() != input.untyped_data()) {
    std::memcpy(input_out->untyped_data(), input.untyped_data(), input.size_bytes());
  }
  if (output_out->untyped_data() != output.untyped_data()) {
    std::memcpy(output_out->untyped_data(), output.untyped_data(), output.size_bytes());
  }
  const Chunk c{input_out->typed_data(), output_out->typed_data(), table[1], contexts.typed_data(),
                context_weights.typed_data(), ctx[2], targets.typed_data(), weights.typed_data(),
                noise.typed_data(), nz[2], learning_rates.typed_data(), ctx[1], cbow != 0};
  Scratch s;
  if (c.cbow) s.hidden.resize(c.batch * c.dim);
  s.coefficients.resize(c.batch * (1 + c.negatives));
  s.dh.resize(c.batch * c.dim);
  s.loss.resize(c.batch);

  const int64_t steps = std::min<int64_t>(valid.typed_data()[0], ctx[0]);
  const int32_t first = first_step.typed_data()[0];
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
      if (!std::isfinite(batch_loss)) stop_at = first + static_cast<int32_t>(i);
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

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(Word2VecSgdChunk, SgdChunk,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // input table [V, D]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // output table [V, D]
                                  .Arg<ffi::Buffer<ffi::S32>>()  // context ids [N, P, C]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // context weights [N, P, C]
                                  .Arg<ffi::Buffer<ffi::S32>>()  // targets [N, P]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // example weights [N, P]
                                  .Arg<ffi::Buffer<ffi::S32>>()  // noise ids [N, P, K]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // learning rates [N]
                                  .Arg<ffi::Buffer<ffi::S32>>()  // batches to run, scalar
                                  .Arg<ffi::Buffer<ffi::S32>>()  // step number of batch 0, scalar
                                  .Arg<ffi::Buffer<ffi::S32>>()  // first non-finite step so far (-1), scalar
                                  .Ret<ffi::Buffer<ffi::F32>>()  // input table
                                  .Ret<ffi::Buffer<ffi::F32>>()  // output table
                                  .Ret<ffi::Buffer<ffi::F32>>()  // summed loss, scalar
                                  .Ret<ffi::Buffer<ffi::S32>>()  // first non-finite step (-1), scalar
                                  .Attr<int64_t>("threads")
                                  .Attr<int64_t>("cbow"));
