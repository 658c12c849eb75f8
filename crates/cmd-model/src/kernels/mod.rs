//! Hand-written WGSL kernels for the inference path (the sources are the top-level `shaders/`
//! folder), each next to the plain tensor version it must equal.
//!
//! The public functions pick the kernel when it can run: the tensors live on a wgpu device
//! (Vulkan, Metal, DX12 or the browser's WebGPU, all compiled to WGSL), hold `f32`, and carry no
//! autodiff graph (the kernels have no backward pass, so training keeps the tensor version).
//! Everywhere else (the CPU, CUDA, training) they run the tensor version. The kernels need
//! this crate's `wgsl` feature; add `fusion` when burn's `fusion` feature is on.
//!
//! - [`content_frame`]: the fused softmax-over-time weighted sum (spec section 1).
//! - [`rgba8`]: float frames packed into canvas pixels.

#[cfg(feature = "wgsl")]
mod wgsl;

use burn::tensor::activation::softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};

/// Whether the kernels run for `f32` tensors on `device` (a wgpu device without autodiff, in a
/// build with the `wgsl` feature); elsewhere the functions below run their tensor versions.
pub fn runs_wgsl(device: &Device) -> bool {
    #[cfg(feature = "wgsl")]
    return wgsl::runs_on(device);
    #[cfg(not(feature = "wgsl"))]
    {
        let _ = device;
        false
    }
}

/// Content frame and importance weights of clips: `w = softmax over frames of logits`,
/// `content = Σ_l w_l x_l`. Runs the fused WGSL kernel where it can (see the module docs).
///
/// # Shapes
/// - x, logits: `[B, L, C, H, W]`
/// - returns `(content [B, C, H, W], weights [B, L, C, H, W])`
pub fn content_frame(x: Tensor<5>, logits: Tensor<5>) -> (Tensor<4>, Tensor<5>) {
    #[cfg(feature = "wgsl")]
    if wgsl::applies(&x) && wgsl::applies(&logits) {
        return wgsl::content_frame(x, logits);
    }
    content_frame_tensor(x, logits)
}

/// [`content_frame`] written with tensor operations: the reference the kernel must equal, and
/// the path every other device (and training) takes.
pub fn content_frame_tensor(x: Tensor<5>, logits: Tensor<5>) -> (Tensor<4>, Tensor<5>) {
    let weights = softmax(logits, 1);
    let content = (weights.clone() * x).sum_dim(1).squeeze_dim::<4>(1);
    (content, weights)
}

/// Frames in `[-1, 1]` packed as canvas pixels: one RGBA8 word per pixel (red in the low byte,
/// alpha 255), a channel value `v` becoming `floor((clamp(v, -1, 1) + 1) * 127.5 + 0.5)`.
/// Runs the WGSL kernel where it can (see the module docs); read the result with
/// [`rgba8_bytes`].
///
/// # Shapes
/// - frames: `[N, 3, H, W]`
/// - returns `[N, H, W]`, each element the word's bits as an integer
///
/// # Panics
/// If the frames do not have 3 channels.
pub fn rgba8(frames: Tensor<4>) -> Tensor<3, Int> {
    assert_eq!(frames.dims()[1], 3, "rgba8 takes RGB frames [N, 3, H, W]");
    #[cfg(feature = "wgsl")]
    if wgsl::applies(&frames) {
        return wgsl::rgba8(frames);
    }
    rgba8_tensor(frames)
}

/// [`rgba8`] written with tensor operations: the reference the kernel must equal.
pub fn rgba8_tensor(frames: Tensor<4>) -> Tensor<3, Int> {
    let [n, c, h, w] = frames.dims();
    assert_eq!(c, 3, "rgba8 takes RGB frames [N, 3, H, W]");
    let levels = ((frames.clamp(-1.0, 1.0) + 1.0) * 127.5 + 0.5)
        .floor()
        .int();
    let channel = |c: usize| levels.clone().narrow(1, c, 1).reshape([n, h, w]);
    // Alpha 255 in the high byte: as an i32 bit pattern that is -2^24 plus the colour.
    channel(0) + channel(1) * 256 + channel(2) * 65_536 - 16_777_216
}

/// The bytes of packed pixels read back from [`rgba8`]: `R, G, B, A` per pixel, in order.
pub fn rgba8_bytes(data: TensorData) -> Vec<u8> {
    data.convert::<i32>()
        .iter::<i32>()
        .flat_map(i32::to_le_bytes)
        .collect()
}
