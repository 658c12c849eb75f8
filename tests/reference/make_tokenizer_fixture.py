"""Reference CLIP token ids from transformers' CLIPTokenizerFast, for cmd-model's tokenizer test.

Pinned: transformers==4.57.1, tokenizers==0.22.2 (as installed with it).
Run from the repository root: python tests/reference/make_tokenizer_fixture.py
Writes tests/fixtures/reference/tokens.json: ids (padded/truncated to 77) for a set of prompts,
with SD1.5's padding (<|endoftext|>) and SD2.1's ("!", id 0).
"""

import json

from transformers import CLIPTokenizerFast

PROMPTS = [
    "a photo of a cat",
    "",
    "A Photo of an ASTRONAUT riding a horse on Mars, 4k!",
    "Ünïcödé café — 東京の夜景 🚀 naïve façade",
    "  lots   of\twhite\nspace  ",
    " ".join(f"word{i}" for i in range(100)),
]

out = {"prompts": PROMPTS, "pad_eos": [], "pad_bang": []}
for key, pad in (("pad_eos", "<|endoftext|>"), ("pad_bang", "!")):
    tok = CLIPTokenizerFast(tokenizer_file="assets/clip-tokenizer/clip-vit-bpe-49408.tokenizer.json",
                            bos_token="<|startoftext|>", eos_token="<|endoftext|>",
                            unk_token="<|endoftext|>", pad_token=pad)
    for p in PROMPTS:
        out[key].append(tok(p, padding="max_length", max_length=77, truncation=True).input_ids)
with open("tests/fixtures/reference/tokens.json", "w") as f:
    json.dump(out, f)
print(out["pad_eos"][0][:8], out["pad_bang"][0][:8])
