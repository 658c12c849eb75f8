//! Patchify and un-patchify stacks of frames. A patch's features are ordered `(c, p1, p2)`.

use burn::tensor::Tensor;

/// `b l c (h p1) (w p2) -> b l (h w) (c p1 p2)`.
///
/// # Shapes
/// - x: `[B, L, C, H, W]` with `H, W` multiples of `p`
/// - output: `[B, L, H/p * W/p, C p p]`
pub fn patchify(x: Tensor<5>, p: usize) -> Tensor<4> {
    let [b, l, c, h, w] = x.dims();
    let (gh, gw) = (h / p, w / p);
    x.reshape([b * l, c, gh, p, gw, p])
        .permute([0, 2, 4, 1, 3, 5]) // (b l) h w c p1 p2
        .reshape([b, l, gh * gw, c * p * p])
}

/// `b l (h w) (c p1 p2) -> b l c (h p1) (w p2)`, the inverse of [`patchify`].
///
/// # Shapes
/// - x: `[B, L, gh * gw, C p p]`
/// - output: `[B, L, C, gh p, gw p]`
pub fn unpatchify(x: Tensor<4>, p: usize, gh: usize, gw: usize) -> Tensor<5> {
    let [b, l, _, f] = x.dims();
    let c = f / (p * p);
    x.reshape([b * l, gh, gw, c, p, p])
        .permute([0, 3, 1, 4, 2, 5]) // (b l) c h p1 w p2
        .reshape([b, l, c, gh * p, gw * p])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution, TensorData};

    #[test]
    fn patchify_round_trips_and_groups_pixels() {
        let dev = Device::flex();
        let x = Tensor::<5>::random([2, 3, 3, 8, 12], Distribution::Default, &dev);
        let p = patchify(x.clone(), 4);
        assert_eq!(p.dims(), [2, 3, 6, 48]);
        let back = unpatchify(p, 4, 2, 3);
        assert_eq!(back.to_data(), x.to_data());

        // A 1x1x1x4x4 ramp with p = 2: patch (0, 1) holds pixels (0..2, 2..4) in row-major order.
        let ramp: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let x = Tensor::<5>::from_data(TensorData::new(ramp, [1, 1, 1, 4, 4]), &dev);
        let p = patchify(x, 2).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(&p[4..8], &[2.0, 3.0, 6.0, 7.0]);
    }
}
