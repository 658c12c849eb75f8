//! Checking what a model produced before it is written.

use anyhow::Result;
use burn::tensor::Tensor;
use cmd_train::tensors::to_vec;

/// Fails when a model's output holds NaN or infinity (its weights are broken, e.g. a run that
/// blew up): said plainly, instead of writing black frames.
pub fn ensure_finite<const D: usize>(t: &Tensor<D>, what: &str) -> Result<()> {
    let values = to_vec(t.clone())?;
    if let Some(v) = values.iter().find(|v| !v.is_finite()) {
        anyhow::bail!(
            "the model produced {v} in its {what}: its weights are broken (a run that blew \
             up?); nothing was written"
        );
    }
    Ok(())
}
