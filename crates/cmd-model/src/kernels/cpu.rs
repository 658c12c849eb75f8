//! CPU kernels for burn's Flex backend, wired in through burn's backend-extension path.
//!
//! Measured with `perf` on the `tiny` autoencoder, the motion DiT and the teaching UNet, most
//! of the CPU time outside the matrix products went to three scalar loops: the softmax of
//! attention (one libm `exp` call per score), the exact GELU (libm `erf`) and the tanh GELU
//! (libm `powf`, `tanh` and `expm1`). These kernels do the same arithmetic with a branch-free
//! `exp` that the compiler vectorises (AVX-512, else AVX2 + FMA when the CPU has them, chosen
//! at run time),
//! over rows split between threads. The matrix products stay with the `gemm` crate, as in
//! Flex.
//!
//! A second profile found the passes around them: Flex's 3x3 convolution spent as long
//! building its im2col matrix as multiplying it (18 % of the teaching UNet), GroupNorm and
//! SiLU took about ten passes over the data, and every attention copied its queries, keys and
//! values through permutes, rotary positions and a head merge. [`CpuOps::conv3x3`],
//! [`CpuOps::group_norm`], [`CpuOps::rope_attention`] and [`CpuOps::modulated_norm`] do each
//! in one pass.
//!
//! A third profile, at the teaching model's sizes, found the fixed costs around the products:
//! each linear layer was a product, a bias pass and (in residual branches) an add pass, each
//! with a fresh output. [`CpuOps::linear`], [`CpuOps::linear_add`] and
//! [`CpuOps::gated_linear_add`] start the product's output as the bias (and residual) instead.
//!
//! At Stable Diffusion's sizes the 3x3 convolutions were most of the time and their products
//! ran near the CPU's peak, so the way on was fewer multiplications: from 128 channels on they
//! go through Winograd's F(2x2, 3x3) ([`winograd3x3`]), 2.25x fewer.

mod product;

use burn::backend::flex::{Flex, FlexTensor};
use burn::backend::{Backend, Dispatch, DispatchDevice, backend_extension, tensor::FloatTensor};
use burn::tensor::{DType, Device, Shape, Tensor, TensorData};

use product::{Operand, Output, product};

/// Most scores (query x key positions) the attention kernels hold at once per thread: 1 MiB
/// of `f32`. Longer sequences go through in blocks of queries (see [`attend`]).
const MAX_SCORES: usize = 256 * 1024;

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

pub(super) fn group_norm(
    x: Tensor<4>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    groups: usize,
    epsilon: f64,
    silu: bool,
) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as CpuOps>::group_norm(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        groups,
        epsilon,
        silu,
    ))
}

pub(super) fn conv3x3(x: Tensor<4>, weight: Tensor<4>, bias: Tensor<1>) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as CpuOps>::conv3x3(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
    ))
}

pub(super) fn rope_attention(
    qkv: Tensor<3>,
    cos: Tensor<2>,
    sin: Tensor<2>,
    heads: usize,
) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as CpuOps>::rope_attention(
        qkv.into_dispatch(),
        cos.into_dispatch(),
        sin.into_dispatch(),
        heads,
    ))
}

pub(super) fn linear<const D: usize>(
    x: Tensor<D>,
    weight: Tensor<2>,
    bias: Tensor<1>,
) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as CpuOps>::linear(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
    ))
}

pub(super) fn linear_add<const D: usize>(
    x: Tensor<D>,
    weight: Tensor<2>,
    bias: Tensor<1>,
    residual: Tensor<D>,
) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as CpuOps>::linear_add(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        residual.into_dispatch(),
    ))
}

pub(super) fn gated_linear_add(
    x: Tensor<3>,
    weight: Tensor<2>,
    bias: Tensor<1>,
    gate: Tensor<2>,
    residual: Tensor<3>,
) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as CpuOps>::gated_linear_add(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        gate.into_dispatch(),
        residual.into_dispatch(),
    ))
}

pub(super) fn modulated_norm(
    x: Tensor<3>,
    shift: Tensor<2>,
    scale: Tensor<2>,
    epsilon: f64,
) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as CpuOps>::modulated_norm(
        x.into_dispatch(),
        shift.into_dispatch(),
        scale.into_dispatch(),
        epsilon,
    ))
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
    /// GroupNorm of `x [B, C, ...]` in `groups` groups with per-channel `gamma` and `beta`
    /// (`[C]`), followed by SiLU when `silu`.
    fn group_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        groups: usize,
        epsilon: f64,
        silu: bool,
    ) -> FloatTensor<Self>;
    /// A 3x3 convolution of `x [B, C, H, W]` with stride 1, padding 1 and one group:
    /// `weight [O, C, 3, 3]`, `bias [O]`.
    fn conv3x3(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
    /// Self-attention of packed projections `qkv [B, N, 3 H d]` in `heads` heads, with the
    /// rotary tables `cos`, `sin` `[N, d]` on queries and keys; returns `[B, N, H d]`.
    fn rope_attention(
        qkv: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        heads: usize,
    ) -> FloatTensor<Self>;
    /// `x W + b` over the last axis of `x [..., K]`: `weight [K, N]`, `bias [N]`; returns
    /// `[..., N]`.
    fn linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
    /// `residual + x W + b`, with `residual` of the output's shape.
    fn linear_add(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        residual: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
    /// `residual + gate * (x W + b)` for `x [B, T, K]`, with `gate [B, N]` broadcast over the
    /// `T` tokens and `residual [B, T, N]` (DiT's gated residual branches).
    fn gated_linear_add(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        gate: FloatTensor<Self>,
        residual: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
    /// LayerNorm without affine parameters of `x [B, N, D]` (over `D`), then
    /// `* (1 + scale) + shift` with `shift`, `scale` `[B, D]` broadcast over the `N` tokens.
    fn modulated_norm(
        x: FloatTensor<Self>,
        shift: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self>;
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
            par_rows(&mut out, input, rows * half, rows * width, &|_, o, i| {
                simd(
                    #[inline(always)]
                    || {
                        for (o, i) in o.chunks_exact_mut(half).zip(i.chunks_exact(width)) {
                            let (a, g) = i.split_at(half);
                            for ((o, a), g) in o.iter_mut().zip(a).zip(g) {
                                *o = a * gelu(*g);
                            }
                        }
                    },
                )
            });
        }
        tensor(out, dims)
    }

    fn gelu_tanh(x: FlexTensor) -> FlexTensor {
        let x = x.to_contiguous();
        let dims = x.layout().shape().to_vec();
        let input = values(&x);
        let mut out = vec![0.0f32; input.len()];
        par_rows(&mut out, input, 1 << 14, 1 << 14, &|_, o, i| {
            simd(
                #[inline(always)]
                || {
                    for (o, x) in o.iter_mut().zip(i) {
                        *o = gelu_tanh_one(*x);
                    }
                },
            )
        });
        tensor(out, dims)
    }

    fn group_norm(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        groups: usize,
        epsilon: f64,
        silu: bool,
    ) -> FlexTensor {
        let (x, gamma, beta) = (
            x.to_contiguous(),
            gamma.to_contiguous(),
            beta.to_contiguous(),
        );
        let dims = x.layout().shape().to_vec();
        let channels = dims.get(1).copied().unwrap_or(0);
        assert!(
            groups > 0 && channels % groups == 0,
            "group_norm: {channels} channels in {groups} groups"
        );
        let spatial: usize = dims[2..].iter().product();
        let per_group = channels / groups * spatial;
        let (input, gamma, beta) = (values(&x), values(&gamma), values(&beta));
        let mut out = vec![0.0f32; input.len()];
        if per_group > 0 {
            par_rows(&mut out, input, per_group, per_group, &|k, o, i| {
                simd(
                    #[inline(always)]
                    || {
                        let (mean, var) = mean_var(i);
                        let inv = 1.0 / (var + epsilon).sqrt();
                        let first = (k % groups) * (channels / groups);
                        let rows = o.chunks_exact_mut(spatial).zip(i.chunks_exact(spatial));
                        for (c, (o, i)) in rows.enumerate() {
                            let scale = (gamma[first + c] as f64 * inv) as f32;
                            let (mean, shift) = (mean as f32, beta[first + c]);
                            for (o, x) in o.iter_mut().zip(i) {
                                let y = (x - mean) * scale + shift;
                                *o = if silu { y / (1.0 + exp(-y)) } else { y };
                            }
                        }
                    },
                )
            });
        }
        tensor(out, dims)
    }

    /// Without im2col: each image is zero-padded once to rows of `W + 2`, and on that grid the
    /// input under kernel tap `(ky, kx)` is the same buffer shifted by `ky (W + 2) + kx`, a
    /// plain matrix `[C, H (W + 2)]`. Nine matrix products accumulate the taps into
    /// `[O, H (W + 2)]`, whose two extra columns per row are then dropped.
    fn conv3x3(x: FlexTensor, weight: FlexTensor, bias: FlexTensor) -> FlexTensor {
        let (x, weight, bias) = (
            x.to_contiguous(),
            weight.to_contiguous(),
            bias.to_contiguous(),
        );
        let [b, c, h, w] = dims4(&x);
        let [o, ci, kh, kw] = dims4(&weight);
        assert!(
            ci == c && kh == 3 && kw == 3,
            "conv3x3: weight [{o}, {ci}, {kh}, {kw}] for {c} channels"
        );
        let (xs, ws, bs) = (values(&x), values(&weight), values(&bias));
        if winograd_pays(c, o) && b * h * w > 0 {
            return tensor(winograd3x3(xs, ws, bs, [b, c, h, w], o), vec![b, o, h, w]);
        }
        let row = w + 2;
        // Two more values, so the last tap's shifted window stays inside the buffer.
        let plane = (h + 2) * row + 2;
        let n = h * row;
        let mut out = vec![0.0f32; b * o * h * w];
        if out.is_empty() {
            return tensor(out, vec![b, o, h, w]);
        }
        // Every image padded once; the border stays zero.
        let mut padded = vec![0.0f32; b * c * plane];
        for (src, dst) in xs.chunks_exact(h * w).zip(padded.chunks_exact_mut(plane)) {
            for (y, src) in src.chunks_exact(w).enumerate() {
                dst[(y + 1) * row + 1..][..w].copy_from_slice(src);
            }
        }
        // Tasks: each image's outputs in `parts` blocks of `per` channels, so that batch 1
        // keeps both threads busy too.
        let parts = (1..=o)
            .rev()
            .find(|p| o % p == 0 && *p <= threads().div_ceil(b))
            .unwrap_or(1);
        let per = o / parts;
        let task = |out: &mut [f32], k: usize, full: &mut Vec<f32>| {
            let (image, first) = (k / parts, k % parts * per);
            let input = &padded[image * c * plane..][..c * plane];
            full.resize(per * n, 0.0);
            for tap in 0..9 {
                let shift = tap / 3 * row + tap % 3;
                // SAFETY: `full` is `[per, n]` row-major; the weights of a tap are `[per, c]`
                // with strides `(9, 9 c)` from offset `9 c first + tap`; the shifted input is
                // `[c, n]` with strides `(1, plane)` from offset `shift`, whose last value
                // read, `shift + (c - 1) plane + n - 1`, is inside `input` (see `plane`).
                unsafe {
                    product(
                        [per, n, c],
                        Output {
                            ptr: full.as_mut_ptr(),
                            rs: n,
                            accumulate: tap > 0,
                        },
                        Operand {
                            ptr: ws.as_ptr().add(9 * c * first + tap),
                            rs: (9 * c) as isize,
                            cs: 9,
                        },
                        Operand {
                            ptr: input.as_ptr().add(shift),
                            rs: plane as isize,
                            cs: 1,
                        },
                        1.0,
                        1,
                    );
                }
            }
            let rows = out.chunks_exact_mut(h * w).zip(full.chunks_exact(n));
            for ((out, full), bias) in rows.zip(&bs[first..first + per]) {
                for (out, full) in out.chunks_exact_mut(w).zip(full.chunks_exact(row)) {
                    for (out, v) in out.iter_mut().zip(full) {
                        *out = v + bias;
                    }
                }
            }
        };
        for_each_task(&mut out, per * h * w, &task);
        tensor(out, vec![b, o, h, w])
    }

    /// One task per sequence: each head's rotated queries and keys and its values are
    /// gathered from the packed rows once, and its output is written straight into its
    /// columns of `[N, H d]`, so none of the permuted copies of the tensor version are made.
    fn rope_attention(
        qkv: FlexTensor,
        cos: FlexTensor,
        sin: FlexTensor,
        heads: usize,
    ) -> FlexTensor {
        let (qkv, cos, sin) = (
            qkv.to_contiguous(),
            cos.to_contiguous(),
            sin.to_contiguous(),
        );
        let dims = qkv.layout().shape().to_vec();
        let [b, n, width] = dims[..] else {
            panic!("rope_attention takes qkv [batch, positions, 3 heads width], got {dims:?}");
        };
        let d = width / (3 * heads.max(1));
        assert!(
            heads > 0 && width == 3 * heads * d && d.is_multiple_of(2),
            "rope_attention: width {width} is not 3 x {heads} heads of an even width"
        );
        assert_eq!(
            cos.layout().shape().to_vec(),
            [n, d],
            "rope_attention: cos table"
        );
        assert_eq!(
            sin.layout().shape().to_vec(),
            [n, d],
            "rope_attention: sin table"
        );
        let (xs, cos, sin) = (values(&qkv), values(&cos), values(&sin));
        let inner = heads * d;
        let mut out = vec![0.0f32; b * n * inner];
        let scale = 1.0 / (d as f32).sqrt();
        let sequence = |o: &mut [f32], i: usize, scratch: &mut Vec<f32>| {
            let x = &xs[i * n * width..][..n * width];
            scratch.resize(3 * n * d + scores_len(n, n), 0.0);
            let (q, rest) = scratch.split_at_mut(n * d);
            let (k, rest) = rest.split_at_mut(n * d);
            let (v, scores) = rest.split_at_mut(n * d);
            for head in 0..heads {
                simd(
                    #[inline(always)]
                    || {
                        for t in 0..n {
                            let (row, c, s) =
                                (&x[t * width..], &cos[t * d..][..d], &sin[t * d..][..d]);
                            let (qt, kt) = (&mut q[t * d..][..d], &mut k[t * d..][..d]);
                            rotate_row(&row[head * d..][..d], c, s, qt);
                            rotate_row(&row[inner + head * d..][..d], c, s, kt);
                            v[t * d..][..d].copy_from_slice(&row[2 * inner + head * d..][..d]);
                        }
                    },
                );
                attend(
                    [q, k, v],
                    [n, n, d, d],
                    scale,
                    scores,
                    &mut o[head * d..],
                    inner,
                );
            }
        };
        if n * inner > 0 {
            for_each_task(&mut out, n * inner, &sequence);
        }
        tensor(out, vec![b, n, inner])
    }

    fn linear(x: FlexTensor, weight: FlexTensor, bias: FlexTensor) -> FlexTensor {
        linear_into(x, weight, bias, Residual::None)
    }

    fn linear_add(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        residual: FlexTensor,
    ) -> FlexTensor {
        linear_into(x, weight, bias, Residual::Add(residual))
    }

    fn gated_linear_add(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        gate: FlexTensor,
        residual: FlexTensor,
    ) -> FlexTensor {
        linear_into(x, weight, bias, Residual::Gated { gate, residual })
    }

    fn modulated_norm(
        x: FlexTensor,
        shift: FlexTensor,
        scale: FlexTensor,
        epsilon: f64,
    ) -> FlexTensor {
        let (x, shift, scale) = (
            x.to_contiguous(),
            shift.to_contiguous(),
            scale.to_contiguous(),
        );
        let dims = x.layout().shape().to_vec();
        let [b, n, d] = dims[..] else {
            panic!("modulated_norm takes x [batch, tokens, width], got {dims:?}");
        };
        for t in [&shift, &scale] {
            assert_eq!(
                t.layout().shape().to_vec(),
                [b, d],
                "modulated_norm: shift, scale"
            );
        }
        let (input, shift, scale) = (values(&x), values(&shift), values(&scale));
        let mut out = vec![0.0f32; input.len()];
        if d > 0 {
            let rows = rows_per_task(d);
            par_rows(&mut out, input, rows * d, rows * d, &|k, o, i| {
                simd(
                    #[inline(always)]
                    || {
                        let pairs = o.chunks_exact_mut(d).zip(i.chunks_exact(d));
                        for (j, (o, i)) in pairs.enumerate() {
                            let batch = (k * rows + j) / n;
                            let (shift, scale) =
                                (&shift[batch * d..][..d], &scale[batch * d..][..d]);
                            let (mean, var) = mean_var(i);
                            let (mean, inv) = (mean as f32, (1.0 / (var + epsilon).sqrt()) as f32);
                            for (((o, x), shift), scale) in
                                o.iter_mut().zip(i).zip(shift).zip(scale)
                            {
                                *o = (x - mean) * inv * (1.0 + scale) + shift;
                            }
                        }
                    },
                )
            });
        }
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
            let (q, k, v) = (
                &qs[i * n * d..][..n * d],
                &ks[i * m * d..][..m * d],
                &vs[i * m * e..][..m * e],
            );
            scores.resize(scores_len(n, m), 0.0);
            attend([q, k, v], [n, m, d, e], scale, scores, o, e);
        };
        if n * e > 0 {
            for_each_task(&mut out, n * e, &head);
        }
        tensor(out, vec![b, h, n, e])
    }
}

/// What a [`linear_into`] product is added to.
enum Residual {
    /// Nothing: `x W + b`.
    None,
    /// `residual + x W + b`.
    Add(FlexTensor),
    /// `residual + gate * (x W + b)`, `gate [B, N]` per batch of the `[B, T, N]` output.
    Gated {
        gate: FlexTensor,
        residual: FlexTensor,
    },
}

/// Whether [`CpuOps::conv3x3`] takes [`winograd3x3`] for `c` input and `o` output channels.
/// Its transforms are passes over four times the input and the output and over the filters,
/// which the 2.25x fewer multiplications repay from about a hundred channels on: measured,
/// the SD1.5 UNet (320 to 1280 channels) 6.2-6.8 -> 4.0-4.2 s at 64x64, while the teaching
/// UNet (32 and 64 channels) was as fast or slower with it.
fn winograd_pays(c: usize, o: usize) -> bool {
    c >= WINOGRAD_CHANNELS && o >= WINOGRAD_CHANNELS
}

/// Input and output channels from which 3x3 convolutions go through [`winograd3x3`].
const WINOGRAD_CHANNELS: usize = 128;

thread_local! {
    /// [`winograd3x3`]'s transformed filters, inputs and products, kept between calls: as
    /// fresh allocations of tens of MB they were page-faulted in (zeroed by the kernel) on
    /// every convolution, 9 % of an SD1.5 UNet evaluation.
    static WINOGRAD_BUFFERS: std::cell::Cell<[Vec<f32>; 3]> = const { std::cell::Cell::new([Vec::new(), Vec::new(), Vec::new()]) };
}

/// A 3x3 convolution (stride 1, padding 1) by Winograd's minimal filtering F(2x2, 3x3)
/// (Lavin & Gray 2016): the output in 2x2 tiles, each from a 4x4 input tile, with 16
/// element-wise products per tile and channel pair instead of 36. The input tiles and the
/// filters are transformed (`V = Bᵀ d B`, `U = G g Gᵀ`), the 16 products of each pair of
/// positions summed over input channels are 16 matrix products `M_ξ = U_ξ V_ξ`, and each
/// output tile is `Aᵀ M A` plus the bias. The transforms use only additions and halvings:
/// the result equals the direct convolution to about 1e-6 relative.
///
/// `xs`: `[b, c, h, w]`, `ws`: `[o, c, 3, 3]`, `bs`: `[o]`; returns `[b, o, h, w]`.
fn winograd3x3(xs: &[f32], ws: &[f32], bs: &[f32], [b, c, h, w]: [usize; 4], o: usize) -> Vec<f32> {
    let (th, tw) = (h.div_ceil(2), w.div_ceil(2));
    let tiles = th * tw;
    let nt = b * tiles;
    let mut buffers = WINOGRAD_BUFFERS.take();
    let [u, v, m] = &mut buffers;
    for (buffer, len) in [
        (&mut *u, o * 16 * c),
        (&mut *v, c * 16 * nt),
        (&mut *m, o * 16 * nt),
    ] {
        buffer.resize(len, 0.0);
    }
    // U: [o, 16, c], the filters transformed.
    for_each_task(u, 16 * c, &|u, oi, _| {
        for ci in 0..c {
            let g = &ws[(oi * c + ci) * 9..][..9];
            // t = G g (4 x 3), then U = t Gᵀ (4 x 4).
            let mut t = [[0.0f32; 3]; 4];
            for j in 0..3 {
                let (g0, g1, g2) = (g[j], g[3 + j], g[6 + j]);
                t[0][j] = g0;
                t[1][j] = 0.5 * (g0 + g1 + g2);
                t[2][j] = 0.5 * (g0 - g1 + g2);
                t[3][j] = g2;
            }
            for (r, &[t0, t1, t2]) in t.iter().enumerate() {
                let row = [t0, 0.5 * (t0 + t1 + t2), 0.5 * (t0 - t1 + t2), t2];
                for (s, value) in row.into_iter().enumerate() {
                    u[(r * 4 + s) * c + ci] = value;
                }
            }
        }
    });
    // V: [c, 16, nt], the input tiles transformed; each plane zero-padded to (2 th + 2) x
    // (2 tw + 2) first, so that every tile is whole. `V = Bᵀ d B` is separable: `d B` along
    // each padded row (four rows of `tw` values out of each), then `Bᵀ` down the columns of
    // those, over whole rows of tiles at a time so that both passes vectorise.
    let (ph, pw) = (2 * th + 2, 2 * tw + 2);
    for_each_task(v, 16 * nt, &|v, ci, scratch| {
        scratch.clear();
        scratch.resize(ph * pw + 4 * ph * tw, 0.0);
        let (padded, rows) = scratch.split_at_mut(ph * pw);
        for bi in 0..b {
            let plane = &xs[(bi * c + ci) * h * w..][..h * w];
            for (y, src) in plane.chunks_exact(w).enumerate() {
                padded[(y + 1) * pw + 1..][..w].copy_from_slice(src);
            }
            simd(
                #[inline(always)]
                || {
                    // rows[s][y][tx] = (d B)[s] of the tile row at padded row y.
                    let (r0, rest) = rows.split_at_mut(ph * tw);
                    let (r1, rest) = rest.split_at_mut(ph * tw);
                    let (r2, r3) = rest.split_at_mut(ph * tw);
                    for y in 0..ph {
                        let p = &padded[y * pw..][..pw];
                        let out = y * tw;
                        for tx in 0..tw {
                            let (e0, o0, e1, o1) =
                                (p[2 * tx], p[2 * tx + 1], p[2 * tx + 2], p[2 * tx + 3]);
                            r0[out + tx] = e0 - e1;
                            r1[out + tx] = o0 + e1;
                            r2[out + tx] = e1 - o0;
                            r3[out + tx] = o0 - o1;
                        }
                    }
                    for ty in 0..th {
                        let tile = bi * tiles + ty * tw;
                        for (s, r) in [&*r0, &*r1, &*r2, &*r3].into_iter().enumerate() {
                            let row = |k: usize| &r[(2 * ty + k) * tw..][..tw];
                            let (d0, d1, d2, d3) = (row(0), row(1), row(2), row(3));
                            let mut put = |xi: usize, a: &[f32], b: &[f32], sign: f32| {
                                let out = &mut v[xi * nt + tile..][..tw];
                                for ((out, a), b) in out.iter_mut().zip(a).zip(b) {
                                    *out = a + sign * b;
                                }
                            };
                            put(s, d0, d2, -1.0);
                            put(4 + s, d1, d2, 1.0);
                            put(8 + s, d2, d1, -1.0);
                            put(12 + s, d1, d3, -1.0);
                        }
                    }
                },
            );
            // The border stays zero: only the interior was written.
        }
    });
    // M: [o, 16, nt]; M_ξ = U_ξ V_ξ, an [o, c] by [c, nt] product for each of the 16 ξ.
    for xi in 0..16 {
        // SAFETY: `M_ξ` is `[o, nt]` with strides `(16 nt, 1)` from offset `ξ nt` of `m`
        // (`o 16 nt` values); `U_ξ` is `[o, c]` with strides `(16 c, 1)` from `ξ c` of `u`;
        // `V_ξ` is `[c, nt]` with strides `(16 nt, 1)` from `ξ nt` of `v`; none alias.
        unsafe {
            product(
                [o, nt, c],
                Output {
                    ptr: m.as_mut_ptr().add(xi * nt),
                    rs: 16 * nt,
                    accumulate: false,
                },
                Operand {
                    ptr: u.as_ptr().add(xi * c),
                    rs: (16 * c) as isize,
                    cs: 1,
                },
                Operand {
                    ptr: v.as_ptr().add(xi * nt),
                    rs: (16 * nt) as isize,
                    cs: 1,
                },
                1.0,
                product_threads(o * nt * c),
            );
        }
    }
    // Each output plane: Y = Aᵀ M A per tile, plus the bias, cut to h x w; separable as the
    // input transform, `Aᵀ` over whole rows of tiles first, then `A` along the output rows.
    let mut out = vec![0.0f32; b * o * h * w];
    for_each_task(&mut out, h * w, &|out, k, scratch| {
        let (bi, oi) = (k / o, k % o);
        let mm = &m[oi * 16 * nt..][..16 * nt];
        let bias = bs[oi];
        scratch.clear();
        scratch.resize(8 * tw, 0.0);
        simd(
            #[inline(always)]
            || {
                for ty in 0..th {
                    let tile = bi * tiles + ty * tw;
                    let row = |xi: usize| &mm[xi * nt + tile..][..tw];
                    // t[i][s] = (Aᵀ M)[i][s] for the row of tiles: 2 x 4 rows of tw.
                    for s in 0..4 {
                        let (m0, m1, m2, m3) = (row(s), row(4 + s), row(8 + s), row(12 + s));
                        let (t0, t1) = scratch.split_at_mut(4 * tw);
                        let (t0, t1) = (&mut t0[s * tw..][..tw], &mut t1[s * tw..][..tw]);
                        for x in 0..tw {
                            t0[x] = m0[x] + m1[x] + m2[x];
                            t1[x] = m1[x] - m2[x] - m3[x];
                        }
                    }
                    for i in 0..2 {
                        let y = 2 * ty + i;
                        if y >= h {
                            break;
                        }
                        let t = &scratch[i * 4 * tw..][..4 * tw];
                        let (t0, t1, t2, t3) =
                            (&t[..tw], &t[tw..2 * tw], &t[2 * tw..3 * tw], &t[3 * tw..]);
                        let dst = &mut out[y * w..][..w];
                        let pairs = w / 2;
                        for x in 0..pairs {
                            dst[2 * x] = t0[x] + t1[x] + t2[x] + bias;
                            dst[2 * x + 1] = t1[x] - t2[x] - t3[x] + bias;
                        }
                        if w % 2 == 1 {
                            dst[w - 1] = t0[pairs] + t1[pairs] + t2[pairs] + bias;
                        }
                    }
                }
            },
        );
    });
    WINOGRAD_BUFFERS.set(buffers);
    out
}

/// Products at least this large (multiply-adds) are split between threads, as Flex does.
#[cfg(threads)]
const PARALLEL_PRODUCT: usize = 192 * 192 * 192;

/// Threads for a matrix product of `ops` multiply-adds: the kernels' ([`threads`]) from
/// [`PARALLEL_PRODUCT`] up, else (and in a wasm build without shared memory) the calling
/// thread's alone.
fn product_threads(ops: usize) -> usize {
    #[cfg(threads)]
    if ops >= PARALLEL_PRODUCT {
        return threads();
    }
    #[cfg(not(threads))]
    let _ = ops;
    1
}

/// `x W + b` and its residual forms in one product: the output starts as the bias (plus the
/// residual) and the product is accumulated into it, so there is no separate bias or
/// residual pass; the gated form scales the product and adds the residual in one pass.
fn linear_into(
    x: FlexTensor,
    weight: FlexTensor,
    bias: FlexTensor,
    residual: Residual,
) -> FlexTensor {
    let (x, weight, bias) = (
        x.to_contiguous(),
        weight.to_contiguous(),
        bias.to_contiguous(),
    );
    let mut dims = x.layout().shape().to_vec();
    let wdims = weight.layout().shape().to_vec();
    let [k, n] = wdims[..] else {
        panic!("linear takes a weight [inputs, outputs], got {wdims:?}");
    };
    assert_eq!(
        dims.last().copied(),
        Some(k),
        "linear: input {dims:?} against weight {wdims:?}"
    );
    assert_eq!(bias.layout().shape().to_vec(), [n], "linear: bias");
    let rows = dims[..dims.len() - 1].iter().product::<usize>();
    *dims.last_mut().expect("at least one axis") = n;
    let (xs, ws, bs) = (values(&x), values(&weight), values(&bias));
    let sized = |t: &FlexTensor, what: &str| {
        assert_eq!(t.layout().shape().to_vec(), dims, "linear: {what}");
    };
    let (mut out, gated) = match residual {
        Residual::None => {
            let mut out = Vec::with_capacity(rows * n);
            for _ in 0..rows {
                out.extend_from_slice(bs);
            }
            (out, None)
        }
        Residual::Add(residual) => {
            sized(&residual, "residual");
            let residual = residual.to_contiguous();
            let mut out = Vec::with_capacity(rows * n);
            if n > 0 {
                simd(
                    #[inline(always)]
                    || {
                        for r in values(&residual).chunks_exact(n) {
                            out.extend(r.iter().zip(bs).map(|(r, b)| r + b));
                        }
                    },
                );
            }
            (out, None)
        }
        Residual::Gated { gate, residual } => {
            sized(&residual, "residual");
            let [b, ..] = dims[..] else {
                panic!("gated_linear_add takes x [batch, tokens, inputs], got {dims:?}");
            };
            assert_eq!(
                gate.layout().shape().to_vec(),
                [b, n],
                "gated_linear_add: gate"
            );
            (
                vec![0.0f32; rows * n],
                Some((gate.to_contiguous(), residual.to_contiguous(), b)),
            )
        }
    };
    if rows * n > 0 {
        // SAFETY: `out` is `[rows, n]`, `xs` `[rows, k]` and `ws` `[k, n]`, all row-major
        // and contiguous (checked above); `out` aliases neither input.
        unsafe {
            product(
                [rows, n, k],
                Output {
                    ptr: out.as_mut_ptr(),
                    rs: n,
                    accumulate: gated.is_none(),
                },
                Operand {
                    ptr: xs.as_ptr(),
                    rs: k as isize,
                    cs: 1,
                },
                Operand {
                    ptr: ws.as_ptr(),
                    rs: n as isize,
                    cs: 1,
                },
                1.0,
                product_threads(rows * n * k),
            );
        }
    }
    if let Some((gate, residual, batches)) = gated {
        let (gs, rs) = (values(&gate), values(&residual));
        let tokens = rows / batches.max(1);
        if n > 0 {
            let per = rows_per_task(n);
            par_rows(&mut out, rs, per * n, per * n, &|t, o, r| {
                simd(
                    #[inline(always)]
                    || {
                        let pairs = o.chunks_exact_mut(n).zip(r.chunks_exact(n));
                        for (j, (o, r)) in pairs.enumerate() {
                            let g = &gs[(t * per + j) / tokens * n..][..n];
                            for (((o, r), g), b) in o.iter_mut().zip(r).zip(g).zip(bs) {
                                *o = r + g * (*o + b);
                            }
                        }
                    },
                )
            });
        }
    }
    tensor(out, dims)
}

/// Query rows per block of [`attend`]: as many as keep the block's scores within
/// [`MAX_SCORES`], at least one.
fn query_block(n: usize, m: usize) -> usize {
    (MAX_SCORES / m.max(1)).clamp(1, n.max(1))
}

/// Scratch values [`attend`] needs for `n` queries and `m` keys.
fn scores_len(n: usize, m: usize) -> usize {
    query_block(n, m) * m
}

/// One head of attention, `o = softmax(scale q k^T) v` for contiguous `q [n, d]`, `k [m, d]`
/// and `v [m, e]`, into the rows of `o` that start every `row` values (`row >= e`). The
/// queries go in blocks (see [`query_block`]): each block's rows of scores are whole, so the
/// softmax is exact, and long sequences need no more than [`MAX_SCORES`] of scratch.
fn attend(
    [q, k, v]: [&[f32]; 3],
    [n, m, d, e]: [usize; 4],
    scale: f32,
    scores: &mut [f32],
    o: &mut [f32],
    row: usize,
) {
    assert!(q.len() >= n * d && k.len() >= m * d && v.len() >= m * e);
    assert!(scores.len() >= scores_len(n, m) && (n == 0 || o.len() >= (n - 1) * row + e));
    let block = query_block(n, m);
    for first in (0..n).step_by(block) {
        let rows = block.min(n - first);
        let q = &q[first * d..][..rows * d];
        let o = &mut o[first * row..];
        attend_block(
            [q, k, v],
            [rows, m, d, e],
            scale,
            &mut scores[..rows * m],
            o,
            row,
        );
    }
}

/// [`attend`] for one block of `n` queries, with `scores` of exactly `n m` values.
fn attend_block(
    [q, k, v]: [&[f32]; 3],
    [n, m, d, e]: [usize; 4],
    scale: f32,
    scores: &mut [f32],
    o: &mut [f32],
    row: usize,
) {
    // SAFETY: every pointer spans its slice with the strides given (checked above), and
    // `scores`, `o` do not alias the inputs.
    unsafe {
        // scores = scale * q k^T  (k read as a column-major [d, m])
        product(
            [n, m, d],
            Output {
                ptr: scores.as_mut_ptr(),
                rs: m,
                accumulate: false,
            },
            Operand {
                ptr: q.as_ptr(),
                rs: d as isize,
                cs: 1,
            },
            Operand {
                ptr: k.as_ptr(),
                rs: 1,
                cs: d as isize,
            },
            scale,
            1,
        );
    }
    simd(
        #[inline(always)]
        || {
            for r in scores.chunks_exact_mut(m) {
                softmax_row(r);
            }
        },
    );
    // SAFETY: as above.
    unsafe {
        product(
            [n, e, m],
            Output {
                ptr: o.as_mut_ptr(),
                rs: row,
                accumulate: false,
            },
            Operand {
                ptr: scores.as_ptr(),
                rs: m as isize,
                cs: 1,
            },
            Operand {
                ptr: v.as_ptr(),
                rs: e as isize,
                cs: 1,
            },
            1.0,
            1,
        );
    }
}

/// Rotates one head's row `x` ("rotate half"): `out = x cos + [-x2, x1] sin`.
#[inline(always)]
fn rotate_row(x: &[f32], cos: &[f32], sin: &[f32], out: &mut [f32]) {
    let half = x.len() / 2;
    let (x1, x2) = x.split_at(half);
    let (o1, o2) = out.split_at_mut(half);
    let (c1, c2) = cos.split_at(half);
    let (s1, s2) = sin.split_at(half);
    for i in 0..half {
        o1[i] = x1[i] * c1[i] - x2[i] * s1[i];
        o2[i] = x2[i] * c2[i] + x1[i] * s2[i];
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
        .expect("a kernel of four axes was given another rank")
}

fn tensor(values: Vec<f32>, dims: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, Shape::from(dims)))
}

#[cfg(threads)]
thread_local! {
    /// Whether this thread runs the kernels on itself alone (see [`serial_join`]).
    static SERIAL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `a` and `b` at once, one per thread of the pool, each keeping its kernels on its own
/// thread: two independent network calls then run side by side without handing each other
/// pieces of their operations (which, at DiT-S sizes, made them 1.6x slower than one batch).
#[cfg(threads)]
pub(super) fn serial_join<A: Send, B: Send>(
    a: impl FnOnce() -> A + Send,
    b: impl FnOnce() -> B + Send,
) -> (A, B) {
    rayon::join(|| serial(a), || serial(b))
}

/// `f()` with this thread's kernels kept on it (restored afterwards, also on a panic).
#[cfg(threads)]
fn serial<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            SERIAL.set(self.0);
        }
    }
    let _restore = Restore(SERIAL.replace(true));
    f()
}

/// Threads the kernels split their work between: the pool's, one inside [`serial_join`] and
/// in a wasm build without shared memory (see `cfg(threads)` in the build script).
pub(super) fn threads() -> usize {
    #[cfg(threads)]
    if !SERIAL.get() {
        return rayon::current_num_threads();
    }
    1
}

/// Rows of `width` outputs per task: about 16 K outputs, at least one row.
fn rows_per_task(width: usize) -> usize {
    ((1 << 14) / width).max(1)
}

/// Rows of [`par_rows`]: `(chunk index, out_chunk, in_chunk)`.
type RowsFn<'a> = dyn Fn(usize, &mut [f32], &[f32]) + Sync + 'a;

/// `f(index, out_chunk, in_chunk)` over matching chunks of `out` and `input`, on the thread pool
/// (see [`threads`]).
fn par_rows(out: &mut [f32], input: &[f32], out_chunk: usize, in_chunk: usize, f: &RowsFn<'_>) {
    #[cfg(threads)]
    if threads() > 1 {
        use rayon::prelude::*;
        out.par_chunks_mut(out_chunk)
            .zip(input.par_chunks(in_chunk))
            .enumerate()
            .for_each(|(k, (o, i))| f(k, o, i));
        return;
    }
    for (k, (o, i)) in out
        .chunks_mut(out_chunk)
        .zip(input.chunks(in_chunk))
        .enumerate()
    {
        f(k, o, i);
    }
}

/// One task (a head of attention, a block of a convolution): `(out_chunk, index, scratch)`.
type TaskFn<'a> = dyn Fn(&mut [f32], usize, &mut Vec<f32>) + Sync + 'a;

/// `task(out_chunk, index, scratch)` for each `chunk` of `out`, on the thread pool (see
/// [`threads`]).
fn for_each_task(out: &mut [f32], chunk: usize, task: &TaskFn<'_>) {
    #[cfg(threads)]
    if threads() > 1 {
        use rayon::prelude::*;
        out.par_chunks_mut(chunk)
            .enumerate()
            .for_each_init(Vec::new, |scratch, (i, o)| task(o, i, scratch));
        return;
    }
    let mut scratch = Vec::new();
    for (i, o) in out.chunks_mut(chunk).enumerate() {
        task(o, i, &mut scratch);
    }
}

/// Runs `f` compiled for AVX-512 (F, VL, BW, DQ) or else AVX2 + FMA when the CPU has them,
/// else as built. Mark the closure `#[inline(always)]`: only a closure inlined into the
/// feature-enabled copy is compiled for it (without the mark LLVM kept the softmax and GELU
/// loops out of line, as SSE code, seen in `perf`).
#[inline(always)]
fn simd<F: FnOnce()>(f: F) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")]
        unsafe fn with_avx512<F: FnOnce()>(f: F) {
            f()
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn with_avx2<F: FnOnce()>(f: F) {
            f()
        }
        if has!("avx512f") && has!("avx512vl") && has!("avx512bw") && has!("avx512dq") {
            // SAFETY: the CPU has the features just checked.
            return unsafe { with_avx512(f) };
        }
        if has!("avx2") && has!("fma") {
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

/// Mean and (biased) variance of `x`, as GroupNorm takes them: the variance about the mean.
#[inline(always)]
fn mean_var(x: &[f32]) -> (f64, f64) {
    let n = x.len().max(1) as f64;
    let mean = lanes_sum(x, |v| v) / n;
    let m = mean as f32;
    (mean, lanes_sum(x, |v| (v - m) * (v - m)) / n)
}

/// `Σ f(v)` over `x`: eight running `f32` lanes (so the loop vectorises), added up in `f64`.
#[inline(always)]
fn lanes_sum(x: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut lanes = [0.0f32; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for (l, v) in lanes.iter_mut().zip(c) {
            *l += f(*v);
        }
    }
    let tail: f64 = chunks.remainder().iter().map(|v| f(*v) as f64).sum();
    lanes.iter().map(|l| *l as f64).sum::<f64>() + tail
}

/// The larger of `a` and `b` (`a` when `b` is NaN), by a comparison: `f32::max` becomes a
/// call to `fmaxf` on wasm32 (whose `max` instruction treats NaN otherwise), which kept the
/// softmax's reduction from vectorising there.
#[inline(always)]
fn larger(a: f32, b: f32) -> f32 {
    if b > a { b } else { a }
}

/// In-place softmax of one row, with eight running lanes so the reductions vectorise.
#[inline(always)]
fn softmax_row(row: &mut [f32]) {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut chunks = row.chunks_exact(8);
    for c in &mut chunks {
        for (l, v) in lanes.iter_mut().zip(c) {
            *l = larger(*l, *v);
        }
    }
    let max = chunks.remainder().iter().fold(
        lanes.into_iter().fold(f32::NEG_INFINITY, larger),
        |a, &b| larger(a, b),
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
        // Longer than one block of queries: 600 x 600 scores, blocks of 436 rows.
        let (q, k) = (
            Tensor::<4>::random([1, 1, 600, 8], normal, &dev),
            Tensor::<4>::random([1, 1, 600, 8], normal, &dev),
        );
        let v = Tensor::<4>::random([1, 1, 600, 5], normal, &dev);
        let want = super::super::attention_tensor(q.clone(), k.clone(), v.clone());
        assert!(max_diff(attention(q, k, v), want) < 1e-5);
        let h = Tensor::<3>::random([3, 5, 40], normal, &dev).narrow(2, 4, 34);
        assert!(max_diff(geglu(h.clone()), super::super::geglu_tensor(h)) < 1e-5);
        let x = Tensor::<3>::random([3, 7, 1000], normal, &dev).swap_dims(1, 2);
        assert!(max_diff(gelu_tanh(x.clone()), gelu_approximate(x)) < 1e-5);
    }

    #[test]
    fn rope_attention_equals_the_tensor_version() {
        let dev = Device::flex();
        let normal = Distribution::Normal(0.0, 1.0);
        // 3 sequences of 10 positions, 2 heads of 6; the packed rows come strided.
        let qkv = Tensor::<3>::random([3, 36, 10], normal, &dev).swap_dims(1, 2);
        let angles = Tensor::<2>::random([10, 6], Distribution::Uniform(-3.0, 3.0), &dev);
        let (cos, sin) = (angles.clone().cos(), angles.sin());
        let want = super::super::rope_attention_tensor(qkv.clone(), 2, &cos, &sin);
        let got = super::super::rope_attention(qkv, 2, &cos, &sin);
        assert_eq!(got.dims(), [3, 10, 12]);
        assert!(max_diff(got, want) < 1e-5);
    }

    #[test]
    fn modulated_norm_equals_the_tensor_version() {
        let dev = Device::flex();
        // Batch 3 of 700 tokens (rows of several tasks), offset far from zero, strided.
        let x =
            Tensor::<3>::random([3, 40, 700], Distribution::Normal(5.0, 3.0), &dev).swap_dims(1, 2);
        let shift = Tensor::<2>::random([3, 40], Distribution::Default, &dev);
        let scale = Tensor::<2>::random([3, 40], Distribution::Default, &dev);
        let want =
            super::super::modulated_norm_tensor(x.clone(), shift.clone(), scale.clone(), 1e-6);
        let got = super::super::modulated_norm(x, shift, scale, 1e-6);
        assert!(max_diff(got, want) < 1e-4);
    }

    #[test]
    fn linear_kernels_equal_linear_forward_and_the_adds() {
        use burn::nn::LinearConfig;
        let dev = Device::flex();
        let normal = Distribution::Normal(0.0, 1.0);
        // Large enough to split the product between threads; a bias-less layer too.
        for (bias, tokens) in [(true, 700), (false, 5)] {
            let linear = LinearConfig::new(48, 200).with_bias(bias).init(&dev);
            // Strided, as the models pass them.
            let x = Tensor::<3>::random([3, 48, tokens], normal, &dev).swap_dims(1, 2);
            let residual = Tensor::<3>::random([3, 200, tokens], normal, &dev).swap_dims(1, 2);
            let gate = Tensor::<2>::random([3, 200], normal, &dev);
            let plain = linear.forward(x.clone());
            let got = super::super::linear(&linear, x.clone());
            assert!(max_diff(got, plain.clone()) < 1e-4);
            let got = super::super::linear_add(&linear, x.clone(), residual.clone());
            assert!(max_diff(got, residual.clone() + plain.clone()) < 1e-4);
            let got = super::super::gated_linear_add(&linear, x, gate.clone(), residual.clone());
            assert!(max_diff(got, residual + gate.unsqueeze_dim(1) * plain) < 1e-4);
        }
        // Rank 4 (the autoencoder's feed-forward) and rank 2.
        let linear = LinearConfig::new(16, 24).init(&dev);
        let x = Tensor::<4>::random([2, 3, 5, 16], normal, &dev);
        let got = super::super::linear(&linear, x.clone());
        assert!(max_diff(got, linear.forward(x)) < 1e-4);
        let x = Tensor::<2>::random([7, 16], normal, &dev);
        let got = super::super::linear(&linear, x.clone());
        assert!(max_diff(got, linear.forward(x)) < 1e-4);
    }

    /// A 3x3 convolution layer of `cin -> cout` channels, padding 1, random weights.
    fn conv_layer(cin: usize, cout: usize, bias: bool, stride: usize) -> burn::nn::conv::Conv2d {
        burn::nn::conv::Conv2dConfig::new([cin, cout], [3, 3])
            .with_stride([stride, stride])
            .with_padding(burn::nn::PaddingConfig2d::Explicit(1, 1, 1, 1))
            .with_bias(bias)
            .init(&Device::flex())
    }

    #[test]
    fn conv3x3_equals_burns_conv2d() {
        let dev = Device::flex();
        let conv = |cin, cout, bias| conv_layer(cin, cout, bias, 1);
        let normal = Distribution::Normal(0.0, 1.0);
        // Batch 2, not square, more outputs than inputs; a strided (permuted) input; one row.
        for (x, conv) in [
            (
                Tensor::<4>::random([2, 5, 7, 9], normal, &dev),
                conv(5, 8, true),
            ),
            (
                Tensor::<4>::random([1, 6, 11, 3], normal, &dev).swap_dims(2, 3),
                conv(6, 4, false),
            ),
            (
                Tensor::<4>::random([1, 2, 1, 4], normal, &dev),
                conv(2, 3, true),
            ),
        ] {
            assert!(super::super::conv3x3_applies(&conv));
            let want = conv.forward(x.clone());
            let got = super::super::conv2d(&conv, x);
            assert_eq!(got.dims(), want.dims());
            assert!(max_diff(got, want) < 1e-5);
        }
        assert!(!super::super::conv3x3_applies(&conv_layer(2, 3, true, 2)));
    }

    #[test]
    fn winograd_conv3x3_equals_burns_conv2d() {
        let dev = Device::flex();
        let conv = |cin, cout, bias| conv_layer(cin, cout, bias, 1);
        let normal = Distribution::Normal(0.0, 1.0);
        // Batch 2 with odd sides (partial tiles); then a smaller strided one (the buffers kept
        // from the first call are larger: nothing of it may leak); one pixel; a wide row.
        for (x, conv) in [
            (
                Tensor::<4>::random([2, 128, 9, 7], normal, &dev),
                conv(128, 136, true),
            ),
            (
                Tensor::<4>::random([1, 130, 5, 4], normal, &dev).swap_dims(2, 3),
                conv(130, 128, false),
            ),
            (
                Tensor::<4>::random([1, 128, 1, 1], normal, &dev),
                conv(128, 128, true),
            ),
            (
                Tensor::<4>::random([1, 128, 2, 33], normal, &dev),
                conv(128, 129, true),
            ),
        ] {
            let [_, c, _, _] = x.dims();
            assert!(winograd_pays(c, conv.weight.dims()[0]));
            let want = conv.forward(x.clone());
            let got = super::super::conv2d(&conv, x);
            assert_eq!(got.dims(), want.dims());
            let scale: f32 = want.clone().abs().max().into_scalar();
            let diff = max_diff(got, want);
            assert!(diff < 1e-4 * scale.max(1.0), "{diff} at scale {scale}");
        }
        assert!(!winograd_pays(64, 320) && !winograd_pays(320, 4));
    }

    #[test]
    fn group_norm_equals_burns_group_norm_then_silu() {
        let dev = Device::flex();
        // A permuted input (strided), an offset far from zero, random affine parameters.
        let x = Tensor::<4>::random([2, 9, 7, 12], Distribution::Normal(3.0, 2.0), &dev)
            .swap_dims(1, 3);
        let mut norm = burn::nn::GroupNormConfig::new(4, 12).init(&dev);
        let affine = |t: Tensor<1>| Tensor::<1>::random(t.dims(), Distribution::Default, &dev);
        norm.gamma = norm.gamma.map(|p| p.map(affine));
        norm.beta = norm.beta.map(|p| p.map(affine));
        for silu in [false, true] {
            let want = super::super::group_norm_tensor(&norm, x.clone(), silu);
            let got = super::super::group_norm(&norm, x.clone(), silu);
            assert!(max_diff(got, want) < 1e-5, "silu {silu}");
        }
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
