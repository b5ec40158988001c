#version 450
#extension GL_KHR_shader_subgroup_basic : enable
#extension GL_KHR_shader_subgroup_arithmetic : enable
// gemforge kernel matmul_coop_f16_b16 (generated from templates/glsl; do not edit)
#extension GL_KHR_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_EXT_control_flow_attributes : enable
layout(std430, set = 0, binding = 0) restrict readonly buffer B_w { uvec4 w[]; };

// weight format f16: 8 elements per 16-byte chunk
const uint WE = 8u;
const uint XV = 2u;
const float W_OFFSET = 0.0;

const uint MAGIC_2_23 = 0x4B000000u;   // the bits of 2^23: small integers OR-ed in are exact floats

uint w_kp(uint K) { return (K + 31u) & ~31u; }

uint w_chunk(uint r, uint c, uint Kp) { return r * (Kp / WE) + c; }

void w_decode(uvec4 q, out vec4 v[XV]) {
    v[0] = vec4(unpackHalf2x16(q.x), unpackHalf2x16(q.y));
    v[1] = vec4(unpackHalf2x16(q.z), unpackHalf2x16(q.w));
}

float w_scale(uint r, uint c, uint rows, uint Kp) {
    return 1.0;
}
// Prefill matrix-matrix product on cooperative matrices (tensor cores), bucket 16:
//   y[m, row0 + n] = sum_k x[m, k] W[n, k]   for m < T, n < rows (row stride ldy).
// x comes as fp16 rows padded to a multiple of 8 values (to_f16 writes them): half the bytes of
// fp32 and no conversion in the loop (on the H200 the 27B q4_0 products took 14 % less time).
// A workgroup of 1 x 4 subgroups computes a TM x TN tile; subgroup (wm, wn) owns
// WM x WN of it as (WM/16) x (WN/16) 16x16 fp32 accumulators. Per K step of TK the workgroup stages
// the x tile and the W tile (dequantized with its block scale -> fp16) in shared memory, k
// contiguous per row; A fragments load row-major from the x tile, B fragments column-major from
// the W tile. A step's global loads go to registers while the tensor cores work on the step
// before, so their latency hides behind the products. One shared stage: stored after the
// products, two barriers per step.
// A weight staging item is one 16-byte chunk (WE weights).
// Results pass through a 16x16 shared tile per subgroup (aliasing the stages, free after the last
// product) so rows >= T and outputs >= rows are never written. Split K (grid z > 1): workgroup z
// covers K [z kchunk, (z + 1) kchunk) and writes its partial tile to part[z, m, n]; split_sum then
// adds the splits into y. Grid: x = output tiles, y = row tiles of x.
layout(local_size_x = 128) in;
layout(std430, set = 0, binding = 1) restrict readonly buffer B_x { uvec4 x[]; };
layout(std430, set = 0, binding = 2) restrict writeonly buffer B_y { float y[]; };
layout(std430, set = 0, binding = 3) restrict writeonly buffer B_part { float part[]; };
layout(push_constant) uniform PushConstants { uint T; uint K; uint rows; uint row0; uint ldy; uint kchunk; } pc;

const uint TM = 16u, TN = 128u, TK = 64u;
const uint WM = 16u, WN = 32u, NWN = 4u;
const uint FM = WM / 16u, FN = WN / 16u;
const uint NSG = 4u, SG = 32u, NT = NSG * SG;
// Shared tiles hold fp16 in uvec4s (8 values, 16 bytes: whole-vector stores, and fragment loads
// whose 16-byte alignment the type itself guarantees); rows are k-contiguous with 16 bytes of padding.
const uint LD = TK / 8u + 1u;         // row stride in uvec4
const uint STAGE = (TM + TN) * LD;    // one stage: the x tile (TM rows), then the W tile (TN rows)
const uint XI = (TM * (TK / 8u) + NT - 1u) / NT;   // x items (8 consecutive k of one row) per thread
const uint IW = 8u;   // weights per staging item
const uint WC = 1u;  // 16-byte chunks loaded per item
const uint CK = TK / IW;              // weight items per row and K step
const uint WI = (TN * CK + NT - 1u) / NT;          // weight items per thread
shared uvec4 S[1u * STAGE];   // after the loop: 16x16 fp32 result tiles, 64 uvec4 per subgroup

#define CM_A coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseA>
#define CM_B coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseB>
#define CM_C coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator>

uvec4 xr[XI];                 // one step's x and W, in registers between their loads and their stores
uvec4 wr[WI * WC];
float wd[WI];

void load_step(uint tid, uint m0, uint n0, uint k0, uint kend, uint Kp) {
    const uint ldx = (pc.K + 7u) & ~7u;       // x's fp16 rows, zero-padded to whole 16-byte vectors (to_f16)
    [[unroll]] for (uint i = 0u; i < XI; i++) {
        const uint l = tid + i * NT;
        const uint gm = m0 + l / (TK / 8u), gk = k0 + 8u * (l % (TK / 8u));
        // kend is K or a multiple of TK: an 8-value item never straddles it except in x's zero padding
        xr[i] = (l < TM * (TK / 8u) && gm < pc.T && gk < kend) ? x[(gm * ldx + gk) >> 3u] : uvec4(0u);
    }
    [[unroll]] for (uint i = 0u; i < WI; i++) {
        const uint l = tid + i * NT;
        const uint gn = min(n0 + l / CK, pc.rows - 1u), gi = k0 / IW + l % CK, gc = gi * IW / WE;
        const bool ok = l < TN * CK && gi * IW < Kp;    // Kp is a multiple of 32: items lie wholly in or out
        [[unroll]] for (uint c = 0u; c < WC; c++)
            wr[i * WC + c] = ok ? w[w_chunk(gn, gc + c, Kp)] : uvec4(0u);
        wd[i] = ok ? w_scale(gn, gc, pc.rows, Kp) : 0.0;   // zero scale: items past Kp contribute nothing
    }
}

uint h2(vec2 v) { return packFloat2x16(f16vec2(v)); }
uint h2(float16_t a, float16_t b) { return packFloat2x16(f16vec2(a, b)); }

void store_step(uint tid, uint base) {
    [[unroll]] for (uint i = 0u; i < XI; i++) {
        const uint l = tid + i * NT;
        if (l < TM * (TK / 8u)) S[base + (l / (TK / 8u)) * LD + l % (TK / 8u)] = xr[i];
    }
    [[unroll]] for (uint i = 0u; i < WI; i++) {
        const uint l = tid + i * NT;
        if (l < TN * CK) {
            const uint n = l / CK, c = l % CK;
            const uint at = base + TM * LD + n * LD + c * (IW / 8u);
            S[at] = wr[i];                                 // already 8 fp16 values
        }
    }
}

void main() {
    const uint tid = gl_LocalInvocationID.x;
    const uint sg = tid / SG, lane = tid % SG;
    const uint wm = sg / NWN, wn = sg % NWN;
    const uint n0 = gl_WorkGroupID.x * TN;
    const uint m0 = gl_WorkGroupID.y * TM;
    const uint Kp = w_kp(pc.K);
    const uint kbeg = gl_WorkGroupID.z * pc.kchunk;
    const uint kend = min(pc.K, kbeg + pc.kchunk);
    const bool split = gl_NumWorkGroups.z > 1u;
    CM_C acc[FM * FN];
    [[unroll]] for (uint i = 0u; i < FM * FN; i++) acc[i] = CM_C(0.0);

    for (uint k0 = kbeg; k0 < kend + TK; k0 += TK) {
        if (k0 > kbeg) {                                        // stage step k0 - TK from registers
            store_step(tid, 0u);
            barrier();
        }
        if (k0 < kend) load_step(tid, m0, n0, k0, kend, Kp);   // issue step k0's global loads
        if (k0 > kbeg) {                                        // products of step k0 - TK
            [[unroll]] for (uint kk = 0u; kk < TK; kk += 16u) {
                CM_A a[FM];
                CM_B b[FN];
                [[unroll]] for (uint i = 0u; i < FM; i++)
                    coopMatLoad(a[i], S, 0u + (wm * WM + 16u * i) * LD + kk / 8u, LD, gl_CooperativeMatrixLayoutRowMajor);
                [[unroll]] for (uint j = 0u; j < FN; j++)
                    coopMatLoad(b[j], S, 0u + TM * LD + (wn * WN + 16u * j) * LD + kk / 8u, LD, gl_CooperativeMatrixLayoutColumnMajor);
                [[unroll]] for (uint i = 0u; i < FM; i++)
                    [[unroll]] for (uint j = 0u; j < FN; j++) acc[i * FN + j] = coopMatMulAdd(a[i], b[j], acc[i * FN + j]);
            }

            barrier();
        }
    }
    // every subgroup is past its last read of the stages (the loop ends on a barrier): reuse them
    const uint cs = sg * 64u;                   // this subgroup's 16x16 fp32 tile, as 64 uvec4
    [[unroll]] for (uint i = 0u; i < FM; i++) {
        [[unroll]] for (uint j = 0u; j < FN; j++) {
            coopMatStore(acc[i * FN + j], S, cs, 4u, gl_CooperativeMatrixLayoutRowMajor);
            subgroupMemoryBarrierShared();
            subgroupBarrier();
            for (uint e = lane; e < 256u; e += SG) {
                const uint m = m0 + wm * WM + 16u * i + e / 16u;
                const uint n = n0 + wn * WN + 16u * j + e % 16u;
                const float v = uintBitsToFloat(S[cs + e / 4u][e % 4u]);
                if (m < pc.T && n < pc.rows) {
                    if (split) part[(gl_WorkGroupID.z * pc.T + m) * pc.rows + n] = v;
                    else y[m * pc.ldy + pc.row0 + n] = v;
                }
            }
            subgroupBarrier();
        }
    }
}
