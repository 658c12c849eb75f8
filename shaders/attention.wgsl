// Scaled dot-product attention, fused: for every clip b, head h and query n,
//   out[b, n, h, :] = sum over keys m of softmax_m(scale * q[b, h, n, :] . k[b, h, m, :]) v[b, h, m, :]
// with the softmax taken online (one pass over the keys, rescaling the running sum whenever
// the maximum grows), so the score matrix is never written. With `causal`, query n sees the
// keys 0..=n only (CLIP's text encoder). This replaces the transpose, two products, the
// maximum, exp, sum and divide kernels (and their buffers) of the tensor version.
//
// q `[B, H, N, D]`, k `[B, H, M, D]` and v `[B, H, M, E]` are read through their strides (the
// head-split views the projections give, without copies); the output is written with the
// heads side by side, `[B, N, H, E]` in memory, which is the layout the output projection
// reads. One invocation per (b, h, n): neighbouring invocations are neighbouring queries of
// one head, so they read the same key at the same time.
//
// info: [B * H * N, H, N, M,
//        q strides (b, h, n, d), k strides (b, h, m, d), v strides (b, h, m, e),
//        scale as f32 bits, causal, workgroups along x]

const D: u32 = {{ head_dim }}u;
const E: u32 = {{ value_dim }}u;

@group(0) @binding(0) var<storage, read_write> q: array<f32>;
@group(0) @binding(1) var<storage, read_write> k: array<f32>;
@group(0) @binding(2) var<storage, read_write> v: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read> info: array<u32>;

@compute @workgroup_size({{ workgroup_size }}, 1, 1)
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let row = (group.y * info[18] + group.x) * {{ workgroup_size }}u + local;
    if row >= info[0] {
        return;
    }
    let heads = info[1];
    let queries = info[2];
    let n = row % queries;
    let h = (row / queries) % heads;
    let b = row / (queries * heads);
    let qi = b * info[4] + h * info[5] + n * info[6];
    let ki = b * info[8] + h * info[9];
    let vi = b * info[12] + h * info[13];
    let qd = info[7];
    let km = info[10];
    let kd = info[11];
    let vm = info[14];
    let ve = info[15];
    let scale = bitcast<f32>(info[16]);
    var keys = info[3];
    if info[17] != 0u {
        keys = min(keys, n + 1u);
    }

    var query: array<f32, D>;
    for (var d = 0u; d < D; d++) {
        query[d] = q[qi + d * qd] * scale;
    }
    // Key 0 starts the running maximum `top`, the sum of exp(score - top) and the
    // accumulated values, each exp(score - top) times its value row.
    var top = 0.0;
    for (var d = 0u; d < D; d++) {
        top += query[d] * k[ki + d * kd];
    }
    var total = 1.0;
    var acc: array<f32, E>;
    for (var e = 0u; e < E; e++) {
        acc[e] = v[vi + e * ve];
    }
    for (var m = 1u; m < keys; m++) {
        let key = ki + m * km;
        var score = 0.0;
        for (var d = 0u; d < D; d++) {
            score += query[d] * k[key + d * kd];
        }
        if score > top {
            let shrink = exp(top - score);
            total *= shrink;
            for (var e = 0u; e < E; e++) {
                acc[e] *= shrink;
            }
            top = score;
        }
        let p = exp(score - top);
        total += p;
        let value = vi + m * vm;
        for (var e = 0u; e < E; e++) {
            acc[e] += p * v[value + e * ve];
        }
    }
    let o = ((b * queries + n) * heads + h) * E;
    for (var e = 0u; e < E; e++) {
        out[o + e] = acc[e] / total;
    }
}
