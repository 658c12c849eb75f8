//! The CLIP tokenizer through the `tokenizers` crate (a `tokenizer.json`), with Stable
//! Diffusion's framing: `<|startoftext|>`, at most 75 prompt tokens, `<|endoftext|>`, then
//! padding to 77 (`<|endoftext|>` for SD1.5, `!` for SD2.1, as their tokenizer configs say).

use tokenizers::{AddedToken, Tokenizer};

/// Token ids of one prompt, framed and padded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    /// Exactly `max_len` ids.
    pub ids: Vec<u32>,
    /// True when the prompt was longer than fits and its end was cut.
    pub truncated: bool,
}

/// Why a tokenizer cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenizerError {
    /// Not a tokenizers JSON file.
    #[error("not a valid tokenizer.json: {0}")]
    Parse(String),
    /// A special token the framing needs is not in the vocabulary.
    #[error("tokenizer has no token '{0}'")]
    MissingToken(String),
    /// The text could not be encoded.
    #[error("cannot tokenize the prompt: {0}")]
    Encode(String),
}

/// A CLIP tokenizer framed for Stable Diffusion text encoders.
#[derive(Debug, Clone)]
pub struct ClipTokenizer {
    inner: Tokenizer,
    bos: u32,
    eos: u32,
    pad: u32,
    max_len: usize,
}

impl ClipTokenizer {
    /// Context length of Stable Diffusion's text encoders.
    pub const MAX_LEN: usize = 77;

    /// Parses a `tokenizer.json`; `pad_token` is the tokenizer config's `pad_token`
    /// (`<|endoftext|>` when `None`).
    ///
    /// As in transformers, the pad token becomes a special token: with SD2.1's `!`, a `!` in a
    /// prompt is split off as that token (id 0, not `!</w>`), exactly as diffusers encodes it.
    pub fn from_json(bytes: &[u8], pad_token: Option<&str>) -> Result<Self, TokenizerError> {
        let mut inner =
            Tokenizer::from_bytes(bytes).map_err(|e| TokenizerError::Parse(e.to_string()))?;
        if let Some(pad) = pad_token {
            if inner.token_to_id(pad).is_none() {
                return Err(TokenizerError::MissingToken(pad.to_string()));
            }
            inner
                .add_special_tokens([AddedToken::from(pad, true)])
                .map_err(|e| TokenizerError::Parse(e.to_string()))?;
        }
        let id = |token: &str| {
            inner
                .token_to_id(token)
                .ok_or_else(|| TokenizerError::MissingToken(token.to_string()))
        };
        Ok(Self {
            bos: id("<|startoftext|>")?,
            eos: id("<|endoftext|>")?,
            pad: id(pad_token.unwrap_or("<|endoftext|>"))?,
            inner,
            max_len: Self::MAX_LEN,
        })
    }

    /// `[bos, prompt tokens (at most 75), eos, pad...]`, 77 ids.
    pub fn encode(&self, prompt: &str) -> Result<Tokens, TokenizerError> {
        let encoding = self
            .inner
            .encode(prompt, false)
            .map_err(|e| TokenizerError::Encode(e.to_string()))?;
        let content = encoding.get_ids();
        let room = self.max_len - 2;
        let mut ids = Vec::with_capacity(self.max_len);
        ids.push(self.bos);
        ids.extend_from_slice(&content[..content.len().min(room)]);
        ids.push(self.eos);
        ids.resize(self.max_len, self.pad);
        Ok(Tokens {
            ids,
            truncated: content.len() > room,
        })
    }
}
