#version 450
#extension GL_KHR_shader_subgroup_basic : enable
#extension GL_KHR_shader_subgroup_arithmetic : enable
// gemforge kernel readbw (generated from templates/glsl; do not edit)
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) restrict readonly buffer B_src { uvec4 src[]; };
layout(std430, set = 0, binding = 1) restrict writeonly buffer B_dst { uint dst[]; };
layout(push_constant) uniform PushConstants { uint n_vec4; } pc;

void main() {
    const uint stride = gl_NumWorkGroups.x * 256;
    uint acc = 0u;
    uint i = gl_GlobalInvocationID.x;
    for (; i + 3 * stride < pc.n_vec4; i += 4 * stride) {
        { const uvec4 v = src[i + 0 * stride]; acc ^= v.x ^ v.y ^ v.z ^ v.w; }
        { const uvec4 v = src[i + 1 * stride]; acc ^= v.x ^ v.y ^ v.z ^ v.w; }
        { const uvec4 v = src[i + 2 * stride]; acc ^= v.x ^ v.y ^ v.z ^ v.w; }
        { const uvec4 v = src[i + 3 * stride]; acc ^= v.x ^ v.y ^ v.z ^ v.w; }
    }
    for (; i < pc.n_vec4; i += stride) {
        const uvec4 v = src[i];
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    acc = subgroupXor(acc);
    if (subgroupElect()) dst[gl_WorkGroupID.x * gl_NumSubgroups + gl_SubgroupID] = acc;
}
