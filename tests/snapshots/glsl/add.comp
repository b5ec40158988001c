#version 450
#extension GL_KHR_shader_subgroup_basic : enable
#extension GL_KHR_shader_subgroup_arithmetic : enable
// gemforge kernel add (generated from templates/glsl; do not edit)
// One invocation per element.
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) restrict readonly buffer B_a { float a[]; };
layout(std430, set = 0, binding = 1) restrict readonly buffer B_b { float b[]; };
layout(std430, set = 0, binding = 2) restrict writeonly buffer B_y { float y[]; };
layout(push_constant) uniform PushConstants { uint n; } pc;

void main() {
    const uint gid = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * 256;
    if (gid < pc.n) y[gid] = a[gid] + b[gid];
}
