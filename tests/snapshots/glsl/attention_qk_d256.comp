#version 450
#extension GL_KHR_shader_subgroup_basic : enable
#extension GL_KHR_shader_subgroup_arithmetic : enable
// gemforge kernel attention_qk_d256 (generated from templates/glsl; do not edit)
#extension GL_EXT_control_flow_attributes : enable
// Flash attention over a ring-buffer KV cache (decode: 4 query rows x 32 keys per block, D = 256).
// Workgroup (tile, kv head hk, split). Query rows of a kv head are the pairs (t, g), row = t * G + g,
// q head hk * G + g. Keys are visited by age a = p_end - kpos, slot (p_end - a) mod C.
// Per key block: (1) scores, 4 invocations per key, each the dot of 16 vec4 columns of D with every
// row (all of its loads in flight at once: a decode block costs a few memory latencies, not one per
// 8 vec4), partials summed through shared memory; (2) online softmax, 32 invocations
// per row; (3) O = O * alpha + P V, invocation = vec4 column x 2 rows. Everything in fp32, exp2 domain.
// attention_qk: before the blocks, the workgroup norms and ropes its q rows from qkv into shared memory
// (qk_rope's arithmetic and summation order), and split 0 -- whose ages start at 0, the newest key --
// also the new k and v: into the caches for later steps, and into shared memory for its own age 0.
layout(local_size_x = 128) in;
layout(std430, set = 0, binding = 0) restrict readonly buffer B_qkv { float qkv[]; };
layout(std430, set = 0, binding = 1) restrict readonly buffer B_qw { float qw[]; };
layout(std430, set = 0, binding = 2) restrict readonly buffer B_kw { float kw[]; };
layout(std430, set = 0, binding = 3) restrict readonly buffer B_freqs { float freqs[]; };
layout(std430, set = 0, binding = 4) restrict buffer B_kcache { vec4 kcache[]; };
layout(std430, set = 0, binding = 4) buffer B_kcache1 { float kcache1[]; };
layout(std430, set = 0, binding = 5) restrict buffer B_vcache { vec4 vcache[]; };
layout(std430, set = 0, binding = 5) buffer B_vcache1 { float vcache1[]; };
layout(std430, set = 0, binding = 6) restrict writeonly buffer B_y { vec4 y[]; };
layout(std430, set = 0, binding = 7) restrict coherent buffer B_part { vec4 part[]; };
layout(std430, set = 0, binding = 7) coherent buffer B_part_ml { float part_ml[]; };
layout(std430, set = 0, binding = 8) restrict readonly buffer B_ctrl { uint ctrl[]; };
layout(std430, set = 0, binding = 9) restrict coherent buffer B_count { uint count[]; };
layout(push_constant) uniform PushConstants { uint T; uint Hq; uint Hkv; uint C; uint window; float scale; uint splits; float eps; } pc;

const float NEG = -1.0e30;      // score of a hidden key / max of no key: finite, so exp2 never sees inf - inf
const int NEVER = 0x7fffffff;

shared float P[128];  // scores, then probabilities, [row][key]
shared float red[128];
shared float alpha_s[4];
shared float S_part[512];   // [row][key][slice] partial scores
shared bool last_s;                          // this workgroup is the last of its head's splits
shared float l_s[4];
shared vec4 qsh[256];              // the tile's q rows, normed and roped
shared vec4 knew[64];                  // split 0: the newest k (normed, roped) and v
shared vec4 vnew[64];
shared float pa[640];      // the pairs (i, i + D/2) of the tile's q heads, then k
shared float pb[640];
shared float psum[640];    // a * a + b * b, summed per head (qk_rope's tree)

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
    const uint tid = gl_LocalInvocationID.x;
    const uint hk = gl_WorkGroupID.y;
    const uint split = gl_WorkGroupID.z;
    const uint G = pc.Hq / pc.Hkv;
    const uint nrows = pc.T * G;
    const uint r0 = gl_WorkGroupID.x * 4u;
    const int pos0 = int(ctrl[0]);
    const int p_end = pos0 + int(pc.T) - 1;
    const int W = int(pc.window);

    // The ages any row of this tile may see (causal: kpos <= pmax; window: kpos > pmin - W; kpos >= 0; a < C),
    // cut into pc.splits pieces of whole blocks.
    const int pmin = pos0 + int(r0 / G);
    const int pmax = pos0 + int((min(r0 + 4u, nrows) - 1u) / G);
    const int a_lo = p_end - pmax;
    int a_hi = min(int(pc.C), p_end + 1);
    if (W > 0) a_hi = min(a_hi, p_end - pmin + W);
    const int S = int(pc.splits);
    const int chunk = ((max(a_hi - a_lo, 0) + S - 1) / S + 31) / 32 * 32;
    const int a_begin = a_lo + int(split) * chunk;
    const int a_end = min(a_hi, a_begin + chunk);
    // splits that see a key: the rest of the grid (sized for the cache, not the position) has no work
    const uint used = chunk > 0 ? uint((a_hi - a_lo + chunk - 1) / chunk) : 1u;
    if (split >= used) return;

    // (1) score role: key kj, slice sl of D (vec4 columns sl, sl + TPK, ...: a key's lanes read adjacent
    // 16 bytes); every row of the tile
    const uint kj = tid / 4u;
    const uint sl = tid % 4u;
    uint qbase[4];
    for (uint i = 0u; i < 4u; i++) {
        const uint rc = min(r0 + i, nrows - 1u);
        qbase[i] = (rc - r0) * 64u;       // row of qsh
    }
    {   // q of the tile's rows (T = 1: row r is q head hk G + r) and, in split 0, the newest k and v
        const uint HALF = 128u;
        const uint nq = min(r0 + 4u, nrows) - r0;
        const bool newest = split == 0u;
        const uint nh = nq + (newest ? 1u : 0u);            // heads to norm and rope: q rows, then k
        const uint pos = uint(pos0);
        const uint slot = pos % pc.C;
        const uint kvrow = (slot * pc.Hkv + hk) * 256u;
        for (uint p = tid; p < nh * HALF; p += 128u) {
            const uint j = p / HALF, i = p % HALF;
            const uint src = (j < nq ? hk * G + r0 + j : pc.Hq + hk) * 256u;
            const float a = qkv[src + i];
            const float b = qkv[src + i + HALF];
            pa[p] = a;
            pb[p] = b;
            psum[p] = a * a + b * b;
        }
        barrier();
        for (uint st = HALF / 2u; st > 0u; st >>= 1u) {     // per head, as qk_rope's tree
            for (uint p = tid; p < nh * HALF; p += 128u)
                if (p % HALF < st) psum[p] += psum[p + st];
            barrier();
        }
        for (uint p = tid; p < nh * HALF; p += 128u) {
            const uint j = p / HALF, i = p % HALF;
            const bool is_q = j < nq;
            const float inv = inversesqrt(psum[j * HALF] / float(256) + pc.eps);
            const float a = pa[p] * inv * (is_q ? qw[i] : kw[i]);
            const float b = pb[p] * inv * (is_q ? qw[i + HALF] : kw[i + HALF]);
            precise const float angle = float(pos) * freqs[i];
            const vec2 sc = sincos_reduced(angle);
            const float ra = a * sc.y - b * sc.x;
            const float rb = b * sc.y + a * sc.x;
            if (is_q) {
                const uint e = j * 256u + i;
                qsh[e >> 2u][e & 3u] = ra;
                qsh[(e + HALF) >> 2u][(e + HALF) & 3u] = rb;
            } else {
                knew[i >> 2u][i & 3u] = ra;
                knew[(i + HALF) >> 2u][(i + HALF) & 3u] = rb;
                if (gl_WorkGroupID.x == 0u) {                 // one tile writes the cache
                    kcache1[kvrow + i] = ra;
                    kcache1[kvrow + i + HALF] = rb;
                }
            }
        }
        if (newest) {
            for (uint e = tid; e < 256u; e += 128u) {
                const float v = qkv[(pc.Hq + pc.Hkv + hk) * 256u + e];
                vnew[e >> 2u][e & 3u] = v;
                if (gl_WorkGroupID.x == 0u) vcache1[kvrow + e] = v;
            }
        }
        barrier();
    }
    // (2) softmax role: row sr, lane u of TPR; every lane of a row keeps the same running max and sum
    const uint sr = tid / 32u;
    const uint u = tid % 32u;
    float m_run = NEG;
    float l_run = 0.0;
    // (3) output role: vec4 column dv, rows ro + i * RG_O
    const uint dv = tid % 64u;
    const uint ro = tid / 64u;
    vec4 acc[2];
    for (uint i = 0u; i < 2u; i++) acc[i] = vec4(0.0);

    for (int blk = a_begin; blk < a_end; blk += 32) {
        {   // (1) scores: partial dots of this lane's slice, then one sum per (row, key)
            const int a = blk + int(kj);
            float s[4];
            for (uint i = 0u; i < 4u; i++) s[i] = 0.0;
            if (a < a_end) {
                const uint kb = ((uint(p_end - a) % pc.C) * pc.Hkv + hk) * 64u + sl;
                for (uint d0 = 0u; d0 < 16u; d0 += 16u) {
                    vec4 k4[16];
                    if (a == 0) {   // the newest key: this workgroup's own copy (its cache write is not read back)
                        [[unroll]] for (uint d = 0u; d < 16u; d++) k4[d] = knew[sl + (d0 + d) * 4u];
                    } else {
                        [[unroll]] for (uint d = 0u; d < 16u; d++) k4[d] = kcache[kb + (d0 + d) * 4u];
                    }
                    [[unroll]] for (uint d = 0u; d < 16u; d++)
                        [[unroll]] for (uint i = 0u; i < 4u; i++)
                            s[i] += dot(qsh[qbase[i] + sl + (d0 + d) * 4u], k4[d]);
                }
            }
            for (uint i = 0u; i < 4u; i++) S_part[(i * 32u + kj) * 4u + sl] = s[i];
            barrier();
            for (uint e = tid; e < 128u; e += 128u) {
                const uint row = e / 32u;
                const uint key = e % 32u;
                float sc = 0.0;
                for (uint j = 0u; j < 4u; j++) sc += S_part[e * 4u + j];
                const int ak = blk + int(key);
                const uint rr = r0 + row;
                const int back = p_end - (pos0 + int(min(rr, nrows - 1u) / G));
                const bool seen = ak < a_end && rr < nrows && ak >= back && (W == 0 || ak < back + W);
                P[e] = seen ? sc * pc.scale : NEG;
            }
        }
        barrier();
        {   // (2) online softmax: block max, probabilities, running sum; alpha rescales the old output
            float mx = NEG;
            for (uint e = 0u; e < 1u; e++) mx = max(mx, P[sr * 32u + u + e * 32u]);
            red[tid] = mx;
            barrier();
            for (uint st = 16u; st > 0u; st >>= 1) {
                if (u < st) red[tid] = max(red[tid], red[tid + st]);
                barrier();
            }
            const float m_new = max(m_run, red[sr * 32u]);
            barrier();
            float sum = 0.0;
            for (uint e = 0u; e < 1u; e++) {
                const uint idx = sr * 32u + u + e * 32u;
                const float sc = P[idx];
                const float p = sc > 0.5 * NEG ? exp2(sc - m_new) : 0.0;
                P[idx] = p;
                sum += p;
            }
            red[tid] = sum;
            barrier();
            for (uint st = 16u; st > 0u; st >>= 1) {
                if (u < st) red[tid] += red[tid + st];
                barrier();
            }
            const float alpha = exp2(m_run - m_new);
            l_run = l_run * alpha + red[sr * 32u];
            m_run = m_new;
            if (u == 0u) alpha_s[sr] = alpha;
        }
        barrier();
        {   // (3) O = O * alpha + P V
            for (uint i = 0u; i < 2u; i++) acc[i] *= alpha_s[ro + i * 2u];
            const int nk = min(32, a_end - blk);
            for (int j0 = 0; j0 < nk; j0 += 16) {     // 16 value rows in flight, then their products
                vec4 v4[16];
                [[unroll]] for (int jj = 0; jj < 16; jj++) {
                    const int age = blk + min(j0 + jj, nk - 1);
                    const uint slot = uint(p_end - age) % pc.C;
                    if (age == 0) v4[jj] = vnew[dv];
                    else
                    v4[jj] = vcache[(slot * pc.Hkv + hk) * 64u + dv];
                }
                [[unroll]] for (int jj = 0; jj < 16; jj++) {
                    if (j0 + jj < nk) {
                        for (uint i = 0u; i < 2u; i++)
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
    if (used == 1u) {
        for (uint i = 0u; i < 2u; i++) {
            const uint r = ro + i * 2u;
            const uint rr = r0 + r;
            if (rr >= nrows) continue;
            const uint row = (rr / G) * pc.Hq + hk * G + rr % G;     // t * Hq + h
            const float l = l_s[r];
            y[row * 64u + dv] = l > 0.0 ? acc[i] / l : vec4(0.0);
        }
        return;
    }
    // Split: this tile's (m, l, unnormalized O) go to part[split]; the last of the tile's `used` splits
    // to finish (a counter per tile and kv head) combines them in split order -- the same sums
    // whichever finishes last -- writes y and resets the counter for the next dispatch.
    for (uint i = 0u; i < 2u; i++) {
        const uint rr = r0 + ro + i * 2u;
        if (rr >= nrows) continue;
        const uint row = (rr / G) * pc.Hq + hk * G + rr % G;
        part[(split * rows_all + row) * 64u + dv] = acc[i];
    }
    const uint ml0 = pc.splits * rows_all * 256u;
    if (u == 0u && r0 + sr < nrows) {
        const uint rr = r0 + sr;
        const uint row = (rr / G) * pc.Hq + hk * G + rr % G;
        part_ml[ml0 + (split * rows_all + row) * 2u] = m_run;
        part_ml[ml0 + (split * rows_all + row) * 2u + 1u] = l_run;
    }
    memoryBarrierBuffer();
    barrier();
    const uint slot = gl_WorkGroupID.x * pc.Hkv + hk;
    if (tid == 0u) last_s = atomicAdd(count[slot], 1u) == used - 1u;
    barrier();
    if (!last_s) return;
    memoryBarrierBuffer();
    for (uint i = 0u; i < 2u; i++) {
        const uint rr = r0 + ro + i * 2u;
        if (rr >= nrows) continue;
        const uint row = (rr / G) * pc.Hq + hk * G + rr % G;
        float M = NEG;
        for (uint s = 0u; s < used; s++) M = max(M, part_ml[ml0 + (s * rows_all + row) * 2u]);
        float L = 0.0;
        vec4 o = vec4(0.0);
        for (uint s = 0u; s < used; s++) {
            const float l = part_ml[ml0 + (s * rows_all + row) * 2u + 1u];
            if (l > 0.0) {
                const float wgt = exp2(part_ml[ml0 + (s * rows_all + row) * 2u] - M);
                L += l * wgt;
                o += wgt * part[(s * rows_all + row) * 64u + dv];
            }
        }
        y[row * 64u + dv] = L > 0.0 ? o / L : vec4(0.0);
    }
    if (tid == 0u) count[slot] = 0u;
}
