#version 450
#extension GL_KHR_shader_subgroup_basic : enable
#extension GL_KHR_shader_subgroup_arithmetic : enable
// gemforge kernel rope (generated from templates/glsl; do not edit)
// NEOX RoPE in place: one invocation per rotated pair (x[i], x[i + D/2]) of one head of one row.
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) restrict buffer B_x { float x[]; };
layout(std430, set = 0, binding = 1) restrict readonly buffer B_freqs { float freqs[]; };
layout(std430, set = 0, binding = 2) restrict readonly buffer B_ctrl { uint ctrl[]; };
layout(push_constant) uniform PushConstants { uint T; uint heads; uint npairs; } pc;

const float TWO_OVER_PI = 0.636619772367581343;

// sin and cos of a >= 0: r = a - k pi/2 with |r| <= ~pi/4, then minimax polynomials (Cephes sinf/cosf).
vec2 sincos_reduced(float a) {
    // pi/2 split for Cody-Waite: P1..P4 carry 7 significant bits each, so k * Pi is exact for
    // k < 2^17; P5 is the fp32 rounding of the rest (pi/2 - P1 - P2 - P3 - P4 - P5 ~ 5e-17).
    const float P1 = uintBitsToFloat(0x3fc80000u);
    const float P2 = uintBitsToFloat(0x3c060000u);
    const float P3 = uintBitsToFloat(0x38f60000u);
    const float P4 = uintBitsToFloat(0x34a80000u);
    const float P5 = uintBitsToFloat(0x30885a31u);
    const float k = floor(a * TWO_OVER_PI + 0.5);
    precise float r = a - k * P1;
    r = r - k * P2;
    r = r - k * P3;
    r = r - k * P4;
    r = r - k * P5;
    const float z = r * r;
    const float s = ((-1.9515295891e-4 * z + 8.3321608736e-3) * z - 1.6666654611e-1) * z * r + r;
    const float c = ((2.443315711809948e-5 * z - 1.388731625493765e-3) * z + 4.166664568298827e-2) * z * z
                    - 0.5 * z + 1.0;
    switch (uint(k) & 3u) {
        case 0u: return vec2(s, c);
        case 1u: return vec2(c, -s);
        case 2u: return vec2(-s, -c);
        default: return vec2(-c, s);
    }
}

void main() {
    const uint gid = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * 256;
    if (gid >= pc.T * pc.heads * pc.npairs) return;
    const uint i = gid % pc.npairs;
    const uint row = gid / pc.npairs;                 // t * heads + head
    const uint t = row / pc.heads;
    precise const float angle = float(ctrl[0] + t) * freqs[i];
    const vec2 sc = sincos_reduced(angle);
    const uint lo = row * 2u * pc.npairs + i;
    const float x1 = x[lo];
    const float x2 = x[lo + pc.npairs];
    x[lo] = x1 * sc.y - x2 * sc.x;
    x[lo + pc.npairs] = x2 * sc.y + x1 * sc.x;
}
