#version 450
#extension GL_KHR_shader_subgroup_basic : enable
#extension GL_KHR_shader_subgroup_arithmetic : enable
// gemforge kernel rmsnorm_add_norm_z16_split (generated from templates/glsl; do not edit)
#extension GL_EXT_control_flow_attributes : enable
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_KHR_shader_subgroup_shuffle_relative : enable
// One workgroup per row, sums of squares in fp32. Each thread reads its elements i = tid + j * WG,
// j < NPT, once into registers: x, then (add modes) r and w once for h, kept for the second norm.
// Those loads are unconditional (index clamped to the row, the value zeroed past it), so all NPT of
// them are in flight at once: a load behind a loop exit waits for the one before (a 27B row, 11 per
// thread, took 15.7 us per add_norm on the H200 that way).
// A row longer than NPT * WG = 5632 reads the rest from memory again. Workgroup sums:
// wg_sum.glsl.j2 (one barrier per sum). pc.slices workgroups share a row (a decode step's single row would otherwise load
// on one SM): each computes the row's sums in full, from L2 after the first, and writes its slice.
layout(local_size_x = 512) in;
layout(std430, set = 0, binding = 0) restrict readonly buffer B_x { float x[]; };
layout(std430, set = 0, binding = 1) restrict readonly buffer B_w { float w[]; };
layout(std430, set = 0, binding = 2) restrict readonly buffer B_r { float r[]; };
layout(std430, set = 0, binding = 3) restrict readonly buffer B_w2 { float w2[]; };
layout(std430, set = 0, binding = 4) restrict writeonly buffer B_y { float y[]; };
layout(std430, set = 0, binding = 5) restrict writeonly buffer B_z { uint z[]; };
layout(push_constant) uniform PushConstants { uint rows; uint L; float eps; uint slices; uint splits; uint pstride; } pc;

const uint WG = 512u;
const uint NPT = 11u;   // elements a thread keeps in registers
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
float x_in(uint i) {
    float s = 0.0;
    for (uint k0 = 0u; k0 < pc.splits; k0 += 8u) {     // split_sum's loop: the same additions in the same order
        float v[8];
        [[unroll]] for (uint j = 0u; j < 8u; j++) v[j] = x[min(k0 + j, pc.splits - 1u) * pc.pstride + i];
        [[unroll]] for (uint j = 0u; j < 8u; j++) if (k0 + j < pc.splits) s += v[j];
    }
    return s;
}


// this thread's register elements of the row into y[base + lo, base + hi). The unrolled loops that
// load never store: a load after a store to another binding (which might alias it) waits for that
// store, so interleaving them would serialize the row's loads.
void store_slice(float v[NPT], uint base, uint lo, uint hi) {
    const uint tid = gl_LocalInvocationID.x;
    [[unroll]] for (uint j = 0u; j < NPT; j++) {
        const uint i = tid + j * WG;
        if (i >= lo && i < hi) y[base + i] = v[j];
    }
}

void main() {
    const uint wg = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
    const uint row = wg / pc.slices;
    if (row >= pc.rows) return;   // uniform per workgroup
    const uint slice = wg % pc.slices;
    const uint lo = slice * pc.L / pc.slices, hi = (slice + 1u) * pc.L / pc.slices;   // the elements it writes
    const uint tid = gl_LocalInvocationID.x;
    const uint base = row * pc.L;
    float v[11];
    float ss = 0.0;
    [[unroll]] for (uint j = 0u; j < 11u; j++) {
        const uint i = tid + j * WG;
        const float e = x_in(base + min(i, pc.L - 1u));
        v[j] = i < pc.L ? e : 0.0;
        ss += v[j] * v[j];
    }
    for (uint i = tid + 11u * WG; i < pc.L; i += WG) {
        const float e = x_in(base + i);
        ss += e * e;
    }
    const float inv = inversesqrt(wg_sum(ss, 0u) / float(pc.L) + pc.eps);
    // h = r + x * inv * w, kept in v for the second norm; then y = h and z = norm(h) * w2 (y is
    // write-only: past the registers, h is recomputed)
    float ss2 = 0.0;
    [[unroll]] for (uint j = 0u; j < 11u; j++) {
        const uint i = tid + j * WG;
        const uint ic = min(i, pc.L - 1u);
        const float ri = r[base + ic], wi = w[ic];
        v[j] = i < pc.L ? ri + v[j] * inv * wi : 0.0;
        ss2 += v[j] * v[j];
    }
    float w2v[11];
    [[unroll]] for (uint j = 0u; j < 11u; j++) w2v[j] = w2[min(tid + j * WG, pc.L - 1u)];
    for (uint i = tid + 11u * WG; i < pc.L; i += WG) {
        const float h = r[base + i] + x_in(base + i) * inv * w[i];
        ss2 += h * h;
    }
    const float inv2 = inversesqrt(wg_sum(ss2, 1u) / float(pc.L) + pc.eps);
    store_slice(v, base, lo, hi);
    // z in fp16 rows of ldz = round_up(L, 8), zeros past L (one workgroup per row: no slices). Element i
    // of an even thread and i + 1 of the next one (a subgroup holds both: WG is even) make one word.
    const uint ldz = (pc.L + 7u) & ~7u;
    [[unroll]] for (uint j = 0u; j < NPT; j++) {
        const uint i = tid + j * WG;
        const float zi = i < pc.L ? v[j] * inv2 * w2v[j] : 0.0;
        const float zn = subgroupShuffleDown(zi, 1u);
        if ((tid & 1u) == 0u && i < ldz) z[(row * ldz + i) >> 1u] = packFloat2x16(f16vec2(zi, zn));
    }
    for (uint i0 = NPT * WG; i0 < ldz; i0 += WG) {     // the same trip count in every thread (shuffles)
        const uint i = i0 + tid;
        float zi = 0.0;
        if (i < pc.L) {
            const float h = r[base + i] + x_in(base + i) * inv * w[i];
            if (i >= lo && i < hi) y[base + i] = h;
            zi = h * inv2 * w2[i];
        }
        const float zn = subgroupShuffleDown(zi, 1u);
        if ((tid & 1u) == 0u && i < ldz) z[(row * ldz + i) >> 1u] = packFloat2x16(f16vec2(zi, zn));
    }
}
