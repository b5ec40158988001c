//===- gemm_w8a8_f32_m256_k5376_n43008_t64x128x256.cc: AIE2 (npu1) kernels of one W8A8 GEMM design ------------------===//
// Rendered by gemforge from templates/aie/mm_w8a8.cc.j2 for mlir-aie v1.0
// (07320d68); compile with Peano: clang++ -O2 -std=c++20 --target=aie2-none-unknown-elf -Wno-parentheses -Wno-attributes -Wno-macro-redefined -Wno-empty-body -DNDEBUG
//
// Core tile: m x k x n = 16 x 128 x 64, aie::mmul<4, 8, 8, int8, int8> (int32 accumulation),
// 4 x 2 accumulators per step.  Buffer layouts (the memtile's dimensionsToStream produce them):
//   A (x rows):   m x k int8 as [m/4][k/8][4][8]
//   B (W rows):   n x k int8 as [n/8][k/8][8][8]   (rows of W are output columns: transposed on load)
//   acc / out:    m x n      as [m/4][n/8][4][8]   (the memtile un-tiles it on the way out)
// The last k block of every A and B row is the scale block: the row's f32 scale in its first 4 bytes.
// gen/npu/kernels.py mirrors these functions in numpy for the emulator: change both together.
//===----------------------------------------------------------------------===//
#include <stdint.h>
#include <string.h>

#include <aie_api/aie.hpp>

namespace {
constexpr unsigned m = 16, k = 128, n = 64;
constexpr unsigned r = 4, s = 8, t = 8;
using MMUL = aie::mmul<r, s, t, int8, int8>;
static_assert(m % (r * 4) == 0 && n % (t * 2) == 0 && k % s == 0, "tile does not fit the mmul shape");
// The f32 output tile holds the int32 accumulators until it is requantized in place.
typedef int32_t __attribute__((may_alias)) acc_word;

inline float scale_of(const int8 *__restrict block, unsigned row, unsigned rows_per_tile) {
  float v;   // first 4 bytes of this row in the tiled scale block
  memcpy(&v, block + (row / rows_per_tile) * rows_per_tile * k + (row % rows_per_tile) * s, sizeof v);
  return v;
}
} // namespace

extern "C" {

void zero_acc(float *__restrict c) {
  acc_word *acc = (acc_word *)c;
  const aie::vector<int32, 16> zeros = aie::zeros<int32, 16>();
  for (unsigned i = 0; i < m * n; i += 16)
    aie::store_v(acc + i, zeros);
}

// acc[m x n] += A[m x k] * B[n x k]^T for one k block.
void matmul_i8_i32(const int8 *__restrict pA, const int8 *__restrict pB, float *__restrict pC) {
  acc_word *C = (acc_word *)pC;
  for (unsigned z = 0; z < m / r; z += 4)
    for (unsigned j = 0; j < n / t; j += 2) {
      MMUL C00(aie::load_v<MMUL::size_C>(C + ((z + 0) * (n / t) + j + 0) * MMUL::size_C));
      MMUL C01(aie::load_v<MMUL::size_C>(C + ((z + 0) * (n / t) + j + 1) * MMUL::size_C));
      MMUL C10(aie::load_v<MMUL::size_C>(C + ((z + 1) * (n / t) + j + 0) * MMUL::size_C));
      MMUL C11(aie::load_v<MMUL::size_C>(C + ((z + 1) * (n / t) + j + 1) * MMUL::size_C));
      MMUL C20(aie::load_v<MMUL::size_C>(C + ((z + 2) * (n / t) + j + 0) * MMUL::size_C));
      MMUL C21(aie::load_v<MMUL::size_C>(C + ((z + 2) * (n / t) + j + 1) * MMUL::size_C));
      MMUL C30(aie::load_v<MMUL::size_C>(C + ((z + 3) * (n / t) + j + 0) * MMUL::size_C));
      MMUL C31(aie::load_v<MMUL::size_C>(C + ((z + 3) * (n / t) + j + 1) * MMUL::size_C));
      for (unsigned i = 0; i < k / s; ++i) {
        const aie::vector<int8, MMUL::size_A> A0 = aie::load_v<MMUL::size_A>(pA + ((z + 0) * (k / s) + i) * MMUL::size_A);
        const aie::vector<int8, MMUL::size_A> A1 = aie::load_v<MMUL::size_A>(pA + ((z + 1) * (k / s) + i) * MMUL::size_A);
        const aie::vector<int8, MMUL::size_A> A2 = aie::load_v<MMUL::size_A>(pA + ((z + 2) * (k / s) + i) * MMUL::size_A);
        const aie::vector<int8, MMUL::size_A> A3 = aie::load_v<MMUL::size_A>(pA + ((z + 3) * (k / s) + i) * MMUL::size_A);
        const aie::vector<int8, MMUL::size_B> B0 =
            aie::transpose(aie::load_v<MMUL::size_B>(pB + ((j + 0) * (k / s) + i) * MMUL::size_B), t, s);
        const aie::vector<int8, MMUL::size_B> B1 =
            aie::transpose(aie::load_v<MMUL::size_B>(pB + ((j + 1) * (k / s) + i) * MMUL::size_B), t, s);
        C00.mac(A0, B0);
        C01.mac(A0, B1);
        C10.mac(A1, B0);
        C11.mac(A1, B1);
        C20.mac(A2, B0);
        C21.mac(A2, B1);
        C30.mac(A3, B0);
        C31.mac(A3, B1);
      }
      aie::store_v(C + ((z + 0) * (n / t) + j + 0) * MMUL::size_C, C00.template to_vector<int32>());
      aie::store_v(C + ((z + 0) * (n / t) + j + 1) * MMUL::size_C, C01.template to_vector<int32>());
      aie::store_v(C + ((z + 1) * (n / t) + j + 0) * MMUL::size_C, C10.template to_vector<int32>());
      aie::store_v(C + ((z + 1) * (n / t) + j + 1) * MMUL::size_C, C11.template to_vector<int32>());
      aie::store_v(C + ((z + 2) * (n / t) + j + 0) * MMUL::size_C, C20.template to_vector<int32>());
      aie::store_v(C + ((z + 2) * (n / t) + j + 1) * MMUL::size_C, C21.template to_vector<int32>());
      aie::store_v(C + ((z + 3) * (n / t) + j + 0) * MMUL::size_C, C30.template to_vector<int32>());
      aie::store_v(C + ((z + 3) * (n / t) + j + 1) * MMUL::size_C, C31.template to_vector<int32>());
    }
}

// out = float(acc) * a_scale[row] * w_scale[col], in this order (the emulator rounds the same way).
void requant_f32(const int8 *__restrict pA, const int8 *__restrict pB, float *__restrict pC) {
  acc_word *C = (acc_word *)pC;
  float *out = pC;
  for (unsigned z = 0; z < m / r; ++z)
    for (unsigned j = 0; j < n / t; ++j)
      for (unsigned h = 0; h < 2; ++h) {          // two 16-lane halves (rows 0-1, 2-3) of a 4x8 block
        const unsigned at = (z * (n / t) + j) * (r * t) + h * 16;
        aie::vector<float, 16> sa, sw;
        for (unsigned l = 0; l < 16; ++l) {
          sa.set(scale_of(pA, z * r + h * 2 + l / t, r), l);
          sw.set(scale_of(pB, j * t + l % t, t), l);
        }
        const aie::vector<float, 16> v = aie::to_float<float>(aie::load_v<16>(C + at));
        const aie::vector<float, 16> va = aie::mul(v, sa).template to_vector<float>();
        aie::store_v(out + at, aie::mul(va, sw).template to_vector<float>());
      }
}

} // extern "C"
