#version 450
#extension GL_KHR_shader_subgroup_basic : enable
#extension GL_KHR_shader_subgroup_arithmetic : enable
// gemforge kernel argmax (generated from templates/glsl; do not edit)
// Each workgroup: the best (value, index) of its chunk of 4096 values; a tree in shared memory.
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) restrict readonly buffer B_in_vals { float in_vals[]; };
layout(std430, set = 0, binding = 1) restrict readonly buffer B_in_idx { uint in_idx[]; };
layout(std430, set = 0, binding = 2) restrict writeonly buffer B_out_vals { float out_vals[]; };
layout(std430, set = 0, binding = 3) restrict writeonly buffer B_out_idx { uint out_idx[]; };
layout(push_constant) uniform PushConstants { uint n; uint has_idx; } pc;

shared float sv[256];
shared uint si[256];

// (v, i) beats (bv, bi): larger value, or the lower index among equal values (NaN never wins)
bool beats(float v, uint i, float bv, uint bi) {
    return v > bv || (v == bv && i < bi);
}

void main() {
    const uint tid = gl_LocalInvocationID.x;
    const uint base = gl_WorkGroupID.x * 4096u;
    float bv = uintBitsToFloat(0xff800000u);   // -inf
    uint bi = 0xffffffffu;
    for (uint k = 0u; k < 16u; k++) {
        const uint e = base + k * 256u + tid;
        if (e < pc.n) {
            const float v = in_vals[e];
            const uint i = pc.has_idx != 0u ? in_idx[e] : e;
            if (beats(v, i, bv, bi)) { bv = v; bi = i; }
        }
    }
    sv[tid] = bv;
    si[tid] = bi;
    barrier();
    for (uint s = 128u; s > 0u; s >>= 1) {
        if (tid < s && beats(sv[tid + s], si[tid + s], sv[tid], si[tid])) {
            sv[tid] = sv[tid + s];
            si[tid] = si[tid + s];
        }
        barrier();
    }
    if (tid == 0u) {
        out_vals[gl_WorkGroupID.x] = sv[0];
        out_idx[gl_WorkGroupID.x] = si[0];
    }
}
