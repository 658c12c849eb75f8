// GroupNorm and LayerNorm, fused with their affine parameters and (optionally) SiLU: for
// every segment s of the contiguous input (a group of one sample's channels for GroupNorm,
// one row for LayerNorm),
//   y = (x - mean_s) / sqrt(var_s + eps) * gamma[c] + beta[c],  then y * sigmoid(y) if silu
// with the (biased) variance taken about the mean in a second pass over the segment. This
// replaces the two reductions and the element-wise kernels of the tensor version.
//
// A segment is `length` contiguous values; segment s belongs to group `s % groups` and its
// value i to channel `(s % groups) * (length / spatial) + i / spatial` (GroupNorm of
// `[B, C, H, W]`: groups G, spatial H*W; LayerNorm: groups 1, spatial 1). gamma and beta
// hold C channels per sample, in rows `row stride` apart, the segments `s / per_sample` of one
// sample sharing a row (row strides 0 when the parameters are shared). With `modulate` the
// scale is `1 + gamma[c]` (DiT's adaLN: gamma and beta are the clip's scale and shift). One
// workgroup per segment: each invocation sums a strided share, then the workgroup adds the
// shares up.
//
// x is read through its strides as `[N, C, H, W]` (LayerNorm rows as `[rows, C, 1, 1]`), so
// a GroupNorm reads a convolution's output (channels last in memory) as it is; y is written
// channels last, `[N, H, W, C]` in memory, the layout burn's convolutions and the
// transformers' token projections read without a copy.
//
// info: [segments, length, spatial, groups, per_sample, gamma row stride, beta row stride,
//        epsilon as f32 bits, silu, modulate, W, x strides (n, c, h, w), workgroups along x]

const WG: u32 = {{ workgroup_size }}u;

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> gamma: array<f32>;
@group(0) @binding(2) var<storage, read_write> beta: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> info: array<u32>;

var<workgroup> shares: array<f32, WG>;

// The sum of every invocation's `value`, in every invocation.
fn workgroup_sum(local: u32, value: f32) -> f32 {
    shares[local] = value;
    workgroupBarrier();
    for (var half = WG / 2u; half > 0u; half /= 2u) {
        if local < half {
            shares[local] += shares[local + half];
        }
        workgroupBarrier();
    }
    let total = shares[0];
    workgroupBarrier();
    return total;
}

// The address of value i of segment s: sample n = s / groups, channel c, pixel p.
fn input_at(n: u32, c: u32, p: u32) -> u32 {
    let width = info[10];
    return n * info[11] + c * info[12] + (p / width) * info[13] + (p % width) * info[14];
}

@compute @workgroup_size({{ workgroup_size }}, 1, 1)
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    // Workgroups past the last segment (the grid spilled into y) run with an empty segment
    // rather than return, so that every invocation reaches the barriers.
    let segment = group.y * info[15] + group.x;
    let valid = segment < info[0];
    let length = select(0u, info[1], valid);
    let spatial = info[2];
    let groups = info[3];
    let n = segment / groups;
    let first_channel = (segment % groups) * (length / spatial);

    var sum = 0.0;
    for (var i = local; i < length; i += WG) {
        sum += x[input_at(n, first_channel + i / spatial, i % spatial)];
    }
    let mean = workgroup_sum(local, sum) / f32(max(length, 1u));
    var squares = 0.0;
    for (var i = local; i < length; i += WG) {
        let centred = x[input_at(n, first_channel + i / spatial, i % spatial)] - mean;
        squares += centred * centred;
    }
    let variance = workgroup_sum(local, squares) / f32(max(length, 1u));
    let inv_std = inverseSqrt(variance + bitcast<f32>(info[7]));

    let sample = segment / info[4];
    let scales = sample * info[5] + first_channel;
    let shifts = sample * info[6] + first_channel;
    let one = select(0.0, 1.0, info[9] != 0u);
    let silu = info[8] != 0u;
    // Channels last: [n, p, c] with C = groups * channels per group.
    let channels = groups * (length / spatial);
    for (var i = local; i < length; i += WG) {
        let k = i / spatial;
        let p = i % spatial;
        let c = first_channel + k;
        var value = (x[input_at(n, c, p)] - mean) * inv_std * (one + gamma[scales + k])
            + beta[shifts + k];
        if silu {
            value = value / (1.0 + exp(-value));
        }
        y[(n * spatial + p) * channels + c] = value;
    }
}
