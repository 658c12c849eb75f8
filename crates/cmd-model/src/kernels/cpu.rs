//! CPU kernels for burn's Flex backend, wired in through burn's backend-extension path.
//!
//! Measured with `perf` on the `tiny` autoencoder, the motion DiT and the teaching UNet, most
//! of the CPU time outside the matrix products went to three scalar loops: the softmax of
//! attention (one libm `exp` call per score), the exact GELU (libm `erf`) and the tanh GELU
//! (libm `powf`, `tanh` and `expm1`). These kernels do the same arithmetic with a branch-free
//! `exp` that the compiler vectorises (AVX2 + FMA when the CPU has them, chosen at run time),
//! over rows split between threads. The matrix products stay with the `gemm` crate, as in
//! Flex.

use burn::backend::flex::{Flex, FlexTensor};
use burn::backend::{Backend, Dispatch, DispatchDevice, backend_extension, tensor::FloatTensor};
use burn::tensor::{DType, Device, Shape, Tensor, TensorData};

/// Largest score matrix (query x key positions) per head that [`attention`] materialises
/// (1 MiB of `f32`, as Flex's own limit); longer sequences take burn's tiled attention.
pub(super) const MAX_SCORES: usize = 256 * 1024;

/// Whether `device` is a Flex (CPU) device without autodiff.
pub(super) fn runs_on(device: &Device) -> bool {
    matches!(device.as_dispatch(), DispatchDevice::Flex(_))
}

/// Whether the kernels can take this tensor: `f32` on a Flex device, without autodiff.
pub(super) fn applies<const D: usize>(t: &Tensor<D>) -> bool {
    t.dtype() == DType::F32 && runs_on(&t.device())
}

pub(super) fn geglu<const D: usize>(h: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as CpuOps>::geglu(h.into_dispatch()))
}

pub(super) fn gelu_tanh<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as CpuOps>::gelu_tanh(x.into_dispatch()))
}

pub(super) fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as CpuOps>::attention(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
    ))
}

/// Operations backed by the CPU kernels.
#[backend_extension(Flex)]
pub trait CpuOps: Backend {
    /// `a * gelu(g)` (exact GELU) of `h = [a, g]`, split in halves on the last axis.
    fn geglu(h: FloatTensor<Self>) -> FloatTensor<Self>;
    /// The tanh approximation of GELU, elementwise.
    fn gelu_tanh(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// `softmax(q k^T / sqrt(d)) v` for `q [B, H, N, d]`, `k [B, H, M, d]`, `v [B, H, M, e]`.
    fn attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

impl CpuOps for Flex {
    fn geglu(h: FlexTensor) -> FlexTensor {
        let h = h.to_contiguous();
        let mut dims = h.layout().shape().to_vec();
        let width = dims.last().copied().unwrap_or(0);
        assert!(width % 2 == 0, "geglu: odd last axis {width}");
        let half = width / 2;
        *dims.last_mut().expect("geglu takes at least one axis") = half;
        let input = values(&h);
        let mut out = vec![0.0f32; input.len() / 2];
        if half > 0 {
            let rows = rows_per_task(half);
            par_rows(&mut out, input, rows * half, rows * width, &|o, i| {
                simd(|| {
                    for (o, i) in o.chunks_exact_mut(half).zip(i.chunks_exact(width)) {
                        let (a, g) = i.split_at(half);
                        for ((o, a), g) in o.iter_mut().zip(a).zip(g) {
                            *o = a * gelu(*g);
                        }
                    }
                })
            });
        }
        tensor(out, dims)
    }

    fn gelu_tanh(x: FlexTensor) -> FlexTensor {
        let x = x.to_contiguous();
        let dims = x.layout().shape().to_vec();
        let input = values(&x);
        let mut out = vec![0.0f32; input.len()];
        par_rows(&mut out, input, 1 << 14, 1 << 14, &|o, i| {
            simd(|| {
                for (o, x) in o.iter_mut().zip(i) {
                    *o = gelu_tanh_one(*x);
                }
            })
        });
        tensor(out, dims)
    }

    fn attention(q: FlexTensor, k: FlexTensor, v: FlexTensor) -> FlexTensor {
        let (q, k, v) = (q.to_contiguous(), k.to_contiguous(), v.to_contiguous());
        let [b, h, n, d] = dims4(&q);
        let [_, _, m, _] = dims4(&k);
        let [_, _, _, e] = dims4(&v);
        let (qs, ks, vs) = (values(&q), values(&k), values(&v));
        let mut out = vec![0.0f32; b * h * n * e];
        let scale = 1.0 / (d as f32).sqrt();
        let head = |o: &mut [f32], i: usize, scores: &mut Vec<f32>| {
            scores.resize(n * m, 0.0);
            let (q, k, v) = (
                &qs[i * n * d..][..n * d],
                &ks[i * m * d..][..m * d],
                &vs[i * m * e..][..m * e],
            );
            // SAFETY: every pointer spans its slice with the strides given, and `scores`,
            // `o` do not alias the inputs.
            unsafe {
                // scores = scale * q k^T  (k read as a column-major [d, m])
                gemm::gemm(
                    n,
                    m,
                    d,
                    scores.as_mut_ptr(),
                    1,
                    m as isize,
                    false,
                    q.as_ptr(),
                    1,
                    d as isize,
                    k.as_ptr(),
                    d as isize,
                    1,
                    0.0,
                    scale,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
            simd(|| {
                for row in scores.chunks_exact_mut(m) {
                    softmax_row(row);
                }
            });
            // SAFETY: as above.
            unsafe {
                gemm::gemm(
                    n,
                    e,
                    m,
                    o.as_mut_ptr(),
                    1,
                    e as isize,
                    false,
                    scores.as_ptr(),
                    1,
                    m as isize,
                    v.as_ptr(),
                    1,
                    e as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        };
        if n * e > 0 {
            for_each_head(&mut out, n * e, &head);
        }
        tensor(out, vec![b, h, n, e])
    }
}

/// The tensor's `f32` values in order (it must be contiguous).
fn values(t: &FlexTensor) -> &[f32] {
    let start = t.layout().start_offset();
    &t.storage::<f32>()[start..][..t.layout().num_elements()]
}

fn dims4(t: &FlexTensor) -> [usize; 4] {
    t.layout()
        .shape()
        .to_vec()
        .try_into()
        .expect("attention takes [batch, heads, positions, width] tensors")
}

fn tensor(values: Vec<f32>, dims: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, Shape::from(dims)))
}

/// Rows of `width` outputs per task: about 16 K outputs, at least one row.
fn rows_per_task(width: usize) -> usize {
    ((1 << 14) / width).max(1)
}

/// `f(out_chunk, in_chunk)` over matching chunks of `out` and `input`, on the thread pool.
fn par_rows(
    out: &mut [f32],
    input: &[f32],
    out_chunk: usize,
    in_chunk: usize,
    f: &(dyn Fn(&mut [f32], &[f32]) + Sync),
) {
    #[cfg(not(target_family = "wasm"))]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(out_chunk)
            .zip(input.par_chunks(in_chunk))
            .for_each(|(o, i)| f(o, i));
    }
    #[cfg(target_family = "wasm")]
    for (o, i) in out.chunks_mut(out_chunk).zip(input.chunks(in_chunk)) {
        f(o, i);
    }
}

/// One head of attention: `(out_chunk, head index, scratch)`.
type HeadFn<'a> = dyn Fn(&mut [f32], usize, &mut Vec<f32>) + Sync + 'a;

/// `head(out_chunk, index, scratch)` for each head's `chunk` outputs, on the thread pool.
fn for_each_head(out: &mut [f32], chunk: usize, head: &HeadFn<'_>) {
    #[cfg(not(target_family = "wasm"))]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(chunk)
            .enumerate()
            .for_each_init(Vec::new, |scratch, (i, o)| head(o, i, scratch));
    }
    #[cfg(target_family = "wasm")]
    {
        let mut scratch = Vec::new();
        for (i, o) in out.chunks_mut(chunk).enumerate() {
            head(o, i, &mut scratch);
        }
    }
}

/// Runs `f` compiled for AVX2 + FMA when the CPU has them (the loops in `f` are inlined into
/// that copy and vectorised), else as built.
#[inline(always)]
fn simd<F: FnOnce()>(f: F) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn with_avx2<F: FnOnce()>(f: F) {
            f()
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has the features just checked.
            return unsafe { with_avx2(f) };
        }
    }
    f()
}

/// `e^x` for `f32` without branches (so loops of it vectorise): `2^k * p(r)` with
/// `x = k ln 2 + r`, `|r| <= ln 2 / 2`, and `p` the degree-6 Taylor polynomial (relative error
/// below 4e-7, tested). Inputs are clamped to `[-87.3, 88.3]`, which keeps `2^k` a normal number; below
/// that the result is about 1e-38 instead of a denormal or zero.
#[inline(always)]
pub(super) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // 1.5 * 2^23: adding it rounds to an integer in the low mantissa bits.
    const SHIFTER: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.3);
    let kf = x * LOG2E + SHIFTER;
    let k = kf - SHIFTER;
    let r = x - k * LN2_HI - k * LN2_LO;
    let p = r * (1.0 / 720.0) + 1.0 / 120.0;
    let p = p * r + 1.0 / 24.0;
    let p = p * r + 1.0 / 6.0;
    let p = p * r + 0.5;
    let p = p * r + 1.0;
    let p = p * r + 1.0;
    let bits = kf
        .to_bits()
        .wrapping_sub(SHIFTER.to_bits())
        .wrapping_add(127)
        << 23;
    p * f32::from_bits(bits)
}

/// `erf(x)` by Abramowitz and Stegun 7.1.26 (absolute error below 1.5e-7), branch-free.
#[inline(always)]
pub(super) fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (0.327_591_1 * a + 1.0);
    let poly = 1.061_405_4 * t - 1.453_152_1;
    let poly = poly * t + 1.421_413_8;
    let poly = poly * t - 0.284_496_74;
    let poly = poly * t + 0.254_829_6;
    let y = 1.0 - poly * t * exp(-a * a);
    y.copysign(x)
}

/// `x Φ(x)`, the exact GELU.
#[inline(always)]
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// `0.5 x (1 + tanh(sqrt(2/π) (x + 0.044715 x^3)))`, with `tanh(u) = 1 - 2 / (e^{2u} + 1)`.
#[inline(always)]
fn gelu_tanh_one(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let u = SQRT_2_OVER_PI * (0.044_715 * x * x * x + x);
    let tanh = 1.0 - 2.0 / (exp(2.0 * u) + 1.0);
    0.5 * x * (1.0 + tanh)
}

/// In-place softmax of one row, with eight running lanes so the reductions vectorise.
#[inline(always)]
fn softmax_row(row: &mut [f32]) {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut chunks = row.chunks_exact(8);
    for c in &mut chunks {
        for (l, v) in lanes.iter_mut().zip(c) {
            *l = l.max(*v);
        }
    }
    let max = chunks.remainder().iter().fold(
        lanes.iter().copied().fold(f32::NEG_INFINITY, f32::max),
        |a, &b| a.max(b),
    );
    let mut sums = [0.0f32; 8];
    let mut chunks = row.chunks_exact_mut(8);
    for c in &mut chunks {
        for (s, v) in sums.iter_mut().zip(c.iter_mut()) {
            *v = exp(*v - max);
            *s += *v;
        }
    }
    let mut sum: f32 = sums.iter().sum();
    for v in chunks.into_remainder() {
        *v = exp(*v - max);
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in row.iter_mut() {
        *v *= inv;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;
    use burn::tensor::activation::gelu_approximate;

    fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        assert_eq!(a.dims(), b.dims());
        let (a, b) = (
            a.into_data().try_to_vec::<f32>().unwrap(),
            b.into_data().try_to_vec::<f32>().unwrap(),
        );
        a.iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    #[test]
    fn kernels_equal_the_tensor_versions_on_strided_inputs() {
        let dev = Device::flex();
        assert!(super::super::runs_cpu(&dev) && !super::super::runs_cpu(&dev.clone().autodiff()));
        let normal = Distribution::Normal(0.0, 3.0);
        // Strided views, as the models pass them: a permuted qkv and a narrowed projection.
        let qkv = Tensor::<5>::random([2, 9, 3, 3, 12], normal, &dev).permute([2, 0, 3, 1, 4]);
        let part = |i| qkv.clone().narrow(0, i, 1).squeeze_dim::<4>(0);
        let kv = Tensor::<4>::random([2, 3, 13, 12], normal, &dev);
        for (q, k, v) in [
            (part(0), part(1), part(2)),
            (part(0), kv.clone(), kv.clone()),
        ] {
            let want = super::super::attention_tensor(q.clone(), k.clone(), v.clone());
            let got = attention(q, k, v);
            assert!(max_diff(got, want) < 1e-5);
        }
        let h = Tensor::<3>::random([3, 5, 40], normal, &dev).narrow(2, 4, 34);
        assert!(max_diff(geglu(h.clone()), super::super::geglu_tensor(h)) < 1e-5);
        let x = Tensor::<3>::random([3, 7, 1000], normal, &dev).swap_dims(1, 2);
        assert!(max_diff(gelu_tanh(x.clone()), gelu_approximate(x)) < 1e-5);
    }

    #[test]
    fn exp_matches_std_across_the_range() {
        let mut worst = 0.0f32;
        for i in -8700..8830 {
            let x = i as f32 * 0.01 + 0.003;
            let (got, want) = (exp(x), x.exp());
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 4e-7, "worst relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-1000.0) < 1e-37 && exp(-1000.0) >= 0.0);
        assert!(exp(1000.0).is_finite());
    }

    #[test]
    fn erf_matches_closed_form_values() {
        // erf(0.5), erf(1), erf(2), rounded to f32.
        for (x, want) in [
            (0.5f32, 0.520_499_9),
            (1.0, 0.842_700_8),
            (2.0, 0.995_322_3),
        ] {
            assert!((erf(x) - want).abs() < 2e-7, "erf({x}) = {}", erf(x));
            assert!((erf(-x) + want).abs() < 2e-7);
        }
        assert!(erf(0.0).abs() < 1e-7 && (erf(9.0) - 1.0).abs() < 1e-7);
    }

    #[test]
    fn softmax_row_sums_to_one_for_any_length() {
        for len in [1, 7, 8, 9, 33] {
            let mut row: Vec<f32> = (0..len).map(|i| (i as f32 * 0.7).sin() * 5.0).collect();
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let want: Vec<f32> = row.iter().map(|v| (v - max).exp()).collect();
            let total: f32 = want.iter().sum();
            softmax_row(&mut row);
            for (got, w) in row.iter().zip(&want) {
                assert!((got - w / total).abs() < 1e-6);
            }
        }
    }
}
