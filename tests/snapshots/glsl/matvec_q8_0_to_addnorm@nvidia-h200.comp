#version 450
#extension GL_KHR_shader_subgroup_basic : enable
#extension GL_KHR_shader_subgroup_arithmetic : enable
// gemforge kernel matvec_q8_0_to_addnorm@nvidia-h200 (generated from templates/glsl; do not edit)
#extension GL_KHR_shader_subgroup_shuffle : enable
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
// out add_norm: after the product, the residual add + RMSNorm pair that follows it (rmsnorm add_norm)
// over all N outputs, by the dispatch's last workgroup to finish (an arrival counter over every part's
// workgroups, reset by that workgroup): h = r + y / rms(y) * nw, z = h / rms(h) * nw2.
layout(local_size_x = 128) in;
layout(std430, set = 0, binding = 1) restrict readonly buffer B_x { vec4 x[]; };
layout(std430, set = 0, binding = 1) readonly buffer B_x1 { float x1[]; };
layout(std430, set = 0, binding = 2) restrict coherent buffer B_y { float y[]; };
layout(std430, set = 0, binding = 3) restrict readonly buffer B_r { float r[]; };
layout(std430, set = 0, binding = 4) restrict readonly buffer B_nw { float nw[]; };
layout(std430, set = 0, binding = 5) restrict readonly buffer B_nw2 { float nw2[]; };
layout(std430, set = 0, binding = 6) restrict writeonly buffer B_h { float h[]; };
layout(std430, set = 0, binding = 7) restrict writeonly buffer B_z { float z[]; };
layout(std430, set = 0, binding = 8) restrict coherent buffer B_count { uint count[]; };
layout(push_constant) uniform PushConstants { uint K; uint rows; uint row0; float eps; uint N; uint groups; } pc;

const uint WG = 128u;
const uint NG = 1u;
const uint GT = WG / NG;    // threads per row group
const uint R = 16u;
const uint U = 1u;
shared float red[R][WG];   // one partial per subgroup and row; WG slots fit any subgroup size
const uint NK = 42u;   // elements kept in registers per thread
shared bool last_s;                                             // this workgroup arrived last
shared float wg_partial[2][WG];   // one slot per subgroup and sum: WG slots fit any subgroup size

// sum over the workgroup of every thread's v (all threads must call it), the same value in every
// thread: subgroupAdd, one shared slot per subgroup, subgroupAdd of the slots (one barrier); sum k
// uses its own slots, so no barrier is needed before a second sum
float wg_sum(float v, uint k) {
    v = subgroupAdd(v);
    if (subgroupElect()) wg_partial[k][gl_SubgroupID] = v;
    barrier();
    float t = 0.0;
    for (uint g = gl_SubgroupInvocationID; g < gl_NumSubgroups; g += gl_SubgroupSize) t += wg_partial[k][g];
    return subgroupAdd(t);
}

// The dot product of one q8_0 chunk with x, at 3.5 instructions per element: each int8 b (biased to
// b + 128 by one xor per word) is masked in place into the mantissa of 2^23, so bytes 0 and 2 give
// 2^23 + b + 128 and bytes 1 and 3 (not shifted down) 2^23 + 256 (b + 128), all exact; one subtraction
// leaves b or 256 b, and x comes pre-scaled by (1, 1/256, 1, 1/256). The products are the same fp32
// numbers as b * x (powers of two are exact), so the sum equals the plain decode's.
const vec4 XSCALE = vec4(1.0, 1.0 / 256.0, 1.0, 1.0 / 256.0);
float w_dot(uvec4 q, vec4 xv[XV]) {
    const uvec4 MASK = uvec4(0xFFu, 0xFF00u, 0xFFu, 0xFF00u);
    const vec4 BIAS = vec4(8388736.0, 8421376.0, 8388736.0, 8421376.0);   // 2^23 + 128 (x 256)
    float s = 0.0;
    [[unroll]] for (uint i = 0u; i < 4u; i++) {
        const uint u = q[i] ^ 0x80808080u;
        const vec4 f = uintBitsToFloat((uvec4(u, u, u >> 16u, u >> 16u) & MASK) | MAGIC_2_23) - BIAS;
        s += dot(f, xv[i]);
    }
    return s;
}

void product() {
    const uint tid = gl_LocalInvocationID.x;
    const uint g = tid / GT;                    // this thread's row group
    const uint lt = tid % GT;                   // and its lane in the group
    const uint wg0 = (gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x) * NG * R;
    if (wg0 >= pc.rows) return;                 // uniform per workgroup (2-D grid rounding)
    const uint n0 = wg0 + g * R;                // may be >= rows in the last workgroup: computes row rows-1
    const uint Kp = w_kp(pc.K);
    const uint nfull = pc.K / WE;               // chunks whose x lies wholly inside K
    const uint nchunk = (pc.K + WE - 1u) / WE;  // and a partial one when K % WE != 0
    uint rw[R];                                 // the last group's extra rows re-read the last row
    float acc[R];
    [[unroll]] for (uint i = 0u; i < R; i++) {
        rw[i] = min(n0 + i, pc.rows - 1u);
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
            // x pre-scaled by the powers of two that w_dot's in-place decode leaves on each element
            [[unroll]] for (uint j = 0u; j < XV; j++) xv[j] *= XSCALE;
            [[unroll]] for (uint i = 0u; i < R; i++) {
                acc[i] += w_dot(qs[u][i], xv) * w_scale(rw[i], c, pc.rows, Kp);
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
        [[unroll]] for (uint i = 0u; i < R; i++) {
            if (lt == i % GT && n0 + i < pc.rows) y[pc.row0 + n0 + i] = acc[i];
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
    for (uint i = lt; i < R && n0 + i < pc.rows; i += GT) {
        float s = 0.0;
        for (uint j = 0u; j < per; j++) s += red[i][g * per + j];
        y[pc.row0 + n0 + i] = s;
    }
}

// h = r + y / rms(y) * nw, z = h / rms(h) * nw2 over y[0, N): the last workgroup's work
// (add_norm.glsl.j2: NK elements per thread in registers, the rest of y read again).
void add_norm_tail(uint tid) {
    float v[42];
    float ss = 0.0;
    [[unroll]] for (uint j = 0u; j < 42u; j++) {
        const uint i = tid + j * WG;
        const float e = y[min(i, pc.N - 1u)];
        v[j] = i < pc.N ? e : 0.0;
        ss += v[j] * v[j];
    }
    for (uint i = tid + 42u * WG; i < pc.N; i += WG) {
        const float e = y[i];
        ss += e * e;
    }
    const float inv = inversesqrt(wg_sum(ss, 0u) / float(pc.N) + pc.eps);
    float ss2 = 0.0;
    [[unroll]] for (uint j = 0u; j < 42u; j++) {
        const uint i = tid + j * WG;
        const uint ic = min(i, pc.N - 1u);
        const float ri = r[ic], wi = nw[ic];
        v[j] = i < pc.N ? ri + v[j] * inv * wi : 0.0;
        ss2 += v[j] * v[j];
    }
    float w2v[42];
    [[unroll]] for (uint j = 0u; j < 42u; j++) w2v[j] = nw2[min(tid + j * WG, pc.N - 1u)];
    for (uint i = tid + 42u * WG; i < pc.N; i += WG) {
        const float h = r[i] + y[i] * inv * nw[i];
        ss2 += h * h;
    }
    const float inv2 = inversesqrt(wg_sum(ss2, 1u) / float(pc.N) + pc.eps);
    [[unroll]] for (uint j = 0u; j < NK; j++) {
        const uint i = tid + j * WG;
        if (i < pc.N) {
            h[i] = v[j];
            z[i] = v[j] * inv2 * w2v[j];
        }
    }
    for (uint i = tid + NK * WG; i < pc.N; i += WG) {
        const float hi = r[i] + y[i] * inv * nw[i];
        h[i] = hi;
        z[i] = hi * inv2 * nw2[i];
    }
}

void main() {
    product();
    // every workgroup (those past the rows too) counts itself once its outputs are visible; the
    // last of all the parts' workgroups computes the norms and zeroes the counter
    const uint tid = gl_LocalInvocationID.x;
    memoryBarrierBuffer();
    barrier();
    if (tid == 0u) last_s = atomicAdd(count[0], 1u) == pc.groups - 1u;
    barrier();
    if (!last_s) return;
    memoryBarrierBuffer();
    add_norm_tail(tid);
    if (tid == 0u) count[0] = 0u;
}
