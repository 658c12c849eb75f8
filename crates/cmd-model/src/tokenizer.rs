//! The CLIP tokenizer through the `tokenizers` crate (a `tokenizer.json`), with Stable
//! Diffusion's framing: `<|startoftext|>`, at most 75 prompt tokens, `<|endoftext|>`, then
//! padding to 77 (`<|endoftext|>` for SD1.5, `!` for SD2.1, as their tokenizer configs say).

use tokenizers::{AddedToken, Tokenizer};

/// CLIP's 49,408-token BPE tokenizer (SD 1.x and 2.x) as a `tokenizer.json`, for models that
/// do not carry their own: preset bases and single-file checkpoints (see
/// `assets/clip-tokenizer/PROVENANCE.md`).
pub const CLIP_TOKENIZER_JSON: &[u8] =
    include_bytes!("../../../assets/clip-tokenizer/clip-vit-bpe-49408.tokenizer.json");

/// Token ids of one prompt, framed and padded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    /// Exactly `max_len` ids.
    pub ids: Vec<u32>,
    /// True when the prompt was longer than fits and its end was cut.
    pub truncated: bool,
    /// How many ids are the prompt's own: start, words and end token (the rest is padding).
    pub len: usize,
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

/// CLIP's pre-tokenisation pattern (contractions, letter runs, single digits, other runs).
const CLIP_SPLIT: &str = r"'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

/// GPT-2's byte-to-symbol table (`bytes_to_unicode`): printable bytes map to themselves, the
/// others to code points from 256 up, in byte order of the printable ranges first.
fn byte_symbols() -> [char; 256] {
    let printable =
        |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut table = ['\0'; 256];
    let mut extra = 0;
    for b in 0..256u32 {
        table[b as usize] = if printable(b) {
            char::from_u32(b).expect("a Latin-1 code point")
        } else {
            extra += 1;
            char::from_u32(255 + extra).expect("a code point")
        };
    }
    table
}

/// An added special token entry for a `tokenizer.json`.
fn special(
    id: Option<&serde_json::Value>,
    content: &str,
) -> Result<serde_json::Value, TokenizerError> {
    let id = id
        .and_then(|v| v.as_u64())
        .ok_or_else(|| TokenizerError::MissingToken(content.to_string()))?;
    Ok(
        serde_json::json!({"id": id, "content": content, "single_word": false, "lstrip": false,
        "rstrip": false, "normalized": false, "special": true}),
    )
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

    /// Builds the tokenizer from the `vocab.json` + `merges.txt` pair that diffusers folders
    /// carry in `tokenizer/`, with the CLIP text pipeline of transformers' converter (NFC,
    /// whitespace collapsed, lower case; CLIP's split pattern; byte-level BPE with `</w>`).
    pub fn from_vocab_merges(
        vocab_json: &str,
        merges_txt: &str,
        pad_token: Option<&str>,
    ) -> Result<Self, TokenizerError> {
        let vocab: serde_json::Value = serde_json::from_str(vocab_json)
            .map_err(|e| TokenizerError::Parse(format!("vocab.json: {e}")))?;
        if !vocab.is_object() {
            return Err(TokenizerError::Parse(
                "vocab.json: expected an object".into(),
            ));
        }
        // transformers reads merges 1..=48894: the header line is skipped, the rest ignored.
        let merges: Vec<Vec<&str>> = merges_txt
            .lines()
            .filter(|l| !l.starts_with("#version"))
            .take(49152 - 256 - 2)
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.split_whitespace().collect())
            .collect();
        if let Some(bad) = merges.iter().find(|m| m.len() != 2) {
            return Err(TokenizerError::Parse(format!(
                "merges.txt: expected two tokens per line, found {bad:?}"
            )));
        }
        let json = serde_json::json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": [
                special(vocab.get("<|startoftext|>"), "<|startoftext|>")?,
                special(vocab.get("<|endoftext|>"), "<|endoftext|>")?,
            ],
            "normalizer": {"type": "Sequence", "normalizers": [
                {"type": "NFC"},
                {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "},
                {"type": "Lowercase"}]},
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": CLIP_SPLIT}, "behavior": "Removed",
                 "invert": true},
                {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
                 "use_regex": true}]},
            "post_processor": null,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true,
                        "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": "<|endoftext|>",
                      "continuing_subword_prefix": "", "end_of_word_suffix": "</w>",
                      "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                      "vocab": vocab, "merges": merges}
        });
        Self::from_json(json.to_string().as_bytes(), pad_token)
    }

    /// A compact CLIP-style tokenizer for a small closed vocabulary: the 256 byte symbols (with
    /// and without the end-of-word mark `</w>`), left-to-right merges that spell each of
    /// `words` as one token, and the two special tokens. Any other text still tokenises, a
    /// byte at a time. (The same construction as the tiny reference folder's tokenizer.)
    pub fn for_words(words: &[&str]) -> Result<Self, TokenizerError> {
        let chars = byte_symbols();
        // The vocabulary lists the symbols by code point, as transformers does.
        let mut symbols = chars;
        symbols.sort_unstable();
        let mut vocab: Vec<String> = symbols.iter().map(|c| c.to_string()).collect();
        vocab.extend(symbols.iter().map(|c| format!("{c}</w>")));
        let mut merges = Vec::new();
        for word in words {
            let word: String = word.bytes().map(|b| chars[b as usize]).collect();
            let letters: Vec<char> = word.chars().collect();
            let Some((last, rest)) = letters.split_last() else {
                continue;
            };
            let mut parts: Vec<String> = rest.iter().map(|c| c.to_string()).collect();
            parts.push(format!("{last}</w>"));
            while parts.len() > 1 {
                let merged = format!("{}{}", parts[0], parts[1]);
                let merge = format!("{} {}", parts[0], parts[1]);
                if !merges.contains(&merge) {
                    merges.push(merge);
                }
                parts.splice(0..2, [merged.clone()]);
                if !vocab.contains(&merged) {
                    vocab.push(merged);
                }
            }
        }
        vocab.push("<|startoftext|>".into());
        vocab.push("<|endoftext|>".into());
        let vocab: serde_json::Map<String, serde_json::Value> = vocab
            .into_iter()
            .enumerate()
            .map(|(i, t)| (t, serde_json::Value::from(i)))
            .collect();
        let merges = format!("#version: 0.2\n{}\n", merges.join("\n"));
        Self::from_vocab_merges(&serde_json::Value::Object(vocab).to_string(), &merges, None)
    }

    /// The tokenizer as a `tokenizer.json` (loadable with [`Self::from_json`]).
    pub fn to_json(&self) -> Result<String, TokenizerError> {
        self.inner
            .to_string(false)
            .map_err(|e| TokenizerError::Parse(e.to_string()))
    }

    /// Number of tokens in the vocabulary (the text encoder's `vocab_size`).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The end-of-text token's id (the text encoder's `eos_token_id`).
    pub fn eos_id(&self) -> u32 {
        self.eos
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
        let len = ids.len();
        ids.resize(self.max_len, self.pad);
        Ok(Tokens {
            ids,
            truncated: content.len() > room,
            len,
        })
    }
}
