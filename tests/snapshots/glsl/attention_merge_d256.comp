#version 450
#extension GL_KHR_shader_subgroup_basic : enable
#extension GL_KHR_shader_subgroup_arithmetic : enable
// gemforge kernel attention_merge_d256 (generated from templates/glsl; do not edit)
// One workgroup per query row (t * Hq + h), one vec4 column per invocation: combine the splits'
// (m, l, O) partials written by attention (exp2 domain).
layout(local_size_x = 64) in;
layout(std430, set = 0, binding = 0) restrict readonly buffer B_part { vec4 part[]; };
layout(std430, set = 0, binding = 0) readonly buffer B_part_ml { float part_ml[]; };
layout(std430, set = 0, binding = 1) restrict writeonly buffer B_y { vec4 y[]; };
layout(push_constant) uniform PushConstants { uint rows; uint splits; } pc;

void main() {
    const uint row = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
    if (row >= pc.rows) return;
    const uint dv = gl_LocalInvocationID.x;
    const uint ml = pc.splits * pc.rows * 256u;
    float M = -1.0e30;
    for (uint s = 0u; s < pc.splits; s++) M = max(M, part_ml[ml + (s * pc.rows + row) * 2u]);
    float L = 0.0;
    vec4 acc = vec4(0.0);
    for (uint s = 0u; s < pc.splits; s++) {
        const float l = part_ml[ml + (s * pc.rows + row) * 2u + 1u];
        if (l > 0.0) {
            const float w = exp2(part_ml[ml + (s * pc.rows + row) * 2u] - M);
            L += l * w;
            acc += w * part[(s * pc.rows + row) * 64u + dv];
        }
    }
    y[row * 64u + dv] = L > 0.0 ? acc / L : vec4(0.0);
}
