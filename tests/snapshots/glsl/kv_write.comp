#version 450
#extension GL_KHR_shader_subgroup_basic : enable
#extension GL_KHR_shader_subgroup_arithmetic : enable
// gemforge kernel kv_write (generated from templates/glsl; do not edit)
// One invocation per vec4 of the T rows written: a plain copy into slot (pos0 + t) mod C.
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) restrict readonly buffer B_src { vec4 src[]; };
layout(std430, set = 0, binding = 1) restrict writeonly buffer B_cache { vec4 cache[]; };
layout(std430, set = 0, binding = 2) restrict readonly buffer B_ctrl { uint ctrl[]; };
layout(push_constant) uniform PushConstants { uint T; uint C; uint row4; } pc;

void main() {
    const uint gid = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * 256;
    if (gid >= pc.T * pc.row4) return;
    const uint t = gid / pc.row4;
    const uint slot = (ctrl[0] + t) % pc.C;
    cache[slot * pc.row4 + gid % pc.row4] = src[gid];
}
