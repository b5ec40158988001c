//===- gemv_w8a8_f32_k5376_n262144_t64x256.cc: AIE2 (npu1) kernels of one W8A8 GEMV design ------------------===//
// Rendered by gemforge from templates/aie/mv_w8a8.cc.j2 for mlir-aie v1.0
// (07320d68); compile with Peano: clang++ -O2 -std=c++20 --target=aie2-none-unknown-elf -Wno-parentheses -Wno-attributes -Wno-macro-redefined -Wno-empty-body -DNDEBUG
//
// Per core: m = 64 rows of W, k = 256 per block, x of K + k = 5632 bytes held for the whole call.
// y^T = x^T W^T with aie::mmul<4, 8, 8, int8, int8>: x is row 0 of the 4 x 8 A operand (rows 1-3 zero; decode
// is bandwidth-bound, the idle rows cost no DRAM traffic), W blocks are the B operand.  Layouts:
//   W block:   m x k int8 as [m/8][k/8][8][8]  (transposed on load)
//   x:         K + k int8, linear; its last k block holds x's f32 scale in its first 4 bytes
//   acc / y:   m, linear
// gen/npu/kernels.py mirrors these functions in numpy for the emulator: change both together.
//===----------------------------------------------------------------------===//
#include <stdint.h>
#include <string.h>

#include <aie_api/aie.hpp>

namespace {
constexpr unsigned m = 64, k = 256, K = 5376;
constexpr unsigned r = 4, s = 8, t = 8;
using MMUL = aie::mmul<r, s, t, int8, int8>;
static_assert(m % t == 0 && k % s == 0, "tile does not fit the mmul shape");
typedef int32_t __attribute__((may_alias)) acc_word;

inline float scale_at(const int8 *__restrict p) {
  float v;
  memcpy(&v, p, sizeof v);
  return v;
}
} // namespace

extern "C" {

void zero_acc(float *__restrict c) {
  acc_word *acc = (acc_word *)c;
  const aie::vector<int32, 8> zeros = aie::zeros<int32, 8>();
  for (unsigned i = 0; i < m; i += 8)
    aie::store_v(acc + i, zeros);
}

// acc[m] += W[m x k] x[kb*k .. kb*k + k]
void matvec_i8_i32(const int8 *__restrict pW, const int8 *__restrict x, float *__restrict pC, int32_t kb) {
  acc_word *C = (acc_word *)pC;
  const int8 *__restrict xb = x + kb * k;
  for (unsigned j = 0; j < m / t; ++j) {
    aie::vector<int32, MMUL::size_C> c = aie::zeros<int32, MMUL::size_C>();
    c.insert(0, aie::load_v<t>(C + j * t));
    MMUL acc(c);
    for (unsigned i = 0; i < k / s; ++i) {
      aie::vector<int8, MMUL::size_A> a = aie::zeros<int8, MMUL::size_A>();
      a.insert(0, aie::load_v<s>(xb + i * s));
      const aie::vector<int8, MMUL::size_B> b =
          aie::transpose(aie::load_v<MMUL::size_B>(pW + (j * (k / s) + i) * MMUL::size_B), t, s);
      acc.mac(a, b);
    }
    aie::store_v(C + j * t, acc.template to_vector<int32>().template extract<t>(0));
  }
}

// y = float(acc) * x_scale * w_scale[row], in this order (the emulator rounds the same way).
void requant_f32(const int8 *__restrict pW, const int8 *__restrict x, float *__restrict pC) {
  acc_word *C = (acc_word *)pC;
  float *out = pC;
  const aie::vector<float, 8> sx = aie::broadcast<float, 8>(scale_at(x + K));
  for (unsigned j = 0; j < m / t; ++j) {
    aie::vector<float, 8> sw;
    for (unsigned l = 0; l < t; ++l)
      sw.set(scale_at(pW + j * t * k + l * s), l);
    const aie::vector<float, 8> v = aie::to_float<float>(aie::load_v<8>(C + j * t));
    const aie::vector<float, 8> vx = aie::mul(v, sx).template to_vector<float>();
    aie::store_v(out + j * t, aie::mul(vx, sw).template to_vector<float>());
  }
}

} // extern "C"
