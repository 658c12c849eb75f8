//! Hand-written kernels for the inference path, each next to the plain tensor version it must
//! equal: WGSL kernels for wgpu devices (the sources are the top-level `shaders/` folder) and
//! CPU kernels for burn's Flex backend (`cpu` feature).
//!
//! The public functions pick the kernel when it can run: the tensors live on a wgpu device
//! (Vulkan, Metal, DX12 or the browser's WebGPU, all compiled to WGSL), hold `f32`, and carry no
//! autodiff graph (the kernels have no backward pass, so training keeps the tensor version).
//! Everywhere else (the CPU, CUDA, training) they run the tensor version. The kernels need
//! this crate's `wgsl` feature; add `fusion` when burn's `fusion` feature is on.
//!
//! - [`content_frame`]: the fused softmax-over-time weighted sum (spec section 1).
//! - [`rgba8`]: float frames packed into canvas pixels.
//! - [`attention`] and [`causal_attention`]: scaled dot-product attention in one pass, with an
//!   online softmax, reading the head-split views as they are.
//! - [`group_norm`] (with SiLU), [`layer_norm`] and [`modulated_norm`]: one workgroup per group
//!   or row.
//!
//! The CPU kernels ([`attention`], [`rope_attention`], [`conv2d`], [`linear`], [`linear_add`],
//! [`gated_linear_add`], [`geglu`], [`gelu_tanh`], [`group_norm`], [`modulated_norm`]) follow the same rule on Flex
//! devices: `f32`, no autodiff, and the crate's `cpu` feature; elsewhere the tensor versions run.

#[cfg(feature = "cpu")]
mod cpu;
#[cfg(feature = "wgsl")]
mod wgsl;

#[cfg(feature = "cpu")]
use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, LayerNorm, Linear, PaddingConfig2d};
use burn::tensor::activation::{self, gelu, gelu_approximate, softmax};
use burn::tensor::module;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device, Int, Tensor, TensorData};

/// Whether the CPU kernels run for `f32` tensors on `device` (a Flex device without autodiff,
/// in a build with the `cpu` feature).
pub fn runs_cpu(device: &Device) -> bool {
    #[cfg(feature = "cpu")]
    return cpu::runs_on(device);
    #[cfg(not(feature = "cpu"))]
    {
        let _ = device;
        false
    }
}

/// Whether two independent network calls on `device` (the two rows of a guided sampling step)
/// are faster side by side, one per thread, than as one batch of 2: on the CPU kernels' device
/// with more than one thread (native builds, and the browser's build with shared memory). There
/// a batch-1 call of the teaching UNet gains almost nothing from a second thread (11.5 ms on
/// one, 10.6 on two) while a batch of 2 takes 20 ms, so two calls at once take about as long
/// as one. Elsewhere (GPUs, a browser build with one thread) one batch is faster.
pub fn runs_side_by_side(device: &Device) -> bool {
    #[cfg(all(feature = "cpu", threads))]
    return cpu::runs_on(device) && cpu::threads() > 1;
    #[cfg(not(all(feature = "cpu", threads)))]
    {
        let _ = device;
        false
    }
}

/// Runs `a` and `b`: in builds with the CPU kernels and a thread pool at once, one per thread
/// of the pool, each running its kernels on its own thread (see [`runs_side_by_side`]);
/// elsewhere one after the other.
pub fn join<A: Send, B: Send>(
    a: impl FnOnce() -> A + Send,
    b: impl FnOnce() -> B + Send,
) -> (A, B) {
    #[cfg(all(feature = "cpu", threads))]
    return cpu::serial_join(a, b);
    #[cfg(not(all(feature = "cpu", threads)))]
    (a(), b())
}

/// Scaled dot-product attention `softmax(q k^T / sqrt(d)) v`, without mask. Runs the WGSL
/// kernel on wgpu devices (heads of up to 256 channels, up to 512 x 512 scores per head; its
/// output has the heads side by side in memory, so that merging them costs no copy) and the
/// CPU kernel on the CPU (any length:
/// the queries go in blocks of at most 1 MiB of scores), where they can (see the module
/// docs); elsewhere burn's `attention`.
///
/// # Shapes
/// - q: `[B, H, N, d]`, k: `[B, H, M, d]`, v: `[B, H, M, e]`
/// - returns `[B, H, N, e]`
pub fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    #[cfg(feature = "wgsl")]
    if wgsl::attention_applies(&q, &k, &v) {
        return wgsl::attention(q, k, v, false);
    }
    #[cfg(feature = "cpu")]
    if cpu::applies(&q) && cpu::applies(&k) && cpu::applies(&v) {
        return cpu::attention(q, k, v);
    }
    attention_tensor(q, k, v)
}

/// [`attention`] with a causal mask: query `i` attends to keys `0..=i` (CLIP's text encoder).
/// Runs the WGSL kernel where it can, elsewhere [`causal_attention_tensor`].
///
/// # Shapes
/// - q: `[B, H, N, d]`, k: `[B, H, N, d]`, v: `[B, H, N, e]`; returns `[B, H, N, e]`
pub fn causal_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    #[cfg(feature = "wgsl")]
    if wgsl::attention_applies(&q, &k, &v) {
        return wgsl::attention(q, k, v, true);
    }
    causal_attention_tensor(q, k, v)
}

/// [`causal_attention`] as burn's fused op.
pub fn causal_attention_tensor(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    let options = AttentionModuleOptions {
        is_causal: true,
        ..Default::default()
    };
    module::attention(q, k, v, None, None, options)
}

/// Multi-head self-attention of packed projections, with rotary positions on queries and
/// keys: `qkv [B, N, 3 H d]` holds the queries, keys and values, each `H` heads of `d`
/// side by side; `cos`, `sin` `[N, d]` are the rotary tables ("rotate half": channel `i`
/// pairs with `i + d/2`). Runs the CPU kernel where it can (see the module docs): one pass,
/// without the permuted copies of the tensor version. Elsewhere [`rope_attention_tensor`].
///
/// # Shapes
/// - qkv: `[B, N, 3 H d]`; returns `[B, N, H d]`, the heads side by side
pub fn rope_attention(qkv: Tensor<3>, heads: usize, cos: &Tensor<2>, sin: &Tensor<2>) -> Tensor<3> {
    #[cfg(feature = "cpu")]
    if cpu::applies(&qkv) && cpu::applies(cos) && cpu::applies(sin) {
        return cpu::rope_attention(qkv, cos.clone(), sin.clone(), heads);
    }
    rope_attention_tensor(qkv, heads, cos, sin)
}

/// [`rope_attention`] with tensor operations: split the heads, [`rope`], [`attention`] and
/// merge the heads.
pub fn rope_attention_tensor(
    qkv: Tensor<3>,
    heads: usize,
    cos: &Tensor<2>,
    sin: &Tensor<2>,
) -> Tensor<3> {
    let [b, n, width] = qkv.dims();
    let d = width / (3 * heads);
    // b n (three h d) -> three b h n d
    let qkv = qkv.reshape([b, n, 3, heads, d]).permute([2, 0, 3, 1, 4]);
    let part = |i| qkv.clone().narrow(0, i, 1).squeeze_dim::<4>(0);
    let out = attention(rope(part(0), cos, sin), rope(part(1), cos, sin), part(2));
    out.swap_dims(1, 2).reshape([b, n, heads * d])
}

/// Rotary positions ("rotate half"): `x cos + [-x2, x1] sin` over the last axis.
///
/// # Shapes
/// - x: `[B, H, N, d]`, cos and sin: `[N, d]`; returns the shape of x
pub fn rope(x: Tensor<4>, cos: &Tensor<2>, sin: &Tensor<2>) -> Tensor<4> {
    let [n, d] = cos.dims();
    let cos = cos.clone().reshape([1, 1, n, d]);
    let sin = sin.clone().reshape([1, 1, n, d]);
    let x1 = x.clone().narrow(3, 0, d / 2);
    let x2 = x.clone().narrow(3, d / 2, d / 2);
    x * cos + Tensor::cat(vec![x2.neg(), x1], 3) * sin
}

/// [`attention`] as burn's fused op: the reference the kernels must equal.
pub fn attention_tensor(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    module::attention(q, k, v, None, None, AttentionModuleOptions::default())
}

/// GEGLU's gated product `a * gelu(g)` (exact GELU) of `h = [a, g]`, split in halves on the
/// last axis. Runs the CPU kernel where it can (see the module docs).
///
/// # Shapes
/// - h: `[..., 2 w]`; returns `[..., w]`
pub fn geglu<const D: usize>(h: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "cpu")]
    if cpu::applies(&h) {
        return cpu::geglu(h);
    }
    geglu_tensor(h)
}

/// [`geglu`] written with tensor operations.
pub fn geglu_tensor<const D: usize>(h: Tensor<D>) -> Tensor<D> {
    let width = h.dims()[D - 1] / 2;
    let a = h.clone().narrow(D - 1, 0, width);
    a * gelu(h.narrow(D - 1, width, width))
}

/// `conv` applied to `x`. Runs the CPU kernel (no im2col, see `cpu.rs`) for 3x3 convolutions
/// with stride 1 and padding 1 (every convolution of the diffusers ResNets and the UNet's
/// and VAE's input and output convolutions) where it can (see the module docs); elsewhere
/// burn's `conv2d`.
///
/// # Shapes
/// - x: `[B, C, H, W]`; returns `[B, O, H', W']`
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    #[cfg(feature = "cpu")]
    if conv3x3_applies(conv) && cpu::applies(&x) {
        let weight = conv.weight.val();
        let bias = bias_or_zeros(conv.bias.as_ref(), weight.dims()[0], &weight.device());
        if cpu::applies(&weight) && cpu::applies(&bias) {
            return cpu::conv3x3(x, weight, bias);
        }
    }
    conv.forward(x)
}

/// Whether `conv` is a 3x3 convolution with stride 1, padding 1 on every side, no dilation
/// and one group: the shape the CPU kernel of [`conv2d`] takes.
pub fn conv3x3_applies(conv: &Conv2d) -> bool {
    // `Same` pads a 3x3, stride-1 convolution by one on every side.
    let padding = matches!(
        conv.padding,
        PaddingConfig2d::Explicit(1, 1, 1, 1) | PaddingConfig2d::Same
    );
    padding
        && conv.kernel_size == [3, 3]
        && conv.stride == [1, 1]
        && conv.dilation == [1, 1]
        && conv.groups == 1
}

/// `norm` (a GroupNorm) of `x`, then SiLU when `silu`: diffusers' ResNet and output norms in
/// one pass over the data instead of about ten. Runs the WGSL or the CPU kernel where it can
/// (see the module docs) and the norm has its affine parameters.
///
/// # Shapes
/// - x: `[B, C, H, W]`; returns the same
pub fn group_norm(norm: &GroupNorm, x: Tensor<4>, silu: bool) -> Tensor<4> {
    #[cfg(any(feature = "wgsl", feature = "cpu"))]
    if let (Some(gamma), Some(beta)) = (&norm.gamma, &norm.beta) {
        let (gamma, beta) = (gamma.val(), beta.val());
        let (groups, epsilon) = (norm.num_groups, norm.epsilon);
        #[cfg(feature = "wgsl")]
        if wgsl::applies(&x) && wgsl::applies(&gamma) && wgsl::applies(&beta) {
            return wgsl::group_norm(x, gamma, beta, groups, epsilon, silu);
        }
        #[cfg(feature = "cpu")]
        if cpu::applies(&x) && cpu::applies(&gamma) && cpu::applies(&beta) {
            return cpu::group_norm(x, gamma, beta, groups, epsilon, silu);
        }
    }
    group_norm_tensor(norm, x, silu)
}

/// `norm` (a LayerNorm over the last axis, made with `epsilon`) of `x`. Runs the WGSL kernel
/// where it can (see the module docs) and the norm has a bias; elsewhere `LayerNorm::forward`.
/// burn keeps a LayerNorm's epsilon private, so the caller passes the one it made it with.
///
/// # Shapes
/// - x: `[..., C]`; returns the same
pub fn layer_norm<const D: usize>(norm: &LayerNorm, x: Tensor<D>, epsilon: f64) -> Tensor<D> {
    #[cfg(feature = "wgsl")]
    if let (Some(beta), true) = (&norm.beta, wgsl::applies(&x)) {
        let (gamma, beta) = (norm.gamma.val(), beta.val());
        if wgsl::applies(&gamma) && wgsl::applies(&beta) {
            return wgsl::layer_norm(x, gamma, beta, epsilon);
        }
    }
    #[cfg(not(feature = "wgsl"))]
    let _ = epsilon;
    norm.forward(x)
}

/// [`group_norm`] as burn's `GroupNorm` and `silu`.
pub fn group_norm_tensor(norm: &GroupNorm, x: Tensor<4>, silu: bool) -> Tensor<4> {
    let y = norm.forward(x);
    if silu { activation::silu(y) } else { y }
}

/// A layer's bias for the CPU kernels, which always take one: zeros of `len` for a layer
/// without (made only where a kernel runs).
#[cfg(feature = "cpu")]
fn bias_or_zeros(bias: Option<&Param<Tensor<1>>>, len: usize, device: &Device) -> Tensor<1> {
    bias.map_or_else(|| Tensor::zeros([len], device), Param::val)
}

/// The weight and bias of `linear` for the CPU kernels, when they and `x` can take them.
#[cfg(feature = "cpu")]
fn cpu_linear<const D: usize>(linear: &Linear, x: &Tensor<D>) -> Option<(Tensor<2>, Tensor<1>)> {
    if !cpu::applies(x) {
        return None;
    }
    let weight = linear.weight.val();
    let bias = bias_or_zeros(linear.bias.as_ref(), weight.dims()[1], &weight.device());
    (cpu::applies(&weight) && cpu::applies(&bias)).then_some((weight, bias))
}

/// `linear` applied to `x`. Runs the CPU kernel where it can (see the module docs): the
/// bias is the product's starting value, not a pass of its own; elsewhere `Linear::forward`.
///
/// # Shapes
/// - x: `[..., K]`; returns `[..., N]`
pub fn linear<const D: usize>(linear: &Linear, x: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "cpu")]
    if let Some((weight, bias)) = cpu_linear(linear, &x) {
        return cpu::linear(x, weight, bias);
    }
    linear.forward(x)
}

/// `residual + linear(x)` (a residual branch's output projection). Runs the CPU kernel where
/// it can (see the module docs): the product accumulates onto the residual, with no add pass.
///
/// # Shapes
/// - x: `[..., K]`; residual: `[..., N]`; returns `[..., N]`
pub fn linear_add<const D: usize>(linear: &Linear, x: Tensor<D>, residual: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "cpu")]
    if let (Some((weight, bias)), true) = (cpu_linear(linear, &x), cpu::applies(&residual)) {
        return cpu::linear_add(x, weight, bias, residual);
    }
    residual + linear.forward(x)
}

/// `residual + gate * linear(x)`, DiT's gated residual branch (`gate` per clip, broadcast
/// over the tokens). Runs the CPU kernel where it can (see the module docs): the product,
/// then one pass for the gate and the residual.
///
/// # Shapes
/// - x: `[B, T, K]`; gate: `[B, N]`; residual: `[B, T, N]`; returns `[B, T, N]`
pub fn gated_linear_add(
    linear: &Linear,
    x: Tensor<3>,
    gate: Tensor<2>,
    residual: Tensor<3>,
) -> Tensor<3> {
    #[cfg(feature = "cpu")]
    if let (Some((weight, bias)), true) = (
        cpu_linear(linear, &x),
        cpu::applies(&gate) && cpu::applies(&residual),
    ) {
        return cpu::gated_linear_add(x, weight, bias, gate, residual);
    }
    residual + gate.unsqueeze_dim(1) * linear.forward(x)
}

/// DiT's adaLN: LayerNorm without affine parameters (over the last axis, `epsilon` in the
/// variance), then `* (1 + scale) + shift` per clip. Runs the WGSL or the CPU kernel where
/// it can (see the module docs): one pass instead of ten operations.
///
/// # Shapes
/// - x: `[B, N, D]`; shift, scale: `[B, D]`, broadcast over the `N` tokens; returns `[B, N, D]`
pub fn modulated_norm(x: Tensor<3>, shift: Tensor<2>, scale: Tensor<2>, epsilon: f64) -> Tensor<3> {
    #[cfg(feature = "wgsl")]
    if wgsl::applies(&x) && wgsl::applies(&shift) && wgsl::applies(&scale) {
        return wgsl::modulated_norm(x, shift, scale, epsilon);
    }
    #[cfg(feature = "cpu")]
    if cpu::applies(&x) && cpu::applies(&shift) && cpu::applies(&scale) {
        return cpu::modulated_norm(x, shift, scale, epsilon);
    }
    modulated_norm_tensor(x, shift, scale, epsilon)
}

/// [`modulated_norm`] with tensor operations.
pub fn modulated_norm_tensor(
    x: Tensor<3>,
    shift: Tensor<2>,
    scale: Tensor<2>,
    epsilon: f64,
) -> Tensor<3> {
    let mean = x.clone().mean_dim(2);
    let centred = x - mean;
    let var = centred.clone().powi_scalar(2).mean_dim(2);
    let normed = centred / (var + epsilon).sqrt();
    normed * (scale.unsqueeze_dim::<3>(1) + 1.0) + shift.unsqueeze_dim(1)
}

/// The tanh approximation of GELU (DiT's MLP). Runs the CPU kernel where it can.
pub fn gelu_tanh<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "cpu")]
    if cpu::applies(&x) {
        return cpu::gelu_tanh(x);
    }
    gelu_approximate(x)
}

/// `module` with its 4-D float parameters (convolution weights `[O, C, KH, KW]`) stored
/// channels last where the WGSL kernels run: the same values, laid out as burn's convolution
/// on wgpu reads them, which otherwise copies every weight into that layout on every call.
/// Elsewhere `module` as it is.
pub fn channels_last<M: burn::module::Module>(module: M) -> M {
    #[cfg(feature = "wgsl")]
    return module.map(&mut wgsl::ChannelsLast);
    #[cfg(not(feature = "wgsl"))]
    module
}

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

/// A barrier on a wgpu `device`: resolves once the GPU has run the work queued on it so far,
/// reading nothing back (WebGPU's `onSubmittedWorkDone`). With burn's fusion, which holds
/// operations back until something is read, it first hands them to the device. `None` off
/// wgpu.
pub fn wgpu_barrier(
    device: &Device,
) -> Option<impl std::future::Future<Output = Result<(), String>> + use<>> {
    #[cfg(feature = "wgsl")]
    return wgsl::barrier(device);
    #[cfg(not(feature = "wgsl"))]
    {
        let _ = device;
        None::<std::future::Ready<Result<(), String>>>
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
