// Frames to canvas pixels: float frames `[N, 3, H, W]` in [-1, 1] become one packed RGBA8
// word per pixel, `[N, H, W]` (red in the low byte, alpha 255), so a read-back moves 4 bytes
// per pixel instead of 12 and the page can hand them to an ImageData as they are.
// A channel value v becomes floor((clamp(v, -1, 1) + 1) * 127.5 + 0.5): round half up.
//
// info: [N * H * W, H * W, workgroups along x]

@group(0) @binding(0) var<storage, read_write> frames: array<f32>;
@group(0) @binding(1) var<storage, read_write> pixels: array<u32>;
@group(0) @binding(2) var<storage, read> info: array<u32>;

fn level(v: f32) -> u32 {
    return u32(floor((clamp(v, -1.0, 1.0) + 1.0) * 127.5 + 0.5));
}

@compute @workgroup_size({{ workgroup_size }}, 1, 1)
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let id = (group.y * info[2] + group.x) * {{ workgroup_size }}u + local;
    if id >= info[0] {
        return;
    }
    let plane = info[1];
    let base = (id / plane) * 3u * plane + id % plane;
    let r = level(frames[base]);
    let g = level(frames[base + plane]);
    let b = level(frames[base + 2u * plane]);
    pixels[id] = r | (g << 8u) | (b << 16u) | (255u << 24u);
}
