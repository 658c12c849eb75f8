//! Pipelines: models and schedulers put together into samplers (diffusers' split: the networks
//! live in their own modules, the schedulers are small pure objects, and a pipeline is the
//! readable loop that joins them).
//!
//! - [`noise`]: seeded standard-normal noise made on the host, so a seed gives the same sample
//!   on every device.
//! - [`denoise`]: the classifier-free-guided sampling loop over a UNet (DDIM or DPM-Solver++).
//! - [`cmd`]: CMD's text-to-video sampling (prompt -> content frame -> motion latent ->
//!   frames), image-to-video and motion transfer.
//! - [`generation`]: one generation taken a step at a time ([`Generation`]), which the CLI runs
//!   through and the browser awaits between steps.
//! - [`bundle`]: a whole pixel-mode CMD model as a folder of plain files (what ships).
//! - [`stable_diffusion`]: a diffusers Stable Diffusion folder (tokenizer, text encoder, UNet,
//!   VAE, scheduler config) loaded from its files, and text-to-image sampling with it.
//! - [`single_file`]: a single-file SD 1.x / 2.x checkpoint (the original LDM layout) read into
//!   the same models.

pub mod bundle;
pub mod cmd;
pub mod denoise;
pub mod generation;
pub mod noise;
pub mod single_file;
pub mod stable_diffusion;

pub use cmd::{CmdPipeline, Codec, GenerateOptions, GuidedCall, Stage, Video, guided_motion};
pub use denoise::{
    GuidedNetwork, Rows, SampleLoop, Sampler, SamplingOptions, denoise, guided, rows_of,
    sample_loop,
};
pub use generation::Generation;
pub use noise::standard_normal;
pub use stable_diffusion::{LoadError, StableDiffusion};
