#version 450
#extension GL_KHR_shader_subgroup_basic : enable
#extension GL_KHR_shader_subgroup_arithmetic : enable
// gemforge kernel topk (generated from templates/glsl; do not edit)
// Each workgroup: bitonic sort of its 1024 (value, index) pairs in shared memory, then its first k out.
// Order: larger value first; among equal values the lower index first. Padding is (-inf, 0xffffffff).
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) restrict readonly buffer B_in_vals { float in_vals[]; };
layout(std430, set = 0, binding = 1) restrict readonly buffer B_in_idx { uint in_idx[]; };
layout(std430, set = 0, binding = 2) restrict writeonly buffer B_out_vals { float out_vals[]; };
layout(std430, set = 0, binding = 3) restrict writeonly buffer B_out_idx { uint out_idx[]; };
layout(push_constant) uniform PushConstants { uint n; uint has_idx; uint k; } pc;

shared float sv[1024];
shared uint si[1024];

bool before(float va, uint ia, float vb, uint ib) {
    return va > vb || (va == vb && ia < ib);
}

void main() {
    const uint tid = gl_LocalInvocationID.x;
    const uint base = gl_WorkGroupID.x * 1024u;
    for (uint e = tid; e < 1024u; e += 256u) {
        const uint g = base + e;
        const bool real = g < pc.n;
        sv[e] = real ? in_vals[g] : uintBitsToFloat(0xff800000u);
        si[e] = real ? (pc.has_idx != 0u ? in_idx[g] : g) : 0xffffffffu;
    }
    barrier();
    for (uint size = 2u; size <= 1024u; size <<= 1) {
        for (uint stride = size >> 1; stride > 0u; stride >>= 1) {
            for (uint p = tid; p < 512u; p += 256u) {
                const uint i = 2u * stride * (p / stride) + p % stride;
                const uint j = i + stride;
                const bool want_i_first = (i & size) == 0u;   // the final merge (size = chunk) sorts all in order
                if (before(sv[i], si[i], sv[j], si[j]) != want_i_first) {
                    const float tv = sv[i]; sv[i] = sv[j]; sv[j] = tv;
                    const uint ti = si[i]; si[i] = si[j]; si[j] = ti;
                }
            }
            barrier();
        }
    }
    for (uint e = tid; e < pc.k; e += 256u) {
        out_vals[gl_WorkGroupID.x * pc.k + e] = sv[e];
        out_idx[gl_WorkGroupID.x * pc.k + e] = si[e];
    }
}
