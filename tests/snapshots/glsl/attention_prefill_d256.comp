#version 450
#extension GL_KHR_shader_subgroup_basic : enable
#extension GL_KHR_shader_subgroup_arithmetic : enable
// gemforge kernel attention_prefill_d256 (generated from templates/glsl; do not edit)
#extension GL_EXT_control_flow_attributes : enable
// Flash attention over a ring-buffer KV cache (prefill: 32 query rows x 32 keys per block, D = 256).
// Workgroup (tile, kv head hk, split). Query rows of a kv head are the pairs (t, g), row = t * G + g,
// q head hk * G + g. Keys are visited by age a = p_end - kpos, slot (p_end - a) mod C.
// Per key block: (1) scores, invocation = key column x 8 rows; (2) online softmax, 4 invocations
// per row; (3) O = O * alpha + P V, invocation = vec4 column x 16 rows. Everything in fp32, exp2 domain.
layout(local_size_x = 128) in;
layout(std430, set = 0, binding = 0) restrict readonly buffer B_q { vec4 q[]; };
layout(std430, set = 0, binding = 1) restrict readonly buffer B_kcache { vec4 kcache[]; };
layout(std430, set = 0, binding = 2) restrict readonly buffer B_vcache { vec4 vcache[]; };
layout(std430, set = 0, binding = 3) restrict writeonly buffer B_y { vec4 y[]; };
layout(std430, set = 0, binding = 4) restrict buffer B_part { vec4 part[]; };
layout(std430, set = 0, binding = 4) buffer B_part_ml { float part_ml[]; };
layout(std430, set = 0, binding = 5) restrict readonly buffer B_ctrl { uint ctrl[]; };
layout(push_constant) uniform PushConstants { uint T; uint Hq; uint Hkv; uint C; uint window; float scale; uint splits; } pc;

const float NEG = -1.0e30;      // score of a hidden key / max of no key: finite, so exp2 never sees inf - inf
const int NEVER = 0x7fffffff;

shared float P[1024];  // scores, then probabilities, [row][key]
shared float red[128];
shared float alpha_s[32];
shared float l_s[32];

void main() {
    const uint tid = gl_LocalInvocationID.x;
    const uint hk = gl_WorkGroupID.y;
    const uint split = gl_WorkGroupID.z;
    const uint G = pc.Hq / pc.Hkv;
    const uint nrows = pc.T * G;
    const uint r0 = gl_WorkGroupID.x * 32u;
    const int pos0 = int(ctrl[0]);
    const int p_end = pos0 + int(pc.T) - 1;
    const int W = int(pc.window);

    // The ages any row of this tile may see (causal: kpos <= pmax; window: kpos > pmin - W; kpos >= 0; a < C),
    // cut into pc.splits pieces of whole blocks.
    const int pmin = pos0 + int(r0 / G);
    const int pmax = pos0 + int((min(r0 + 32u, nrows) - 1u) / G);
    const int a_lo = p_end - pmax;
    int a_hi = min(int(pc.C), p_end + 1);
    if (W > 0) a_hi = min(a_hi, p_end - pmin + W);
    const int S = int(pc.splits);
    const int chunk = ((max(a_hi - a_lo, 0) + S - 1) / S + 31) / 32 * 32;
    const int a_begin = a_lo + int(split) * chunk;
    const int a_end = min(a_hi, a_begin + chunk);

    // (1) score role: key column kj, rows rg + i * RG_S; each row's visible ages are [amin, amax)
    const uint kj = tid % 32u;
    const uint rg = tid / 32u;
    uint qbase[8];
    int amin[8];
    int amax[8];
    for (uint i = 0u; i < 8u; i++) {
        const uint rr = r0 + rg + i * 4u;
        const uint rc = min(rr, nrows - 1u);
        const uint t = rc / G;
        qbase[i] = (t * pc.Hq + hk * G + rc % G) * 64u;
        const int back = p_end - (pos0 + int(t));
        amin[i] = rr < nrows ? back : NEVER;
        amax[i] = W > 0 ? back + W : NEVER;
    }
    // (2) softmax role: row sr, lane u of TPR; every lane of a row keeps the same running max and sum
    const uint sr = tid / 4u;
    const uint u = tid % 4u;
    float m_run = NEG;
    float l_run = 0.0;
    // (3) output role: vec4 column dv, rows ro + i * RG_O
    const uint dv = tid % 64u;
    const uint ro = tid / 64u;
    vec4 acc[16];
    for (uint i = 0u; i < 16u; i++) acc[i] = vec4(0.0);

    for (int blk = a_begin; blk < a_end; blk += 32) {
        {   // (1) scores
            const int a = blk + int(kj);
            float s[8];
            for (uint i = 0u; i < 8u; i++) s[i] = 0.0;
            if (a < a_end) {
                const uint kb = ((uint(p_end - a) % pc.C) * pc.Hkv + hk) * 64u;
                // 8 loads issued before their products: a rolled loop would wait a memory
                // latency per vec4
                for (uint d0 = 0u; d0 < 64u; d0 += 8u) {
                    vec4 k4[8];
                    [[unroll]] for (uint d = 0u; d < 8u; d++) k4[d] = kcache[kb + d0 + d];
                    [[unroll]] for (uint d = 0u; d < 8u; d++)
                        [[unroll]] for (uint i = 0u; i < 8u; i++) s[i] += dot(q[qbase[i] + d0 + d], k4[d]);
                }
            }
            for (uint i = 0u; i < 8u; i++) {
                const bool seen = a < a_end && a >= amin[i] && a < amax[i];
                P[(rg + i * 4u) * 32u + kj] = seen ? s[i] * pc.scale : NEG;
            }
        }
        barrier();
        {   // (2) online softmax: block max, probabilities, running sum; alpha rescales the old output
            float mx = NEG;
            for (uint e = 0u; e < 8u; e++) mx = max(mx, P[sr * 32u + u + e * 4u]);
            red[tid] = mx;
            barrier();
            for (uint st = 2u; st > 0u; st >>= 1) {
                if (u < st) red[tid] = max(red[tid], red[tid + st]);
                barrier();
            }
            const float m_new = max(m_run, red[sr * 4u]);
            barrier();
            float sum = 0.0;
            for (uint e = 0u; e < 8u; e++) {
                const uint idx = sr * 32u + u + e * 4u;
                const float sc = P[idx];
                const float p = sc > 0.5 * NEG ? exp2(sc - m_new) : 0.0;
                P[idx] = p;
                sum += p;
            }
            red[tid] = sum;
            barrier();
            for (uint st = 2u; st > 0u; st >>= 1) {
                if (u < st) red[tid] += red[tid + st];
                barrier();
            }
            const float alpha = exp2(m_run - m_new);
            l_run = l_run * alpha + red[sr * 4u];
            m_run = m_new;
            if (u == 0u) alpha_s[sr] = alpha;
        }
        barrier();
        {   // (3) O = O * alpha + P V
            for (uint i = 0u; i < 16u; i++) acc[i] *= alpha_s[ro + i * 2u];
            const int nk = min(32, a_end - blk);
            for (int j0 = 0; j0 < nk; j0 += 8) {     // 8 value rows in flight, then their products
                vec4 v4[8];
                [[unroll]] for (int jj = 0; jj < 8; jj++) {
                    const int age = blk + min(j0 + jj, nk - 1);
                    const uint slot = uint(p_end - age) % pc.C;
                    v4[jj] = vcache[(slot * pc.Hkv + hk) * 64u + dv];
                }
                [[unroll]] for (int jj = 0; jj < 8; jj++) {
                    if (j0 + jj < nk) {
                        for (uint i = 0u; i < 16u; i++)
                            acc[i] += P[(ro + i * 2u) * 32u + uint(j0 + jj)] * v4[jj];
                    }
                }
            }
        }
        barrier();
    }

    if (u == 0u) l_s[sr] = l_run;
    barrier();
    const uint rows_all = pc.T * pc.Hq;
    // splits = 1: y; else this split's (m, l, unnormalized O) go to part[split] (empty splits too:
    // l = 0) and the attention_merge pass combines them (a prefill tile has up to 32 rows: one
    // workgroup per row combines them faster than the tile's last workgroup would)
    for (uint i = 0u; i < 16u; i++) {
        const uint r = ro + i * 2u;
        const uint rr = r0 + r;
        if (rr >= nrows) continue;
        const uint row = (rr / G) * pc.Hq + hk * G + rr % G;     // t * Hq + h
        if (pc.splits == 1u) {
            const float l = l_s[r];
            y[row * 64u + dv] = l > 0.0 ? acc[i] / l : vec4(0.0);
        } else {
            part[(split * rows_all + row) * 64u + dv] = acc[i];
        }
    }
    if (pc.splits > 1u && u == 0u && r0 + sr < nrows) {
        const uint rr = r0 + sr;
        const uint row = (rr / G) * pc.Hq + hk * G + rr % G;
        const uint ml = pc.splits * rows_all * 256u + (split * rows_all + row) * 2u;
        part_ml[ml] = m_run;
        part_ml[ml + 1u] = l_run;
    }
}
