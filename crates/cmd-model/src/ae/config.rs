//! Autoencoder sizes, the presets of the paper's Table 5, and the shapes and FLOPs they imply.

use burn::config::Config;

use crate::ModelError;

/// What the decoder's last layer produces.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum OutputMode {
    /// RGB frames in `[-1, 1]`: the head is followed by `2 * sigmoid(.) - 1`; trained with L1.
    Pixel,
    /// Stable Diffusion VAE latents: the head is linear; trained with MSE.
    Latent,
}

/// How a pixel-mode decoder maps its head's output into `[-1, 1]`.
///
/// Decision: the spec's `2 sigmoid(.) - 1` needs ever larger outputs as a pixel nears black or
/// white, so a decoder that starts as a copy of the content frame starts with the curve
/// `tanh(1.1 x)` instead (see `init.rs`), which costs a clip with large still areas near black
/// or white up to 8 dB (opencv-doc's tree, pymecavideo's balle-jbart), and a small model does
/// not learn it away (`docs/training.md`, "Fitting real clips"). `Clamp` copies exactly.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum PixelHead {
    /// `2 sigmoid(y) - 1`, the spec's (and every model saved before this choice existed).
    Sigmoid,
    /// `y` clamped to `[-1, 1]`; in training the gradient passes the clamp unchanged
    /// (straight-through), so no pixel is ever stuck outside the range.
    Clamp,
}

/// Sizes of a CMD autoencoder (spec section 1, Table 5).
///
/// Notation of the paper: `C` channels, `L` frames, `H x W` frame size (pixels, or SD latents in
/// latent mode), patch `p`, transformer width `C'`, motion channels `D`, `H' = H/p`, `W' = W/p`.
#[derive(Config, Debug, PartialEq)]
pub struct AutoencoderConfig {
    /// Preset name this config came from (informational; `custom` otherwise).
    #[config(default = "String::from(\"custom\")")]
    pub name: String,
    /// Channels `C` of a frame: 3 (RGB) or 4 (SD latents).
    pub channels: usize,
    /// Frames `L` per clip.
    pub frames: usize,
    /// Frame height `H`.
    pub height: usize,
    /// Frame width `W`.
    pub width: usize,
    /// Patch size `p`.
    pub patch: usize,
    /// Transformer width `C'`.
    pub hidden: usize,
    /// Motion-latent channels `D`.
    pub motion_dim: usize,
    /// Number of space-time blocks in the encoder and, separately, in the decoder.
    pub depth: usize,
    /// Attention heads.
    pub heads: usize,
    /// Width of one attention head (must be a multiple of 4 for the axial rotary embedding).
    pub head_dim: usize,
    /// Pixel or latent output.
    pub output: OutputMode,
    /// Base of the rotary position embeddings.
    #[config(default = 10000.0)]
    pub rope_base: f64,
    /// The pixel-mode output map (unused in latent mode); `None`, as in every config saved
    /// before the choice existed, is the spec's sigmoid (see [`Self::pixel_head`]).
    pub pixel_head: Option<PixelHead>,
}

/// The preset names, in the order `cmdv info` lists them.
pub const PRESETS: [&str; 7] = [
    "tiny",
    "real64",
    "teaching",
    "tiny-latent",
    "ucf64",
    "sd15-512",
    "sd21-512x1024",
];

impl AutoencoderConfig {
    /// A named preset: the three Table 5 settings plus `tiny`.
    ///
    /// | preset | C | H x W | p | C' | D | depth | heads x dim | output |
    /// |---|---|---|---|---|---|---|---|---|
    /// | `tiny` | 3 | 64 x 64 | 4 | 96 | 8 | 2 | 4 x 24 | pixel, clamped |
    /// | `real64` | 3 | 64 x 64 | 4 | 96 | 16 | 2 | 4 x 24 | pixel, clamped |
    /// | `teaching` | 3 | 32 x 32 | 4 | 96 | 8 | 2 | 4 x 24 | pixel |
    /// | `tiny-latent` | 4 | 32 x 32 | 4 | 96 | 8 | 2 | 4 x 24 | latent |
    /// | `ucf64` | 3 | 64 x 64 | 2 | 384 | 8 | 12 | 8 x 64 | pixel |
    /// | `sd15-512` | 4 | 64 x 64 | 2 | 384 | 8 | 12 | 8 x 64 | latent |
    /// | `sd21-512x1024` | 4 | 64 x 128 | 2 | 384 | 8 | 12 | 8 x 64 | latent |
    ///
    /// "Pixel" is the spec's `2 sigmoid(.) - 1`; "clamped" is [`PixelHead::Clamp`].
    /// `tiny` is ours: small enough to train on a laptop CPU in minutes and to run in a browser;
    /// `real64` is `tiny` with the paper's motion-latent size at 64 x 64 (`D L (H'+W')` = 8192
    /// numbers: with patch 4 that takes `D` = 16), the shipped real-video autoencoder's;
    /// `teaching` is `tiny` at 32 x 32 (a quarter of the work), the shipped teaching model's;
    /// `tiny-latent` is its latent-mode twin (for small Stable Diffusion VAEs and tests).
    pub fn preset(name: &str) -> Result<Self, ModelError> {
        let paper = |channels, height, width, output| {
            Self::new(channels, 16, height, width, 2, 384, 8, 12, 8, 64, output)
        };
        let config = match name {
            "tiny" => Self::new(3, 16, 64, 64, 4, 96, 8, 2, 4, 24, OutputMode::Pixel)
                .with_pixel_head(Some(PixelHead::Clamp)),
            "real64" => Self::new(3, 16, 64, 64, 4, 96, 16, 2, 4, 24, OutputMode::Pixel)
                .with_pixel_head(Some(PixelHead::Clamp)),
            "teaching" => Self::new(3, 16, 32, 32, 4, 96, 8, 2, 4, 24, OutputMode::Pixel),
            "tiny-latent" => Self::new(4, 16, 32, 32, 4, 96, 8, 2, 4, 24, OutputMode::Latent),
            "ucf64" => paper(3, 64, 64, OutputMode::Pixel),
            "sd15-512" => paper(4, 64, 64, OutputMode::Latent),
            "sd21-512x1024" => paper(4, 64, 128, OutputMode::Latent),
            _ => {
                return Err(ModelError::UnknownPreset {
                    found: name.to_string(),
                    expected: PRESETS.join(", "),
                });
            }
        };
        Ok(config.with_name(name.to_string()))
    }

    /// Checks that the numbers fit together; every constructor of a model calls it.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |message: String| {
            Err(ModelError::InvalidConfig {
                model: "autoencoder",
                message,
            })
        };
        let positive = [
            ("channels", self.channels),
            ("frames", self.frames),
            ("patch", self.patch),
            ("hidden", self.hidden),
            ("motion_dim", self.motion_dim),
            ("depth", self.depth),
            ("heads", self.heads),
        ];
        if let Some((field, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return bad(format!("'{field}' must be positive"));
        }
        if !self.height.is_multiple_of(self.patch)
            || !self.width.is_multiple_of(self.patch)
            || self.height == 0
        {
            return bad(format!(
                "frame size {}x{} must be a positive multiple of the patch size {}",
                self.height, self.width, self.patch
            ));
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(4) {
            return bad(format!(
                "'head_dim' must be a positive multiple of 4 (axial rotary embedding), found {}",
                self.head_dim
            ));
        }
        Ok(())
    }

    /// `H' = H / p`.
    pub fn grid_h(&self) -> usize {
        self.height / self.patch
    }

    /// `W' = W / p`.
    pub fn grid_w(&self) -> usize {
        self.width / self.patch
    }

    /// Features of one patch, `C * p * p`.
    pub fn patch_dim(&self) -> usize {
        self.channels * self.patch * self.patch
    }

    /// The pixel-mode output map: [`PixelHead::Sigmoid`] unless the config names one.
    pub fn pixel_head(&self) -> PixelHead {
        self.pixel_head.unwrap_or(PixelHead::Sigmoid)
    }

    /// Width of the attention projections, `heads * head_dim`.
    pub fn inner_dim(&self) -> usize {
        self.heads * self.head_dim
    }

    /// Shape of one clip, `[L, C, H, W]`.
    pub fn clip_shape(&self) -> [usize; 4] {
        [self.frames, self.channels, self.height, self.width]
    }

    /// Shape of one content frame, `[C, H, W]`.
    pub fn content_shape(&self) -> [usize; 3] {
        [self.channels, self.height, self.width]
    }

    /// Shape of one motion latent, `[D, L, H' + W']`.
    pub fn motion_shape(&self) -> [usize; 3] {
        [self.motion_dim, self.frames, self.grid_h() + self.grid_w()]
    }

    /// Forward floating-point operations (2 per multiply-add) to encode and decode one clip,
    /// counting the matrix products and attention; element-wise work is left out.
    pub fn flops_per_clip(&self) -> (u64, u64) {
        let (l, hh, ww) = (
            self.frames as u64,
            self.grid_h() as u64,
            self.grid_w() as u64,
        );
        let (c, i, pd, d) = (
            self.hidden as u64,
            self.inner_dim() as u64,
            self.patch_dim() as u64,
            self.motion_dim as u64,
        );
        let n = hh * ww;
        let tokens = l * n;
        // Two attentions (q, k, v and out projections), attention scores and values over frames
        // (temporal, per position) and over positions (spatial, per frame), GEGLU feed-forward.
        let projections = 2 * tokens * (4 * c * i);
        let temporal = n * (2 * l * l * i);
        let spatial = l * (2 * n * n * i);
        let feed_forward = tokens * (8 * c * c + 4 * c * c);
        let block = projections + temporal + spatial + feed_forward;
        let stack = self.depth as u64 * block;
        let encode = tokens * pd * c + stack + tokens * c * pd + l * (hh + ww) * c * d;
        let decode = n * pd * c + l * (hh + ww) * d * c + stack + tokens * c * pd;
        (2 * encode, 2 * decode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_have_the_table_5_shapes() {
        let sd21 = AutoencoderConfig::preset("sd21-512x1024").unwrap();
        assert_eq!(sd21.content_shape(), [4, 64, 128]);
        assert_eq!((sd21.grid_h(), sd21.grid_w()), (32, 64));
        assert_eq!(sd21.motion_shape(), [8, 16, 96]);
        // The paper: 45,056 numbers in all for 512x1024.
        let total: usize = sd21.content_shape().iter().product::<usize>()
            + sd21.motion_shape().iter().product::<usize>();
        assert_eq!(total, 4 * 64 * 128 + 8 * 16 * 96);
        let ucf = AutoencoderConfig::preset("ucf64").unwrap();
        assert_eq!(ucf.motion_shape(), [8, 16, 64]);
        assert_eq!(ucf.output, OutputMode::Pixel);
        let sd15 = AutoencoderConfig::preset("sd15-512").unwrap();
        assert_eq!((sd15.channels, sd15.output), (4, OutputMode::Latent));
        for name in PRESETS {
            AutoencoderConfig::preset(name).unwrap().validate().unwrap();
        }
    }

    #[test]
    fn unknown_preset_names_the_choices() {
        let err = AutoencoderConfig::preset("huge").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("'huge'") && msg.contains("tiny") && msg.contains("sd21-512x1024"));
    }

    #[test]
    fn validate_names_the_bad_field() {
        let mut c = AutoencoderConfig::preset("tiny").unwrap();
        c.head_dim = 6;
        assert!(c.validate().unwrap_err().to_string().contains("head_dim"));
        let mut c = AutoencoderConfig::preset("tiny").unwrap();
        c.height = 62;
        assert!(c.validate().unwrap_err().to_string().contains("62x64"));
    }

    #[test]
    fn configs_saved_before_the_pixel_head_load_with_the_sigmoid() {
        // The shipped models' model.json, written before `pixel_head` existed.
        let old = r#"{"channels":3,"frames":16,"height":64,"width":64,"patch":4,"hidden":96,
            "motion_dim":16,"depth":2,"heads":4,"head_dim":24,"output":"Pixel",
            "name":"real64","rope_base":10000.0}"#;
        let c: AutoencoderConfig = serde_json::from_str(old).unwrap();
        assert_eq!(c.pixel_head(), PixelHead::Sigmoid);
        let new = AutoencoderConfig::preset("real64").unwrap();
        assert_eq!(new.pixel_head(), PixelHead::Clamp);
        let back: AutoencoderConfig =
            serde_json::from_str(&serde_json::to_string(&new).unwrap()).unwrap();
        assert_eq!(back, new);
    }

    #[test]
    fn flops_grow_with_depth() {
        let mut c = AutoencoderConfig::preset("ucf64").unwrap();
        let (e12, d12) = c.flops_per_clip();
        c.depth = 6;
        let (e6, d6) = c.flops_per_clip();
        assert!(e12 > e6 && d12 > d6);
    }
}
