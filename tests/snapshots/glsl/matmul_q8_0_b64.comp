#version 450
#extension GL_KHR_shader_subgroup_basic : enable
#extension GL_KHR_shader_subgroup_arithmetic : enable
// gemforge kernel matmul_q8_0_b64 (generated from templates/glsl; do not edit)
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
// Prefill matrix-matrix product over one weight part, bucket 64:
//   y[m, row0 + n] = sum_k x[m, k] W[n, k]   for m < T, n < rows (row stride ldy).
// A workgroup computes a TM x TN tile of (rows of x) x (rows of W). Per K step of TK it stages the
// x tile and the W tile, dequantized once to fp32, in shared memory (k-major, as vec4s); each
// thread then computes thread_m x thread_n outputs, reading its rows and outputs 4 at a time
// (rows 4 (ty + i SM) + r, outputs 4 (tx + j SN) + b: neighbouring threads read neighbouring
// vec4s). The W tile is reused by all TM rows, the x tile by all TN outputs. Rows >= T are
// computed on zeros and never written.
layout(local_size_x = 64) in;
layout(std430, set = 0, binding = 1) restrict readonly buffer B_x { float x[]; };
layout(std430, set = 0, binding = 2) restrict writeonly buffer B_y { float y[]; };
layout(push_constant) uniform PushConstants { uint T; uint K; uint rows; uint row0; uint ldy; } pc;

const uint TM = 64u, TN = 64u, TK = 32u;
const uint SM = 8u, SN = 8u, NT = SM * SN;
const uint CK = TK / WE;               // weight chunks per row and K step
const uint AM = 2u, BN = 2u;   // vec4s of rows / outputs per thread
// k-major tiles of vec4s: a thread reads its rows and outputs 4 at a time; +1 vec4 of padding
// spreads the transposing stores over the banks
shared vec4 xs[TK][TM / 4u + 1u];
shared vec4 ws[TK][TN / 4u + 1u];

void main() {
    const uint tid = gl_LocalInvocationID.x;
    const uint tx = tid % SN, ty = tid / SN;
    const uint n0 = gl_WorkGroupID.x * TN;
    const uint m0 = gl_WorkGroupID.y * TM;
    const uint Kp = w_kp(pc.K);
    // thread (tx, ty) owns rows 4 (ty + i SM) + a and outputs 4 (tx + j SN) + b
    vec4 acc[AM * 4u][BN];
    [[unroll]] for (uint i = 0u; i < AM * 4u; i++)
        [[unroll]] for (uint j = 0u; j < BN; j++) acc[i][j] = vec4(0.0);

    for (uint k0 = 0u; k0 < pc.K; k0 += TK) {
        for (uint l = tid; l < TM * TK; l += NT) {          // x tile, coalesced along k
            const uint m = l / TK, k = l % TK;
            const uint gm = min(m0 + m, pc.T - 1u), gk = min(k0 + k, pc.K - 1u);
            const float v = x[gm * pc.K + gk];
            xs[k][m >> 2u][m & 3u] = (m0 + m < pc.T && k0 + k < pc.K) ? v : 0.0;
        }
        for (uint l = tid; l < TN * CK; l += NT) {          // W tile: 16-byte chunks, dequantized
            const uint n = l / CK, c = l % CK;
            const uint gn = min(n0 + n, pc.rows - 1u), gc = k0 / WE + c;
            vec4 v[XV];
            if (gc * WE < Kp) {
                w_decode(w[w_chunk(gn, gc, Kp)], v);
                const float d = w_scale(gn, gc, pc.rows, Kp);
                [[unroll]] for (uint j = 0u; j < XV; j++) v[j] = (v[j] - W_OFFSET) * d;
            } else {
                [[unroll]] for (uint j = 0u; j < XV; j++) v[j] = vec4(0.0);
            }
            [[unroll]] for (uint j = 0u; j < XV; j++)
                [[unroll]] for (uint e = 0u; e < 4u; e++) ws[c * WE + 4u * j + e][n >> 2u][n & 3u] = v[j][e];
        }
        barrier();
        for (uint k = 0u; k < TK; k++) {
            vec4 a[AM], b[BN];
            [[unroll]] for (uint i = 0u; i < AM; i++) a[i] = xs[k][ty + i * SM];
            [[unroll]] for (uint j = 0u; j < BN; j++) b[j] = ws[k][tx + j * SN];
            [[unroll]] for (uint i = 0u; i < AM; i++)
                [[unroll]] for (uint r = 0u; r < 4u; r++)
                    [[unroll]] for (uint j = 0u; j < BN; j++) acc[4u * i + r][j] += a[i][r] * b[j];
        }
        barrier();
    }
    [[unroll]] for (uint i = 0u; i < AM; i++) {
        [[unroll]] for (uint r = 0u; r < 4u; r++) {
            const uint m = m0 + 4u * (ty + i * SM) + r;
            if (m >= pc.T) continue;
            [[unroll]] for (uint j = 0u; j < BN; j++) {
                [[unroll]] for (uint b = 0u; b < 4u; b++) {
                    const uint n = n0 + 4u * (tx + j * SN) + b;
                    if (n < pc.rows) y[m * pc.ldy + pc.row0 + n] = acc[4u * i + r][j][b];
                }
            }
        }
    }
}
