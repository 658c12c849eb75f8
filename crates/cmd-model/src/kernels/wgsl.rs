//! The WGSL kernels of `shaders/`, wired into burn through its backend-extension path: one
//! extension trait, implemented for the cubecl backend (and, through the macro, lazily for
//! burn's fusion wrapper when the `fusion` feature is on).

use burn::backend::wgpu::{CubeBackend, CubeTensor, KernelSource, SourceKernel, SourceTemplate};
use burn::backend::wgpu::{CubeDim, into_contiguous};
use burn::backend::{Backend, DispatchDevice, backend_extension};
use burn::backend::{
    Dispatch,
    tensor::{FloatTensor, IntTensor},
};
use burn::module::{ModuleMapper, Param};
use burn::tensor::{DType, Device, Int, Shape, Tensor};
use cubecl::CubeCount;
use cubecl::prelude::KernelId;
use cubecl::server::{KernelArguments, MetadataBindingInfo};
use cubecl::zspace::metadata::Metadata;

/// Invocations per workgroup: WebGPU's guaranteed minimum of `maxComputeInvocationsPerWorkgroup`.
const WORKGROUP: u32 = 256;
/// Invocations per workgroup of the attention kernel, whose invocations each hold a query row
/// and an output row: fewer registers per workgroup, and more workgroups for short sequences.
const ATTENTION_WORKGROUP: u32 = 64;
/// The widest head (query/key width and value width) the attention kernel compiles for.
const MAX_HEAD: usize = 256;
/// The largest score matrix (queries times keys, per head) the attention kernel takes: 512
/// tokens attending to 512. It gives each query its own invocation, which suits the short
/// sequences of the teaching model and the browser, where the tensor version's dozen
/// dispatches cost more than its arithmetic. Longer sequences (Stable Diffusion's 4096 and
/// 8192 latent pixels) are left to the tensor version, whose tiled products use a GPU's
/// arithmetic better.
const MAX_SCORES: usize = 512 * 512;
/// WebGPU's guaranteed minimum of `maxComputeWorkgroupsPerDimension`: larger launches spill
/// into a second grid dimension.
const MAX_GROUPS: u32 = 65_535;

/// Whether `device` is a wgpu device without autodiff.
pub(super) fn runs_on(device: &Device) -> bool {
    matches!(
        device.as_dispatch(),
        DispatchDevice::Cube(cubecl::Device::Wgpu(_))
    )
}

/// See [`super::wgpu_barrier`].
pub(super) fn barrier(
    device: &Device,
) -> Option<impl std::future::Future<Output = Result<(), String>> + use<>> {
    match device.as_dispatch() {
        DispatchDevice::Cube(cube @ cubecl::Device::Wgpu(_)) => {
            let drained = drain_fusion(cube);
            let sync = cube.client().sync();
            Some(async move {
                drained?;
                sync.await.map_err(|e| format!("the GPU failed: {e}"))
            })
        }
        _ => None,
    }
}

/// Hands the operations burn's fusion still holds back on `device` to the device (its kernels
/// are queued, nothing is read back), so that a barrier after it covers them.
#[cfg(feature = "fusion")]
fn drain_fusion(device: &cubecl::Device) -> Result<(), String> {
    use burn::backend::fusion::{FusionBackend, client::GlobalFusionClient};
    GlobalFusionClient::<<CubeBackend as FusionBackend>::FusionRuntime>::load(device)
        .try_sync(|| ())
        .map_err(|e| {
            let why = e.message().unwrap_or("its server stopped").to_string();
            format!("the GPU's operation queue failed: {why}")
        })
}

/// Without fusion every operation is queued on the device when it is called.
#[cfg(not(feature = "fusion"))]
fn drain_fusion(_device: &cubecl::Device) -> Result<(), String> {
    Ok(())
}

/// Whether the kernels can take this tensor: `f32` on a wgpu device, without autodiff.
pub(super) fn applies<const D: usize>(t: &Tensor<D>) -> bool {
    t.dtype() == DType::F32 && runs_on(&t.device())
}

pub(super) fn content_frame(x: Tensor<5>, logits: Tensor<5>) -> (Tensor<4>, Tensor<5>) {
    let (content, weights) =
        <Dispatch as WgslOps>::content_frame(x.into_dispatch(), logits.into_dispatch());
    (
        Tensor::from_dispatch(content),
        Tensor::from_dispatch(weights),
    )
}

/// Whether the attention kernel takes these tensors (see [`applies`]) and shapes: heads of at
/// most [`MAX_HEAD`] channels, at least one query and one key, and at most [`MAX_SCORES`]
/// scores per head.
pub(super) fn attention_applies(q: &Tensor<4>, k: &Tensor<4>, v: &Tensor<4>) -> bool {
    let ([.., n, d], [.., m, _], [.., e]) = (q.dims(), k.dims(), v.dims());
    let fits = |w: usize| (1..=MAX_HEAD).contains(&w);
    let shapes = n > 0 && m > 0 && n * m <= MAX_SCORES && fits(d) && fits(e);
    shapes && applies(q) && applies(k) && applies(v)
}

pub(super) fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, causal: bool) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as WgslOps>::attention(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        causal,
    ))
}

/// Stores every 4-D float parameter on a wgpu device (convolution weights `[O, C, KH, KW]`)
/// channels last: the same values, laid out `[O, KH, KW, C]` in memory, as burn's convolution
/// reads them (it works in NHWC and would copy each weight into that layout on every call).
pub(super) struct ChannelsLast;

impl ModuleMapper for ChannelsLast {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, value, mapper) = param.consume();
        if D != 4 || !applies(&value) {
            return Param::from_mapped_value(id, value, mapper);
        }
        let axes = |order: [isize; 4]| -> [isize; D] { std::array::from_fn(|i| order[i]) };
        let nhwc = value.permute(axes([0, 2, 3, 1])).into_dispatch();
        let stored = Tensor::<D>::from_dispatch(<Dispatch as WgslOps>::contiguous(nhwc));
        Param::from_mapped_value(id, stored.permute(axes([0, 3, 1, 2])), mapper)
    }
}

/// GroupNorm of `x [B, C, H, W]` in `groups` groups, then SiLU when `silu`.
pub(super) fn group_norm(
    x: Tensor<4>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    groups: usize,
    epsilon: f64,
    silu: bool,
) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    let (gamma, beta) = (gamma.into_dispatch(), beta.into_dispatch());
    norm(x, gamma, beta, [groups, h * w], epsilon, [silu, false])
}

/// LayerNorm of `x [..., C]` over its last axis.
pub(super) fn layer_norm<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
) -> Tensor<D> {
    let (gamma, beta) = (gamma.into_dispatch(), beta.into_dispatch());
    norm(x, gamma, beta, [1, 1], epsilon, [false, false])
}

/// DiT's adaLN of `x [B, N, D]`: LayerNorm without affine parameters, then
/// `* (1 + scale) + shift` with `shift` and `scale` `[B, D]` per clip (read as they are: the
/// chunks of the modulation's output).
pub(super) fn modulated_norm(
    x: Tensor<3>,
    shift: Tensor<2>,
    scale: Tensor<2>,
    epsilon: f64,
) -> Tensor<3> {
    let (scale, shift) = (scale.into_dispatch(), shift.into_dispatch());
    norm(x, scale, shift, [1, 1], epsilon, [false, true])
}

/// [`WgslOps::norm`] with `layout` its `[groups, spatial]` and `flags` its `[silu, modulate]`.
fn norm<const D: usize>(
    x: Tensor<D>,
    gamma: burn::backend::DispatchTensor,
    beta: burn::backend::DispatchTensor,
    layout: [usize; 2],
    epsilon: f64,
    flags: [bool; 2],
) -> Tensor<D> {
    let ([groups, spatial], [silu, modulate]) = (layout, flags);
    Tensor::from_dispatch(<Dispatch as WgslOps>::norm(
        x.into_dispatch(),
        gamma,
        beta,
        groups,
        spatial,
        epsilon,
        silu,
        modulate,
    ))
}

pub(super) fn rgba8(frames: Tensor<4>) -> Tensor<3, Int> {
    Tensor::from_dispatch(<Dispatch as WgslOps>::rgba8(frames.into_dispatch()))
}

/// Operations backed by the WGSL kernels.
#[backend_extension(Cube, Fusion: cfg(feature = "fusion"))]
pub trait WgslOps: Backend {
    /// `shaders/content_frame.wgsl`: `(content, weights)` of `x` and `logits`, `[B, L, C, H, W]`.
    #[fusion(meta = |x, logits| (
        burn::backend::fusion::custom::TensorSpec::new(content_shape(&x.shape), x.dtype),
        logits.clone(),
    ))]
    fn content_frame(
        x: FloatTensor<Self>,
        logits: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// `shaders/attention.wgsl`: attention of q `[B, H, N, D]`, k `[B, H, M, D]` and
    /// v `[B, H, M, E]`, `[B, H, N, E]` with the heads side by side in memory.
    #[fusion(meta = |q, _k, v, _causal| burn::backend::fusion::custom::TensorSpec::new(
        attention_shape(&q.shape, &v.shape),
        q.dtype,
    ))]
    fn attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        causal: bool,
    ) -> FloatTensor<Self>;

    /// `shaders/norm.wgsl`: `x` normalised per segment of `C / groups * spatial` contiguous
    /// values, scaled by `gamma` (by `1 + gamma` with `modulate`) and shifted by `beta` per
    /// channel, then SiLU when `silu`. `gamma` and `beta` are `[C]`, shared by all segments, or
    /// `[S, C]`, one row per sample (the segments split evenly between the `S` samples).
    /// GroupNorm of `[B, C, H, W]`: `groups` G, `spatial` H W; LayerNorm: 1, 1; DiT's adaLN:
    /// 1, 1, with `[B, D]` rows and `modulate`.
    #[allow(clippy::too_many_arguments)]
    #[fusion(meta = |x, _gamma, _beta, _groups, _spatial, _epsilon, _silu, _modulate| x.clone())]
    fn norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        groups: usize,
        spatial: usize,
        epsilon: f64,
        silu: bool,
        modulate: bool,
    ) -> FloatTensor<Self>;

    /// `x` copied into a contiguous layout (burn's own copy kernel), as one operation fusion
    /// keeps: burn has no tensor operation that lays a tensor out anew.
    #[fusion(meta = |x| x.clone())]
    fn contiguous(x: FloatTensor<Self>) -> FloatTensor<Self>;

    /// `shaders/rgba8.wgsl`: packed pixels `[N, H, W]` of frames `[N, 3, H, W]`.
    #[fusion(meta = |frames| burn::backend::fusion::custom::TensorSpec::new(
        rgba8_shape(&frames.shape),
        DType::I32,
    ))]
    fn rgba8(frames: FloatTensor<Self>) -> IntTensor<Self>;
}

fn content_shape(x: &Shape) -> Shape {
    Shape::from(vec![x[0], x[2], x[3], x[4]])
}

fn attention_shape(q: &Shape, v: &Shape) -> Shape {
    Shape::from(vec![q[0], q[1], q[2], v[3]])
}

fn rgba8_shape(frames: &Shape) -> Shape {
    Shape::from(vec![frames[0], frames[2], frames[3]])
}

impl WgslOps for CubeBackend {
    fn content_frame(x: CubeTensor, logits: CubeTensor) -> (CubeTensor, CubeTensor) {
        x.assert_is_on_same_device(&logits);
        let [x, logits] = apart([into_contiguous(x), into_contiguous(logits)]);
        let shape = x.meta.shape().clone();
        let (clips, frames) = (shape[0], shape[1]);
        let plane = shape.num_elements() / (clips * frames);
        let content = output(&x, content_shape(&shape), DType::F32);
        let weights = output(&x, shape, DType::F32);
        launch(
            &Wgsl::content_frame(),
            clips * plane,
            &[frames, plane],
            &[&x, &logits, &content, &weights],
        );
        (content, weights)
    }

    fn rgba8(frames: CubeTensor) -> CubeTensor {
        let frames = into_contiguous(frames);
        let shape = frames.meta.shape().clone();
        let plane = shape[2] * shape[3];
        let pixels = output(&frames, rgba8_shape(&shape), DType::I32);
        launch(
            &Wgsl::rgba8(),
            shape[0] * plane,
            &[plane],
            &[&frames, &pixels],
        );
        pixels
    }

    fn norm(
        x: CubeTensor,
        gamma: CubeTensor,
        beta: CubeTensor,
        groups: usize,
        spatial: usize,
        epsilon: f64,
        silu: bool,
        modulate: bool,
    ) -> CubeTensor {
        x.assert_is_on_same_device(&gamma);
        x.assert_is_on_same_device(&beta);
        // A feature map (GroupNorm) is read through its strides, and written channels last;
        // rows (LayerNorm, of any rank) as contiguous [N, C].
        let feature_map = spatial > 1;
        let x = if feature_map {
            untiled(x)
        } else {
            into_contiguous(x)
        };
        let [x, gamma, beta] = apart([x, gamma, beta]);
        let (gamma, beta) = (affine_rows(gamma), affine_rows(beta));
        let shape = x.meta.shape().clone();
        let ([samples, channels, gamma_rows], [_, _, beta_rows]) = (gamma.1, beta.1);
        let length = channels / groups * spatial;
        let (width, x_strides, y) = if feature_map {
            let s = x.meta.strides();
            let [_, c, h, w] = dims4(&x);
            let y = laid_out(&x, shape.clone(), vec![c * h * w, 1, w * c, c]);
            (w, [s[0], s[1], s[2], s[3]], y)
        } else {
            (
                1,
                [channels, 1, 0, 0],
                output(&x, shape.clone(), DType::F32),
            )
        };
        let workgroup = if length >= LONG_SEGMENT {
            WORKGROUP
        } else {
            64
        };
        let segments = shape.num_elements() / length;
        let extra = [
            length,
            spatial,
            groups,
            segments / samples,
            gamma_rows,
            beta_rows,
            (epsilon as f32).to_bits() as usize,
            usize::from(silu),
            usize::from(modulate),
            width,
            x_strides[0],
            x_strides[1],
            x_strides[2],
            x_strides[3],
        ];
        let (gamma, beta) = (gamma.0, beta.0);
        launch_per_group(
            &Wgsl::norm(workgroup),
            segments,
            &extra,
            &[&x, &gamma, &beta, &y],
        );
        y
    }

    fn contiguous(x: CubeTensor) -> CubeTensor {
        into_contiguous(x)
    }

    fn attention(q: CubeTensor, k: CubeTensor, v: CubeTensor, causal: bool) -> CubeTensor {
        q.assert_is_on_same_device(&k);
        q.assert_is_on_same_device(&v);
        let [q, k, v] = apart([untiled(q), untiled(k), untiled(v)]);
        let ([b, h, n, d], [m, e]) = (dims4(&q), [k.meta.shape()[2], v.meta.shape()[3]]);
        // [B, N, H, E] in memory, seen as [B, H, N, E].
        let shape = attention_shape(q.meta.shape(), v.meta.shape());
        let out = laid_out(&q, shape, vec![n * h * e, e, h * e, 1]);
        let strides = |t: &CubeTensor| t.meta.strides().iter().copied().collect::<Vec<_>>();
        let scale = (1.0 / (d as f64).sqrt()) as f32;
        let extra: Vec<usize> = [h, n, m]
            .into_iter()
            .chain(strides(&q))
            .chain(strides(&k))
            .chain(strides(&v))
            .chain([scale.to_bits() as usize, usize::from(causal)])
            .collect();
        launch(
            &Wgsl::attention(d, e),
            b * h * n,
            &extra,
            &[&q, &k, &v, &out],
        );
        out
    }
}

/// `inputs`, each one that shares bytes with an earlier one (views into one buffer, as the
/// chunks of a packed projection are, or one tensor passed twice) replaced by a copy. WebGPU
/// refuses a dispatch two of whose writable bindings overlap, and cubecl binds every buffer
/// writable.
fn apart<const N: usize>(inputs: [CubeTensor; N]) -> [CubeTensor; N] {
    let mut kept: Vec<CubeTensor> = Vec::with_capacity(N);
    for t in inputs {
        let t = if kept.iter().any(|k| overlap(k, &t)) {
            t.copy()
        } else {
            t
        };
        kept.push(t);
    }
    kept.try_into()
        .unwrap_or_else(|_| unreachable!("one tensor kept per input"))
}

/// Whether the bindings of `a` and `b` share bytes: the same memory, overlapping ranges.
fn overlap(a: &CubeTensor, b: &CubeTensor) -> bool {
    let span = |t: &CubeTensor| {
        let h = &t.handle;
        let start = h.offset_start.unwrap_or(0);
        (
            h.memory.clone().binding().id(),
            start,
            h.size() - h.offset_end.unwrap_or(0),
        )
    };
    let ((a, a0, a1), (b, b0, b1)) = (span(a), span(b));
    a == b && a0 < b1 && b0 < a1
}

/// Per-channel parameters `[C]` or `[S, C]` for the norm kernel, with `[S, C, row stride]`
/// (`S` 1 and stride 0 for `[C]`): rows are read through their stride (the chunks of DiT's
/// modulation are), channels must be adjacent.
fn affine_rows(t: CubeTensor) -> (CubeTensor, [usize; 3]) {
    let t = untiled(t);
    let t = if t.meta.strides().last() == Some(&1) {
        t
    } else {
        into_contiguous(t)
    };
    let (shape, strides) = (t.meta.shape(), t.meta.strides());
    let layout = match shape.num_dims() {
        1 => [1, shape[0], 0],
        _ => [shape[0], shape[1], strides[0]],
    };
    (t, layout)
}

/// Segments at least this long get workgroups of [`WORKGROUP`] invocations in the norm
/// kernel, shorter ones (LayerNorm rows) of 64.
const LONG_SEGMENT: usize = 16 * WORKGROUP as usize;

fn dims4(t: &CubeTensor) -> [usize; 4] {
    let shape = t.meta.shape();
    [shape[0], shape[1], shape[2], shape[3]]
}

/// `t` as it is, or, when it is storage-tiled for a matmul (which the kernels cannot read),
/// laid out in rows.
fn untiled(t: CubeTensor) -> CubeTensor {
    if t.meta.is_tiled() {
        into_contiguous(t)
    } else {
        t
    }
}

/// A new `f32` tensor of `shape` on `like`'s device with the given `strides` (a permutation
/// of a contiguous layout), its contents left to a kernel.
fn laid_out(like: &CubeTensor, shape: Shape, strides: Vec<usize>) -> CubeTensor {
    let handle = like.client.empty(shape.num_elements() * DType::F32.size());
    CubeTensor::new(
        like.client.clone(),
        handle,
        Metadata::new(shape, strides),
        like.device.clone(),
        DType::F32,
    )
}

/// A new contiguous tensor on `like`'s device, its contents left to a kernel.
fn output(like: &CubeTensor, shape: Shape, dtype: DType) -> CubeTensor {
    let handle = like.client.empty(shape.num_elements() * dtype.size());
    CubeTensor::new_contiguous(
        like.client.clone(),
        like.device.clone(),
        shape,
        handle,
        dtype,
    )
}

/// Launches `kernel` with one invocation per output element over a 1-D (or, past
/// [`MAX_GROUPS`] workgroups, 2-D) grid, its buffers `tensors` in binding order. The info
/// buffer the kernel reads is `[invocations, extra..., workgroups along x]`.
fn launch(kernel: &Wgsl, invocations: usize, extra: &[usize], tensors: &[&CubeTensor]) {
    let groups = invocations.div_ceil(kernel.workgroup as usize);
    dispatch(kernel, groups, invocations, extra, tensors);
}

/// Launches `kernel` with one workgroup per item (a segment the workgroup reduces), the grid
/// laid out as in [`launch`]. The info buffer is `[items, extra..., workgroups along x]`.
fn launch_per_group(kernel: &Wgsl, items: usize, extra: &[usize], tensors: &[&CubeTensor]) {
    dispatch(kernel, items, items, extra, tensors);
}

/// Launches `groups` workgroups of `kernel` on the device of `tensors` (its buffers, in
/// binding order) with the info buffer `[count, extra..., workgroups along x]`.
fn dispatch(kernel: &Wgsl, groups: usize, count: usize, extra: &[usize], tensors: &[&CubeTensor]) {
    let word = |n: usize| u32::try_from(n).expect("kernel sizes fit in 32 bits");
    let groups = word(groups);
    let (along_x, along_y) = (
        groups.clamp(1, MAX_GROUPS),
        groups.div_ceil(MAX_GROUPS).max(1),
    );
    let words: Vec<u32> = std::iter::once(word(count))
        .chain(extra.iter().map(|&n| word(n)))
        .chain([along_x])
        .collect();
    // cubecl stages the info with its own kernels' metadata (words of 64 bits, cached, and
    // written without ending the queued work's submission, as an upload would); two of our
    // 32-bit words to each, the first in the low half, so the kernel reads them in order.
    let info = words
        .chunks(2)
        .map(|pair| u64::from(pair[0]) | pair.get(1).map_or(0, |&hi| u64::from(hi) << 32))
        .collect();
    let buffers = tensors.iter().map(|t| t.handle.clone().binding()).collect();
    tensors[0].client.launch(
        Box::new(SourceKernel::new(
            kernel.clone(),
            CubeDim::new_1d(kernel.workgroup),
        )),
        CubeCount::Static(along_x, along_y, 1),
        KernelArguments::new()
            .with_buffers(buffers)
            .with_info(MetadataBindingInfo::custom(info)),
    );
}

/// One of the WGSL sources, ready for burn's source-kernel path: the source, its workgroup
/// size and the values of its other placeholders (each set of values is its own kernel).
#[derive(Debug, Clone)]
struct Wgsl {
    name: &'static str,
    source: &'static str,
    workgroup: u32,
    constants: Vec<(&'static str, usize)>,
}

impl Wgsl {
    fn content_frame() -> Self {
        Self {
            name: "content_frame",
            source: include_str!("../../../../shaders/content_frame.wgsl"),
            workgroup: WORKGROUP,
            constants: Vec::new(),
        }
    }

    fn rgba8() -> Self {
        Self {
            name: "rgba8",
            source: include_str!("../../../../shaders/rgba8.wgsl"),
            workgroup: WORKGROUP,
            constants: Vec::new(),
        }
    }

    /// The norm kernel with workgroups of `workgroup` invocations (a power of two).
    fn norm(workgroup: u32) -> Self {
        Self {
            name: "norm",
            source: include_str!("../../../../shaders/norm.wgsl"),
            workgroup,
            constants: Vec::new(),
        }
    }

    /// The attention kernel for query/key heads of `d` channels and value heads of `e`.
    fn attention(d: usize, e: usize) -> Self {
        Self {
            name: "attention",
            source: include_str!("../../../../shaders/attention.wgsl"),
            workgroup: ATTENTION_WORKGROUP,
            constants: vec![("head_dim", d), ("value_dim", e)],
        }
    }
}

impl KernelSource for Wgsl {
    fn source(&self) -> SourceTemplate {
        self.constants.iter().fold(
            SourceTemplate::new(self.source).register("workgroup_size", self.workgroup.to_string()),
            |source, (name, value)| source.register(*name, value.to_string()),
        )
    }

    fn id(&self) -> KernelId {
        KernelId::new::<Self>().info((self.name, self.workgroup, self.constants.clone()))
    }

    fn lang(&self) -> &'static str {
        "wgsl"
    }
}
