//! `cmdv bench ae|unet|generate|kernels|data`: time per stage (or kernel, or decoded example)
//! and peak memory, as tables.

use std::time::Instant;

use anyhow::{Result, bail, ensure};
use burn::tensor::{Device, Distribution, Tensor};
use cmd_model::clip::ClipTextConfig;
use cmd_model::dit::DitConfig;
use cmd_model::pipelines::{
    CmdPipeline, Codec, GenerateOptions, Sampler, SamplingOptions, Stage, guided_motion,
};
use cmd_model::schedulers::SchedulerConfig;
use cmd_model::tokenizer::{CLIP_TOKENIZER_JSON, ClipTokenizer};
use cmd_model::unet::UnetConfig;
use cmd_model::{AutoencoderConfig, OutputMode, kernels};

use crate::cli::{BenchArgs, BenchTarget, UnetLayout};
use crate::device;
use cmd_train::tensors::to_scalar;

pub fn run(args: &BenchArgs) -> Result<()> {
    match args.target {
        BenchTarget::Ae => bench_ae(args),
        BenchTarget::Unet => bench_unet(args),
        BenchTarget::Dit => bench_dit(args),
        BenchTarget::Generate => bench_generate(args),
        BenchTarget::Kernels => bench_kernels(args),
        BenchTarget::Data => bench_data(args),
    }
}

/// Examples per second streamed from `--data` by each number of decoding threads: every
/// example is seeked to and decoded from its file, shrunk, cropped and resized, as training
/// does with data too large for memory.
fn bench_data(args: &BenchArgs) -> Result<()> {
    use cmd_video::dataset::{Augment, ClipSpec, Dataset, Index, Loader, LoaderState};
    let Some(folder) = &args.data else {
        bail!("bench data needs --data, a folder of clips");
    };
    ensure!(args.examples > 0, "--examples must be positive");
    ensure!(
        !args.workers.is_empty() && args.workers.iter().all(|&w| w > 0),
        "--workers takes positive numbers, e.g. 1,2,4"
    );
    let reader = cmd_video::VideoReader::new();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let t0 = Instant::now();
    let index = Index::build(folder, reader, cores, &mut |_| {})?;
    let spec = ClipSpec {
        frames: 16,
        stride: 1,
        fps: None,
        width: args.width as u32,
        height: args.height as u32,
        augment: Augment {
            crop_min: cmd_video::dataset::MIN_CROP,
            flip: true,
        },
    };
    let (dataset, short) = Dataset::new(index.videos, spec, 0);
    ensure!(
        !dataset.is_empty(),
        "{}: no clip of 16 frames or more",
        folder.display()
    );
    let sizes: Vec<String> = {
        let mut s: Vec<String> = dataset
            .videos()
            .iter()
            .map(|v| format!("{}x{} {}", v.info().width, v.info().height, v.info().codec))
            .collect();
        s.sort();
        s.dedup();
        s
    };
    println!(
        "{} clips ({}; {} unreadable, {} too short), indexed in {:.1} s ({} probed), FFmpeg: {}",
        dataset.len(),
        sizes.join(", "),
        index.unreadable.len(),
        short.len(),
        t0.elapsed().as_secs_f64(),
        index.probed,
        if reader.has_ffmpeg() { "yes" } else { "no" }
    );
    println!(
        "examples: 16 x {}x{}, random start, crop and flip, {} per row after {} warm-up",
        args.width, args.height, args.examples, 4
    );
    println!("| decoding threads | examples/s | ms per example | peak RSS |");
    println!("|---:|---:|---:|---:|");
    let dataset = std::sync::Arc::new(dataset);
    for &workers in &args.workers {
        let start = LoaderState {
            cursor: 1000 * workers as u64,
            skipped: Vec::new(),
        };
        let mut loader = Loader::new(dataset.clone(), &start, workers, 2 * workers);
        for _ in 0..4 {
            loader.next_example()?;
        }
        let t = Instant::now();
        for _ in 0..args.examples {
            loader.next_example()?;
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "| {workers} | {:.2} | {:.0} | {} |",
            args.examples as f64 / secs,
            1e3 * secs / args.examples as f64,
            process_peak_rss().map_or("n/a".into(), |kib| format!(
                "{:.0} MiB",
                kib as f64 / 1024.0
            ))
        );
    }
    Ok(())
}

/// Each WGSL kernel against its tensor version on the same device and input: the content frame
/// of a batch of clips of the preset's size, the packing of its frames (at pixel size) to
/// canvas pixels, read back as the browser does, and attention and GroupNorm at fixed sizes.
fn bench_kernels(args: &BenchArgs) -> Result<()> {
    ensure!(
        args.batch > 0 && args.iters > 0,
        "--batch and --iters must be positive"
    );
    let cfg = AutoencoderConfig::preset(&args.preset)?;
    let device = device::open(args.device)?;
    let [l, c, h, w] = cfg.clip_shape();
    let scale = match cfg.output {
        OutputMode::Pixel => 1,
        OutputMode::Latent => 8,
    };
    let clips = [args.batch, l, c, h, w];
    let x = Tensor::<5>::random(clips, Distribution::Uniform(-1.0, 1.0), &device);
    let logits = Tensor::<5>::random(clips, Distribution::Normal(0.0, 1.0), &device);
    let frames = Tensor::<4>::random(
        [args.batch * l, 3, h * scale, w * scale],
        Distribution::Uniform(-1.0, 1.0),
        &device,
    );
    let median = |run: &mut dyn FnMut() -> Result<()>| -> Result<f64> {
        let mut ms = Vec::new();
        for i in 0..=args.iters {
            let t0 = Instant::now();
            run()?;
            if i > 0 {
                ms.push(t0.elapsed().as_secs_f64() * 1e3);
            }
        }
        ms.sort_by(f64::total_cmp);
        Ok(ms[ms.len() / 2])
    };
    let device = &device;
    let content = |fused: bool| {
        let (x, logits) = (x.clone(), logits.clone());
        move || {
            let (content, weights) = if fused {
                kernels::content_frame(x.clone(), logits.clone())
            } else {
                kernels::content_frame_tensor(x.clone(), logits.clone())
            };
            sync(device, content)?;
            sync(device, weights)
        }
    };
    let pack = |fused: bool| {
        let frames = frames.clone();
        move || {
            let packed = if fused {
                kernels::rgba8(frames.clone())
            } else {
                kernels::rgba8_tensor(frames.clone())
            };
            let bytes = kernels::rgba8_bytes(packed.into_data());
            ensure!(!bytes.is_empty(), "no pixels read back");
            Ok(())
        }
    };
    // Attention and norms at the shipped teaching UNet's sizes (32 x 32 content frames: 256
    // tokens at its first attention level, 4 heads of 16, 77 text tokens), at the attention
    // kernel's longest sequences (512 tokens), and a GroupNorm of SD's size, with the batch
    // of guidance.
    let normal =
        |shape: [usize; 4]| Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), device);
    let attention = |[b, h, n, m, d]: [usize; 5], fused: bool| {
        let (q, k, v) = (
            normal([b, h, n, d]),
            normal([b, h, m, d]),
            normal([b, h, m, d]),
        );
        move || {
            let out = if fused {
                kernels::attention(q.clone(), k.clone(), v.clone())
            } else {
                kernels::attention_tensor(q.clone(), k.clone(), v.clone())
            };
            sync(device, out)
        }
    };
    let norm = |shape: [usize; 4], groups: usize, fused: bool| {
        let x = normal(shape);
        let norm = burn::nn::GroupNormConfig::new(groups, shape[1]).init(device);
        move || {
            let out = if fused {
                kernels::group_norm(&norm, x.clone(), true)
            } else {
                kernels::group_norm_tensor(&norm, x.clone(), true)
            };
            sync(device, out)
        }
    };
    let mut rows = vec![
        (
            format!("content frame {clips:?}"),
            median(&mut content(false))?,
            median(&mut content(true))?,
        ),
        (
            format!("rgba8 + read back {:?}", frames.dims()),
            median(&mut pack(false))?,
            median(&mut pack(true))?,
        ),
    ];
    for shape in [
        [2, 4, 256, 256, 16],
        [2, 4, 256, 77, 16],
        [2, 8, 512, 512, 32],
    ] {
        rows.push((
            format!("attention [B, H, N, M, d] {shape:?}"),
            median(&mut attention(shape, false))?,
            median(&mut attention(shape, true))?,
        ));
    }
    for (shape, groups) in [([2, 64, 16, 16], 8), ([2, 320, 32, 32], 32)] {
        rows.push((
            format!("group norm + SiLU {shape:?}, {groups} groups"),
            median(&mut norm(shape, groups, false))?,
            median(&mut norm(shape, groups, true))?,
        ));
    }
    println!(
        "WGSL kernels vs tensor versions, device {:?} (kernels {}), {} timed runs",
        args.device,
        if kernels::runs_wgsl(device) {
            "on"
        } else {
            "off: both rows run tensor ops"
        },
        args.iters
    );
    println!("| operation | tensor ops ms (median) | WGSL kernel ms (median) | speed-up |");
    println!("|---|---:|---:|---:|");
    for (name, tensor, wgsl) in rows {
        println!(
            "| {name} | {tensor:.2} | {wgsl:.2} | {:.1}x |",
            tensor / wgsl
        );
    }
    Ok(())
}

/// A whole CMD model of the preset's size with random weights: the autoencoder preset, the
/// content UNet and text encoder of the matching Stable Diffusion (ours for `tiny`), and the
/// motion DiT of the paper (XL/2 for latents, S/2 for `tiny`). The Stable Diffusion VAE decoder
/// is left out, as in the paper's speed table.
fn random_pipeline(preset: &str, device: &Device) -> Result<CmdPipeline> {
    let ae = AutoencoderConfig::preset(preset)?;
    let (text, unet, dit, content_patch) = match preset {
        "tiny" => (
            ClipTextConfig::tiny(),
            UnetConfig::tiny(ae.channels, ae.height),
            "tiny",
            4,
        ),
        "sd15-512" => (ClipTextConfig::default_sd15(), UnetConfig::sd15(), "XL", 4),
        "sd21-512x1024" => (ClipTextConfig::default_sd21(), UnetConfig::sd21(), "XL", 8),
        other => bail!(
            "--preset {other}: bench generate takes teaching (the shipped model), tiny, \
             sd15-512 or sd21-512x1024"
        ),
    };
    let dit = DitConfig::preset(
        dit,
        [ae.motion_dim, ae.frames, ae.grid_h() + ae.grid_w()],
        [ae.channels, ae.height, ae.width],
        content_patch,
        text.hidden_size,
    )?;
    Ok(CmdPipeline {
        tokenizer: ClipTokenizer::from_json(CLIP_TOKENIZER_JSON, None)?,
        text_encoder: text.init(device),
        content_unet: unet.init(device)?,
        content_unet_config: unet,
        content_scheduler: SchedulerConfig::stable_diffusion(),
        dit: dit.init(device)?,
        codec: Codec {
            autoencoder: ae.init(device)?,
            vae: None,
        },
    })
}

fn bench_generate(args: &BenchArgs) -> Result<()> {
    ensure!(
        args.steps > 0 && args.motion_steps > 0,
        "--steps and --motion-steps must be positive"
    );
    let device = device::open_with_precision(args.device, args.half)?;
    let trained = args.model.is_some() || args.preset == "teaching";
    let pipeline = if trained {
        crate::generate::load_model(args.model.as_deref(), &device)?
    } else {
        random_pipeline(&args.preset, &device)?
    };
    let guided = |steps| SamplingOptions {
        steps,
        guidance: 7.5,
        sampler: Sampler::Ddim,
    };
    let options = |steps, motion_steps| GenerateOptions {
        content: guided(steps),
        motion: guided(motion_steps),
        seed: 0,
    };
    // A one-step clip first, so that compiling the device's kernels is not timed.
    pipeline.generate("warm-up", &options(1, 1), &device, &mut |_, _, _| ())?;
    let options = options(args.steps, args.motion_steps);
    let mut peak = Peak::new(&device);
    // Time between progress reports, with the device drained at each.
    let mut times: Vec<(Stage, usize, f64)> = Vec::new();
    let mut last = Instant::now();
    pipeline.generate(
        "a red circle moving left",
        &options,
        &device,
        &mut |stage, done, _| {
            let _ = device.sync();
            peak.sample(&device);
            let now = Instant::now();
            if done > 0 {
                times.push((stage, done, (now - last).as_secs_f64() * 1e3));
            }
            last = now;
        },
    )?;
    let model = match (&args.model, trained) {
        (Some(path), _) => format!("model {}", path.display()),
        (None, true) => "the shipped teaching model".to_string(),
        (None, false) => format!("CMD '{}' (random weights)", args.preset),
    };
    println!(
        "{model}, device {:?} {}, guided DDIM {} + {} steps, batch 1, kernels compiled beforehand",
        args.device,
        precision(args),
        args.steps,
        args.motion_steps
    );
    println!("| stage | steps | ms in all | ms per step | peak memory |");
    println!("|---|---:|---:|---:|---:|");
    for (stage, name) in [
        (Stage::Text, "text"),
        (Stage::Content, "content"),
        (Stage::Motion, "motion"),
        (Stage::Decode, "decode"),
    ] {
        let ms: Vec<f64> = times.iter().filter(|t| t.0 == stage).map(|t| t.2).collect();
        let total: f64 = ms.iter().sum();
        println!(
            "| {name} | {} | {total:.0} | {:.0} | {} |",
            ms.len(),
            total / ms.len().max(1) as f64,
            peak.describe()
        );
    }
    Ok(())
}

fn bench_unet(args: &BenchArgs) -> Result<()> {
    ensure!(args.iters > 0, "--iters must be positive");
    ensure!(
        args.height.is_multiple_of(8)
            && args.width.is_multiple_of(8)
            && args.height > 0
            && args.width > 0,
        "--height and --width (latent size) must be positive multiples of 8, found {}x{}",
        args.height,
        args.width
    );
    let cfg = match args.config {
        UnetLayout::Sd15 => UnetConfig::sd15(),
        UnetLayout::Sd21 => UnetConfig::sd21(),
        UnetLayout::Teaching => UnetConfig::teaching(3, 32),
    };
    let device = device::open_with_precision(args.device, args.half)?;
    let unet = cfg.init(&device)?;
    let params = burn::module::Module::num_params(&unet);
    let x = Tensor::<4>::random(
        [1, cfg.in_channels, args.height, args.width],
        Distribution::Normal(0.0, 1.0),
        &device,
    );
    let text = Tensor::<3>::random(
        [1, 77, cfg.cross_attention_dim],
        Distribution::Normal(0.0, 1.0),
        &device,
    );
    let mut peak = Peak::new(&device);
    let ms = timed(args.iters, &device, &mut peak, &mut || {
        sync(&device, unet.forward(x.clone(), &[500.0], &text))
    })?;
    println!(
        "UNet {:?} ({:.0} M parameters, random weights), latent {}x{}, device {:?} {}, {} timed runs",
        args.config,
        params as f64 / 1e6,
        args.height,
        args.width,
        args.device,
        precision(args),
        args.iters
    );
    print_times("ms per UNet evaluation", &ms, &peak);
    println!("(a CFG sampling step is two evaluations)");
    Ok(())
}

/// One guided step of the motion DiT `--preset` (random weights), as the pipeline runs it
/// ([`guided_motion`]: the conditional and null rows in one batch of 2, or on the CPU two calls at
/// once). `tiny` gets the `tiny` autoencoder's
/// latents and text width 128; the paper's presets get SD1.5's at 512x512 (motion 8 x 16 x 64,
/// content 4 x 64 x 64 in patches of 4, CLIP ViT-L text of width 768).
fn bench_dit(args: &BenchArgs) -> Result<()> {
    ensure!(args.iters > 0, "--iters must be positive");
    let (ae, text_dim) = match args.preset.as_str() {
        "tiny" => (AutoencoderConfig::preset("tiny")?, 128),
        _ => (AutoencoderConfig::preset("sd15-512")?, 768),
    };
    let motion = [ae.motion_dim, ae.frames, ae.grid_h() + ae.grid_w()];
    let content = [ae.channels, ae.height, ae.width];
    let cfg = DitConfig::preset(&args.preset, motion, content, 4, text_dim)?;
    let device = device::open_with_precision(args.device, args.half)?;
    let dit = cfg.init(&device)?;
    let params = burn::module::Module::num_params(&dit);
    let normal = Distribution::Normal(0.0, 1.0);
    let z = Tensor::<4>::random([1, motion[0], motion[1], motion[2]], normal, &device);
    let frame = [1, content[0], content[1], content[2]];
    let frame = Tensor::<4>::random(frame, Distribution::Uniform(-1.0, 1.0), &device);
    let text = Tensor::<2>::random([1, text_dim], normal, &device);
    let mut peak = Peak::new(&device);
    let ms = timed(args.iters, &device, &mut peak, &mut || {
        sync(&device, guided_motion(&dit, &frame, &text, &z, 500, 7.5))
    })?;
    println!(
        "DiT {}/2 ({:.1} M parameters, random weights), motion {motion:?}, content {content:?}, \
         device {:?} {}, {} timed runs",
        args.preset,
        params as f64 / 1e6,
        args.device,
        precision(args),
        args.iters
    );
    print_times("ms per guided step", &ms, &peak);
    Ok(())
}

fn bench_ae(args: &BenchArgs) -> Result<()> {
    ensure!(
        args.batch > 0 && args.iters > 0,
        "--batch and --iters must be positive"
    );
    let mut cfg = AutoencoderConfig::preset(&args.preset)?;
    if let Some(depth) = args.depth {
        cfg.depth = depth;
    }
    let device = device::open_with_precision(args.device, args.half)?;
    let model = cfg.init(&device)?;
    let [l, c, h, w] = cfg.clip_shape();
    let x = Tensor::<5>::random(
        [args.batch, l, c, h, w],
        Distribution::Uniform(-1.0, 1.0),
        &device,
    );
    let mut peak = Peak::new(&device);

    let (mut enc_ms, mut dec_ms) = (Vec::new(), Vec::new());
    for i in 0..=args.iters {
        let t0 = Instant::now();
        let encoded = model.encode(x.clone());
        sync(&device, encoded.motion.clone())?;
        let t1 = Instant::now();
        let out = model.decode(encoded.content, encoded.motion);
        sync(&device, out)?;
        let t2 = Instant::now();
        peak.sample(&device);
        if i > 0 {
            // The first round warms caches and compiles kernels.
            enc_ms.push((t1 - t0).as_secs_f64() * 1e3 / args.batch as f64);
            dec_ms.push((t2 - t1).as_secs_f64() * 1e3 / args.batch as f64);
        }
    }
    let (enc_flops, dec_flops) = cfg.flops_per_clip();
    println!(
        "autoencoder '{}' (depth {}), device {:?} {}, batch {}, {} timed runs",
        cfg.name,
        cfg.depth,
        args.device,
        precision(args),
        args.batch,
        args.iters
    );
    println!("| stage  | ms per clip (median) | min ms | GFLOP/s | peak memory |");
    println!("|--------|---------------------:|-------:|--------:|------------:|");
    for (name, ms, flops) in [
        ("encode", &mut enc_ms, enc_flops),
        ("decode", &mut dec_ms, dec_flops),
    ] {
        ms.sort_by(f64::total_cmp);
        let median = ms[ms.len() / 2];
        println!(
            "| {name} | {median:>20.1} | {:>6.1} | {:>7.1} | {:>11} |",
            ms[0],
            flops as f64 / (median * 1e6),
            peak.describe()
        );
    }
    Ok(())
}

/// The float type a bench computes in, for its table's header.
fn precision(args: &BenchArgs) -> &'static str {
    if args.half { "f16" } else { "f32" }
}

/// Milliseconds of each of `iters` runs of `run` after one warm-up run (which compiles a
/// device's kernels), sorted, sampling the peak memory after each.
fn timed(
    iters: usize,
    device: &Device,
    peak: &mut Peak,
    run: &mut dyn FnMut() -> Result<()>,
) -> Result<Vec<f64>> {
    let mut ms = Vec::new();
    for i in 0..=iters {
        let t0 = Instant::now();
        run()?;
        peak.sample(device);
        if i > 0 {
            ms.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    ms.sort_by(f64::total_cmp);
    Ok(ms)
}

/// The one-row table of sorted times `ms`: median, minimum and peak memory.
fn print_times(what: &str, ms: &[f64], peak: &Peak) {
    println!("| {what} (median) | min ms | peak memory |");
    println!("|---:|---:|---:|");
    println!(
        "| {:.1} | {:.1} | {} |",
        ms[ms.len() / 2],
        ms[0],
        peak.describe()
    );
}

/// Waits for the device by reading one value back.
fn sync<const D: usize>(device: &Device, t: Tensor<D>) -> Result<()> {
    to_scalar(t.sum())?;
    device
        .sync()
        .map_err(|e| anyhow::anyhow!("device error: {e:?}"))
}

/// Peak memory: the device allocator's reservation where it reports one, else the process's
/// peak resident set (CPU backends).
struct Peak {
    device_bytes: Option<u64>,
}

impl Peak {
    fn new(device: &Device) -> Self {
        Self {
            device_bytes: device.memory_pool_usage().map(|u| u.bytes_reserved),
        }
    }

    fn sample(&mut self, device: &Device) {
        if let (Some(peak), Some(now)) = (&mut self.device_bytes, device.memory_pool_usage()) {
            *peak = (*peak).max(now.bytes_reserved);
        }
    }

    fn describe(&self) -> String {
        match self.device_bytes {
            Some(bytes) => format!("{:.0} MiB dev", bytes as f64 / 1048576.0),
            None => process_peak_rss().map_or("n/a".into(), |kib| {
                format!("{:.0} MiB RSS", kib as f64 / 1024.0)
            }),
        }
    }
}

/// `VmHWM` of this process in KiB (Linux).
fn process_peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
