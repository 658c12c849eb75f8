//! CLIP token ids equal transformers' CLIPTokenizerFast
//! (`tests/reference/make_tokenizer_fixture.py`) for plain, empty, unicode, messy-whitespace and
//! over-long prompts, with both Stable Diffusion paddings.

use std::path::Path;

use cmd_model::tokenizer::{ClipTokenizer, TokenizerError};
use serde_json::Value;

fn fixtures() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures"))
}

fn tokenizer(pad: Option<&str>) -> ClipTokenizer {
    let bytes =
        std::fs::read(fixtures().join("tokenizer/clip-vit-bpe-49408.tokenizer.json")).unwrap();
    ClipTokenizer::from_json(&bytes, pad).unwrap()
}

#[test]
fn ids_match_transformers() {
    let text = std::fs::read_to_string(fixtures().join("reference/tokens.json")).unwrap();
    let fx: Value = serde_json::from_str(&text).unwrap();
    let prompts: Vec<&str> = fx["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    for (key, pad) in [("pad_eos", None), ("pad_bang", Some("!"))] {
        let tok = tokenizer(pad);
        for (prompt, want) in prompts.iter().zip(fx[key].as_array().unwrap()) {
            let want: Vec<u32> = want
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            let got = tok.encode(prompt).unwrap();
            assert_eq!(got.ids, want, "{key}: {prompt:?}");
            assert_eq!(got.truncated, prompt.starts_with("word0"), "{prompt:?}");
        }
    }
}

#[test]
fn bad_tokenizer_files_are_refused() {
    let err = ClipTokenizer::from_json(b"{not json", None).unwrap_err();
    assert!(matches!(err, TokenizerError::Parse(_)), "{err}");
    let bytes =
        std::fs::read(fixtures().join("tokenizer/clip-vit-bpe-49408.tokenizer.json")).unwrap();
    let err = ClipTokenizer::from_json(&bytes, Some("<pad>")).unwrap_err();
    assert_eq!(err.to_string(), "tokenizer has no token '<pad>'");
}
