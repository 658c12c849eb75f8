//! The CMD autoencoder (spec section 1): a video becomes a content frame (a softmax-over-time
//! weighted sum of its frames) and a small motion latent (transformer features averaged over x
//! and over y); a decoder broadcasts and sums them back into a video.
//!
//! - [`config`]: sizes, the paper's Table 5 presets, derived shapes and FLOPs.
//! - [`rope`]: rotary position embeddings (1-D over time, axial 2-D over space).
//! - [`block`]: attention, GEGLU feed-forward and the divided space-time block.
//! - [`patch`]: patchify / un-patchify of frame stacks.
//! - [`motion`]: joining and splitting the two motion planes.
//! - `init`: the decoder's starting weights (it starts by copying the content frame).
//! - [`model`]: the [`Autoencoder`] itself.

pub mod block;
pub mod config;
mod init;
pub mod model;
pub mod motion;
pub mod patch;
pub mod rope;

pub use config::{AutoencoderConfig, OutputMode, PixelHead};
pub use model::{Autoencoder, Encoded};
