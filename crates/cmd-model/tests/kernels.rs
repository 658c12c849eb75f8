//! The WGSL kernels of `shaders/` against their tensor versions on a wgpu device (on a machine
//! without a GPU, Mesa's lavapipe), and the tensor versions against closed forms.
#![cfg(feature = "wgsl")]

use std::sync::OnceLock;

use burn::module::Module;
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

/// The largest difference relative to `1 + |b|`: absolute near zero, relative for the large
/// values that wide random inputs give.
fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(a, b)| (a - b).abs() / (1.0 + b.abs()))
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

/// Packed projections `[B, N, 3 H d]` split into head views `[B, H, N, d]` the way the DiT
/// does (a permute, then a narrow): strided, and k and v start at an offset in the buffer.
fn packed_heads(qkv: Tensor<3>, heads: usize) -> [Tensor<4>; 3] {
    let [b, n, width] = qkv.dims();
    let d = width / (3 * heads);
    let qkv = qkv.reshape([b, n, 3, heads, d]).permute([2, 0, 3, 1, 4]);
    [0, 1, 2].map(|i| qkv.clone().narrow(0, i, 1).squeeze_dim::<4>(0))
}

#[test]
fn attention_kernel_equals_the_tensor_version() {
    let (gpu, cpu) = (gpu(), Device::flex());
    let on_gpu = |t: &Tensor<3>| Tensor::<3>::from_data(t.to_data(), &gpu);
    // Cross-attention shapes (N != M, d != e, 70 queries: not a whole number of workgroups),
    // as head-split views of [B, N, H d]; scores spread wide (std 4 before the scale), so the
    // online softmax's maximum moves often.
    let (b, h, n, m, d, e) = (2, 3, 70, 13, 8, 5);
    let split = |t: Tensor<3>, w: usize| {
        let [b, s, _] = t.dims();
        t.reshape([b, s, h, w]).swap_dims(1, 2)
    };
    let q = Tensor::<3>::random([b, n, h * d], Distribution::Normal(0.0, 4.0), &cpu);
    let k = Tensor::<3>::random([b, m, h * d], Distribution::Normal(0.0, 1.0), &cpu);
    let v = Tensor::<3>::random([b, m, h * e], Distribution::Uniform(-1.0, 1.0), &cpu);
    let want = kernels::attention_tensor(
        split(q.clone(), d),
        split(k.clone(), d),
        split(v.clone(), e),
    );
    let got = kernels::attention(
        split(on_gpu(&q), d),
        split(on_gpu(&k), d),
        split(on_gpu(&v), e),
    );
    assert_eq!(got.dims(), [b, h, n, e]);
    let merged = |t: Tensor<4>| t.swap_dims(1, 2).reshape([b, n, h * e]);
    let want = values(merged(want));
    // The output merged into [B, N, H e] and read by a further (fused) operation.
    let got = values(merged(got) * 2.0 + 1.0);
    let want2: Vec<f32> = want.iter().map(|w| w * 2.0 + 1.0).collect();
    assert!(
        max_rel_diff(&got, &want2) < 1e-5,
        "{}",
        max_rel_diff(&got, &want2)
    );

    // Self-attention of packed projections, as the DiT's heads are split.
    let qkv = Tensor::<3>::random([2, 37, 3 * 4 * 16], Distribution::Normal(0.0, 2.0), &cpu);
    let [q, k, v] = packed_heads(qkv.clone(), 4);
    let want = values(kernels::attention_tensor(q, k, v));
    let [q, k, v] = packed_heads(on_gpu(&qkv), 4);
    let got = values(kernels::attention(q, k, v));
    assert!(
        max_rel_diff(&got, &want) < 1e-5,
        "{}",
        max_rel_diff(&got, &want)
    );

    // One tensor as queries, keys and values (the kernel gets copies, not one buffer bound
    // three times).
    let x = Tensor::<4>::random([1, 2, 9, 8], Distribution::Normal(0.0, 1.0), &cpu);
    let want = values(kernels::attention_tensor(x.clone(), x.clone(), x.clone()));
    let x = Tensor::<4>::from_data(x.to_data(), &gpu);
    let got = values(kernels::attention(x.clone(), x.clone(), x));
    assert!(
        max_rel_diff(&got, &want) < 1e-5,
        "{}",
        max_rel_diff(&got, &want)
    );
}

#[test]
fn causal_attention_kernel_equals_the_tensor_version() {
    let (gpu, cpu) = (gpu(), Device::flex());
    let qkv = Tensor::<3>::random([2, 21, 3 * 2 * 12], Distribution::Normal(0.0, 3.0), &cpu);
    let [q, k, v] = packed_heads(qkv.clone(), 2);
    let want = values(kernels::causal_attention_tensor(q, k, v.clone()));
    let [gq, gk, gv] = packed_heads(Tensor::from_data(qkv.to_data(), &gpu), 2);
    let got = values(kernels::causal_attention(gq, gk, gv));
    assert!(
        max_rel_diff(&got, &want) < 1e-5,
        "{}",
        max_rel_diff(&got, &want)
    );
    // The first query sees only the first key: its output is the first value row.
    let first = values(v.narrow(2, 0, 1));
    let got_first: Vec<f32> = got.chunks(12).step_by(21).flatten().copied().collect();
    assert!(max_rel_diff(&got_first, &first) < 1e-6);
}

#[test]
fn attention_matches_closed_forms_on_both_paths() {
    let (gpu, cpu) = (gpu(), Device::flex());
    for device in [&gpu, &cpu] {
        let q = Tensor::<4>::random([1, 2, 5, 4], Distribution::Normal(0.0, 1.0), device);
        let v = Tensor::<4>::random([1, 2, 6, 3], Distribution::Normal(0.0, 1.0), device);
        // Equal keys: every query takes the mean of the values.
        let k = Tensor::<4>::ones([1, 2, 6, 4], device);
        let out = kernels::attention(q.clone(), k, v.clone());
        let mean = values(v.clone().mean_dim(2).repeat_dim(2, 5));
        assert!(max_diff(&values(out), &mean) < 1e-6);
        // One key far ahead of the others (scores 0 against 50): its value row.
        let mut keys = vec![0.0f32; 2 * 6 * 4];
        for head in 0..2 {
            keys[(head * 6 + 4) * 4] = 100.0;
        }
        let k = Tensor::<4>::from_data(TensorData::new(keys, [1, 2, 6, 4]), device);
        let q = Tensor::<4>::ones([1, 2, 5, 4], device);
        let out = kernels::attention(q, k, v.clone());
        let row = values(v.narrow(2, 4, 1).repeat_dim(2, 5));
        assert!(max_diff(&values(out), &row) < 1e-6);
    }
}

#[test]
fn attention_past_the_kernels_sizes_takes_the_tensor_version() {
    let (gpu, cpu) = (gpu(), Device::flex());
    // One head of 512 channels (the SD VAE's mid-block attention): past the kernel's 256.
    let shape = [1, 1, 9, 512];
    let t = |std: f64| Tensor::<4>::random(shape, Distribution::Normal(0.0, std), &cpu);
    let (q, k, v) = (t(0.1), t(0.1), t(1.0));
    let want = values(kernels::attention_tensor(q.clone(), k.clone(), v.clone()));
    let on_gpu = |x: &Tensor<4>| Tensor::<4>::from_data(x.to_data(), &gpu);
    let got = values(kernels::attention(on_gpu(&q), on_gpu(&k), on_gpu(&v)));
    assert!(max_diff(&got, &want) < 1e-5);
    // 600 queries on 600 keys: past the kernel's 512 x 512 scores.
    let t = |shape: [usize; 4]| Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &cpu);
    let (q, k, v) = (t([1, 2, 600, 8]), t([1, 2, 600, 8]), t([1, 2, 600, 8]));
    let want = values(kernels::attention_tensor(q.clone(), k.clone(), v.clone()));
    let got = values(kernels::attention(on_gpu(&q), on_gpu(&k), on_gpu(&v)));
    assert!(max_rel_diff(&got, &want) < 1e-5);
}

/// How a test lays a feature map out in memory.
enum Layout {
    Plain,
    ChannelsLast,
    Swapped,
}

#[test]
fn group_norm_kernel_equals_the_tensor_version() {
    use burn::nn::GroupNormConfig;
    let (gpu, cpu) = (gpu(), Device::flex());
    // Short segments (3 channels of 5 x 7 per group) and long ones (past 4096 values, where
    // the kernel takes wider workgroups); inputs channels last (as burn's convolutions write
    // them), plain, and with H and W swapped; random affine parameters.
    let cases = [
        ([2, 12, 5, 7], 4, Layout::ChannelsLast),
        ([1, 8, 40, 48], 2, Layout::Plain),
        ([2, 6, 3, 9], 3, Layout::Swapped),
    ];
    for (shape, groups, layout) in cases {
        let norm = GroupNormConfig::new(groups, shape[1])
            .with_epsilon(1e-6)
            .init(&cpu);
        let norm = Module::map(norm, &mut Randomise);
        let x = Tensor::<4>::random(shape, Distribution::Normal(0.5, 2.0), &cpu);
        let gpu_norm = norm.clone().to_device(&gpu);
        let on_gpu = |t: Tensor<4>| Tensor::<4>::from_data(t.to_data(), &gpu);
        let on_gpu = match layout {
            Layout::Plain => on_gpu(x.clone()),
            Layout::ChannelsLast => on_gpu(x.clone().permute([0, 2, 3, 1])).permute([0, 3, 1, 2]),
            Layout::Swapped => on_gpu(x.clone().swap_dims(2, 3)).swap_dims(2, 3),
        };
        for silu in [false, true] {
            let want = values(kernels::group_norm_tensor(&norm, x.clone(), silu));
            let got = values(kernels::group_norm(&gpu_norm, on_gpu.clone(), silu));
            assert!(
                max_rel_diff(&got, &want) < 1e-5,
                "{shape:?} silu {silu}: {}",
                max_rel_diff(&got, &want)
            );
        }
    }
}

#[test]
fn layer_norm_kernel_equals_the_tensor_version() {
    use burn::nn::LayerNormConfig;
    let (gpu, cpu) = (gpu(), Device::flex());
    // Rows of 24 (workgroups of 64, most invocations idle), rows of 5000 (workgroups of 256,
    // several values per invocation), and 70 000 rows (the grid spills into a second
    // dimension, with workgroups past the last row).
    for shape in [[2, 37, 24], [1, 3, 5000], [1, 70_000, 4]] {
        let norm = LayerNormConfig::new(shape[2]).with_epsilon(1e-5).init(&cpu);
        let norm = Module::map(norm, &mut Randomise);
        let x = Tensor::<3>::random(shape, Distribution::Normal(-1.0, 3.0), &cpu);
        let want = values(norm.forward(x.clone()));
        let got = kernels::layer_norm(
            &norm.clone().to_device(&gpu),
            Tensor::<3>::from_data(x.to_data(), &gpu),
            1e-5,
        );
        let got = values(got);
        assert!(
            max_rel_diff(&got, &want) < 1e-5,
            "{shape:?}: {}",
            max_rel_diff(&got, &want)
        );
    }
}

#[test]
fn layer_norm_kernel_takes_rows_of_any_rank() {
    use burn::nn::LayerNormConfig;
    let (gpu, cpu) = (gpu(), Device::flex());
    // The autoencoder's final norm: [B, L, N, C'], a permuted view.
    let norm = Module::map(LayerNormConfig::new(16).init(&cpu), &mut Randomise);
    let x = Tensor::<4>::random([2, 3, 5, 16], Distribution::Normal(0.0, 1.0), &cpu);
    let want = values(norm.forward(x.clone()));
    let on_gpu = Tensor::<4>::from_data(x.swap_dims(1, 2).to_data(), &gpu).swap_dims(1, 2);
    let got = values(kernels::layer_norm(
        &norm.clone().to_device(&gpu),
        on_gpu,
        1e-5,
    ));
    assert!(
        max_rel_diff(&got, &want) < 1e-5,
        "{}",
        max_rel_diff(&got, &want)
    );
}

#[test]
fn modulated_norm_kernel_equals_the_tensor_version() {
    let (gpu, cpu) = (gpu(), Device::flex());
    // Three clips with their own shift and scale (DiT's adaLN), rows of 64; shift and scale
    // are chunks of one modulation output, as the DiT's are: views 256 and 512 bytes into one
    // buffer, whose ranges overlap.
    let x = Tensor::<3>::random([3, 21, 64], Distribution::Normal(1.0, 2.0), &cpu);
    let modulation = Tensor::<2>::random([3, 3 * 64], Distribution::Normal(0.0, 1.0), &cpu);
    let [shift, scale, _] = <[Tensor<2>; 3]>::try_from(modulation.clone().chunk(3, 1)).unwrap();
    let want = kernels::modulated_norm_tensor(x.clone(), shift, scale, 1e-6);
    let modulation = Tensor::<2>::from_data(modulation.to_data(), &gpu);
    let [shift, scale, _] = <[Tensor<2>; 3]>::try_from(modulation.chunk(3, 1)).unwrap();
    let got = kernels::modulated_norm(Tensor::from_data(x.to_data(), &gpu), shift, scale, 1e-6);
    let (got, want) = (values(got), values(want));
    assert!(
        max_rel_diff(&got, &want) < 1e-5,
        "{}",
        max_rel_diff(&got, &want)
    );
}

#[test]
fn norms_match_closed_forms_on_the_kernel() {
    use burn::nn::{GroupNormConfig, LayerNormConfig};
    let gpu = gpu();
    // A constant segment normalises to zero: the output is beta (SiLU of beta with silu).
    let norm = Module::map(GroupNormConfig::new(2, 4).init(&gpu), &mut Randomise);
    let beta = values(norm.beta.as_ref().unwrap().val());
    let out = values(kernels::group_norm(
        &norm,
        Tensor::full([1, 4, 3, 3], 7.0, &gpu),
        true,
    ));
    for (c, chunk) in out.chunks(9).enumerate() {
        let want = beta[c] / (1.0 + (-beta[c]).exp());
        assert!(
            chunk.iter().all(|v| (v - want).abs() < 1e-6),
            "{chunk:?} {want}"
        );
    }
    // Two values a and -a per row normalise to -1 and 1 (variance a^2, eps aside).
    let norm = LayerNormConfig::new(2).with_epsilon(1e-12).init(&gpu);
    let x = Tensor::<2>::from_data(TensorData::new(vec![3.0f32, -3.0, -0.5, 0.5], [2, 2]), &gpu);
    let out = values(kernels::layer_norm(&norm, x, 1e-12));
    assert!(max_diff(&out, &[1.0, -1.0, -1.0, 1.0]) < 1e-6, "{out:?}");
}

/// Fills a module's parameters with random values (normal, std 0.5, about 1 for scales).
struct Randomise;

impl burn::module::ModuleMapper for Randomise {
    fn map_float<const D: usize>(
        &mut self,
        param: burn::module::Param<Tensor<D>>,
    ) -> burn::module::Param<Tensor<D>> {
        let (id, value, mapper) = param.consume();
        let noise = Tensor::random(
            value.shape(),
            Distribution::Normal(0.0, 0.5),
            &value.device(),
        );
        burn::module::Param::from_mapped_value(id, value + noise, mapper)
    }
}

#[test]
fn channels_last_weights_keep_their_values() {
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;
    let (gpu, cpu) = (gpu(), Device::flex());
    let conv = Conv2dConfig::new([6, 5], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(&gpu);
    let conv = Module::map(conv, &mut Randomise);
    let x = Tensor::<4>::random([2, 6, 7, 9], Distribution::Normal(0.0, 1.0), &gpu);
    let want = values(conv.forward(x.clone()));
    let stored = kernels::channels_last(conv.clone());
    assert_eq!(values(stored.weight.val()), values(conv.weight.val()));
    let got = values(stored.forward(x));
    assert!(
        max_rel_diff(&got, &want) < 1e-5,
        "{}",
        max_rel_diff(&got, &want)
    );
    // Off wgpu the module is returned as it is.
    let on_cpu = conv.to_device(&cpu);
    let same = kernels::channels_last(on_cpu.clone());
    assert_eq!(values(same.weight.val()), values(on_cpu.weight.val()));
}
