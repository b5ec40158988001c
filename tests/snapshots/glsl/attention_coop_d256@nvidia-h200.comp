#version 450
#extension GL_KHR_shader_subgroup_basic : enable
#extension GL_KHR_shader_subgroup_arithmetic : enable
// gemforge kernel attention_coop_d256@nvidia-h200 (generated from templates/glsl; do not edit)
#extension GL_KHR_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_KHR_shader_subgroup_shuffle : enable
#extension GL_EXT_control_flow_attributes : enable
// Prefill attention on cooperative matrices (tensor cores): 16 query rows x 64 keys per block, D = 256.
// Workgroup (tile, kv head hk, split), as `attention` in prefill mode: query rows of a kv head are the
// pairs (t, g), row = t * G + g, q head hk * G + g; keys are visited by age a = p_end - kpos, slot
// (p_end - a) mod C, and the ages the tile may see are cut into pc.splits pieces of whole blocks.
// The q tile and each k or v block are rounded to fp16 in shared memory (k, v: one block at a time,
// in the same space). Per block, the 4 subgroups compute the 16x16 tiles of S = q k^T (fp32
// sums) into shared memory, where 8 invocations per row apply the causal and window limits.
// KHR cooperative matrices cannot rescale an accumulator row by row, so the online softmax becomes two
// passes over the tile's blocks: pass 1 keeps each row's largest visible score m; pass 2 recomputes S,
// writes p = 2^(s - m) (<= 1) in fp16, sums the rounded p in fp32 (l), and adds P V into O (fp32
// accumulators, 16x16 tiles of rows x D shared out among the subgroups). O / l goes to y, or with
// splits (m, l, O) to part for attention_merge (the layout `attention` writes).
// Each k or v block is loaded and stored at once (no registers held across the products: other
// workgroups on the same multiprocessor hide the latency).
layout(local_size_x = 128) in;
layout(std430, set = 0, binding = 0) restrict readonly buffer B_q { vec4 q[]; };
layout(std430, set = 0, binding = 1) restrict readonly buffer B_kcache { vec4 kcache[]; };
layout(std430, set = 0, binding = 2) restrict readonly buffer B_vcache { vec4 vcache[]; };
layout(std430, set = 0, binding = 3) restrict writeonly buffer B_y { float y[]; };
layout(std430, set = 0, binding = 4) restrict writeonly buffer B_part { float part[]; };
layout(std430, set = 0, binding = 5) restrict readonly buffer B_ctrl { uint ctrl[]; };
layout(push_constant) uniform PushConstants { uint T; uint Hq; uint Hkv; uint C; uint window; float scale; uint splits; } pc;

const uint D = 256u, DV = D / 4u, D8 = D / 8u;     // a row: D floats, DV vec4, D8 fp16 uvec4
const uint BR = 16u, BC = 64u, NSG = 4u, SG = 32u, NT = 128u;
const uint TPR = 8u, EPT = 8u;         // softmax: lanes per row, keys per lane (whole uvec4s)
const uint LD = D8 + 1u;                               // q / kv row stride in uvec4 (16 bytes of padding)
const uint SLD = BC + 4u;                              // score row stride in floats
const uint LDP = BC / 8u + 1u;                         // probability row stride in uvec4
const uint QI = (BR * D8 + NT - 1u) / NT;              // q items (8 values) per invocation
const uint KI = (BC * D8 + NT - 1u) / NT;              // k or v items per invocation
const uint NS = ((BR / 16u) * (BC / 16u) + NSG - 1u) / NSG;   // S tiles per subgroup (some may idle)
const uint NO = (BR / 16u) * (D / 16u) / NSG;          // O tiles per subgroup
const float NEG = -1.0e30;                             // the max of no key: finite, exp2 never sees inf - inf

shared uvec4 Qs[BR * LD];
shared uvec4 KV[BC * LD];
shared float Ss[BR * SLD];      // scores; after the loop, every subgroup's 16x16 fp32 output staging tile
shared uvec4 Ps[BR * LDP];
shared float m_s[BR];
shared float l_s[BR];

#define CM_A coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseA>
#define CM_B coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseB>
#define CM_C coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator>

uint h2(vec2 v) { return packFloat2x16(f16vec2(v)); }
uvec4 h8(vec4 a, vec4 b) { return uvec4(h2(a.xy), h2(a.zw), h2(b.xy), h2(b.zw)); }

vec4 ld[2u * KI];               // one k or v block in flight: item i (8 values) in ld[2i], ld[2i + 1]

void load_k(uint tid, int blk, int a_end, int p_end, uint hk) {
    [[unroll]] for (uint i = 0u; i < KI; i++) {
        const uint l = tid + i * NT;
        const int a = blk + int(l / D8);
        const bool ok = l < BC * D8 && a < a_end;     // keys past the split's end: zeros (never NaN garbage)
        const uint b = ((uint(p_end - min(a, a_end - 1)) % pc.C) * pc.Hkv + hk) * DV + 2u * (l % D8);
        ld[2u * i] = ok ? kcache[b] : vec4(0.0);
        ld[2u * i + 1u] = ok ? kcache[b + 1u] : vec4(0.0);
    }
}
void load_v(uint tid, int blk, int a_end, int p_end, uint hk) {
    [[unroll]] for (uint i = 0u; i < KI; i++) {
        const uint l = tid + i * NT;
        const int a = blk + int(l / D8);
        const bool ok = l < BC * D8 && a < a_end;     // keys past the split's end: zeros (never NaN garbage)
        const uint b = ((uint(p_end - min(a, a_end - 1)) % pc.C) * pc.Hkv + hk) * DV + 2u * (l % D8);
        ld[2u * i] = ok ? vcache[b] : vec4(0.0);
        ld[2u * i + 1u] = ok ? vcache[b + 1u] : vec4(0.0);
    }
}

void store_kv(uint tid) {
    [[unroll]] for (uint i = 0u; i < KI; i++) {
        const uint l = tid + i * NT;
        if (l < BC * D8) KV[(l / D8) * LD + l % D8] = h8(ld[2u * i], ld[2u * i + 1u]);
    }
}

// S tiles of this subgroup: q (row-major A) times k^T (k rows as a column-major B), fp32 into Ss
void scores(uint sg) {
    [[unroll]] for (uint s = 0u; s < NS; s++) {
        const uint tile = sg + s * NSG, ti = tile / (BC / 16u), tj = tile % (BC / 16u);
        if (tile >= (BR / 16u) * (BC / 16u)) break;      // uniform per subgroup
        CM_C acc = CM_C(0.0);
        [[unroll]] for (uint kk = 0u; kk < D / 16u; kk++) {
            CM_A a;
            CM_B b;
            coopMatLoad(a, Qs, ti * 16u * LD + 2u * kk, LD, gl_CooperativeMatrixLayoutRowMajor);
            coopMatLoad(b, KV, tj * 16u * LD + 2u * kk, LD, gl_CooperativeMatrixLayoutColumnMajor);
            acc = coopMatMulAdd(a, b, acc);
        }
        coopMatStore(acc, Ss, ti * 16u * SLD + tj * 16u, SLD, gl_CooperativeMatrixLayoutRowMajor);
    }
}

void main() {
    const uint tid = gl_LocalInvocationID.x;
    const uint sg = tid / SG, lane = tid % SG;
    const uint hk = gl_WorkGroupID.y;
    const uint split = gl_WorkGroupID.z;
    const uint G = pc.Hq / pc.Hkv;
    const uint nrows = pc.T * G;
    const uint r0 = gl_WorkGroupID.x * BR;
    const int pos0 = int(ctrl[0]);
    const int p_end = pos0 + int(pc.T) - 1;
    const int W = int(pc.window);

    // The ages any row of this tile may see (causal: kpos <= pmax; window: kpos > pmin - W; kpos >= 0; a < C),
    // cut into pc.splits pieces of whole blocks (as `attention`).
    const int pmin = pos0 + int(r0 / G);
    const int pmax = pos0 + int((min(r0 + BR, nrows) - 1u) / G);
    const int a_lo = p_end - pmax;
    int a_hi = min(int(pc.C), p_end + 1);
    if (W > 0) a_hi = min(a_hi, p_end - pmin + W);
    const int S = int(pc.splits);
    const int chunk = ((max(a_hi - a_lo, 0) + S - 1) / S + int(BC) - 1) / int(BC) * int(BC);
    const int a_begin = a_lo + int(split) * chunk;
    const int a_end = min(a_hi, a_begin + chunk);

    // the q tile in fp16 (rows past the tile's rows: zeros)
    [[unroll]] for (uint i = 0u; i < QI; i++) {
        const uint l = tid + i * NT;
        if (l < BR * D8) {
            const uint r = l / D8, c = l % D8, rr = r0 + r;
            vec4 a = vec4(0.0), b = vec4(0.0);
            if (rr < nrows) {
                const uint qb = ((rr / G) * pc.Hq + hk * G + rr % G) * DV + 2u * c;
                a = q[qb];
                b = q[qb + 1u];
            }
            Qs[r * LD + c] = h8(a, b);
        }
    }

    // softmax role: row sr, lane u of TPR (keys u * EPT ..); every lane of a row keeps its max
    const uint sr = tid / TPR, u = tid % TPR;
    const uint rs = r0 + sr;
    const bool row_ok = rs < nrows;
    const int back = p_end - (pos0 + int(min(rs, nrows - 1u) / G));   // the row's own age: it sees a >= back
    const int wend = W > 0 ? back + W : 0x7fffffff;                    // and a < back + W

    // pass 1: each row's largest visible score
    float m_run = NEG;
    for (int blk = a_begin; blk < a_end; blk += int(BC)) {
        barrier();                      // the last block's products are done with KV (and Qs is stored)
        load_k(tid, blk, a_end, p_end, hk);
        store_kv(tid);
        barrier();
        scores(sg);
        barrier();
        float mx = NEG;
        [[unroll]] for (uint e = 0u; e < EPT; e++) {
            const int a = blk + int(u * EPT + e);
            if (row_ok && a < a_end && a >= back && a < wend) mx = max(mx, Ss[sr * SLD + u * EPT + e] * pc.scale);
        }
        [[unroll]] for (uint off = TPR / 2u; off > 0u; off >>= 1u) mx = max(mx, subgroupShuffleXor(mx, off));
        m_run = max(m_run, mx);
    }

    // pass 2: O = sum over keys of 2^(s - m) v, l = sum of 2^(s - m) (the fp16-rounded values)
    float l_run = 0.0;
    CM_C o[NO];
    [[unroll]] for (uint t = 0u; t < NO; t++) o[t] = CM_C(0.0);
    for (int blk = a_begin; blk < a_end; blk += int(BC)) {
        barrier();                      // the last block's P V products are done with KV and Ps
        load_k(tid, blk, a_end, p_end, hk);
        store_kv(tid);                  // k
        barrier();
        scores(sg);
        barrier();                      // every S product is done with k
        load_v(tid, blk, a_end, p_end, hk);
        store_kv(tid);                  // v
        [[unroll]] for (uint e8 = 0u; e8 < EPT / 8u; e8++) {
            float p[8];
            [[unroll]] for (uint e = 0u; e < 8u; e++) {
                const uint key = u * EPT + 8u * e8 + e;
                const int a = blk + int(key);
                const bool seen = row_ok && a < a_end && a >= back && a < wend;
                p[e] = seen ? exp2(Ss[sr * SLD + key] * pc.scale - m_run) : 0.0;
            }
            const uvec4 hv = h8(vec4(p[0], p[1], p[2], p[3]), vec4(p[4], p[5], p[6], p[7]));
            [[unroll]] for (uint j = 0u; j < 4u; j++) {
                const vec2 f = unpackHalf2x16(hv[j]);
                l_run += f.x + f.y;
            }
            Ps[sr * LDP + (u * EPT) / 8u + e8] = hv;
        }
        barrier();
        [[unroll]] for (uint t = 0u; t < NO; t++) {
            const uint tile = sg + t * NSG, ti = tile / (D / 16u), tj = tile % (D / 16u);
            [[unroll]] for (uint kk = 0u; kk < BC / 16u; kk++) {
                CM_A a;
                CM_B b;
                coopMatLoad(a, Ps, ti * 16u * LDP + 2u * kk, LDP, gl_CooperativeMatrixLayoutRowMajor);
                coopMatLoad(b, KV, kk * 16u * LD + 2u * tj, LD, gl_CooperativeMatrixLayoutRowMajor);
                o[t] = coopMatMulAdd(a, b, o[t]);
            }
        }
    }
    [[unroll]] for (uint off = TPR / 2u; off > 0u; off >>= 1u) l_run += subgroupShuffleXor(l_run, off);
    if (u == 0u) {
        m_s[sr] = m_run;
        l_s[sr] = l_run;
    }
    barrier();                          // Ss is free (the last scores were read before the last P V)

    // O through a 16x16 staging tile per subgroup: y = O / l (splits = 1) or the unnormalized O to part
    const uint rows_all = pc.T * pc.Hq;
    const uint cs = sg * 256u;
    [[unroll]] for (uint t = 0u; t < NO; t++) {
        const uint tile = sg + t * NSG, ti = tile / (D / 16u), tj = tile % (D / 16u);
        coopMatStore(o[t], Ss, cs, 16u, gl_CooperativeMatrixLayoutRowMajor);
        subgroupMemoryBarrierShared();
        subgroupBarrier();
        for (uint e = lane; e < 256u; e += SG) {
            const uint r = ti * 16u + e / 16u, rr = r0 + r;
            if (rr < nrows) {
                const uint row = (rr / G) * pc.Hq + hk * G + rr % G;     // t * Hq + h
                const uint d = tj * 16u + e % 16u;
                const float v = Ss[cs + e];
                if (pc.splits == 1u) {
                    const float l = l_s[r];
                    y[row * D + d] = l > 0.0 ? v / l : 0.0;
                } else {
                    part[(split * rows_all + row) * D + d] = v;
                }
            }
        }
        subgroupBarrier();
    }
    if (pc.splits > 1u && tid < BR && r0 + tid < nrows) {
        const uint rr = r0 + tid;
        const uint row = (rr / G) * pc.Hq + hk * G + rr % G;
        const uint ml = pc.splits * rows_all * D + (split * rows_all + row) * 2u;
        part[ml] = m_s[tid];
        part[ml + 1u] = l_s[tid];
    }
}
