"""Reference CLIP text encoders (transformers' CLIPTextModel) for cmd-model's parity tests.

Pinned: transformers==4.57.1, torch==2.9.1 (CPU), safetensors==0.6.2; or, for the
transformers-5 copies, transformers==5.24.0, torch==2.15.0 (CPU), safetensors==0.8.0.
Run from the repository root: python tests/reference/make_clip_fixture.py
Writes two small random `text_encoder/` folders in diffusers form (config.json +
model.safetensors) under tests/fixtures/reference/, one with SD1.5's CLIP ViT-L activation
(quick_gelu) and one with SD2.1's OpenCLIP ViT-H activation (gelu), each with `io.safetensors`:
token ids, last hidden state, penultimate hidden state and pooled output.
With transformers 4.x they are clip_text_quick_gelu/ and clip_text_gelu/; with transformers 5.x
they are clip_text_quick_gelu_tf5/ and clip_text_gelu_tf5/, in transformers 5's own form
(model.safetensors keys without the `text_model.` prefix). Same configs and seeds, but not the
same numbers: transformers 5 draws its initial weights differently, so the ids, weights and
outputs differ from the 4.x folders.
"""

import os

import torch
import transformers
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel

# transformers 5 saves CLIPTextModel flattened (no `text_model.` prefix); its fixtures get their
# own folders so the 4.x ones stay as they are.
TF5 = int(transformers.__version__.split(".")[0]) >= 5
SUFFIX = "_tf5" if TF5 else ""


def make(name, act, seed):
    torch.manual_seed(seed)
    config = CLIPTextConfig(vocab_size=1000, hidden_size=32, intermediate_size=48,
                            num_hidden_layers=3, num_attention_heads=4,
                            max_position_embeddings=77, hidden_act=act,
                            bos_token_id=998, eos_token_id=999, pad_token_id=999)
    model = CLIPTextModel(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    # Two prompts of 77 ids: BOS, content, EOS, then padding (EOS for one, 0 for the other,
    # as SD1.5 and SD2.1 tokenizers pad).
    ids = torch.full((2, 77), 999, dtype=torch.int64)
    ids[1, :] = 0
    for row, length in ((0, 9), (1, 20)):
        ids[row, 0] = 998
        ids[row, 1:length + 1] = torch.randint(1, 990, (length,))
        ids[row, length + 1] = 999
    with torch.no_grad():
        out = model(input_ids=ids, output_hidden_states=True)
    folder = os.path.join("tests", "fixtures", "reference", name + SUFFIX)
    model.save_pretrained(folder, safe_serialization=True)
    if TF5:
        with safe_open(os.path.join(folder, "model.safetensors"), "pt") as f:
            assert not any(k.startswith("text_model.") for k in f.keys())
    save_file({"ids": ids.to(torch.int32).contiguous(),
               "last_hidden_state": out.last_hidden_state.contiguous(),
               "penultimate": out.hidden_states[-2].contiguous(),
               "pooled": out.pooler_output.contiguous()},
              os.path.join(folder, "io.safetensors"))
    print(f"wrote {folder}")


make("clip_text_quick_gelu", "quick_gelu", 1)
make("clip_text_gelu", "gelu", 2)
