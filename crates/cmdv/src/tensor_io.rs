//! Moving clips between `cmd_video::Clip` and model tensors.

use burn::tensor::{Device, Tensor, TensorData};
use cmd_video::Clip;

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

/// A tensor's values on the host.
pub fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 data")
}
