// Content frame (CMD spec section 1), fused: for every clip b and every pixel/channel p,
//   w[b, l, p] = softmax over l of logits[b, l, p]
//   content[b, p] = sum over l of w[b, l, p] * x[b, l, p]
// in one pass over the frames instead of the separate max, exp, sum, divide, multiply and
// sum kernels of the tensor version. Tensors are contiguous `[B, L, P]` (P = C*H*W) and
// `[B, P]`; one invocation per (b, p), so neighbouring invocations read neighbouring memory.
//
// info: [B * P, L, P, workgroups along x]

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> content: array<f32>;
@group(0) @binding(3) var<storage, read_write> weights: array<f32>;
@group(0) @binding(4) var<storage, read> info: array<u32>;

@compute @workgroup_size({{ workgroup_size }}, 1, 1)
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let id = (group.y * info[3] + group.x) * {{ workgroup_size }}u + local;
    if id >= info[0] {
        return;
    }
    let frames = info[1];
    let plane = info[2];
    let b = id / plane;
    let base = b * frames * plane + id % plane;

    var top = logits[base];
    for (var l = 1u; l < frames; l++) {
        top = max(top, logits[base + l * plane]);
    }
    var total = 0.0;
    for (var l = 0u; l < frames; l++) {
        total += exp(logits[base + l * plane] - top);
    }
    var sum = 0.0;
    for (var l = 0u; l < frames; l++) {
        let i = base + l * plane;
        let w = exp(logits[i] - top) / total;
        weights[i] = w;
        sum += w * x[i];
    }
    content[id] = sum;
}
