// An LSTM layer's time loop, forward and backward, as XLA FFI handlers: each step's recurrent product and its gate
// arithmetic in one pass over registers, W_hh packed once per sequence (what oneDNN's RNN primitive does).
//
// Forward (gate order i, f, g, o; u_t = x_t W_ih, computed outside; b the bias):
//
//   z_t = (u_t + h_{t-1} W_hh) + b,   i, f, o = sigmoid(z_i, z_f, z_o),   g = tanh(z_g)
//   c_t = f c_{t-1} + i g,   h_t = o tanh(c_t)
//
// Backward (dh_t = dy_t + the recurrent cotangent dz_{t+1} W_hh^T, dc_t from step t+1):
//
//   dc = dc_t + dh_t o (1 - tanh(c_t)^2)
//   dz = [dc g i (1-i),  dc c_{t-1} f (1-f),  dc i (1-g^2),  dh_t tanh(c_t) o (1-o)],   dc_{t-1} = dc f
//
// Threads: each owns a contiguous range of hidden units, all four gates of them. A forward step's product for those
// units needs all of h_{t-1} and nothing else, so one barrier per step separates the steps; the backward step's dz
// for its units needs only its own units' cotangents, and one barrier per step lets every thread read all of dz_t.
// Every output element is summed by one thread in one order, so the result does not depend on the thread count.
//
// Layout: the hidden units come in blocks of kLanes (a vector register of floats; the last block may be partial: its
// missing units have zero weights in the packed copies and are never loaded or stored). The forward product keeps
// four gates x kRows batch rows of one block in registers, the backward one kRows rows x kBlocks blocks.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <pthread.h>
#include <sched.h>
#endif

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

#if defined(__AVX512F__)
constexpr int64_t kLanes = 16;
constexpr int kRows = 6;  // 4 x 6 accumulators of 32 registers
#else
constexpr int64_t kLanes = 8;
constexpr int kRows = 3;
#endif
constexpr int kBlocks = 4;  // backward tile: kRows x kBlocks accumulators

typedef float Vec __attribute__((vector_size(kLanes * sizeof(float))));
typedef float VecU __attribute__((vector_size(kLanes * sizeof(float)), aligned(4)));
typedef int32_t IVec __attribute__((vector_size(kLanes * sizeof(int32_t))));

inline Vec Load(const float* p) { return *reinterpret_cast<const VecU*>(p); }
inline void Store(float* p, Vec v) { *reinterpret_cast<VecU*>(p) = v; }
inline Vec Splat(float x) { return Vec{} + x; }

// The first n <= kLanes lanes: a block of a hidden size that is not a multiple of kLanes ends early.
inline Vec LoadN(const float* p, int64_t n) {
  if (n == kLanes) return Load(p);
  Vec v{};
  std::memcpy(&v, p, n * sizeof(float));
  return v;
}
inline void StoreN(float* p, Vec v, int64_t n) {
  if (n == kLanes) return Store(p, v);
  std::memcpy(p, &v, n * sizeof(float));
}

// The units of block `block` that exist.
inline int64_t Width(int64_t hidden, int64_t block) { return std::min(kLanes, hidden - block * kLanes); }

// e^x to about 1 ulp: x = n ln2 + r with |r| <= ln2 / 2, e^r by its degree-6 Taylor-like polynomial (Cephes).
inline Vec Exp(Vec x) {
  x = x < 88.3762626647949f ? x : 88.3762626647949f;
  x = x > -88.3762626647949f ? x : -88.3762626647949f;
  const Vec n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round to nearest
  Vec r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  Vec p = Splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const IVec scale = (__builtin_convertvector(n, IVec) + 127) << 23;
  return p * reinterpret_cast<const Vec&>(scale);
}

inline Vec Sigmoid(Vec x) { return 1.0f / (1.0f + Exp(-x)); }

// tanh by the rational approximation XLA:CPU and Eigen use, clamped where it reaches +-1 in float.
inline Vec Tanh(Vec x) {
  const Vec small = x * x < 0.0004f * 0.0004f ? Splat(1.0f) : Splat(0.0f);
  Vec y = x < 7.90531110763549805f ? x : 7.90531110763549805f;
  y = y > -7.90531110763549805f ? y : -7.90531110763549805f;
  const Vec y2 = y * y;
  Vec p = Splat(-2.76076847742355e-16f);
  p = p * y2 + 2.00018790482477e-13f;
  p = p * y2 + -8.60467152213735e-11f;
  p = p * y2 + 5.12229709037114e-08f;
  p = p * y2 + 1.48572235717979e-05f;
  p = p * y2 + 6.37261928875436e-04f;
  p = p * y2 + 4.89352455891786e-03f;
  p = p * y;
  Vec q = Splat(1.19825839466702e-06f);
  q = q * y2 + 1.18534705686654e-04f;
  q = q * y2 + 2.26843463243900e-03f;
  q = q * y2 + 4.89352518554385e-03f;
  const Vec t = p / q;
  return small != 0.0f ? x : t;
}

// A barrier for threads that each run one short phase per step. It spins for up to 200 us (on an idle machine the
// threads arrive within that, and a sleeping thread of a VM can take longer than that to wake), then sleeps on a
// futex, so that a thread waiting for one the OS has put aside gives its core back instead of spinning through its
// time slice.
class StepBarrier {
 public:
  explicit StepBarrier(int threads) : threads_(threads) {}
  void Wait() {
    const uint32_t generation = generation_.load();
    if (arrived_.fetch_add(1) + 1 == threads_) {
      arrived_.store(0, std::memory_order_relaxed);
      generation_.store(generation + 1);
      if (sleepers_.load() > 0) generation_.notify_all();
      return;
    }
    const auto start = std::chrono::steady_clock::now();
    for (int spins = 1;; ++spins) {
      if (generation_.load(std::memory_order_acquire) != generation) return;
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
      if (spins % 256 == 0 && std::chrono::steady_clock::now() - start > kSpin) break;
    }
    sleepers_.fetch_add(1);
    while (generation_.load() == generation) generation_.wait(generation);
    sleepers_.fetch_sub(1);
  }

 private:
  static constexpr std::chrono::microseconds kSpin{200};
  const int threads_;
  alignas(64) std::atomic<int> arrived_{0};
  alignas(64) std::atomic<uint32_t> generation_{0};
  alignas(64) std::atomic<int> sleepers_{0};
};

// A scratch array of floats on a cache-line boundary.
struct Aligned {
  explicit Aligned(int64_t n)
      : data(static_cast<float*>(::operator new[](n * sizeof(float), std::align_val_t(64)))) {}
  Aligned(const Aligned&) = delete;
  Aligned& operator=(const Aligned&) = delete;
  ~Aligned() { ::operator delete[](data, std::align_val_t(64)); }
  float* data;
};

#if defined(__linux__)
// Keeps each thread of a call on a CPU of its own while it runs. A thread that sleeps at the barrier would otherwise
// often be woken on the CPU of the thread that woke it, and the two would then take turns on one core, one of them
// spinning, for every step that follows.
class Placement {
 public:
  Placement() {
    CPU_ZERO(&caller_mask_);
    if (sched_getaffinity(0, sizeof caller_mask_, &caller_mask_) != 0) return;
    const int current = sched_getcpu();
    if (current < 0 || !CPU_ISSET(current, &caller_mask_)) return;
    cpus_.push_back(current);
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu)
      if (cpu != current && CPU_ISSET(cpu, &caller_mask_)) cpus_.push_back(cpu);
    pinned_caller_ = Pin(pthread_self(), 0);
  }
  ~Placement() {
    if (pinned_caller_) pthread_setaffinity_np(pthread_self(), sizeof caller_mask_, &caller_mask_);
  }
  // Pins `thread`, the j-th of the call (0: the caller), to a CPU of its own where there is one.
  bool Pin(pthread_t thread, size_t j) const {
    if (j >= cpus_.size()) return false;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpus_[j], &one);
    return pthread_setaffinity_np(thread, sizeof one, &one) == 0;
  }

 private:
  cpu_set_t caller_mask_;
  std::vector<int> cpus_;
  bool pinned_caller_ = false;
};
#else
struct Placement {
  template <typename Thread>
  bool Pin(Thread, size_t) const { return false; }
};
#endif

// Runs work(first_block, end_block) on `threads` threads (this one included), each over its share of `blocks`.
template <typename Work>
void OnThreads(int64_t threads, int64_t blocks, Work work) {
  std::optional<Placement> placement;  // one thread alone is left where the OS puts it
  if (threads > 1) placement.emplace();
  std::vector<std::thread> others;
  for (int64_t j = 1; j < threads; ++j) {
    others.emplace_back(work, blocks * j / threads, blocks * (j + 1) / threads);
    placement->Pin(others.back().native_handle(), j);
  }
  work(0, blocks / threads);
  for (auto& t : others) t.join();
}

struct Dims {
  int64_t steps, batch, hidden;
};

// One forward step for rows [r0, r0 + R) and unit block `block`: the product from the packed block of W_hh
// ([hidden][4][kLanes]), then the gates, c_t and h_t.
template <int R>
void ForwardTile(const Dims& d, const float* packed, const float* h_prev, const float* c_prev, const float* u,
                 const float* bias, int64_t r0, int64_t block, float* h, float* c, float* acts) {
  const int64_t H = d.hidden;
  Vec acc[4][R];
#pragma GCC unroll 4
  for (int g = 0; g < 4; ++g)
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) acc[g][r] = Vec{};
  const float* rows[R];
  for (int r = 0; r < R; ++r) rows[r] = h_prev + (r0 + r) * H;
  for (int64_t k = 0; k < H; ++k) {
    const float* w = packed + k * 4 * kLanes;
    const Vec w0 = Load(w), w1 = Load(w + kLanes), w2 = Load(w + 2 * kLanes), w3 = Load(w + 3 * kLanes);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const Vec a = Splat(rows[r][k]);
      acc[0][r] += a * w0;
      acc[1][r] += a * w1;
      acc[2][r] += a * w2;
      acc[3][r] += a * w3;
    }
  }
  const int64_t unit = block * kLanes, n = Width(H, block);
  for (int r = 0; r < R; ++r) {
    const int64_t row = r0 + r;
    const float* ur = u + row * 4 * H + unit;
    float* ar = acts + row * 4 * H + unit;
    const Vec i = Sigmoid((LoadN(ur, n) + acc[0][r]) + LoadN(bias + unit, n));
    const Vec f = Sigmoid((LoadN(ur + H, n) + acc[1][r]) + LoadN(bias + H + unit, n));
    const Vec g = Tanh((LoadN(ur + 2 * H, n) + acc[2][r]) + LoadN(bias + 2 * H + unit, n));
    const Vec o = Sigmoid((LoadN(ur + 3 * H, n) + acc[3][r]) + LoadN(bias + 3 * H + unit, n));
    const Vec cell = f * LoadN(c_prev + row * H + unit, n) + i * g;
    StoreN(c + row * H + unit, cell, n);
    StoreN(h + row * H + unit, o * Tanh(cell), n);
    StoreN(ar, i, n);
    StoreN(ar + H, f, n);
    StoreN(ar + 2 * H, g, n);
    StoreN(ar + 3 * H, o, n);
  }
}

template <int R>
void ForwardRemainder(int64_t rest, const Dims& d, const float* packed, const float* h_prev, const float* c_prev,
                      const float* u, const float* bias, int64_t r0, int64_t block, float* h, float* c, float* acts) {
  if constexpr (R > 0) {
    if (rest == R) return ForwardTile<R>(d, packed, h_prev, c_prev, u, bias, r0, block, h, c, acts);
    ForwardRemainder<R - 1>(rest, d, packed, h_prev, c_prev, u, bias, r0, block, h, c, acts);
  }
}

void ForwardThread(const Dims& d, const float* us, const float* bias, const float* w_hh, const float* h0,
                   const float* c0, float* hs, float* cs, float* acts, StepBarrier& barrier, int64_t first,
                   int64_t end) {
  const int64_t H = d.hidden, B = d.batch, cols = 4 * H;
  // This thread's blocks of W_hh: [block][k][gate][lane].
  Aligned packed((end - first) * H * 4 * kLanes);
  for (int64_t blk = first; blk < end; ++blk) {
    float* p = packed.data + (blk - first) * H * 4 * kLanes;
    const int64_t n = Width(H, blk);
    for (int64_t k = 0; k < H; ++k)
      for (int g = 0; g < 4; ++g) {
        float* to = p + (k * 4 + g) * kLanes;
        std::memcpy(to, w_hh + k * cols + g * H + blk * kLanes, n * sizeof(float));
        std::fill(to + n, to + kLanes, 0.0f);
      }
  }
  const int64_t full = B - B % kRows;
  for (int64_t t = 0; t < d.steps; ++t) {
    const float* h_prev = t == 0 ? h0 : hs + (t - 1) * B * H;
    const float* c_prev = t == 0 ? c0 : cs + (t - 1) * B * H;
    float *h = hs + t * B * H, *c = cs + t * B * H, *a = acts + t * B * cols;
    const float* u = us + t * B * cols;
    for (int64_t blk = first; blk < end; ++blk) {
      const float* p = packed.data + (blk - first) * H * 4 * kLanes;
      for (int64_t r0 = 0; r0 < full; r0 += kRows) ForwardTile<kRows>(d, p, h_prev, c_prev, u, bias, r0, blk, h, c, a);
      if (full < B) ForwardRemainder<kRows - 1>(B - full, d, p, h_prev, c_prev, u, bias, full, blk, h, c, a);
    }
    barrier.Wait();
  }
}

// dz for rows [0, B) and this thread's units at step t; dh_rec holds the recurrent cotangent of h_t on entry.
void GateCotangents(const Dims& d, const float* act, const float* c, const float* c_prev, const float* dy,
                    const float* dh_rec, float* dc, float* dz, int64_t first, int64_t end) {
  const int64_t H = d.hidden;
  for (int64_t row = 0; row < d.batch; ++row) {
    for (int64_t blk = first; blk < end; ++blk) {
      const int64_t j = row * H + blk * kLanes, n = Width(H, blk);
      const float* a = act + row * 4 * H + blk * kLanes;
      float* z = dz + row * 4 * H + blk * kLanes;
      const Vec i = LoadN(a, n), f = LoadN(a + H, n), g = LoadN(a + 2 * H, n), o = LoadN(a + 3 * H, n);
      const Vec dh = LoadN(dh_rec + j, n) + LoadN(dy + j, n);
      const Vec tanh_c = Tanh(LoadN(c + j, n));
      const Vec dcell = LoadN(dc + j, n) + dh * o * (1.0f - tanh_c * tanh_c);
      StoreN(z, dcell * g * i * (1.0f - i), n);
      StoreN(z + H, dcell * LoadN(c_prev + j, n) * f * (1.0f - f), n);
      StoreN(z + 2 * H, dcell * i * (1.0f - g * g), n);
      StoreN(z + 3 * H, dh * tanh_c * o * (1.0f - o), n);
      StoreN(dc + j, dcell * f, n);
    }
  }
}

// dh_rec[rows r0.., blocks b0..b0+NB) = dz W_hh^T from the packed rows of W_hh ([block][k][lane], k over 4H).
template <int R, int NB>
void BackwardTile(const Dims& d, const float* packed, const float* dz, int64_t r0, int64_t b0, int64_t first,
                  float* dh_rec) {
  const int64_t H = d.hidden, K = 4 * H;
  Vec acc[R][NB];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int n = 0; n < NB; ++n) acc[r][n] = Vec{};
  const float* rows[R];
  for (int r = 0; r < R; ++r) rows[r] = dz + (r0 + r) * K;
  const float* w = packed + (b0 - first) * K * kLanes;
  for (int64_t k = 0; k < K; ++k) {
    Vec wv[NB];
#pragma GCC unroll 4
    for (int n = 0; n < NB; ++n) wv[n] = Load(w + (n * K + k) * kLanes);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const Vec a = Splat(rows[r][k]);
#pragma GCC unroll 4
      for (int n = 0; n < NB; ++n) acc[r][n] += a * wv[n];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int n = 0; n < NB; ++n) StoreN(dh_rec + (r0 + r) * H + (b0 + n) * kLanes, acc[r][n], Width(H, b0 + n));
}

template <int R, int NB>
void BackwardBlocks(int64_t nb, const Dims& d, const float* packed, const float* dz, int64_t r0, int64_t b0,
                    int64_t first, float* dh_rec) {
  if constexpr (NB > 0) {
    if (nb == NB) return BackwardTile<R, NB>(d, packed, dz, r0, b0, first, dh_rec);
    BackwardBlocks<R, NB - 1>(nb, d, packed, dz, r0, b0, first, dh_rec);
  }
}

template <int R>
void BackwardRows(int64_t rows, const Dims& d, const float* packed, const float* dz, int64_t r0, int64_t first,
                  int64_t end, float* dh_rec) {
  if constexpr (R > 0) {
    if (rows != R) return BackwardRows<R - 1>(rows, d, packed, dz, r0, first, end, dh_rec);
    for (int64_t b0 = first; b0 < end; b0 += kBlocks)
      BackwardBlocks<R, kBlocks>(std::min<int64_t>(kBlocks, end - b0), d, packed, dz, r0, b0, first, dh_rec);
  }
}

void BackwardThread(const Dims& d, const float* w_hh, const float* acts, const float* cs, const float* c0,
                    const float* dys, const float* dh_last, const float* dc_last, float* dus, float* dh0, float* dc0,
                    float* dh_rec, float* dc, StepBarrier& barrier, int64_t first, int64_t end) {
  const int64_t H = d.hidden, B = d.batch, K = 4 * H;
  Aligned packed((end - first) * K * kLanes);  // rows of W_hh for this thread's units: [block][k][lane]
  for (int64_t blk = first; blk < end; ++blk)
    for (int64_t lane = 0; lane < kLanes; ++lane) {
      const int64_t unit = blk * kLanes + lane;
      float* p = packed.data + (blk - first) * K * kLanes + lane;
      for (int64_t k = 0; k < K; ++k) p[k * kLanes] = unit < H ? w_hh[unit * K + k] : 0.0f;
    }
  for (int64_t row = 0; row < B; ++row)
    for (int64_t blk = first; blk < end; ++blk) {
      const int64_t j = row * H + blk * kLanes, n = Width(H, blk);
      std::memcpy(dh_rec + j, dh_last + j, n * sizeof(float));
      std::memcpy(dc + j, dc_last + j, n * sizeof(float));
    }
  for (int64_t t = d.steps - 1; t >= 0; --t) {
    const float* c_prev = t == 0 ? c0 : cs + (t - 1) * B * H;
    float* dz = dus + t * B * K;
    GateCotangents(d, acts + t * B * K, cs + t * B * H, c_prev, dys + t * B * H, dh_rec, dc, dz, first, end);
    barrier.Wait();
    for (int64_t r0 = 0; r0 < B; r0 += kRows)
      BackwardRows<kRows>(std::min<int64_t>(kRows, B - r0), d, packed.data, dz, r0, first, end, dh_rec);
  }
  for (int64_t row = 0; row < B; ++row)
    for (int64_t blk = first; blk < end; ++blk) {
      const int64_t j = row * H + blk * kLanes, n = Width(H, blk);
      std::memcpy(dh0 + j, dh_rec + j, n * sizeof(float));
      std::memcpy(dc0 + j, dc + j, n * sizeof(float));
    }
}

int64_t Threads(int64_t wanted, int64_t blocks) { return std::max<int64_t>(1, std::min(wanted, blocks)); }

ffi::Error Forward(ffi::Buffer<ffi::F32> us, ffi::Buffer<ffi::F32> bias, ffi::Buffer<ffi::F32> w_hh,
                   ffi::Buffer<ffi::F32> h0, ffi::Buffer<ffi::F32> c0, int64_t threads, ffi::ResultBuffer<ffi::F32> hs,
                   ffi::ResultBuffer<ffi::F32> cs, ffi::ResultBuffer<ffi::F32> acts) {
  const auto dims = us.dimensions();
  const Dims d{dims[0], dims[1], dims[2] / 4};
  const int64_t blocks = (d.hidden + kLanes - 1) / kLanes, n = Threads(threads, blocks);
  StepBarrier barrier(static_cast<int>(n));
  OnThreads(n, blocks, [&](int64_t first, int64_t end) {
    ForwardThread(d, us.typed_data(), bias.typed_data(), w_hh.typed_data(), h0.typed_data(), c0.typed_data(),
                  hs->typed_data(), cs->typed_data(), acts->typed_data(), barrier, first, end);
  });
  return ffi::Error::Success();
}

ffi::Error Backward(ffi::Buffer<ffi::F32> w_hh, ffi::Buffer<ffi::F32> acts, ffi::Buffer<ffi::F32> cs,
                    ffi::Buffer<ffi::F32> c0, ffi::Buffer<ffi::F32> dys, ffi::Buffer<ffi::F32> dh_last,
                    ffi::Buffer<ffi::F32> dc_last, int64_t threads, ffi::ResultBuffer<ffi::F32> dus,
                    ffi::ResultBuffer<ffi::F32> dh0, ffi::ResultBuffer<ffi::F32> dc0) {
  const auto dims = cs.dimensions();
  const Dims d{dims[0], dims[1], dims[2]};
  const int64_t blocks = (d.hidden + kLanes - 1) / kLanes, n = Threads(threads, blocks);
  Aligned dh_rec(d.batch * d.hidden), dc(d.batch * d.hidden);
  StepBarrier barrier(static_cast<int>(n));
  OnThreads(n, blocks, [&](int64_t first, int64_t end) {
    BackwardThread(d, w_hh.typed_data(), acts.typed_data(), cs.typed_data(), c0.typed_data(), dys.typed_data(),
                   dh_last.typed_data(), dc_last.typed_data(), dus->typed_data(), dh0->typed_data(),
                   dc0->typed_data(), dh_rec.data, dc.data, barrier, first, end);
  });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(LstmSequenceForward, Forward,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // us [T, B, 4H]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // b [4H]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // w_hh [H, 4H]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // h0 [B, H]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // c0 [B, H]
                                  .Attr<int64_t>("threads")
                                  .Ret<ffi::Buffer<ffi::F32>>()  // hs [T, B, H]
                                  .Ret<ffi::Buffer<ffi::F32>>()  // cs [T, B, H]
                                  .Ret<ffi::Buffer<ffi::F32>>());  // acts [T, B, 4H]

XLA_FFI_DEFINE_HANDLER_SYMBOL(LstmSequenceBackward, Backward,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // w_hh [H, 4H]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // acts [T, B, 4H]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // cs [T, B, H]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // c0 [B, H]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // dys [T, B, H]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // dh_last [B, H]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // dc_last [B, H]
                                  .Attr<int64_t>("threads")
                                  .Ret<ffi::Buffer<ffi::F32>>()  // dus [T, B, 4H]
                                  .Ret<ffi::Buffer<ffi::F32>>()  // dh0 [B, H]
                                  .Ret<ffi::Buffer<ffi::F32>>());  // dc0 [B, H]
