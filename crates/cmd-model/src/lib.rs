//! # cmd-model
//!
//! The networks of CMD ("Efficient Video Diffusion Models via Content-Frame Motion-Latent
//! Decomposition", Yu et al., ICLR 2024, arXiv 2403.14148), written once on burn's run-time
//! [`Device`](burn::tensor::Device) so the same code runs on the CPU, on Vulkan/WebGPU (WGSL) and
//! on CUDA, and builds for `wasm32-unknown-unknown`.
//!
//! This crate does no file, terminal or network I/O: it takes tensors and returns tensors.
//! Video files, training loops and the command line live in the `cmd-video` and `cmdv` crates.
//!
//! Layout conventions: a batch of clips is `[B, L, C, H, W]` (frames first), values in `[-1, 1]`
//! in pixel mode; a content frame is `[B, C, H, W]`; a motion latent is `[B, D, L, H' + W']`.

#![warn(missing_docs)]

pub mod ae;
pub mod clip;
pub mod dit;
pub mod error;
pub mod kernels;
pub mod metrics;
pub mod pipelines;
pub mod resnet;
pub mod schedulers;
pub mod tokenizer;
pub mod unet;
pub mod vae;
pub mod weights;

pub use ae::{Autoencoder, AutoencoderConfig, Encoded, OutputMode, PixelHead};
pub use error::ModelError;
