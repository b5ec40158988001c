#version 450
#extension GL_KHR_shader_subgroup_basic : enable
#extension GL_KHR_shader_subgroup_arithmetic : enable
// gemforge kernel matvec_dot_q8_0_to_geglu@nvidia-h200 (generated from templates/glsl; do not edit)
#extension GL_KHR_shader_subgroup_shuffle : enable
#extension GL_EXT_spirv_intrinsics : require
#extension GL_EXT_control_flow_attributes : enable
layout(std430, set = 0, binding = 0) restrict readonly buffer B_w { uvec4 w[]; };
layout(std430, set = 0, binding = 0) readonly buffer B_w_u32 { uint w_u32[]; };

// weight format q8_0: 16 elements per 16-byte chunk
const uint WE = 16u;
const uint XV = 4u;
const float W_OFFSET = 0.0;

const uint MAGIC_2_23 = 0x4B000000u;   // the bits of 2^23: small integers OR-ed in are exact floats

uint w_kp(uint K) { return (K + 31u) & ~31u; }

uint w_chunk(uint r, uint c, uint Kp) { return r * (Kp / WE) + c; }

void w_decode(uvec4 q, out vec4 v[XV]) {
    // int8 element 4i+j in byte j of word i. No int->float conversion (a quarter- or eighth-rate
    // instruction on GPUs, which would bound the matrix-vector product below memory speed): the
    // byte biased to b + 128 is put in the mantissa of 2^23, giving the float 2^23 + b + 128 exactly.
    v[0] = uintBitsToFloat(((uvec4(q[0] ^ 0x80808080u) >> uvec4(0u, 8u, 16u, 24u)) & 0xFFu) | MAGIC_2_23)
        - 8388736.0;
    v[1] = uintBitsToFloat(((uvec4(q[1] ^ 0x80808080u) >> uvec4(0u, 8u, 16u, 24u)) & 0xFFu) | MAGIC_2_23)
        - 8388736.0;
    v[2] = uintBitsToFloat(((uvec4(q[2] ^ 0x80808080u) >> uvec4(0u, 8u, 16u, 24u)) & 0xFFu) | MAGIC_2_23)
        - 8388736.0;
    v[3] = uintBitsToFloat(((uvec4(q[3] ^ 0x80808080u) >> uvec4(0u, 8u, 16u, 24u)) & 0xFFu) | MAGIC_2_23)
        - 8388736.0;
}

float w_scale(uint r, uint c, uint rows, uint Kp) {
    // fp16 scales after the part's rows * Kp / WE chunks of quants: 2 per word, each row's
    // scales padded to whole words (formats.scale_words)
    const uint blk = c * WE / 32u;
    const uint word = w_u32[rows * (Kp / WE) * 4u + r * ((Kp / 32u + 1u) / 2u) + (blk >> 1u)];
    return unpackHalf2x16(word >> (16u * (blk & 1u))).x;
}
// Decode matrix-vector product over one weight part: y[row0 + n] = sum_k W[n, k] x[k], n < rows.
// The workgroup's WG threads form NG row groups of GT = WG / NG threads; a group computes R rows.
// Every thread of a group walks the K chunks c = lt, lt + GT, ...: per loop trip it issues U x R
// independent 16-byte weight loads (U chunks, one load per row) before any product, and reads the
// matching x once for all R rows. Partial sums: within a subgroup (subgroupAdd, or a shuffle
// butterfly when a group is a part of a subgroup), then across a group's subgroups in shared memory.
// Groups of one subgroup (GT = 32 on a GPU with 32-wide subgroups) need no barrier, and a short K
// (the 270M's 640 = 40 q8_0 chunks) keeps every thread busy.
// out geglu: the part holds gate rows [0, F) then up rows [F, 2F) (F = rows / 2); a row group computes
// R / 2 rows of each, the same f, and writes y[f] = gelu_tanh(gate_f) * up_f.
// matvec_dot (configs/ops/matvec_dot.yaml renders this template): the same layout on the integer dot
// product. Each thread rounds its chunk's x to int8 in 2 term(s) once for all its rows
// (x_quant); per row and chunk, w_idot sums int8 x times the raw quants, scaled in fp32 by both scales.
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 1) restrict readonly buffer B_x { vec4 x[]; };
layout(std430, set = 0, binding = 1) readonly buffer B_x1 { float x1[]; };
layout(std430, set = 0, binding = 2) restrict buffer B_y { float y[]; };
layout(push_constant) uniform PushConstants { uint K; uint rows; uint row0; float eps; uint N; uint groups; } pc;

const uint WG = 256u;
const uint NG = 2u;
const uint GT = WG / NG;    // threads per row group
const uint R = 8u;
const uint U = 1u;
shared float red[R][WG];   // one partial per subgroup and row; WG slots fit any subgroup size
const uint RO = R / 2u;     // output rows per group: R / 2 gate rows and the same up rows

// tanh from e = exp(-2|y|) in (0, 1]: never overflows, exact limits +-1 for large |y|.
float tanh_stable(float y) {
    const float e = exp(-2.0 * abs(y));
    return sign(y) * (1.0 - e) / (1.0 + e);
}

float gelu_tanh(float x) {
    const float SQRT_2_OVER_PI = 0.797884560802865356;
    return 0.5 * x * (1.0 + tanh_stable(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)));
}

// GeGLU of one element: gate times up
float geglu1(float gate, float up) { return gelu_tanh(gate) * up; }

// matvec_dot: four int8 products summed per instruction (SPV_KHR_integer_dot_product, packed 4x8-bit:
// OpSDot signed x signed, OpSUDot signed x unsigned; capabilities DotProduct, DotProductInput4x8BitPacked)
spirv_instruction(extensions = ["SPV_KHR_integer_dot_product"], capabilities = [6019, 6018], id = 4450)
int sdot_packed(uint a, uint b, spirv_literal int packed_format);
spirv_instruction(extensions = ["SPV_KHR_integer_dot_product"], capabilities = [6019, 6018], id = 4452)
int sudot_packed(uint a, uint b, spirv_literal int packed_format);
int sdot4(uint a, uint b) { return sdot_packed(a, b, 0); }      // 0: PackedVectorFormat4x8Bit
int sudot4(uint a, uint b) { return sudot_packed(a, b, 0); }

// The chunk's x in int8 with one scale dx: v = x / max|x| * 127, xq = round(v) (packSnorm4x8), and with
// two terms (2 here) also xr = round((v - xq) * 254), so x ~ (xq + xr / 254) dx: the rounding
// error per element drops from dx / 2 to dx / 508 for one more integer dot product per word.
// q8_0: word j holds elements 4j..4j+3 (the order of the quants); q4_0: word 2i the even elements of
// 8i..8i+7 and word 2i+1 the odd ones (a weight word's low nibbles are its even elements).
float x_quant(vec4 xv[XV], out uint xq[XV], out uint xr[XV]) {
    float amax = 0.0;
    [[unroll]] for (uint j = 0u; j < XV; j++) {
        const vec4 a = abs(xv[j]);
        amax = max(amax, max(max(a.x, a.y), max(a.z, a.w)));
    }
    const float inv = amax > 0.0 ? 127.0 / amax : 0.0;
    [[unroll]] for (uint j = 0u; j < XV; j++) {
        const vec4 v = xv[j] * inv;
        const vec4 r = round(v);
        xq[j] = packSnorm4x8(r * (1.0 / 127.0));
        xr[j] = packSnorm4x8((v - r) * (254.0 / 127.0));
    }
    return amax * (1.0 / 127.0);
}

// sum over the chunk of xq times the raw quants: q8_0 the int8 values; q4_0 the nibbles 0..15 (the
// caller subtracts 8 times the sum of xq)
// (the caller subtracts 8 times the sum of xq); the second term's sum in .y (0 with one term)
ivec2 w_idot(uvec4 q, uint xq[XV], uint xr[XV]) {
    ivec2 s = ivec2(0);
    [[unroll]] for (uint i = 0u; i < 4u; i++) {
        s.x += sdot4(xq[i], q[i]);
        s.y += sdot4(xr[i], q[i]);
    }
    return s;
}

void product() {
    const uint tid = gl_LocalInvocationID.x;
    const uint g = tid / GT;                    // this thread's row group
    const uint lt = tid % GT;                   // and its lane in the group
    const uint F = pc.rows / 2u;                // outputs: gate rows [0, F), up rows [F, 2F)
    const uint wg0 = (gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x) * NG * RO;
    if (wg0 >= F) return;                       // uniform per workgroup (2-D grid rounding)
    const uint n0 = wg0 + g * RO;               // the group's first output; may be >= F in the last workgroup
    const uint Kp = w_kp(pc.K);
    const uint nfull = pc.K / WE;               // chunks whose x lies wholly inside K
    const uint nchunk = (pc.K + WE - 1u) / WE;  // and a partial one when K % WE != 0
    uint rw[R];                                 // the last group's extra rows re-read the last row
    float acc[R];
    [[unroll]] for (uint i = 0u; i < R; i++) {
        rw[i] = i < RO ? min(n0 + i, F - 1u) : F + min(n0 + i - RO, F - 1u);
        acc[i] = 0.0;
    }
    uvec4 qs[U][R];
    for (uint c0 = lt; c0 < nchunk; c0 += GT * U) {
        {
            [[unroll]] for (uint u = 0u; u < U; u++) {
                const uint cu = min(c0 + u * GT, nchunk - 1u);     // past the end: a valid chunk, not used
                [[unroll]] for (uint i = 0u; i < R; i++) qs[u][i] = w[w_chunk(rw[i], cu, Kp)];
            }
        }
        [[unroll]] for (uint u = 0u; u < U; u++) {
            const uint c = c0 + u * GT;
            if (c >= nchunk) break;
            vec4 xv[XV];
            if (c < nfull) {
                [[unroll]] for (uint j = 0u; j < XV; j++) xv[j] = x[c * XV + j];
            } else {
                [[unroll]] for (uint j = 0u; j < XV; j++) {
                    [[unroll]] for (uint e = 0u; e < 4u; e++) {
                        const uint k = c * WE + 4u * j + e;
                        const float v = x1[min(k, pc.K - 1u)];
                        xv[j][e] = k < pc.K ? v : 0.0;
                    }
                }
            }
            uint xq[XV], xr[XV];
            const float dx = x_quant(xv, xq, xr);
            const float dxs = dx * (1.0 / 254.0);   // the two terms meet in one integer: 254 xq + xr
            [[unroll]] for (uint i = 0u; i < R; i++) {
                const ivec2 d = w_idot(qs[u][i], xq, xr);
                // one conversion per row and chunk (|254 xq + xr| * 127 * 16 may pass 2^24: rounded in
                // the last bit there)
                const int di = 254 * d.x + d.y;
                acc[i] += float(di) * (dxs * w_scale(rw[i], c, pc.rows, Kp));
            }
        }
    }
    const uint SG = gl_SubgroupSize;
    if (GT <= SG) {
        // a group is GT consecutive lanes of one subgroup (both powers of two; subgroups are runs of
        // consecutive invocations on every driver we know of): subgroupAdd when it is the whole
        // subgroup, else a butterfly over its lanes only. Lane i % GT of the group writes row i.
        if (GT == SG) {
            [[unroll]] for (uint i = 0u; i < R; i++) acc[i] = subgroupAdd(acc[i]);
        } else {
            [[unroll]] for (uint off = GT / 2u; off > 0u; off >>= 1u) {
                [[unroll]] for (uint i = 0u; i < R; i++) acc[i] += subgroupShuffleXor(acc[i], off);
            }
        }
        [[unroll]] for (uint i = 0u; i < RO; i++) {
            if (lt == i % GT && n0 + i < F) y[n0 + i] = geglu1(acc[i], acc[i + RO]);
        }
        return;
    }
    // a group spans GT / SG whole subgroups: their sums meet in shared memory
    [[unroll]] for (uint i = 0u; i < R; i++) acc[i] = subgroupAdd(acc[i]);
    if (subgroupElect()) {
        [[unroll]] for (uint i = 0u; i < R; i++) red[i][gl_SubgroupID] = acc[i];
    }
    barrier();
    const uint per = GT / SG;
    for (uint i = lt; i < RO && n0 + i < F; i += GT) {
        float sg = 0.0, su = 0.0;
        for (uint j = 0u; j < per; j++) {
            sg += red[i][g * per + j];
            su += red[i + RO][g * per + j];
        }
        y[n0 + i] = geglu1(sg, su);
    }
}

void main() {
    product();
}
