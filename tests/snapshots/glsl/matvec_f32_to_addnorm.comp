#version 450
#extension GL_KHR_shader_subgroup_basic : enable
#extension GL_KHR_shader_subgroup_arithmetic : enable
// gemforge kernel matvec_f32_to_addnorm (generated from templates/glsl; do not edit)
#extension GL_KHR_shader_subgroup_shuffle : enable
#extension GL_EXT_control_flow_attributes : enable
layout(std430, set = 0, binding = 0) restrict readonly buffer B_w { uvec4 w[]; };

// weight format f32: 4 elements per 16-byte chunk
const uint WE = 4u;
const uint XV = 1u;
const float W_OFFSET = 0.0;

const uint MAGIC_2_23 = 0x4B000000u;   // the bits of 2^23: small integers OR-ed in are exact floats

uint w_kp(uint K) { return (K + 31u) & ~31u; }

uint w_chunk(uint r, uint c, uint Kp) { return r * (Kp / WE) + c; }

void w_decode(uvec4 q, out vec4 v[XV]) {
    v[0] = uintBitsToFloat(q);
}

float w_scale(uint r, uint c, uint rows, uint Kp) {
    return 1.0;
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
layout(local_size_x = 32) in;
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

const uint WG = 32u;
const uint NG = 1u;
const uint GT = WG / NG;    // threads per row group
const uint R = 8u;
const uint U = 1u;
shared float red[R][WG];   // one partial per subgroup and row; WG slots fit any subgroup size
const uint NK = 48u;   // elements kept in registers per thread
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
            [[unroll]] for (uint i = 0u; i < R; i++) {
                vec4 v[XV];
                w_decode(qs[u][i], v);
                float s = 0.0;
                [[unroll]] for (uint j = 0u; j < XV; j++) s += dot(v[j], xv[j]);
                acc[i] += s;
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
    float v[48];
    float ss = 0.0;
    [[unroll]] for (uint j = 0u; j < 48u; j++) {
        const uint i = tid + j * WG;
        const float e = y[min(i, pc.N - 1u)];
        v[j] = i < pc.N ? e : 0.0;
        ss += v[j] * v[j];
    }
    for (uint i = tid + 48u * WG; i < pc.N; i += WG) {
        const float e = y[i];
        ss += e * e;
    }
    const float inv = inversesqrt(wg_sum(ss, 0u) / float(pc.N) + pc.eps);
    float ss2 = 0.0;
    [[unroll]] for (uint j = 0u; j < 48u; j++) {
        const uint i = tid + j * WG;
        const uint ic = min(i, pc.N - 1u);
        const float ri = r[ic], wi = nw[ic];
        v[j] = i < pc.N ? ri + v[j] * inv * wi : 0.0;
        ss2 += v[j] * v[j];
    }
    float w2v[48];
    [[unroll]] for (uint j = 0u; j < 48u; j++) w2v[j] = nw2[min(tid + j * WG, pc.N - 1u)];
    for (uint i = tid + 48u * WG; i < pc.N; i += WG) {
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
