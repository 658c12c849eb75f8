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
    let bytes = std::fs::read(
        fixtures().join("../../assets/clip-tokenizer/clip-vit-bpe-49408.tokenizer.json"),
    )
    .unwrap();
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
            // The prompt's own tokens run up to and including the first end token.
            let end = want.iter().position(|&id| id == tok.eos_id()).unwrap();
            assert_eq!(got.len, end + 1, "{key}: {prompt:?}");
        }
    }
}

#[test]
fn bad_tokenizer_files_are_refused() {
    let err = ClipTokenizer::from_json(b"{not json", None).unwrap_err();
    assert!(matches!(err, TokenizerError::Parse(_)), "{err}");
    let bytes = std::fs::read(
        fixtures().join("../../assets/clip-tokenizer/clip-vit-bpe-49408.tokenizer.json"),
    )
    .unwrap();
    let err = ClipTokenizer::from_json(&bytes, Some("<pad>")).unwrap_err();
    assert_eq!(err.to_string(), "tokenizer has no token '<pad>'");
}

/// A diffusers `tokenizer/` folder carries `vocab.json` + `merges.txt`: written here from the
/// fixture's tokenizer.json, they must give the same ids.
#[test]
fn vocab_and_merges_give_the_same_ids() {
    let bytes = std::fs::read(
        fixtures().join("../../assets/clip-tokenizer/clip-vit-bpe-49408.tokenizer.json"),
    )
    .unwrap();
    let json: Value = serde_json::from_slice(&bytes).unwrap();
    let vocab = json["model"]["vocab"].to_string();
    let mut merges = String::from("#version: 0.2\n");
    for pair in json["model"]["merges"].as_array().unwrap() {
        let pair = pair.as_array().unwrap();
        merges += &format!(
            "{} {}\n",
            pair[0].as_str().unwrap(),
            pair[1].as_str().unwrap()
        );
    }
    let text = std::fs::read_to_string(fixtures().join("reference/tokens.json")).unwrap();
    let fx: Value = serde_json::from_str(&text).unwrap();
    for pad in [None, Some("!")] {
        let from_pair = ClipTokenizer::from_vocab_merges(&vocab, &merges, pad).unwrap();
        let from_json = tokenizer(pad);
        for prompt in fx["prompts"].as_array().unwrap() {
            let prompt = prompt.as_str().unwrap();
            assert_eq!(
                from_pair.encode(prompt).unwrap(),
                from_json.encode(prompt).unwrap(),
                "{prompt:?}"
            );
        }
    }
    let err = ClipTokenizer::from_vocab_merges(&vocab, "#version: 0.2\na b c\n", None).unwrap_err();
    assert!(err.to_string().contains("merges.txt"), "{err}");
    let err = ClipTokenizer::from_vocab_merges("[1, 2]", &merges, None).unwrap_err();
    assert!(err.to_string().contains("vocab.json"), "{err}");
}

/// `for_words` builds the same tokenizer as the reference script's tiny vocabulary
/// (`make_sd_pipeline_fixture.py`, written with transformers' `bytes_to_unicode`).
#[test]
fn compact_tokenizer_matches_the_reference_construction() {
    let words = [
        "a",
        "red",
        "green",
        "blue",
        "circle",
        "square",
        "moving",
        "left",
        "right",
        "on",
        "background",
    ];
    let built = ClipTokenizer::for_words(&words).unwrap();
    let dir = fixtures().join("reference/sd_tiny/tokenizer");
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    let reference =
        ClipTokenizer::from_vocab_merges(&read("vocab.json"), &read("merges.txt"), None).unwrap();
    assert_eq!(built.vocab_size(), 555);
    assert_eq!(built.eos_id(), 554);
    for prompt in [
        "a red circle moving left",
        "A Blue square on a green background!",
        "",
        "zebra ü",
    ] {
        assert_eq!(
            built.encode(prompt).unwrap(),
            reference.encode(prompt).unwrap(),
            "{prompt}"
        );
    }
    // Each word is one token; the tokenizer survives a tokenizer.json round trip.
    let ids = built.encode("red circle").unwrap().ids;
    assert_eq!(
        &ids[..4],
        &[553, ids[1], ids[2], 554],
        "two words, two tokens"
    );
    let again = ClipTokenizer::from_json(built.to_json().unwrap().as_bytes(), None).unwrap();
    assert_eq!(
        again.encode("a red circle").unwrap(),
        built.encode("a red circle").unwrap()
    );
}
