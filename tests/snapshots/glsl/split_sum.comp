#version 450
#extension GL_KHR_shader_subgroup_basic : enable
#extension GL_KHR_shader_subgroup_arithmetic : enable
// gemforge kernel split_sum (generated from templates/glsl; do not edit)
// One invocation per output element; the splits are summed in order.
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) restrict readonly buffer B_part { float part[]; };
layout(std430, set = 0, binding = 1) restrict writeonly buffer B_y { float y[]; };
layout(push_constant) uniform PushConstants { uint T; uint rows; uint row0; uint ldy; uint splits; } pc;

void main() {
    const uint gid = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * 256u;
    const uint n_all = pc.T * pc.rows;
    if (gid >= n_all) return;
    float s = 0.0;
    for (uint k = 0u; k < pc.splits; k++) s += part[k * n_all + gid];
    const uint m = gid / pc.rows, n = gid % pc.rows;
    y[m * pc.ldy + pc.row0 + n] = s;
}
