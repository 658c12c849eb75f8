//! Rotary position embeddings (RoFormer, Su et al. 2021), as in PVDM/CMD's TimeSformer:
//! 1-D over the frame index in temporal attention, axial 2-D over `(h, w)` in spatial attention.
//!
//! Convention ("rotate half"): for a head of width `d`, channel `i` and channel `i + d/2` form a
//! pair that is rotated by the angle `theta_i(pos)`. In 1-D, `theta_i = pos * base^(-2i/d)`.
//! Axially, the first `d/4` pairs turn with the row `h` and the last `d/4` with the column `w`,
//! each with frequencies `base^(-4j/d)` (a 1-D embedding of width `d/2` per axis).
//! A rotation keeps norms, and `<R(m) q, R(n) k>` depends on `m - n` only.

use burn::tensor::{Device, Tensor, TensorData};

use crate::kernels;

/// Precomputed cosines and sines for a sequence of positions, each `[n, head_dim]`.
#[derive(Debug, Clone)]
pub struct Rotary {
    cos: Tensor<2>,
    sin: Tensor<2>,
}

impl Rotary {
    /// 1-D embedding for positions `0..len` (temporal attention).
    pub fn temporal(len: usize, head_dim: usize, base: f64, device: &Device) -> Self {
        let freqs = frequencies(head_dim / 2, head_dim, base);
        let angles: Vec<Vec<f64>> = (0..len)
            .map(|pos| freqs.iter().map(|f| pos as f64 * f).collect())
            .collect();
        Self::from_angles(&angles, head_dim, device)
    }

    /// Axial 2-D embedding for a `rows x cols` grid in row-major order (spatial attention).
    pub fn axial(rows: usize, cols: usize, head_dim: usize, base: f64, device: &Device) -> Self {
        let freqs = frequencies(head_dim / 4, head_dim / 2, base);
        let mut angles = Vec::with_capacity(rows * cols);
        for h in 0..rows {
            for w in 0..cols {
                let row = freqs.iter().map(|f| h as f64 * f);
                let col = freqs.iter().map(|f| w as f64 * f);
                angles.push(row.chain(col).collect());
            }
        }
        Self::from_angles(&angles, head_dim, device)
    }

    /// `angles[pos][pair]` for `head_dim / 2` pairs.
    fn from_angles(angles: &[Vec<f64>], head_dim: usize, device: &Device) -> Self {
        let n = angles.len();
        let table = |f: fn(f64) -> f64| {
            let mut values = Vec::with_capacity(n * head_dim);
            for row in angles {
                // Both members of a pair (i and i + d/2) share the angle.
                values.extend(row.iter().map(|a| f(*a) as f32));
                values.extend(row.iter().map(|a| f(*a) as f32));
            }
            Tensor::<2>::from_data(TensorData::new(values, [n, head_dim]), device)
        };
        Self {
            cos: table(f64::cos),
            sin: table(f64::sin),
        }
    }

    /// Rotates queries or keys.
    ///
    /// # Shapes
    /// - x: `[batch, heads, n, head_dim]` with `n` the number of positions of this embedding
    /// - output: same as x
    pub fn apply(&self, x: Tensor<4>) -> Tensor<4> {
        kernels::rope(x, &self.cos, &self.sin)
    }

    /// Multi-head self-attention of packed `qkv [B, n, 3 H head_dim]` with these positions on
    /// queries and keys (see [`kernels::rope_attention`]); returns `[B, n, H head_dim]`.
    pub fn attention(&self, qkv: Tensor<3>, heads: usize) -> Tensor<3> {
        kernels::rope_attention(qkv, heads, &self.cos, &self.sin)
    }
}

/// `base^(-2i/width)` for `i in 0..count`.
fn frequencies(count: usize, width: usize, base: f64) -> Vec<f64> {
    (0..count)
        .map(|i| base.powf(-2.0 * i as f64 / width as f64))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    fn device() -> Device {
        Device::flex()
    }

    fn to_vec(t: Tensor<4>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    fn norms(t: Tensor<4>) -> Vec<f32> {
        to_vec(t.powf_scalar(2.0).sum_dim(3).sqrt())
    }

    fn assert_close(a: &[f32], b: &[f32], tol: f32) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{x} vs {y}");
        }
    }

    #[test]
    fn rotation_preserves_norms() {
        let dev = device();
        let x = Tensor::<4>::random([2, 3, 16, 32], Distribution::Normal(0.0, 1.0), &dev);
        let t = Rotary::temporal(16, 32, 10000.0, &dev).apply(x.clone());
        assert_close(&norms(t), &norms(x.clone()), 1e-5);
        let x = Tensor::<4>::random([1, 2, 12, 32], Distribution::Normal(0.0, 1.0), &dev);
        let s = Rotary::axial(3, 4, 32, 10000.0, &dev).apply(x.clone());
        assert_close(&norms(s), &norms(x), 1e-5);
    }

    /// Copies one vector to every position: `[1, 1, n, d]`.
    fn same_everywhere(v: &Tensor<4>, n: usize) -> Tensor<4> {
        v.clone().repeat_dim(2, n)
    }

    /// `<R(m) q, R(n) k>` for all pairs of positions, `[n, n]` as a flat vec.
    fn scores(rope: &Rotary, q: &Tensor<4>, k: &Tensor<4>, n: usize) -> Vec<f32> {
        let q = rope.apply(same_everywhere(q, n));
        let k = rope.apply(same_everywhere(k, n));
        to_vec(q.matmul(k.swap_dims(2, 3)))
    }

    #[test]
    fn temporal_scores_depend_only_on_the_offset() {
        let dev = device();
        let n = 16;
        let q = Tensor::<4>::random([1, 1, 1, 64], Distribution::Normal(0.0, 1.0), &dev);
        let k = Tensor::<4>::random([1, 1, 1, 64], Distribution::Normal(0.0, 1.0), &dev);
        let s = scores(&Rotary::temporal(n, 64, 10000.0, &dev), &q, &k, n);
        for m in 0..n {
            for j in 0..n {
                // Same offset j - m as the pair (0, j - m) or (m - j, 0).
                let (m0, j0) = if j >= m { (0, j - m) } else { (m - j, 0) };
                let (a, b) = (s[m * n + j], s[m0 * n + j0]);
                assert!(
                    (a - b).abs() < 1e-4 * (1.0 + b.abs()),
                    "({m},{j}) {a} vs {b}"
                );
            }
        }
        // And it is not trivially constant: position matters.
        assert!((s[1] - s[5]).abs() > 1e-4);
    }

    #[test]
    fn axial_scores_depend_only_on_the_2d_offset() {
        let dev = device();
        let (rows, cols) = (3, 5);
        let n = rows * cols;
        let q = Tensor::<4>::random([1, 1, 1, 32], Distribution::Normal(0.0, 1.0), &dev);
        let k = Tensor::<4>::random([1, 1, 1, 32], Distribution::Normal(0.0, 1.0), &dev);
        let s = scores(&Rotary::axial(rows, cols, 32, 10000.0, &dev), &q, &k, n);
        let at = |a: usize, b: usize| s[a * n + b];
        // (0,0)->(1,2) has the same offset as (1,1)->(2,3) and (2,2)->(3,4) is outside; use
        // (1,2)->(2,4).
        let idx = |h: usize, w: usize| h * cols + w;
        let base = at(idx(0, 0), idx(1, 2));
        for (a, b) in [
            (idx(1, 1), idx(2, 3)),
            (idx(1, 2), idx(2, 4)),
            (idx(0, 1), idx(1, 3)),
        ] {
            assert!((at(a, b) - base).abs() < 1e-4 * (1.0 + base.abs()));
        }
        // Rows and columns are not interchangeable.
        let transposed = at(idx(0, 0), idx(2, 1));
        assert!((transposed - base).abs() > 1e-4);
    }
}
