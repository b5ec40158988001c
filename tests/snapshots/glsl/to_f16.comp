#version 450
#extension GL_KHR_shader_subgroup_basic : enable
#extension GL_KHR_shader_subgroup_arithmetic : enable
// gemforge kernel to_f16 (generated from templates/glsl; do not edit)
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_EXT_control_flow_attributes : enable
// One invocation per 8 outputs (one 16-byte store); fp32 -> fp16 rounds to nearest even.
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) restrict readonly buffer B_x { float x[]; };
layout(std430, set = 0, binding = 0) readonly buffer B_x4 { vec4 x4[]; };
layout(std430, set = 0, binding = 1) restrict writeonly buffer B_y { uvec4 y[]; };
layout(push_constant) uniform PushConstants { uint T; uint K; uint ldy; } pc;

void main() {
    const uint gid = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * 256u;
    const uint per_row = pc.ldy / 8u;
    if (gid >= pc.T * per_row) return;
    const uint m = gid / per_row, k = 8u * (gid % per_row);
    vec4 v[2];
    [[unroll]] for (uint h = 0u; h < 2u; h++) {
        const uint kk = k + 4u * h;
        if ((pc.K & 3u) == 0u && kk < pc.K) {
            v[h] = x4[(m * pc.K + kk) >> 2u];
        } else {
            v[h] = vec4(0.0);
            [[unroll]] for (uint e = 0u; e < 4u; e++)
                if (kk + e < pc.K) v[h][e] = x[m * pc.K + kk + e];
        }
    }
    y[gid] = uvec4(packFloat2x16(f16vec2(v[0].xy)), packFloat2x16(f16vec2(v[0].zw)),
                   packFloat2x16(f16vec2(v[1].xy)), packFloat2x16(f16vec2(v[1].zw)));
}
