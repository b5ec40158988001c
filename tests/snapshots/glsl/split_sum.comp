#version 450
#extension GL_KHR_shader_subgroup_basic : enable
#extension GL_KHR_shader_subgroup_arithmetic : enable
// gemforge kernel split_sum (generated from templates/glsl; do not edit)
#extension GL_EXT_control_flow_attributes : enable
// The second pass of a split-K product: y[m, row0 + n] = sum_s part[s, m, n], the splits summed in
// order s = 0, 1, ... (deterministic). Where rows % 4 == 0 an invocation sums 4 consecutive outputs
// as vec4; either way it issues the loads of 8 splits before adding them (one memory
// latency per 8 splits, not per split: on the H200 a rolled loop ran at a third of the
// memory's speed).
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) readonly buffer B_part4 { vec4 part4[]; };
layout(std430, set = 0, binding = 0) readonly buffer B_part1 { float part1[]; };
layout(std430, set = 0, binding = 1) restrict writeonly buffer B_y { float y[]; };
layout(push_constant) uniform PushConstants { uint T; uint rows; uint row0; uint ldy; uint splits; } pc;

const uint U = 8u;

void main() {
    const uint gid = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * 256u;
    const uint n_all = pc.T * pc.rows;
    if ((pc.rows & 3u) == 0u) {          // uniform: 4 outputs of one row per invocation
        const uint n4 = n_all / 4u;
        if (gid >= n4) return;
        vec4 s = vec4(0.0);
        for (uint k0 = 0u; k0 < pc.splits; k0 += U) {
            vec4 v[U];
            [[unroll]] for (uint j = 0u; j < U; j++) v[j] = part4[min(k0 + j, pc.splits - 1u) * n4 + gid];
            [[unroll]] for (uint j = 0u; j < U; j++) if (k0 + j < pc.splits) s += v[j];
        }
        const uint e = 4u * gid, o = (e / pc.rows) * pc.ldy + pc.row0 + e % pc.rows;
        y[o] = s.x;
        y[o + 1u] = s.y;
        y[o + 2u] = s.z;
        y[o + 3u] = s.w;
        return;
    }
    if (gid >= n_all) return;
    float s = 0.0;
    for (uint k0 = 0u; k0 < pc.splits; k0 += U) {
        float v[U];
        [[unroll]] for (uint j = 0u; j < U; j++) v[j] = part1[min(k0 + j, pc.splits - 1u) * n_all + gid];
        [[unroll]] for (uint j = 0u; j < U; j++) if (k0 + j < pc.splits) s += v[j];
    }
    y[(gid / pc.rows) * pc.ldy + pc.row0 + gid % pc.rows] = s;
}
