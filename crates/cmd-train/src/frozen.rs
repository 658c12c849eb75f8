//! The frozen parts a diffusion trainer runs on every training device: the codec (the
//! autoencoder that makes content frames and motion latents and, in latent mode, Stable
//! Diffusion's VAE) and the text encoder.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use cmd_model::Encoded;
use cmd_model::clip::ClipTextModel;
use cmd_model::pipelines::Codec;
use cmd_model::tokenizer::ClipTokenizer;
use cmd_video::Clip;
use cmd_video::dataset::Example;

use crate::data::TrainingData;
use crate::error::Result;
use crate::event::TrainEvent;
use crate::tensors::{clips_to_tensor, to_vec};

/// Content frames and motion latents of training clips, kept on the host by clip index. For
/// data whose examples are whole clips (see `Dataset::fixed_examples`) the frozen models
/// then see each clip once instead of at every step. Each clip is encoded on its own, so a
/// kept value never depends on the batch it first came in (a resumed run computes the same
/// numbers as an uninterrupted one). Shared by the training threads of several devices.
#[derive(Default)]
pub struct EncodingCache {
    /// Each clip's content frame and motion latent.
    clips: Mutex<HashMap<usize, [HostTensor; 2]>>,
}

impl EncodingCache {
    /// A cache when every example of `data` is a whole clip (said as a note), else none.
    pub fn for_data(data: &TrainingData, events: &mut dyn FnMut(TrainEvent)) -> Option<Self> {
        data.fixed_examples().then(|| {
            events(TrainEvent::Note(
                "every example is a whole clip: each is encoded once and kept".into(),
            ));
            Self::default()
        })
    }

    /// The kept encodings (an entry is inserted whole, so a thread that panicked left none
    /// half-written).
    fn lock(&self) -> MutexGuard<'_, HashMap<usize, [HostTensor; 2]>> {
        self.clips.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One example's `[C, H, W]` values on the host, and that shape.
type HostTensor = (Vec<f32>, [usize; 3]);

/// A `[1, C, H, W]` tensor's values and its `[C, H, W]`.
fn host(t: Tensor<4>) -> Result<HostTensor> {
    let [_, c, h, w] = t.dims();
    Ok((to_vec(t)?, [c, h, w]))
}

/// Frozen models on one device.
pub struct Frozen {
    /// The autoencoder, and the VAE in front of it in latent mode.
    pub codec: Codec,
    /// The text encoder.
    pub text_encoder: ClipTextModel,
}

impl Frozen {
    /// The same models, gradient-free, on each of `devices`.
    pub fn on_each(self, devices: &[Device]) -> Vec<Self> {
        devices
            .iter()
            .map(|device| Self {
                codec: Codec {
                    autoencoder: self.codec.autoencoder.clone().to_device(device).no_grad(),
                    vae: self
                        .codec
                        .vae
                        .clone()
                        .map(|(c, vae)| (c, vae.to_device(device).no_grad())),
                },
                text_encoder: self.text_encoder.clone().to_device(device).no_grad(),
            })
            .collect()
    }

    /// Content frames and motion latents of clips `[B, L, 3, H, W]`, detached.
    pub fn encode(&self, x: Tensor<5>) -> Encoded {
        let encoded = self.codec.encode(x);
        Encoded {
            content: encoded.content.detach(),
            weights: encoded.weights.detach(),
            motion: encoded.motion.detach(),
        }
    }

    /// Content frames and motion latents of training examples, kept in `cache` by their clip
    /// (without one, every example is encoded now, in one batch).
    pub fn encode_examples(
        &self,
        examples: &[Example],
        cache: Option<&EncodingCache>,
        device: &Device,
    ) -> Result<(Tensor<4>, Tensor<4>)> {
        let Some(cache) = cache else {
            let clips: Vec<Clip> = examples.iter().map(|e| e.frames.clone()).collect();
            let encoded = self.encode(clips_to_tensor(&clips, device));
            return Ok((encoded.content, encoded.motion));
        };
        let indices: Vec<usize> = examples.iter().map(|e| e.clip).collect();
        for example in examples {
            if !cache.lock().contains_key(&example.clip) {
                let clip = std::slice::from_ref(&example.frames);
                let encoded = self.encode(clips_to_tensor(clip, device));
                let entry = [host(encoded.content)?, host(encoded.motion)?];
                cache.lock().entry(example.clip).or_insert(entry);
            }
        }
        let kept = cache.lock();
        let stack = |part: usize| {
            let [c, h, w] = kept[&indices[0]][part].1;
            let values: Vec<f32> = indices
                .iter()
                .flat_map(|i| kept[i][part].0.iter().copied())
                .collect();
            Tensor::<4>::from_data(TensorData::new(values, [indices.len(), c, h, w]), device)
        };
        Ok((stack(0), stack(1)))
    }

    /// Text states for prompts, `[B, 77, D]` (prompts longer than 75 tokens are cut), and the
    /// number of each prompt's own tokens (start, words, end).
    pub fn encode_prompts(
        &self,
        tokenizer: &ClipTokenizer,
        prompts: &[String],
        device: &Device,
    ) -> Result<(Tensor<3>, Vec<usize>)> {
        let mut ids = Vec::with_capacity(prompts.len() * ClipTokenizer::MAX_LEN);
        let mut lengths = Vec::with_capacity(prompts.len());
        for prompt in prompts {
            let tokens = tokenizer.encode(prompt)?;
            ids.extend(tokens.ids);
            lengths.push(tokens.len);
        }
        let states = self
            .text_encoder
            .encode(&ids, ClipTokenizer::MAX_LEN, device)
            .last_hidden_state;
        Ok((states, lengths))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cmd_model::AutoencoderConfig;
    use cmd_model::clip::ClipTextConfig;

    fn close(a: Tensor<4>, b: Tensor<4>) -> bool {
        let (a, b) = (to_vec(a).unwrap(), to_vec(b).unwrap());
        a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| (x - y).abs() <= 1e-5)
    }

    #[test]
    fn kept_encodings_equal_fresh_ones_and_are_reused() {
        let device = Device::flex();
        let frozen = Frozen {
            codec: Codec {
                autoencoder: AutoencoderConfig::preset("tiny")
                    .unwrap()
                    .init(&device)
                    .unwrap(),
                vae: None,
            },
            text_encoder: ClipTextConfig::tiny().init(&device),
        };
        let cfg = frozen.codec.autoencoder.config().clone();
        let clip = |seed: u8| {
            let frames = (0..cfg.frames)
                .map(|f| {
                    image::RgbImage::from_fn(cfg.width as u32, cfg.height as u32, |x, y| {
                        let v = (x * 7 + y * 3 + f as u32 * 11 + seed as u32 * 29) % 256;
                        image::Rgb([v as u8, (255 - v) as u8, seed.wrapping_mul(40)])
                    })
                })
                .collect();
            Clip::new(frames, 8.0).unwrap()
        };
        let example = |clip_index, seed| Example {
            clip: clip_index,
            frames: clip(seed),
        };
        let examples = [example(4, 1), example(9, 2), example(4, 1)];
        let (content, motion) = frozen.encode_examples(&examples, None, &device).unwrap();
        let cache = EncodingCache::default();
        let (kept_content, kept_motion) = frozen
            .encode_examples(&examples, Some(&cache), &device)
            .unwrap();
        assert_eq!(cache.lock().len(), 2, "clip 4 is encoded once");
        assert_eq!(kept_content.dims(), content.dims());
        assert!(close(kept_content.clone(), content));
        assert!(close(kept_motion, motion));
        // Kept values are used from then on, whatever the clips passed are.
        let other = [example(9, 3)];
        let (again, _) = frozen
            .encode_examples(&other, Some(&cache), &device)
            .unwrap();
        assert!(close(again, kept_content.narrow(0, 1, 1)));
    }
}
