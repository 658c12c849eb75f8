//! The CLIP text encoder (Radford et al. 2021) in the form of transformers' `CLIPTextModel`,
//! which diffusers folders carry as `text_encoder/` for Stable Diffusion 1.5 (CLIP ViT-L/14,
//! `quick_gelu`) and 2.1 (OpenCLIP ViT-H/14, `gelu`). Field names follow the checkpoint keys
//! (`text_model.encoder.layers.N.self_attn.q_proj`, ...), so loading needs no key mapping.

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::{gelu, sigmoid};
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::kernels;

/// The activation of the feed-forward layers.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HiddenAct {
    /// `x * sigmoid(1.702 x)` (OpenAI CLIP).
    QuickGelu,
    /// The exact (erf) GELU (OpenCLIP).
    Gelu,
}

/// The fields of a transformers `CLIPTextConfig` (`text_encoder/config.json`) the model needs;
/// the others are ignored. Defaults are transformers' own.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(default)]
pub struct ClipTextConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Width of the feed-forward layers.
    pub intermediate_size: usize,
    /// Transformer layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Longest sequence (77 for Stable Diffusion).
    pub max_position_embeddings: usize,
    /// Feed-forward activation.
    pub hidden_act: HiddenAct,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// The end-of-text token, whose hidden state is the pooled output.
    pub eos_token_id: u32,
}

impl Default for ClipTextConfig {
    fn default() -> Self {
        Self {
            vocab_size: 49408,
            hidden_size: 512,
            intermediate_size: 2048,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 77,
            hidden_act: HiddenAct::QuickGelu,
            layer_norm_eps: 1e-5,
            eos_token_id: 49407,
        }
    }
}

impl ClipTextConfig {
    /// Stable Diffusion 1.5's text encoder (CLIP ViT-L/14: width 768, 12 layers, quick-GELU).
    pub fn default_sd15() -> Self {
        Self {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            ..Self::default()
        }
    }

    /// Stable Diffusion 2.1's text encoder (OpenCLIP ViT-H/14 as diffusers stores it: width
    /// 1024, 23 layers, GELU).
    pub fn default_sd21() -> Self {
        Self {
            hidden_size: 1024,
            intermediate_size: 4096,
            num_hidden_layers: 23,
            num_attention_heads: 16,
            hidden_act: HiddenAct::Gelu,
            ..Self::default()
        }
    }

    /// Our small text encoder (CLIP's 49,408-token vocabulary, width 128, 2 layers of 4 heads)
    /// for content models trained from scratch.
    pub fn tiny() -> Self {
        Self {
            hidden_size: 128,
            intermediate_size: 256,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            ..Self::default()
        }
    }

    /// The shipped teaching model's text encoder: [`Self::tiny`] at width 64 (MLP 128) over a
    /// compact vocabulary of `vocab_size` tokens whose end token is `eos_token_id` (the
    /// teaching dataset's words, see `ClipTokenizer::for_words`).
    pub fn teaching(vocab_size: usize, eos_token_id: u32) -> Self {
        Self {
            vocab_size,
            hidden_size: 64,
            intermediate_size: 128,
            eos_token_id,
            ..Self::tiny()
        }
    }

    /// A model of this size with random weights.
    pub fn init(&self, device: &Device) -> ClipTextModel {
        let (d, eps) = (self.hidden_size, self.layer_norm_eps);
        let norm = || LayerNormConfig::new(d).with_epsilon(eps).init(device);
        let linear = |i, o| LinearConfig::new(i, o).init(device);
        let layers = (0..self.num_hidden_layers)
            .map(|_| EncoderLayer {
                self_attn: SelfAttention {
                    q_proj: linear(d, d),
                    k_proj: linear(d, d),
                    v_proj: linear(d, d),
                    out_proj: linear(d, d),
                    heads: self.num_attention_heads,
                },
                layer_norm1: norm(),
                mlp: Mlp {
                    fc1: linear(d, self.intermediate_size),
                    fc2: linear(self.intermediate_size, d),
                    quick_gelu: self.hidden_act == HiddenAct::QuickGelu,
                },
                layer_norm2: norm(),
            })
            .collect();
        ClipTextModel {
            text_model: TextTransformer {
                embeddings: Embeddings {
                    token_embedding: EmbeddingConfig::new(self.vocab_size, d).init(device),
                    position_embedding: EmbeddingConfig::new(self.max_position_embeddings, d)
                        .init(device),
                },
                encoder: Encoder { layers },
                final_layer_norm: norm(),
            },
            config: self.clone(),
        }
    }
}

/// The `eos_token_id` of text-encoder configs saved by old transformers versions (Stable
/// Diffusion 1.5's among them), which transformers reads as "pool at the highest id".
const LEGACY_EOS_TOKEN_ID: u32 = 2;

/// What the text encoder gives a pipeline.
#[derive(Debug, Clone)]
pub struct TextEncoding {
    /// Last hidden state after the final LayerNorm, `[B, S, D]` (SD1.5's conditioning).
    pub last_hidden_state: Tensor<3>,
    /// Output of the second-to-last layer (before the final LayerNorm), `[B, S, D]`.
    pub penultimate: Tensor<3>,
    /// The last hidden state at each prompt's first end-of-text token, `[B, D]`.
    pub pooled: Tensor<2>,
}

/// transformers' `CLIPTextModel`.
#[derive(Module, Debug)]
pub struct ClipTextModel {
    text_model: TextTransformer,
    #[module(skip)]
    config: ClipTextConfig,
}

#[derive(Module, Debug)]
struct TextTransformer {
    embeddings: Embeddings,
    encoder: Encoder,
    final_layer_norm: LayerNorm,
}

#[derive(Module, Debug)]
struct Embeddings {
    token_embedding: Embedding,
    position_embedding: Embedding,
}

#[derive(Module, Debug)]
struct Encoder {
    layers: Vec<EncoderLayer>,
}

#[derive(Module, Debug)]
struct EncoderLayer {
    self_attn: SelfAttention,
    layer_norm1: LayerNorm,
    mlp: Mlp,
    layer_norm2: LayerNorm,
}

#[derive(Module, Debug)]
struct SelfAttention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    heads: usize,
}

#[derive(Module, Debug)]
struct Mlp {
    fc1: Linear,
    fc2: Linear,
    quick_gelu: bool,
}

impl SelfAttention {
    /// Causal multi-head self-attention. x: `[B, S, D]` -> `[B, S, D]`.
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, s, d] = x.dims();
        let (h, dh) = (self.heads, d / self.heads);
        // b s (h dh) -> b h s dh
        let split = |t: Tensor<3>| t.reshape([b, s, h, dh]).swap_dims(1, 2);
        let q = split(self.q_proj.forward(x.clone()));
        let k = split(self.k_proj.forward(x.clone()));
        let v = split(self.v_proj.forward(x));
        let out = kernels::causal_attention(q, k, v); // b h s dh
        self.out_proj
            .forward(out.swap_dims(1, 2).reshape([b, s, d]))
    }
}

impl Mlp {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let h = self.fc1.forward(x);
        let h = if self.quick_gelu {
            h.clone() * sigmoid(h.mul_scalar(1.702))
        } else {
            gelu(h)
        };
        self.fc2.forward(h)
    }
}

impl EncoderLayer {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let x = x.clone() + self.self_attn.forward(self.layer_norm1.forward(x));
        x.clone() + self.mlp.forward(self.layer_norm2.forward(x))
    }
}

impl ClipTextModel {
    /// Keys a `CLIPTextModel` file may hold without a place here: the position-id buffer
    /// older transformers saved.
    pub const IGNORED_KEYS: &'static [&'static str] = &["text_model.embeddings.position_ids"];

    /// transformers 5 saves `CLIPTextModel` without the `text_model.` prefix that 4.x wrote
    /// (and both load in transformers): this puts it back, leaving 4.x keys as they are.
    pub const KEY_REMAPPING: &'static [(&'static str, &'static str)] = &[(
        r"^(embeddings|encoder|final_layer_norm)\.",
        "text_model.$1.",
    )];

    /// The model's sizes.
    pub fn config(&self) -> &ClipTextConfig {
        &self.config
    }

    /// Encodes token ids (`ids.len() = B * S`, row-major, `S` at most the position table).
    ///
    /// # Panics
    /// If `ids` is empty or not a multiple of `seq_len`.
    pub fn encode(&self, ids: &[u32], seq_len: usize, device: &Device) -> TextEncoding {
        assert!(seq_len > 0 && !ids.is_empty() && ids.len().is_multiple_of(seq_len));
        let b = ids.len() / seq_len;
        let tokens = Tensor::<2, Int>::from_data(
            TensorData::new(ids.iter().map(|i| *i as i64).collect(), [b, seq_len]),
            device,
        );
        let positions = Tensor::<1, Int>::arange(0..seq_len as i64, device)
            .reshape([1, seq_len])
            .repeat_dim(0, b);
        let emb = &self.text_model.embeddings;
        let mut x = emb.token_embedding.forward(tokens) + emb.position_embedding.forward(positions);
        let layers = &self.text_model.encoder.layers;
        let mut penultimate = x.clone();
        for (i, layer) in layers.iter().enumerate() {
            x = layer.forward(x);
            if i + 2 == layers.len() {
                penultimate = x.clone();
            }
        }
        let last = self.text_model.final_layer_norm.forward(x);
        // Pooled: the state at each row's first end-of-text token (transformers' rule). Configs
        // written before transformers stored the real id say 2; for them transformers takes
        // the highest id of the row (the end-of-text token, last in CLIP's vocabulary).
        let mut pick = vec![0f32; b * seq_len];
        for (row, chunk) in ids.chunks(seq_len).enumerate() {
            let at = if self.config.eos_token_id == LEGACY_EOS_TOKEN_ID {
                let max = chunk.iter().max().copied().unwrap_or(0);
                chunk.iter().position(|t| *t == max)
            } else {
                chunk.iter().position(|t| *t == self.config.eos_token_id)
            };
            pick[row * seq_len + at.unwrap_or(0)] = 1.0;
        }
        let pick = Tensor::<3>::from_data(TensorData::new(pick, [b, seq_len, 1]), device);
        let pooled = (last.clone() * pick).sum_dim(1).squeeze_dim::<2>(1);
        TextEncoding {
            last_hidden_state: last,
            penultimate,
            pooled,
        }
    }
}
