//! The WGSL kernels of `shaders/` against their tensor versions on a wgpu device (on a machine
//! without a GPU, Mesa's lavapipe), and the tensor versions against closed forms.
#![cfg(feature = "wgsl")]

use std::sync::OnceLock;

use burn::tensor::{Device, Distribution, Tensor, TensorData};
use cmd_model::kernels::{self, content_frame, content_frame_tensor, rgba8, rgba8_bytes};

/// The wgpu device (set up once per process).
fn gpu() -> Device {
    static GPU: OnceLock<Device> = OnceLock::new();
    GPU.get_or_init(|| {
        Device::wgpu_options()
            .init()
            .expect("a wgpu adapter (on Debian, mesa-vulkan-drivers gives a software one)")
    })
    .clone()
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

#[test]
fn the_kernels_run_only_where_they_can() {
    let gpu = gpu();
    assert!(kernels::runs_wgsl(&gpu));
    assert!(!kernels::runs_wgsl(&gpu.clone().autodiff()));
    assert!(!kernels::runs_wgsl(&Device::flex()));
}

#[test]
fn the_barrier_settles_queued_work_on_wgpu_only() {
    assert!(kernels::wgpu_barrier(&Device::flex()).is_none());
    let gpu = gpu();
    // A chain of element-wise operations, which burn's fusion holds back (in builds with it)
    // until the barrier hands them over.
    let x = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, -2.0, 3.0, 0.5], [2, 2]), &gpu);
    let y = ((x.clone() * 2.0).exp() + x).tanh();
    let barrier = kernels::wgpu_barrier(&gpu).expect("a barrier on wgpu");
    pollster::block_on(barrier).expect("the barrier resolves");
    let want = [1.0f32, -2.0, 3.0, 0.5].map(|v| ((2.0 * v).exp() + v).tanh());
    assert!(max_diff(&values(y), &want) < 1e-6);
}

#[test]
fn fused_content_frame_equals_the_tensor_version() {
    let (gpu, cpu) = (gpu(), Device::flex());
    // Two clips of 16 frames, 3 x 10 x 14 (H != W); logits spread wide so that the softmax
    // is far from uniform, and made non-contiguous (a permuted view) as the encoder's are.
    let shape = [2, 16, 3, 10, 14];
    let x = Tensor::<5>::random(shape, Distribution::Uniform(-1.0, 1.0), &cpu);
    let raw = Tensor::<5>::random([2, 3, 16, 10, 14], Distribution::Normal(0.0, 4.0), &cpu);
    let logits = raw.clone().swap_dims(1, 2);
    let (want_content, want_weights) = content_frame_tensor(x.clone(), logits.clone());
    let on_gpu = |t: &Tensor<5>| Tensor::<5>::from_data(t.to_data(), &gpu);
    let gpu_logits = on_gpu(&raw).swap_dims(1, 2);
    let (content, weights) = content_frame(on_gpu(&x), gpu_logits);
    assert_eq!(content.dims(), [2, 3, 10, 14]);
    assert_eq!(weights.dims(), shape);
    let (content, weights) = (values(content), values(weights));
    assert!(max_diff(&content, &values(want_content)) < 1e-5);
    assert!(max_diff(&weights, &values(want_weights)) < 1e-6);
    // The same on the GPU's own tensor version.
    let (gpu_content, _) = content_frame_tensor(on_gpu(&x), on_gpu(&logits));
    assert!(max_diff(&content, &values(gpu_content)) < 1e-5);
}

#[test]
fn content_frame_tensor_version_matches_closed_forms() {
    let cpu = Device::flex();
    let x = Tensor::<5>::random([1, 4, 3, 2, 2], Distribution::Uniform(-1.0, 1.0), &cpu);
    // Equal logits: the content frame is the mean frame.
    let (content, weights) = content_frame_tensor(x.clone(), Tensor::zeros([1, 4, 3, 2, 2], &cpu));
    let mean = x.clone().mean_dim(1).squeeze_dim::<4>(1);
    assert!(max_diff(&values(content), &values(mean)) < 1e-6);
    assert!(values(weights).iter().all(|w| (w - 0.25).abs() < 1e-7));
    // One dominant frame: the content frame is that frame.
    let mut logits = vec![0.0f32; 4 * 12];
    logits[2 * 12..3 * 12].fill(60.0);
    let logits = Tensor::<5>::from_data(TensorData::new(logits, [1, 4, 3, 2, 2]), &cpu);
    let (content, _) = content_frame_tensor(x.clone(), logits);
    let frame = x.narrow(1, 2, 1).squeeze_dim::<4>(1);
    assert!(max_diff(&values(content), &values(frame)) < 1e-6);
}

/// Frames whose every channel value sits on a quantisation level `k / 127.5 - 1`, plus
/// out-of-range values that must clamp; and the bytes they must give.
fn levels() -> (Tensor<4>, Vec<u8>, Device) {
    let cpu = Device::flex();
    let (n, h, w) = (2, 12, 11);
    let plane = h * w;
    let level = |i: usize| (i * 37 + 11) % 256;
    let mut frames = vec![0.0f32; n * 3 * plane];
    let mut want = Vec::new();
    for f in 0..n {
        for p in 0..plane {
            for c in 0..3 {
                let i = (f * 3 + c) * plane + p;
                let (value, byte) = match i % 50 {
                    7 => (-3.0, 0),
                    8 => (5.0, 255),
                    _ => (level(i) as f32 / 127.5 - 1.0, level(i) as u8),
                };
                frames[i] = value;
                want.push(byte);
            }
            want.push(255);
        }
    }
    let t = Tensor::from_data(TensorData::new(frames, [n, 3, h, w]), &cpu);
    (t, want, cpu)
}

#[test]
fn rgba8_packs_levels_exactly_on_both_paths() {
    let (frames, want, _) = levels();
    let gpu = gpu();
    let on_gpu = Tensor::<4>::from_data(frames.to_data(), &gpu);
    let packed = rgba8(on_gpu.clone());
    assert_eq!(packed.dims(), [2, 12, 11]);
    assert_eq!(rgba8_bytes(packed.into_data()), want, "WGSL kernel");
    assert_eq!(
        rgba8_bytes(kernels::rgba8_tensor(frames).into_data()),
        want,
        "tensor version"
    );
    assert_eq!(
        rgba8_bytes(kernels::rgba8_tensor(on_gpu).into_data()),
        want,
        "tensor version on wgpu"
    );
}

#[test]
fn rgba8_kernel_matches_the_tensor_version_on_random_frames() {
    let (gpu, cpu) = (gpu(), Device::flex());
    let frames = Tensor::<4>::random([3, 3, 17, 29], Distribution::Normal(0.0, 0.7), &cpu);
    let want = rgba8_bytes(kernels::rgba8_tensor(frames.clone()).into_data());
    let got = rgba8_bytes(rgba8(Tensor::from_data(frames.to_data(), &gpu)).into_data());
    assert_eq!(got.len(), want.len());
    // Off by one at most where a value sits a rounding error from a half level.
    let off: Vec<_> = got.iter().zip(&want).filter(|(a, b)| a != b).collect();
    assert!(off.iter().all(|(a, b)| a.abs_diff(**b) == 1), "{off:?}");
    assert!(
        off.len() * 1000 <= got.len(),
        "{} of {} bytes differ",
        off.len(),
        got.len()
    );
}
