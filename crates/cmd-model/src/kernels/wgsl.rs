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
use burn::tensor::{DType, Device, Int, Shape, Tensor};
use cubecl::CubeCount;
use cubecl::prelude::KernelId;
use cubecl::server::{BufferBinding, KernelArguments};

/// Invocations per workgroup: WebGPU's guaranteed minimum of `maxComputeInvocationsPerWorkgroup`.
const WORKGROUP: u32 = 256;
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

fn rgba8_shape(frames: &Shape) -> Shape {
    Shape::from(vec![frames[0], frames[2], frames[3]])
}

impl WgslOps for CubeBackend {
    fn content_frame(x: CubeTensor, logits: CubeTensor) -> (CubeTensor, CubeTensor) {
        x.assert_is_on_same_device(&logits);
        let (x, logits) = (into_contiguous(x), into_contiguous(logits));
        let shape = x.meta.shape().clone();
        let (clips, frames) = (shape[0], shape[1]);
        let plane = shape.num_elements() / (clips * frames);
        let content = output(&x, content_shape(&shape), DType::F32);
        let weights = output(&x, shape, DType::F32);
        launch(
            &x,
            Wgsl::CONTENT_FRAME,
            clips * plane,
            &[frames, plane],
            vec![
                x.handle.clone().binding(),
                logits.handle.clone().binding(),
                content.handle.clone().binding(),
                weights.handle.clone().binding(),
            ],
        );
        (content, weights)
    }

    fn rgba8(frames: CubeTensor) -> CubeTensor {
        let frames = into_contiguous(frames);
        let shape = frames.meta.shape().clone();
        let plane = shape[2] * shape[3];
        let pixels = output(&frames, rgba8_shape(&shape), DType::I32);
        launch(
            &frames,
            Wgsl::RGBA8,
            shape[0] * plane,
            &[plane],
            vec![
                frames.handle.clone().binding(),
                pixels.handle.clone().binding(),
            ],
        );
        pixels
    }
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
/// [`MAX_GROUPS`] workgroups, 2-D) grid. The info buffer the kernel reads is
/// `[invocations, extra..., workgroups along x]`.
fn launch(
    on: &CubeTensor,
    kernel: Wgsl,
    invocations: usize,
    extra: &[usize],
    mut buffers: Vec<BufferBinding>,
) {
    let word = |n: usize| u32::try_from(n).expect("kernel sizes fit in 32 bits");
    let groups = word(invocations.div_ceil(WORKGROUP as usize));
    let (along_x, along_y) = (
        groups.clamp(1, MAX_GROUPS),
        groups.div_ceil(MAX_GROUPS).max(1),
    );
    let info: Vec<u8> = std::iter::once(word(invocations))
        .chain(extra.iter().map(|&n| word(n)))
        .chain([along_x])
        .flat_map(u32::to_le_bytes)
        .collect();
    buffers.push(on.client.create_from_slice(&info).binding());
    on.client.launch(
        Box::new(SourceKernel::new(kernel, CubeDim::new_1d(WORKGROUP))),
        CubeCount::Static(along_x, along_y, 1),
        KernelArguments::new().with_buffers(buffers),
    );
}

/// One of the WGSL sources, ready for burn's source-kernel path.
#[derive(Debug, Clone, Copy)]
struct Wgsl {
    name: &'static str,
    source: &'static str,
}

impl Wgsl {
    const CONTENT_FRAME: Self = Self {
        name: "content_frame",
        source: include_str!("../../../../shaders/content_frame.wgsl"),
    };
    const RGBA8: Self = Self {
        name: "rgba8",
        source: include_str!("../../../../shaders/rgba8.wgsl"),
    };
}

impl KernelSource for Wgsl {
    fn source(&self) -> SourceTemplate {
        SourceTemplate::new(self.source).register("workgroup_size", WORKGROUP.to_string())
    }

    fn id(&self) -> KernelId {
        KernelId::new::<Self>().info(self.name)
    }

    fn lang(&self) -> &'static str {
        "wgsl"
    }
}
