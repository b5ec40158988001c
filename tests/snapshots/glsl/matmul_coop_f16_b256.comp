#version 450
#extension GL_KHR_shader_subgroup_basic : enable
#extension GL_KHR_shader_subgroup_arithmetic : enable
// gemforge kernel matmul_coop_f16_b256 (generated from templates/glsl; do not edit)
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
// Prefill matrix-matrix product on cooperative matrices (tensor cores), bucket 256:
//   y[m, row0 + n] = sum_k x[m, k] W[n, k]   for m < T, n < rows (row stride ldy).
// A workgroup of 2 x 4 subgroups computes a TM x TN tile; subgroup (wm, wn) owns
// WM x WN of it as (WM/16) x (WN/16) 16x16 fp32 accumulators. Per K step of TK the workgroup stages
// x (fp32 -> fp16) and W (dequantized with its block scale -> fp16) in shared memory, k contiguous
// per row; A fragments load row-major from the x tile, B fragments column-major from the W tile.
// The next step's global loads are issued into registers before this step's products, so their
// latency hides behind the tensor-core work (one shared stage, register double buffering).
// A staging item is a 16-byte chunk (WE weights).
// Results pass through a per-subgroup 16x16 shared tile so rows >= T and outputs >= rows are
// never written. Split K (grid z > 1): workgroup z covers K [z kchunk, (z + 1) kchunk) and writes
// its partial tile to part[z, m, n]; split_sum then adds the splits into y.
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 1) restrict readonly buffer B_x { float x[]; };
layout(std430, set = 0, binding = 1) readonly buffer B_x4 { vec4 x4[]; };
layout(std430, set = 0, binding = 2) restrict writeonly buffer B_y { float y[]; };
layout(std430, set = 0, binding = 3) restrict writeonly buffer B_part { float part[]; };
layout(push_constant) uniform PushConstants { uint T; uint K; uint rows; uint row0; uint ldy; uint kchunk; } pc;

const uint TM = 128u, TN = 128u, TK = 64u;
const uint WM = 64u, WN = 32u, NWN = 4u;
const uint FM = WM / 16u, FN = WN / 16u;
const uint NSG = 8u, SG = 32u, NT = NSG * SG;
const uint IW = WE;  // weights per staging item
const uint IV = IW / 4u;              // ... as vec4s
const uint CK = TK / IW;              // weight items per row and K step
const uint LD = TK / 4u + 2u;         // row stride of the shared tiles in f16vec4 (16 bytes of padding)
const uint XI = (TM * (TK / 4u) + NT - 1u) / NT;   // x items (4 consecutive k of one row) per thread
const uint WI = (TN * CK + NT - 1u) / NT;          // weight items per thread
shared f16vec4 As[TM * LD];
shared f16vec4 Bs[TN * LD];
shared float Cs[NSG * 256u];

#define CM_A coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseA>
#define CM_B coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseB>
#define CM_C coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator>

void main() {
    const uint tid = gl_LocalInvocationID.x;
    const uint sg = tid / SG, lane = tid % SG;
    const uint wm = sg / NWN, wn = sg % NWN;
    const uint n0 = gl_WorkGroupID.x * TN;
    const uint m0 = gl_WorkGroupID.y * TM;
    const uint Kp = w_kp(pc.K);
    const bool kvec = (pc.K & 3u) == 0u;
    const uint kbeg = gl_WorkGroupID.z * pc.kchunk;
    const uint kend = min(pc.K, kbeg + pc.kchunk);
    const bool split = gl_NumWorkGroups.z > 1u;
    CM_C acc[FM * FN];
    [[unroll]] for (uint i = 0u; i < FM * FN; i++) acc[i] = CM_C(0.0);

    vec4 xr[XI];                  // the next step's x and W, in registers
    uvec4 wr[WI];
    float wd[WI];
    [[unroll]] for (uint i = 0u; i < XI; i++) xr[i] = vec4(0.0);
    [[unroll]] for (uint i = 0u; i < WI; i++) { wr[i] = uvec4(0u); wd[i] = 0.0; }

    for (uint k0 = kbeg; k0 < kend + TK; k0 += TK) {
        if (k0 > kbeg) {                                        // stage step k0 - TK from registers
            [[unroll]] for (uint i = 0u; i < XI; i++) {
                const uint l = tid + i * NT;
                if (l < TM * (TK / 4u)) As[(l / (TK / 4u)) * LD + l % (TK / 4u)] = f16vec4(xr[i]);
            }
            [[unroll]] for (uint i = 0u; i < WI; i++) {
                const uint l = tid + i * NT;
                if (l < TN * CK) {
                    const uint n = l / CK, c = l % CK;
                    vec4 v[XV];
                    w_decode(wr[i], v);
                    [[unroll]] for (uint j = 0u; j < IV; j++) Bs[n * LD + c * IV + j] = f16vec4((v[j] - W_OFFSET) * wd[i]);
                }
            }
            barrier();
        }
        if (k0 < kend) {                                        // issue step k0's global loads
            [[unroll]] for (uint i = 0u; i < XI; i++) {
                const uint l = tid + i * NT;
                const uint gm = m0 + l / (TK / 4u), gk = k0 + 4u * (l % (TK / 4u));
                vec4 v = vec4(0.0);
                if (l < TM * (TK / 4u) && gm < pc.T) {
                    if (kvec && gk < kend) {
                        v = x4[(gm * pc.K + gk) >> 2u];
                    } else {
                        [[unroll]] for (uint e = 0u; e < 4u; e++)
                            if (gk + e < kend) v[e] = x[gm * pc.K + gk + e];
                    }
                }
                xr[i] = v;
            }
            [[unroll]] for (uint i = 0u; i < WI; i++) {
                const uint l = tid + i * NT;
                const uint gn = min(n0 + l / CK, pc.rows - 1u), gi = k0 / IW + l % CK, gc = gi * IW / WE;
                if (l < TN * CK && gi * IW < Kp) {
                    wr[i] = w[w_chunk(gn, gc, Kp)];
                    wd[i] = w_scale(gn, gc, pc.rows, Kp);
                } else {
                    wr[i] = uvec4(0u);
                    wd[i] = 0.0;          // zero scale: chunks past Kp contribute nothing
                }
            }
        }
        if (k0 > kbeg) {                                        // products of step k0 - TK
            [[unroll]] for (uint kk = 0u; kk < TK; kk += 16u) {
                CM_A a[FM];
                CM_B b[FN];
                [[unroll]] for (uint i = 0u; i < FM; i++)
                    coopMatLoad(a[i], As, (wm * WM + 16u * i) * LD + kk / 4u, LD, gl_CooperativeMatrixLayoutRowMajor);
                [[unroll]] for (uint j = 0u; j < FN; j++)
                    coopMatLoad(b[j], Bs, (wn * WN + 16u * j) * LD + kk / 4u, LD, gl_CooperativeMatrixLayoutColumnMajor);
                [[unroll]] for (uint i = 0u; i < FM; i++)
                    [[unroll]] for (uint j = 0u; j < FN; j++) acc[i * FN + j] = coopMatMulAdd(a[i], b[j], acc[i * FN + j]);
            }
            barrier();
        }
    }
    [[unroll]] for (uint i = 0u; i < FM; i++) {
        [[unroll]] for (uint j = 0u; j < FN; j++) {
            coopMatStore(acc[i * FN + j], Cs, sg * 256u, 16u, gl_CooperativeMatrixLayoutRowMajor);
            subgroupMemoryBarrierShared();
            subgroupBarrier();
            for (uint e = lane; e < 256u; e += SG) {
                const uint m = m0 + wm * WM + 16u * i + e / 16u;
                const uint n = n0 + wn * WN + 16u * j + e % 16u;
                if (m < pc.T && n < pc.rows) {
                    if (split) part[(gl_WorkGroupID.z * pc.T + m) * pc.rows + n] = Cs[sg * 256u + e];
                    else y[m * pc.ldy + pc.row0 + n] = Cs[sg * 256u + e];
                }
            }
            subgroupBarrier();
        }
    }
}
