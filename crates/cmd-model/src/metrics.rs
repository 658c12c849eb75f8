//! Reconstruction quality: PSNR and SSIM on clips stored as `f32` in `[0, 1]`.
//!
//! SSIM follows Wang et al. 2004 (and scikit-image's `structural_similarity` with
//! `gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1`): an 11x11
//! Gaussian window, `K1 = 0.01`, `K2 = 0.03`, averaged over the windows that fit inside the frame,
//! then over channels and frames.

/// Peak signal-to-noise ratio in dB for signals in `[0, 1]`; `inf` when they are equal.
///
/// # Panics
/// If the slices differ in length or are empty.
pub fn psnr(a: &[f32], b: &[f32]) -> f64 {
    assert!(!a.is_empty() && a.len() == b.len(), "psnr: length mismatch");
    let mse = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    -10.0 * mse.log10()
}

/// Mean SSIM of two stacks of planes laid out `[planes, height, width]` (e.g. `L * C` planes).
///
/// # Panics
/// If the slices are not `planes * height * width` long.
pub fn ssim(a: &[f32], b: &[f32], height: usize, width: usize) -> f64 {
    let plane = height * width;
    assert!(
        plane > 0 && a.len() == b.len() && a.len().is_multiple_of(plane),
        "ssim: bad sizes"
    );
    let window = gaussian_window(11.min(height).min(width), 1.5);
    let planes = a.len() / plane;
    (0..planes)
        .map(|i| {
            let range = i * plane..(i + 1) * plane;
            ssim_plane(&a[range.clone()], &b[range], height, width, &window)
        })
        .sum::<f64>()
        / planes as f64
}

/// Normalised 1-D Gaussian of `size` taps.
fn gaussian_window(size: usize, sigma: f64) -> Vec<f64> {
    let centre = (size as f64 - 1.0) / 2.0;
    let w: Vec<f64> = (0..size)
        .map(|i| (-((i as f64 - centre).powi(2)) / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f64 = w.iter().sum();
    w.into_iter().map(|v| v / total).collect()
}

fn ssim_plane(a: &[f32], b: &[f32], height: usize, width: usize, window: &[f64]) -> f64 {
    const C1: f64 = 0.01 * 0.01;
    const C2: f64 = 0.03 * 0.03;
    let k = window.len();
    let (oh, ow) = (height - k + 1, width - k + 1);
    let mut total = 0.0;
    for y in 0..oh {
        for x in 0..ow {
            let (mut ma, mut mb, mut saa, mut sbb, mut sab) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for (dy, wy) in window.iter().enumerate() {
                for (dx, wx) in window.iter().enumerate() {
                    let w = wy * wx;
                    let i = (y + dy) * width + x + dx;
                    let (va, vb) = (a[i] as f64, b[i] as f64);
                    ma += w * va;
                    mb += w * vb;
                    saa += w * va * va;
                    sbb += w * vb * vb;
                    sab += w * va * vb;
                }
            }
            let (var_a, var_b, cov) = (saa - ma * ma, sbb - mb * mb, sab - ma * mb);
            total += ((2.0 * ma * mb + C1) * (2.0 * cov + C2))
                / ((ma * ma + mb * mb + C1) * (var_a + var_b + C2));
        }
    }
    total / (oh * ow) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psnr_matches_the_closed_form() {
        let a = vec![0.5f32; 100];
        let b = vec![0.6f32; 100];
        // MSE = 0.01 -> 20 dB.
        assert!((psnr(&a, &b) - 20.0).abs() < 1e-4);
        assert!(psnr(&a, &a).is_infinite());
    }

    #[test]
    fn ssim_of_constant_planes_matches_the_closed_form() {
        // Flat planes: variances and covariance are 0, so SSIM = (2ab + C1) / (a² + b² + C1).
        let (va, vb) = (0.3f64, 0.5f64);
        let a = vec![va as f32; 2 * 16 * 20];
        let b = vec![vb as f32; 2 * 16 * 20];
        let c1 = 1e-4;
        let want = (2.0 * va * vb + c1) / (va * va + vb * vb + c1);
        assert!((ssim(&a, &b, 16, 20) - want).abs() < 1e-5);
        assert!((ssim(&a, &a, 16, 20) - 1.0).abs() < 1e-9);
    }

    /// The planes of `tests/reference/ssim_reference.py`.
    fn reference_planes(h: usize, w: usize) -> (Vec<f32>, Vec<f32>) {
        let mut a = Vec::with_capacity(h * w);
        let mut b = Vec::with_capacity(h * w);
        for y in 0..h {
            for x in 0..w {
                let (xf, yf) = (x as f64, y as f64);
                let va = 0.5 + 0.4 * (0.3 * xf + 0.2 * yf).sin() * (0.05 * xf * yf).cos();
                let vb = (va + 0.1 * (1.7 * xf + 2.3 * yf).sin()).clamp(0.0, 1.0);
                a.push(va as f32);
                b.push(vb as f32);
            }
        }
        (a, b)
    }

    #[test]
    fn ssim_matches_scikit_image() {
        // scikit-image 0.25.2 structural_similarity(gaussian_weights=True, sigma=1.5,
        // use_sample_covariance=False, data_range=1.0), from tests/reference/ssim_reference.py.
        const REFERENCE: f64 = 0.909_144_157_3;
        let (a, b) = reference_planes(24, 32);
        let value = ssim(&a, &b, 24, 32);
        assert!((value - REFERENCE).abs() < 1e-6, "{value} vs {REFERENCE}");
    }

    #[test]
    fn ssim_drops_with_structure_loss() {
        let (h, w) = (24, 24);
        let a: Vec<f32> = (0..h * w)
            .map(|i| ((i * 37 % 101) as f32) / 100.0)
            .collect();
        let blurred: Vec<f32> = (0..h * w)
            .map(|i| (a[i] + a[(i + 1) % (h * w)] + a[(i + w) % (h * w)]) / 3.0)
            .collect();
        let s = ssim(&a, &blurred, h, w);
        assert!(s < 0.9 && s > -1.0, "{s}");
    }
}
