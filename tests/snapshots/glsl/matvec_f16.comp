#version 450
#extension GL_KHR_shader_subgroup_basic : enable
#extension GL_KHR_shader_subgroup_arithmetic : enable
// gemforge kernel matvec_f16 (generated from templates/glsl; do not edit)
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
// Decode matrix-vector product over one weight part: y[row0 + n] = sum_k W[n, k] x[k], n < rows.
// A workgroup computes R rows. Every thread walks the K chunks c = tid, tid + WG, ...: per loop trip
// it issues U x R independent 16-byte weight loads (U chunks, one load per row) before any product,
// and reads the matching x once for all R rows. Partial sums: subgroupAdd, then across subgroups in
// shared memory (any subgroup size).
layout(local_size_x = 32) in;
layout(std430, set = 0, binding = 1) restrict readonly buffer B_x { vec4 x[]; };
layout(std430, set = 0, binding = 1) readonly buffer B_x1 { float x1[]; };
layout(std430, set = 0, binding = 2) restrict writeonly buffer B_y { float y[]; };
layout(push_constant) uniform PushConstants { uint K; uint rows; uint row0; } pc;

const uint WG = 32u;
const uint R = 8u;
const uint U = 1u;
shared float red[R][WG];   // one partial per subgroup and row; WG slots fit any subgroup size

void main() {
    const uint tid = gl_LocalInvocationID.x;
    const uint n0 = (gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x) * R;
    if (n0 >= pc.rows) return;                  // uniform per workgroup (2-D grid rounding)
    const uint Kp = w_kp(pc.K);
    const uint nfull = pc.K / WE;               // chunks whose x lies wholly inside K
    const uint nchunk = (pc.K + WE - 1u) / WE;  // and a partial one when K % WE != 0
    uint r[R];                                  // the last group's extra rows re-read row rows-1
    float acc[R];
    [[unroll]] for (uint i = 0u; i < R; i++) {
        r[i] = min(n0 + i, pc.rows - 1u);
        acc[i] = 0.0;
    }
    for (uint c0 = tid; c0 < nchunk; c0 += WG * U) {
        uvec4 qs[U][R];
        [[unroll]] for (uint u = 0u; u < U; u++) {
            const uint cu = min(c0 + u * WG, nchunk - 1u);     // past the end: a valid chunk, not used
            [[unroll]] for (uint i = 0u; i < R; i++) qs[u][i] = w[w_chunk(r[i], cu, Kp)];
        }
        [[unroll]] for (uint u = 0u; u < U; u++) {
            const uint c = c0 + u * WG;
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
    [[unroll]] for (uint i = 0u; i < R; i++) acc[i] = subgroupAdd(acc[i]);
    if (subgroupElect()) {
        [[unroll]] for (uint i = 0u; i < R; i++) red[i][gl_SubgroupID] = acc[i];
    }
    barrier();
    if (tid < R && n0 + tid < pc.rows) {
        float s = 0.0;
        for (uint g = 0u; g < gl_NumSubgroups; g++) s += red[tid][g];
        y[pc.row0 + n0 + tid] = s;
    }
}
