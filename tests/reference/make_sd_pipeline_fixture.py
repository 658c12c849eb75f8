"""A tiny but complete Stable Diffusion folder and StableDiffusionPipeline outputs, for the
end-to-end parity test of cmd-model's content-frame sampler and cmdv's folder loader.

Pinned: diffusers==0.35.2, transformers==4.57.1, torch==2.9.1 (CPU), safetensors==0.6.2.
Run from the repository root: python tests/reference/make_sd_pipeline_fixture.py
Writes tests/fixtures/reference/sd_tiny/: a diffusers folder (model_index.json, unet/, vae/,
text_encoder/, tokenizer/, scheduler/) with SD1.5's layouts at tiny widths and a small BPE
vocabulary, and cases.json + io.safetensors: for each case the prompt, sampler, steps, guidance,
the starting latents, the token ids, the final latents and the decoded image in [0, 1].
"""

import json
import os

import torch
from diffusers import (AutoencoderKL, DDIMScheduler, DPMSolverMultistepScheduler,
                       StableDiffusionPipeline, UNet2DConditionModel)
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer
from transformers.models.clip.tokenization_clip import bytes_to_unicode

ROOT = os.path.join("tests", "fixtures", "reference", "sd_tiny")
WORDS = ["a", "red", "green", "blue", "circle", "square", "moving", "left", "right", "on",
         "background"]


def write_tokenizer(folder):
    """A CLIP BPE tokenizer whose vocabulary is the 256 byte symbols (with and without the
    end-of-word mark) plus left-to-right merges spelling WORDS."""
    chars = list(bytes_to_unicode().values())
    vocab = chars + [c + "</w>" for c in chars]
    merges = []
    for word in WORDS:
        symbols = list(word[:-1]) + [word[-1] + "</w>"]
        while len(symbols) > 1:
            merges.append(f"{symbols[0]} {symbols[1]}")
            symbols = [symbols[0] + symbols[1]] + symbols[2:]
            if symbols[0] not in vocab:
                vocab.append(symbols[0])
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "vocab.json"), "w") as f:
        json.dump({t: i for i, t in enumerate(vocab)}, f)
    with open(os.path.join(folder, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    tok = CLIPTokenizer(os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt"),
                        model_max_length=77)
    return tok


def jitter(module):
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return module.eval()


torch.manual_seed(11)
tokenizer = write_tokenizer(os.path.join("/tmp", "sd_tiny_tokenizer"))
text_encoder = jitter(CLIPTextModel(CLIPTextConfig(
    vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
    num_attention_heads=2, max_position_embeddings=77, hidden_act="quick_gelu",
    bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    pad_token_id=tokenizer.pad_token_id)))
unet = jitter(UNet2DConditionModel(
    sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
    block_out_channels=(8, 16, 16, 16), norm_num_groups=4, cross_attention_dim=16,
    attention_head_dim=2,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3))
vae = jitter(AutoencoderKL(
    in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
    up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
    latent_channels=4, norm_num_groups=4, sample_size=16))
# Stable Diffusion 1.5's own scheduler_config.json (a PNDM config, read by every sampler).
scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                          num_train_timesteps=1000, set_alpha_to_one=False, steps_offset=1,
                          clip_sample=False)
pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                               unet=unet, scheduler=scheduler, safety_checker=None,
                               feature_extractor=None, requires_safety_checker=False)
pipe.save_pretrained(ROOT, safe_serialization=True)
# Sample with the pipeline as users load it: schedulers made from the saved scheduler_config.json
# (a scheduler built in code would pass its unset options to from_config as "use your own
# defaults", e.g. DPM-Solver's linspace spacing instead of the file's leading spacing).
pipe = StableDiffusionPipeline.from_pretrained(ROOT, safety_checker=None,
                                               requires_safety_checker=False)
pipe.set_progress_bar_config(disable=True)

# (name, sampler, prompt, steps, guidance, height, width)
CASES = [
    ("ddim", "ddim", "a red circle moving left", 8, 7.5, 16, 32),
    ("dpm", "dpm-solver", "a Blue square on a green background!", 6, 3.0, 32, 16),
    ("uncond", "ddim", "", 4, 1.0, 16, 16),
]
tensors, cases = {}, []
for name, sampler, prompt, steps, guidance, height, width in CASES:
    cls = DDIMScheduler if sampler == "ddim" else DPMSolverMultistepScheduler
    pipe.scheduler = cls.from_pretrained(ROOT, subfolder="scheduler")
    latents = torch.randn(1, 4, height // 2, width // 2, generator=torch.Generator().manual_seed(7))
    args = dict(prompt=prompt, num_inference_steps=steps, guidance_scale=guidance, height=height,
                width=width, latents=latents.clone())
    with torch.no_grad():
        final = pipe(output_type="latent", **args).images
        image = pipe(output_type="pt", **args).images
    ids = tokenizer(prompt, padding="max_length", max_length=77, truncation=True).input_ids
    tensors[f"{name}.noise"] = latents.contiguous()
    tensors[f"{name}.latents"] = final.contiguous()
    tensors[f"{name}.image"] = image.contiguous()
    tensors[f"{name}.ids"] = torch.tensor(ids, dtype=torch.float32)
    cases.append(dict(name=name, sampler=sampler, prompt=prompt, steps=steps, guidance=guidance,
                      height=height, width=width))
save_file(tensors, os.path.join(ROOT, "io.safetensors"))
with open(os.path.join(ROOT, "cases.json"), "w") as f:
    json.dump(cases, f, indent=2)
print(f"wrote {ROOT}")
