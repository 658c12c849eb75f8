//! The motion latent `z = concat(z_y, z_x)` along its last axis: `[B, D, L, H' + W']`.
//!
//! Decision (spec section 1): split in the same order it was joined, `z_y` first. The released
//! code splits in the opposite order, which is only right when `H' = W'`.

use burn::tensor::Tensor;

/// Joins `z_y: [B, D, L, H']` and `z_x: [B, D, L, W']` into `[B, D, L, H' + W']`.
pub fn join(z_y: Tensor<4>, z_x: Tensor<4>) -> Tensor<4> {
    Tensor::cat(vec![z_y, z_x], 3)
}

/// Splits `[B, D, L, H' + W']` back into `(z_y, z_x)` with `z_y` holding the first `grid_h`.
pub fn split(z: Tensor<4>, grid_h: usize) -> (Tensor<4>, Tensor<4>) {
    let total = z.dims()[3];
    let z_y = z.clone().narrow(3, 0, grid_h);
    let z_x = z.narrow(3, grid_h, total - grid_h);
    (z_y, z_x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    #[test]
    fn split_inverts_join_when_the_grid_is_not_square() {
        let dev = Device::flex();
        let z_y = Tensor::<4>::random([2, 8, 16, 32], Distribution::Default, &dev);
        let z_x = Tensor::<4>::random([2, 8, 16, 64], Distribution::Default, &dev);
        let z = join(z_y.clone(), z_x.clone());
        assert_eq!(z.dims(), [2, 8, 16, 96]);
        let (y, x) = split(z, 32);
        assert_eq!(y.to_data(), z_y.to_data());
        assert_eq!(x.to_data(), z_x.to_data());
    }
}
