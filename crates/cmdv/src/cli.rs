//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// CMD: content-motion latent diffusion for video. Train, inspect and benchmark the video
/// autoencoder that splits a clip into a content frame and a motion latent.
#[derive(Parser, Debug)]
#[command(name = "cmdv", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print a preset's parameter count, latent shapes and FLOPs per clip.
    Info(InfoArgs),
    /// Train the autoencoder on a folder of clips.
    TrainAe(TrainAeArgs),
    /// Split a clip into content and motion, decode it back, and write pictures and scores.
    Reconstruct(ReconstructArgs),
    /// Fine-tune an image diffusion model on the content frames of a trained autoencoder.
    TrainContent(TrainContentArgs),
    /// Sample one image (a content frame) from a Stable Diffusion folder or a train-content run.
    SampleContent(SampleContentArgs),
    /// Train the motion DiT on the motion latents of a trained autoencoder.
    TrainMotion(TrainMotionArgs),
    /// Generate a clip from a text prompt with a trained CMD model.
    Generate(GenerateArgs),
    /// Image to video: a picture becomes the content frame, only the motion is sampled.
    Animate(AnimateArgs),
    /// Motion transfer: the content frame of one clip with the motion of another.
    Transfer(TransferArgs),
    /// Write a trained model (a motion run and the runs it names) as one folder of plain files,
    /// the form that ships and that the browser loads.
    Export(ExportArgs),
    /// Write clips of the procedural teaching dataset (coloured shapes moving in named
    /// directions) with a captions.csv.
    MakeTeachingData(MakeTeachingDataArgs),
    /// Check that clips show what their captions say (teaching-dataset captions): colour and
    /// motion of the object.
    Adherence(AdherenceArgs),
    /// Time the model on a device.
    Bench(BenchArgs),
}

#[derive(Args, Debug)]
pub struct TrainMotionArgs {
    /// The autoencoder run whose motion latents (and content frames) are the training data.
    #[arg(long)]
    pub ae: PathBuf,
    /// The content run (`train-content`) whose text encoder conditions the motion model.
    #[arg(long)]
    pub content: PathBuf,
    /// DiT size: tiny, S, B, L, XL (patch 2).
    #[arg(long, default_value = "tiny")]
    pub preset: String,
    /// Patch size of the content frame (spec: 4 for SD1.5 and 64x64 pixels, 8 for SD2.1).
    #[arg(long, default_value_t = 4)]
    pub content_patch: usize,
    /// What the DiT learns to predict: `epsilon` (the noise, the spec's; the default for new
    /// runs) or `v` (the velocity; a DiT trained from scratch for a few thousand steps learns
    /// the global motion sooner with it). A resumed run keeps its own.
    #[arg(long, value_enum)]
    pub prediction: Option<PredictionArg>,
    /// Which text-encoder outputs the pooled text averages: `all-tokens` (padding included, the
    /// spec's; the default for new runs) or `prompt-tokens` (the prompt's own tokens: a short
    /// prompt's words are not diluted by padding). A resumed run keeps its own.
    #[arg(long, value_enum)]
    pub text_pooling: Option<TextPoolingArg>,
    #[command(flatten)]
    pub train: DiffusionTrainArgs,
}

/// Pooling of the motion model's text (see `cmd_model::dit::TextPooling`).
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum TextPoolingArg {
    /// Every position, padding included.
    AllTokens,
    /// The prompt's own tokens.
    PromptTokens,
}

impl From<TextPoolingArg> for cmd_model::dit::TextPooling {
    fn from(p: TextPoolingArg) -> Self {
        match p {
            TextPoolingArg::AllTokens => Self::AllTokens,
            TextPoolingArg::PromptTokens => Self::PromptTokens,
        }
    }
}

/// Sampling settings shared by generate and animate.
#[derive(Args, Debug)]
pub struct SamplingArgs {
    /// A model folder (`cmdv export`) or a motion run (`train-motion`, which names its
    /// autoencoder and content runs); default: the teaching model shipped in `models/teaching`.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The text prompt.
    #[arg(long)]
    pub prompt: String,
    /// Content-frame sampler steps.
    #[arg(long, default_value_t = 50)]
    pub steps: usize,
    /// Motion sampler steps.
    #[arg(long, default_value_t = 100)]
    pub motion_steps: usize,
    /// Guidance scale of the content model.
    #[arg(long, default_value_t = 7.5)]
    pub guidance: f64,
    /// Guidance scale of the motion model.
    #[arg(long, default_value_t = 9.0)]
    pub motion_guidance: f64,
    /// Sampler of both models: ddim or dpm-solver.
    #[arg(long, default_value = "ddim")]
    pub sampler: cmd_model::pipelines::Sampler,
    /// Seed (the same seed gives the same clip on a given device).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The clip to write: .mp4 (H.264), .webm (VP9, needs FFmpeg), .gif, or a folder name
    /// for PNG frames.
    #[arg(long)]
    pub out: PathBuf,
    /// Frames per second the written clip plays at.
    #[arg(long, default_value_t = 8.0)]
    pub fps: f32,
    /// Where to run.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceArg,
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

#[derive(Args, Debug)]
pub struct AnimateArgs {
    /// The picture that becomes the content frame (resized to the model's size).
    #[arg(long)]
    pub image: PathBuf,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

#[derive(Args, Debug)]
pub struct TransferArgs {
    /// The autoencoder (as for `reconstruct`; default: the shipped real-video autoencoder).
    #[arg(long)]
    pub ae: Option<PathBuf>,
    /// The clip whose content frame is kept (any video file, y4m, gif or PNG frames).
    #[arg(long)]
    pub content: PathBuf,
    /// The clip whose motion is used.
    #[arg(long)]
    pub motion: PathBuf,
    /// The clip to write: .mp4, .webm, .gif, or a folder name for PNG frames.
    #[arg(long)]
    pub out: PathBuf,
    /// The frames taken from both clips (the written clip plays at their rate).
    #[command(flatten)]
    pub frames: FramesArgs,
    /// Where to run.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceArg,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The motion run (`train-motion`): the whole model.
    #[arg(long, required_unless_present = "ae", conflicts_with = "ae")]
    pub model: Option<PathBuf>,
    /// An autoencoder run (`train-ae`): the autoencoder on its own, a folder `reconstruct`
    /// and `transfer` take as `--ae`.
    #[arg(long)]
    pub ae: Option<PathBuf>,
    /// With --ae: the frame rate its training clips were sampled at, stored in model.json
    /// (clips are then sampled at it for this autoencoder).
    #[arg(long, requires = "ae")]
    pub fps: Option<f64>,
    /// The folder to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Store f32 weights (default: f16, half the size).
    #[arg(long)]
    pub f32: bool,
}

#[derive(Args, Debug)]
pub struct MakeTeachingDataArgs {
    /// Folder to write the clips (mp4) and captions.csv into.
    #[arg(long)]
    pub out: PathBuf,
    /// Number of clips.
    #[arg(long, default_value_t = 200)]
    pub count: usize,
    /// Seed: the same seed writes the same clips.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Use the held-out prompts (for evaluation) instead of the training prompts.
    #[arg(long)]
    pub held_out: bool,
    /// Frame width and height in pixels (a multiple of 16).
    #[arg(long, default_value_t = 64)]
    pub size: u32,
    /// Frames per clip.
    #[arg(long, default_value_t = 16)]
    pub frames: usize,
}

#[derive(Args, Debug)]
pub struct AdherenceArgs {
    /// A folder of clips with a captions.csv (`path,caption`) of teaching-dataset captions;
    /// without it, a model generates one clip for each held-out teaching prompt (112).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The model that generates (as for `generate`; default: the shipped teaching model).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Content-frame sampler steps.
    #[arg(long, default_value_t = 25)]
    pub steps: usize,
    /// Motion sampler steps.
    #[arg(long, default_value_t = 25)]
    pub motion_steps: usize,
    /// Guidance scale of the content model.
    #[arg(long, default_value_t = 7.5)]
    pub guidance: f64,
    /// Guidance scale of the motion model.
    #[arg(long, default_value_t = 9.0)]
    pub motion_guidance: f64,
    /// Write the generated clips (GIF) and a captions.csv to this folder.
    #[arg(long)]
    pub save: Option<PathBuf>,
    /// Print the result as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Where to run.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceArg,
}

/// Where the model runs.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceArg {
    /// burn's pure-Rust CPU backend (flex).
    Cpu,
    /// wgpu with WGSL shaders, on whichever graphics API the machine offers.
    Wgpu,
    /// wgpu pinned to Vulkan (lavapipe works: the CPU stands in for a GPU).
    Vulkan,
    /// NVIDIA CUDA (build with `--features cuda`).
    Cuda,
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// Autoencoder preset: tiny, tiny-latent, ucf64, sd15-512, sd21-512x1024.
    #[arg(long, default_value = "tiny")]
    pub preset: String,
}

/// Where training clips come from and how they are sampled (all three trainers).
#[derive(Args, Debug)]
pub struct DataArgs {
    /// Folder of training clips: video files (mp4, mov, m4v, mkv, webm, avi, ...), y4m, gif,
    /// or folders of PNG frames, at its top or in class folders (UCF-101 style). Indexed once;
    /// the index is kept in DATA/.cmd-index.json.
    #[arg(long)]
    pub data: PathBuf,
    /// Train only on the clips this file lists (UCF-101's trainlist0N.txt or testlist0N.txt:
    /// paths relative to --data, one per line).
    #[arg(long)]
    pub split: Option<PathBuf>,
    /// Take every stride-th frame (with --fps: every stride-th tick).
    #[arg(long, default_value_t = 1)]
    pub stride: usize,
    /// Sample the clips at this frame rate, by their timestamps, so 60 and 24 fps videos give
    /// the same motion per frame (default: each clip's own frames).
    #[arg(long)]
    pub fps: Option<f64>,
    /// Decode each example when it is needed, in background threads, even when the data
    /// would fit in memory (data over 1 GB decoded is always streamed).
    #[arg(long)]
    pub stream: bool,
    /// Decoding threads (default: half the cores).
    #[arg(long)]
    pub workers: Option<usize>,
}

#[derive(Args, Debug)]
pub struct TrainAeArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Autoencoder preset.
    #[arg(long, default_value = "tiny")]
    pub preset: String,
    /// Stable Diffusion folder or single-file checkpoint whose VAE makes the frame latents of
    /// latent-mode presets.
    #[arg(long)]
    pub vae: Option<PathBuf>,
    /// Run folder: checkpoints, config and metrics go here.
    #[arg(long)]
    pub out: PathBuf,
    /// Total optimisation steps (a resumed run counts the steps already done).
    #[arg(long, default_value_t = 300)]
    pub steps: usize,
    /// Clips per step.
    #[arg(long, default_value_t = 2)]
    pub batch: usize,
    /// Adam learning rate (the paper uses 1e-5 for its large models; small ones train faster).
    #[arg(long, default_value_t = 2e-3)]
    pub lr: f64,
    /// Steps of linear learning-rate warm-up (then a cosine decay to lr/10 at --steps).
    #[arg(long, default_value_t = 20)]
    pub warmup: usize,
    /// Adam's first-moment decay (the spec's 0.5; 0.9 is the usual choice elsewhere).
    #[arg(long, default_value_t = 0.5)]
    pub beta1: f64,
    /// Write a checkpoint every this many steps (and always at the end).
    #[arg(long, default_value_t = 50)]
    pub checkpoint_every: usize,
    /// Continue the run in `--out` from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Start a new run from this autoencoder instead of a fresh one: a run folder, a
    /// checkpoint or a model folder (e.g. the shipped `models/real`, to train it further).
    #[arg(long, conflicts_with = "resume")]
    pub init: Option<PathBuf>,
    /// Seed for initialisation and data sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where to train.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceArg,
    /// Data parallel over this many devices of the `--device` kind (GPUs 0..N), one thread
    /// each; each step's batch is split between them and CUDA GPUs all-reduce their gradients
    /// (NCCL). On the CPU the copies share the one CPU (for testing).
    #[arg(long, default_value_t = 1)]
    pub devices: usize,
}

/// Which frames of an input video to use.
#[derive(Args, Debug, Clone)]
pub struct FramesArgs {
    /// Start at this many seconds into the video (the first frame shown then).
    #[arg(long, conflicts_with = "offset")]
    pub start: Option<f64>,
    /// Start at this frame (0 is the first).
    #[arg(long, default_value_t = 0)]
    pub offset: usize,
    /// Take every stride-th frame (with --fps: every stride-th tick).
    #[arg(long, default_value_t = 1)]
    pub stride: usize,
    /// Sample the video at this frame rate, by its timestamps (default: the rate the
    /// autoencoder was trained at when its model folder says so, as for the shipped one;
    /// else the video's own frames).
    #[arg(long)]
    pub fps: Option<f64>,
}

impl FramesArgs {
    /// The first `count` frames these arguments select.
    pub fn take(&self, count: usize) -> cmd_video::Take {
        let start = match self.start {
            Some(s) => cmd_video::Start::Seconds(s),
            None => cmd_video::Start::Frame(self.offset),
        };
        cmd_video::Take::first(count)
            .from(start)
            .every(self.stride)
            .at_fps(self.fps)
    }
}

#[derive(Args, Debug)]
pub struct ReconstructArgs {
    /// The autoencoder: a run folder written by `train-ae`, its `model.bpk` (with
    /// `config.json` in a parent folder), or a model folder written by `cmdv export`
    /// (default: the shipped real-video autoencoder, `models/real`).
    #[arg(long)]
    pub ae: Option<PathBuf>,
    /// The clip to reconstruct: any video file (mp4, mov, mkv, webm, avi, ...), y4m, gif, or a
    /// folder of PNG frames.
    #[arg(long)]
    pub input: PathBuf,
    /// Folder for slide.png, content.png, weights.png, motion.png, input.gif, recon.gif and
    /// content-only.gif.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub frames: FramesArgs,
    /// Print the scores as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Where to run.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceArg,
}

/// Data, run folder and optimisation settings shared by `train-content` and `train-motion`.
#[derive(Args, Debug)]
pub struct DiffusionTrainArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Captions CSV (`videoid,name` as WebVid, or `path,caption`); default: DATA/captions.csv if
    /// it exists, else each clip's class-folder name (UCF-101 style).
    #[arg(long)]
    pub captions: Option<PathBuf>,
    /// Run folder: checkpoints, config and metrics go here.
    #[arg(long)]
    pub out: PathBuf,
    /// Total optimisation steps (a resumed run counts the steps already done).
    #[arg(long, default_value_t = 300)]
    pub steps: usize,
    /// Clips per step.
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Adam learning rate (spec: 1e-4).
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f64,
    /// Decay of the exponential moving average of the weights that sampling uses.
    #[arg(long, default_value_t = 0.999)]
    pub ema: f64,
    /// Fraction of captions replaced by the null condition (for classifier-free guidance).
    #[arg(long, default_value_t = 0.1)]
    pub empty_prompt: f64,
    /// Write a checkpoint every this many steps (and always at the end).
    #[arg(long, default_value_t = 50)]
    pub checkpoint_every: usize,
    /// Also train on horizontally mirrored clips. Off by default: a mirrored clip no longer
    /// shows what a caption that says "left" or "right" describes.
    #[arg(long)]
    pub flip: bool,
    /// The smallest random crop, as a fraction of the frame (0.8 to 1; 1: whole frames).
    #[arg(long, default_value_t = cmd_video::dataset::MIN_CROP)]
    pub crop_min: f64,
    /// Continue the run in `--out` from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Seed for initialisation, data sampling and noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where to train.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceArg,
    /// Data parallel over this many devices of the `--device` kind (GPUs 0..N), one thread
    /// each; each step's batch is split between them and CUDA GPUs all-reduce their gradients
    /// (NCCL). On the CPU the copies share the one CPU (for testing).
    #[arg(long, default_value_t = 1)]
    pub devices: usize,
}

#[derive(Args, Debug)]
pub struct TrainContentArgs {
    /// The autoencoder run (from `train-ae`) whose content frames are the training images.
    #[arg(long)]
    pub ae: PathBuf,
    /// Where to start: a diffusers Stable Diffusion folder (unet/, vae/, text_encoder/,
    /// tokenizer/, scheduler/), a single-file SD 1.x/2.x `.safetensors` checkpoint, or a preset
    /// trained from scratch: `tiny` (CLIP's vocabulary) or `teaching` (a compact vocabulary for
    /// the teaching dataset).
    #[arg(long)]
    pub base: String,
    /// What the UNet learns to predict: `epsilon` (the noise) or `v` (the velocity; an
    /// undertrained model then still makes smooth images). Default: the base's own (a Stable
    /// Diffusion folder's scheduler config; epsilon for the presets).
    #[arg(long, value_enum)]
    pub prediction: Option<PredictionArg>,
    #[command(flatten)]
    pub train: DiffusionTrainArgs,
}

/// Prediction targets of a diffusion model.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum PredictionArg {
    /// The noise.
    Epsilon,
    /// The velocity `sqrt(ᾱ) ε - sqrt(1 - ᾱ) x₀`.
    V,
}

impl From<PredictionArg> for cmd_model::schedulers::Prediction {
    fn from(p: PredictionArg) -> Self {
        match p {
            PredictionArg::Epsilon => Self::Epsilon,
            PredictionArg::V => Self::V,
        }
    }
}

#[derive(Args, Debug)]
pub struct SampleContentArgs {
    /// A diffusers Stable Diffusion folder, a single-file SD 1.x/2.x checkpoint
    /// (`.safetensors`), or a run folder written by `train-content`.
    #[arg(long)]
    pub model: PathBuf,
    /// The text prompt.
    #[arg(long)]
    pub prompt: String,
    /// Sampler steps.
    #[arg(long, default_value_t = 50)]
    pub steps: usize,
    /// Classifier-free guidance scale (1 or less: no guidance).
    #[arg(long, default_value_t = 7.5)]
    pub guidance: f64,
    /// Sampler: ddim (the paper's) or dpm-solver (DPM-Solver++(2M), fewer steps).
    #[arg(long, default_value = "ddim")]
    pub sampler: cmd_model::pipelines::Sampler,
    /// Seed of the starting noise (the same seed gives the same image on every device).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// What a Stable Diffusion model predicts, overriding its scheduler config (folders) or
    /// the family's default (single files: epsilon for SD 1.x, v for SD 2.x; give `epsilon`
    /// for SD 2.x's 512-px -base models).
    #[arg(long, value_enum)]
    pub prediction: Option<PredictionArg>,
    /// Image height in pixels (Stable Diffusion models; default: the model's own size).
    #[arg(long)]
    pub height: Option<usize>,
    /// Image width in pixels (Stable Diffusion models; default: the model's own size).
    #[arg(long)]
    pub width: Option<usize>,
    /// The PNG to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Compute in half precision (f16 weights and activations; half the memory on a GPU).
    #[arg(long)]
    pub half: bool,
    /// Where to run.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceArg,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// What to time.
    #[arg(value_enum)]
    pub target: BenchTarget,
    /// Autoencoder preset (`bench generate`: tiny, sd15-512 or sd21-512x1024, the whole model
    /// of that size with random weights, or teaching, the shipped model; `bench dit`: the DiT
    /// preset, tiny, S, B, L or XL).
    #[arg(long, default_value = "tiny")]
    pub preset: String,
    /// `bench generate`: time this model folder (or motion run) instead of random weights.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Where to run.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceArg,
    /// `bench generate`: content-frame sampler steps (guided DDIM).
    #[arg(long, default_value_t = 50)]
    pub steps: usize,
    /// `bench generate`: motion sampler steps (guided DDIM).
    #[arg(long, default_value_t = 50)]
    pub motion_steps: usize,
    /// Clips per batch.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// `bench generate`, `ae`, `unet` and `dit`: compute in half precision (f16 weights and
    /// activations; on wgpu the adapter needs `shader-f16`).
    #[arg(long)]
    pub half: bool,
    /// Timed repetitions (after one warm-up).
    #[arg(long, default_value_t = 3)]
    pub iters: usize,
    /// Override the preset's depth (to time the big presets quickly on a CPU).
    #[arg(long)]
    pub depth: Option<usize>,
    /// `bench unet`: the UNet layout (random weights).
    #[arg(long, value_enum, default_value = "sd15")]
    pub config: UnetLayout,
    /// `bench unet`: latent height (`bench data`: example height in pixels).
    #[arg(long, default_value_t = 64)]
    pub height: usize,
    /// `bench unet`: latent width (`bench data`: example width in pixels).
    #[arg(long, default_value_t = 64)]
    pub width: usize,
    /// `bench data`: the folder of clips to decode.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// `bench data`: decoding threads to time, e.g. `1,2,4`.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub workers: Vec<usize>,
    /// `bench data`: examples decoded per row.
    #[arg(long, default_value_t = 48)]
    pub examples: usize,
}

/// Stable Diffusion UNet layouts.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum UnetLayout {
    /// Stable Diffusion 1.5.
    Sd15,
    /// Stable Diffusion 2.1.
    Sd21,
    /// The shipped teaching model's content UNet (3 x 32 x 32 pixels, text states of width 64).
    Teaching,
}

/// Benchmarks.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum BenchTarget {
    /// Autoencoder encode and decode.
    Ae,
    /// One Stable Diffusion UNet evaluation (batch 1, 77 text tokens).
    Unet,
    /// One guided motion DiT step (batch 2: conditional and null rows), random weights:
    /// `--preset tiny` on the `tiny` autoencoder's latents, S, B, L or XL on SD1.5's at 512x512.
    Dit,
    /// One whole clip, stage by stage (text, content, motion, decode), random weights.
    Generate,
    /// Training examples decoded (16 frames, resized to --height x --width) from the clips of
    /// --data, per second, with each --workers count.
    Data,
    /// The WGSL kernels of `shaders/` against their tensor versions, on the preset's clip size
    /// (use a wgpu device: elsewhere both rows run the tensor version).
    Kernels,
}
