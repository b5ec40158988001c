#version 450
#extension GL_KHR_shader_subgroup_basic : enable
#extension GL_KHR_shader_subgroup_arithmetic : enable
// gemforge kernel rmsnorm_plain (generated from templates/glsl; do not edit)
// One workgroup per row: sum of squares in fp32, tree reduction in shared memory.
layout(local_size_x = 512) in;
layout(std430, set = 0, binding = 0) restrict readonly buffer B_x { float x[]; };
layout(std430, set = 0, binding = 1) restrict readonly buffer B_w { float w[]; };
layout(std430, set = 0, binding = 2) restrict writeonly buffer B_y { float y[]; };
layout(push_constant) uniform PushConstants { uint rows; uint L; float eps; } pc;

shared float partial[512];

// sum over the workgroup of every thread's v (all threads must call it)
float wg_sum(float v) {
    const uint tid = gl_LocalInvocationID.x;
    barrier();
    partial[tid] = v;
    barrier();
    for (uint s = 256; s > 0; s >>= 1) {
        if (tid < s) partial[tid] += partial[tid + s];
        barrier();
    }
    return partial[0];
}

void main() {
    const uint row = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
    if (row >= pc.rows) return;   // uniform per workgroup
    const uint tid = gl_LocalInvocationID.x;
    const uint base = row * pc.L;
    float ss = 0.0;
    for (uint i = tid; i < pc.L; i += 512) {
        const float v = x[base + i];
        ss += v * v;
    }
    const float inv = inversesqrt(wg_sum(ss) / float(pc.L) + pc.eps);
    for (uint i = tid; i < pc.L; i += 512) {
        y[base + i] = x[base + i] * inv * w[i];
    }
}
