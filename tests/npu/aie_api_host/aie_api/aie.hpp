// A host (x86) stand-in for the small part of AMD's AIE API that gemforge's NPU kernels use, for the tests only:
// it lets g++ compile templates/aie/*.cc.j2 so their loops and layouts can be compared with the numpy mirrors
// (gen/npu/kernels.py).  Semantics follow the AIE API documentation as we read it (vector load/store/insert/
// extract, transpose(v, rows, cols) of a row-major rows x cols matrix, mmul<M, K, N> with row-major A [M x K],
// B [K x N], C [M x N] and 32-bit accumulation, to_float, float mul, bfloat16 rounding to nearest even).
// It proves nothing about the real library or the Peano compiler.
#pragma once
#include <cstdint>
#include <cstring>

typedef int8_t int8;
typedef int16_t int16;
typedef int32_t int32;

struct bfloat16 {
  uint16_t bits = 0;
  bfloat16() = default;
  explicit bfloat16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    u += 0x7FFF + ((u >> 16) & 1);
    bits = uint16_t(u >> 16);
  }
};

namespace aie {

template <typename T, unsigned N> struct vector {
  T v[N];
  T get(unsigned i) const { return v[i]; }
  void set(T x, unsigned i) { v[i] = x; }
  template <unsigned M> vector<T, M> extract(unsigned idx) const {
    vector<T, M> r;
    for (unsigned i = 0; i < M; ++i) r.v[i] = v[idx * M + i];
    return r;
  }
  template <unsigned M> void insert(unsigned idx, const vector<T, M> &s) {
    for (unsigned i = 0; i < M; ++i) v[idx * M + i] = s.v[i];
  }
};

template <typename T, unsigned N> vector<T, N> zeros() {
  vector<T, N> r;
  for (unsigned i = 0; i < N; ++i) r.v[i] = T(0);
  return r;
}

template <typename T, unsigned N> vector<T, N> broadcast(T x) {
  vector<T, N> r;
  for (unsigned i = 0; i < N; ++i) r.v[i] = x;
  return r;
}

template <unsigned N, typename T> vector<T, N> load_v(const T *p) {
  vector<T, N> r;
  std::memcpy(r.v, p, sizeof(T) * N);
  return r;
}

template <typename T, typename U, unsigned N> void store_v(T *p, const vector<U, N> &x) {
  static_assert(sizeof(T) == sizeof(U), "store_v: element size");
  std::memcpy(p, x.v, sizeof(T) * N);
}

template <typename T, unsigned N> vector<T, N> transpose(const vector<T, N> &x, unsigned rows, unsigned cols) {
  vector<T, N> r;
  for (unsigned i = 0; i < rows; ++i)
    for (unsigned j = 0; j < cols; ++j) r.v[j * rows + i] = x.v[i * cols + j];
  return r;
}

template <typename TR, typename T, unsigned N> vector<TR, N> to_float(const vector<T, N> &x, int shift = 0) {
  vector<TR, N> r;
  for (unsigned i = 0; i < N; ++i) r.v[i] = TR(x.v[i]);
  return r;
}

template <unsigned N> struct accum_float {
  float v[N];
  template <typename T> vector<T, N> to_vector() const {
    vector<T, N> r;
    for (unsigned i = 0; i < N; ++i) r.v[i] = T(v[i]);
    return r;
  }
};

template <unsigned N> accum_float<N> mul(const vector<float, N> &a, const vector<float, N> &b) {
  accum_float<N> r;
  for (unsigned i = 0; i < N; ++i) r.v[i] = a.v[i] * b.v[i];
  return r;
}

template <unsigned M, unsigned K, unsigned N, typename TA, typename TB> struct mmul {
  static constexpr unsigned size_A = M * K, size_B = K * N, size_C = M * N;
  int32 c[size_C];
  explicit mmul(const vector<int32, size_C> &init) { std::memcpy(c, init.v, sizeof c); }
  void mac(const vector<TA, size_A> &a, const vector<TB, size_B> &b) {
    for (unsigned i = 0; i < M; ++i)
      for (unsigned j = 0; j < N; ++j) {
        int64_t s = c[i * N + j];
        for (unsigned k = 0; k < K; ++k) s += int64_t(a.v[i * K + k]) * int64_t(b.v[k * N + j]);
        c[i * N + j] = int32(uint32_t(s));
      }
  }
  template <typename T> vector<T, size_C> to_vector() const {
    vector<T, size_C> r;
    std::memcpy(r.v, c, sizeof c);
    return r;
  }
};

} // namespace aie
