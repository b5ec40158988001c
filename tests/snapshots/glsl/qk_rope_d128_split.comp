#version 450
#extension GL_KHR_shader_subgroup_basic : enable
#extension GL_KHR_shader_subgroup_arithmetic : enable
// gemforge kernel qk_rope_d128_split (generated from templates/glsl; do not edit)
#extension GL_EXT_control_flow_attributes : enable
// One workgroup per (row t, head); thread i owns the rotated pair (i, i + D/2) of that head.
layout(local_size_x = 64) in;
layout(std430, set = 0, binding = 0) restrict readonly buffer B_qkv { float qkv[]; };
layout(std430, set = 0, binding = 1) restrict readonly buffer B_qw { float qw[]; };
layout(std430, set = 0, binding = 2) restrict readonly buffer B_kw { float kw[]; };
layout(std430, set = 0, binding = 3) restrict readonly buffer B_freqs { float freqs[]; };
layout(std430, set = 0, binding = 4) restrict readonly buffer B_ctrl { uint ctrl[]; };
layout(std430, set = 0, binding = 5) restrict writeonly buffer B_qn { float qn[]; };
layout(std430, set = 0, binding = 6) restrict writeonly buffer B_kcache { float kcache[]; };
layout(std430, set = 0, binding = 7) restrict writeonly buffer B_vcache { float vcache[]; };
layout(push_constant) uniform PushConstants { uint T; uint Hq; uint Hkv; uint C; float eps; uint splits; uint pstride; } pc;

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

float qkv_in(uint i) {
    float s = 0.0;
    for (uint k0 = 0u; k0 < pc.splits; k0 += 8u) {     // split_sum's loop: the same additions in the same order
        float v[8];
        [[unroll]] for (uint j = 0u; j < 8u; j++) v[j] = qkv[min(k0 + j, pc.splits - 1u) * pc.pstride + i];
        [[unroll]] for (uint j = 0u; j < 8u; j++) if (k0 + j < pc.splits) s += v[j];
    }
    return s;
}


const uint D = 128u;
const uint HALF = 64u;
shared float partial[HALF];

void main() {
    const uint heads = pc.Hq + 2u * pc.Hkv;
    const uint wg = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
    if (wg >= pc.T * heads) return;               // uniform per workgroup
    const uint t = wg / heads;
    const uint h = wg % heads;
    const uint i = gl_LocalInvocationID.x;
    const uint src = (t * heads + h) * D;
    float a = qkv_in(src + i);
    float b = qkv_in(src + i + HALF);
    const uint pos = ctrl[0] + t;
    const uint slot = pos % pc.C;
    const uint kvd = pc.Hkv * D;
    if (h >= pc.Hq + pc.Hkv) {                    // a v head: straight into the cache
        const uint dst = slot * kvd + (h - pc.Hq - pc.Hkv) * D;
        vcache[dst + i] = a;
        vcache[dst + i + HALF] = b;
        return;
    }
    // per-head RMSNorm: tree reduction over the D/2 pair sums
    partial[i] = a * a + b * b;
    barrier();
    for (uint s = HALF / 2u; s > 0u; s >>= 1u) {
        if (i < s) partial[i] += partial[i + s];
        barrier();
    }
    const float inv = inversesqrt(partial[0] / float(D) + pc.eps);
    const bool is_q = h < pc.Hq;
    a = a * inv * (is_q ? qw[i] : kw[i]);
    b = b * inv * (is_q ? qw[i + HALF] : kw[i + HALF]);
    precise const float angle = float(pos) * freqs[i];
    const vec2 sc = sincos_reduced(angle);
    const float ra = a * sc.y - b * sc.x;
    const float rb = b * sc.y + a * sc.x;
    if (is_q) {
        const uint dst = (t * pc.Hq + h) * D;
        qn[dst + i] = ra;
        qn[dst + i + HALF] = rb;
    } else {
        const uint dst = slot * kvd + (h - pc.Hq) * D;
        kcache[dst + i] = ra;
        kcache[dst + i + HALF] = rb;
    }
}
