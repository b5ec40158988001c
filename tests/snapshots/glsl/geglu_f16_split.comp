#version 450
#extension GL_KHR_shader_subgroup_basic : enable
#extension GL_KHR_shader_subgroup_arithmetic : enable
// gemforge kernel geglu_f16_split (generated from templates/glsl; do not edit)
#extension GL_EXT_control_flow_attributes : enable
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_KHR_shader_subgroup_shuffle_relative : enable
// One invocation per output element (the loads of the fp32 output, coalesced).
// The output in fp16 (round to nearest even, as to_f16): the cooperative-matrix matmul's x for the
// down projection (F % 8 == 0: its rows need no padding). An even invocation packs its value and its
// neighbour's (the same row: F is even) into one word.
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) restrict readonly buffer B_gu { float gu[]; };
layout(std430, set = 0, binding = 1) restrict writeonly buffer B_y { uint y[]; };
layout(push_constant) uniform PushConstants { uint T; uint F; uint splits; uint pstride; } pc;

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
float gu_in(uint i) {
    float s = 0.0;
    for (uint k0 = 0u; k0 < pc.splits; k0 += 8u) {     // split_sum's loop: the same additions in the same order
        float v[8];
        [[unroll]] for (uint j = 0u; j < 8u; j++) v[j] = gu[min(k0 + j, pc.splits - 1u) * pc.pstride + i];
        [[unroll]] for (uint j = 0u; j < 8u; j++) if (k0 + j < pc.splits) s += v[j];
    }
    return s;
}


void main() {
    const uint gid = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * 256;
    const uint n = pc.T * pc.F;
    // every invocation of a subgroup takes part in the shuffle: past the end, a zero
    const uint gc = min(gid, n - 1u);
    const uint base = (gc / pc.F) * 2u * pc.F;
    const float v = gid < n ? geglu1(gu_in(base + gc % pc.F), gu_in(base + pc.F + gc % pc.F)) : 0.0;
    const float nb = subgroupShuffleDown(v, 1u);
    if ((gid & 1u) == 0u && gid < n) y[gid >> 1u] = packFloat2x16(f16vec2(v, nb));
}
