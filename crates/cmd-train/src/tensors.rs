//! Moving clips and values between the host and model tensors.

use burn::tensor::{Device, Tensor, TensorData};
use cmd_video::Clip;

use crate::error::{Result, TrainError};

/// A batch of equally sized clips as `[B, L, 3, H, W]` in `[-1, 1]`.
pub fn clips_to_tensor(clips: &[Clip], device: &Device) -> Tensor<5> {
    let (l, h, w) = (
        clips[0].len(),
        clips[0].height() as usize,
        clips[0].width() as usize,
    );
    let data: Vec<f32> = clips.iter().flat_map(|c| c.to_signed_f32()).collect();
    Tensor::from_data(TensorData::new(data, [clips.len(), l, 3, h, w]), device)
}

/// A tensor's values on the host. A failure of the device (for example a GPU that ran out of
/// memory) surfaces here, as an error rather than a panic.
pub fn to_vec<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    let data = t.try_into_data_as::<f32>().map_err(device_failed)?;
    Ok(data
        .try_into_vec::<f32>()
        .expect("data was converted to f32"))
}

/// One value on the host (see [`to_vec`]).
pub fn to_scalar(t: Tensor<1>) -> Result<f64> {
    Ok(t.try_into_scalar::<f32>().map_err(device_failed)? as f64)
}

fn device_failed(e: impl std::fmt::Display) -> TrainError {
    TrainError::Compute(e.to_string())
}
