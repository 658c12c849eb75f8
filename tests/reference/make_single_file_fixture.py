"""Tiny Stable Diffusion 1.x and 2.x checkpoints in the original single-file (LDM / CompVis)
layout and in diffusers folder form, with StableDiffusionPipeline.from_single_file outputs, for
the parity tests of the single-file loader.

Pinned: diffusers==0.42.1, transformers==5.24.0, torch==2.15.0 (CPU), safetensors==0.8.0,
numpy==2.4.6.
Run from the repository root: python tests/reference/make_single_file_fixture.py
Writes tests/fixtures/reference/single_file/:
  sd1.safetensors, sd2.safetensors  one file each in the layout of v1-5-pruned-emaonly.safetensors
      (CLIP under cond_stage_model.transformer.) and v2-1_768-ema-pruned.safetensors (OpenCLIP
      under cond_stage_model.model., with one more resblock than the diffusers text encoder, as
      SD 2.x uses the penultimate layer), written by this script's own diffusers -> LDM key
      mapping and checked against diffusers' reader (every parameter equal);
  sd1/, sd2/  the same weights as diffusers folders (model_index.json, unet/, vae/,
      text_encoder/, scheduler/; no tokenizer/: the models use the real 49,408-token CLIP
      vocabulary, assets/clip-tokenizer/). The text encoders are written by transformers 5 (keys
      without `text_model.`, `dtype` rather than `torch_dtype` in config.json); sd2's unet, vae
      and text encoder are sharded (*.safetensors.index.json + shards). sd2 is a v-prediction
      model (as SD 2.x 768).
  cases.json + io.safetensors  for each case: name, model, sampler, prediction type, prompt,
      steps, guidance, size; the starting latents (`<name>.noise`), the token ids (`.ids`, as
      float32), the final latents (`.latents`) and the decoded image in [0, 1] (`.image`).
All weights are stored as float16 (the schedule buffers betas, alphas_cumprod,
alphas_cumprod_prev as float32, SD1's position_ids as int64); every reference output comes from
models reloaded from the written files in float32: the pipeline that
StableDiffusionPipeline.from_single_file reads from the single file (given the folder's configs
and the bundled tokenizer, SD1 padding with <|endoftext|>, SD2 with "!"), checked to give
exactly the outputs of the pipeline read from the folder.
"""

import json
import os
import shutil
import tempfile

import numpy as np
import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from diffusers.utils import logging as diffusers_logging
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizerFast
from transformers.utils import logging as transformers_logging

ROOT = os.path.join("tests", "fixtures", "reference", "single_file")
TOKENIZER = os.path.join("assets", "clip-tokenizer", "clip-vit-bpe-49408.tokenizer.json")
LAYERS = 2  # UNet and VAE layers_per_block, as in real SD
UNET_BLOCKS = 4
BETA_START, BETA_END, TIMESTEPS = 0.00085, 0.012, 1000
# Real SD files keep this many resblocks more than the diffusers text encoder (SD 2.x only).
OPENCLIP_EXTRA = 1

transformers_logging.disable_progress_bar()
diffusers_logging.disable_progress_bar()


def jitter(module):
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return module.eval()


def tokenizer_for(model):
    """The bundled CLIP tokenizer with SD1's (<|endoftext|>) or SD2's ("!") padding."""
    return CLIPTokenizerFast(tokenizer_file=TOKENIZER, bos_token="<|startoftext|>",
                             eos_token="<|endoftext|>", unk_token="<|endoftext|>",
                             pad_token="<|endoftext|>" if model == "sd1" else "!",
                             model_max_length=77)


# ---------------------------------------------------------------------------------------------
# The tiny models.


def build(model, seed):
    """(text encoder with OPENCLIP_EXTRA more layers for sd2, text encoder, unet, vae,
    scheduler), float16, jittered in float32 first."""
    torch.manual_seed(seed)
    sd2 = model == "sd2"
    text_config = dict(vocab_size=49408, hidden_size=4, intermediate_size=8,
                       num_attention_heads=1, max_position_embeddings=77,
                       hidden_act="gelu" if sd2 else "quick_gelu",
                       bos_token_id=49406, eos_token_id=49407,
                       pad_token_id=0 if sd2 else 49407)
    full_text = jitter(CLIPTextModel(CLIPTextConfig(
        num_hidden_layers=2 + (OPENCLIP_EXTRA if sd2 else 0), **text_config)))
    text_encoder = CLIPTextModel(CLIPTextConfig(num_hidden_layers=2, **text_config)).eval()
    dropped = tuple(f"encoder.layers.{i}." for i in range(2, 2 + OPENCLIP_EXTRA))
    kept = {k: v for k, v in full_text.state_dict().items() if not k.startswith(dropped)}
    text_encoder.load_state_dict(kept, strict=True)
    unet = jitter(UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=LAYERS,
        block_out_channels=(8, 16, 16, 16), norm_num_groups=8, cross_attention_dim=4,
        # What shapes cannot tell is a constant of the family, which the Rust loader uses:
        # SD 1.x has 8 heads per block; SD 2.x heads are 64 wide (here: 1 head per block);
        # GroupNorm has 32 groups, or the narrowest width when smaller (here: 8).
        attention_head_dim=(1, 1, 1, 1) if sd2 else 8, use_linear_projection=sd2,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3))
    vae = jitter(AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3, block_out_channels=(8, 16, 16),
        layers_per_block=LAYERS, latent_channels=4, norm_num_groups=8, sample_size=32,
        scaling_factor=0.18215))
    # Stable Diffusion's DDIM settings (as make_sd_pipeline_fixture.py).
    scheduler = DDIMScheduler(beta_start=BETA_START, beta_end=BETA_END,
                              beta_schedule="scaled_linear", num_train_timesteps=TIMESTEPS,
                              set_alpha_to_one=False, steps_offset=1, clip_sample=False,
                              prediction_type="v_prediction" if sd2 else "epsilon")
    openclip_extra = None
    if sd2:
        width = text_config["hidden_size"]
        openclip_extra = {"text_projection": 0.3 * torch.randn(width, 8),
                          "logit_scale": torch.tensor(4.6052)}
    half = lambda m: m.to(torch.float16)
    return half(full_text), half(text_encoder), half(unet), half(vae), scheduler, openclip_extra


# ---------------------------------------------------------------------------------------------
# diffusers -> LDM key mapping (the inverse of diffusers' loaders/single_file_utils.py).

UNET_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
               "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}


def resnet_rest(rest):
    head, _, tail = rest.partition(".")
    return f"{UNET_RESNET[head]}.{tail}"


def unet_key(key, up_has_attention):
    top = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
           "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}
    module, _, param = key.rpartition(".")
    if module in top:
        return f"{top[module]}.{param}"
    parts = key.split(".")
    if parts[0] == "down_blocks":
        block, kind = int(parts[1]), parts[2]
        if kind == "downsamplers":  # down_blocks.b.downsamplers.0.conv.<p>
            index = 1 + block * (LAYERS + 1) + LAYERS
            return f"input_blocks.{index}.0.op.{parts[-1]}"
        index = 1 + block * (LAYERS + 1) + int(parts[3])
        rest = ".".join(parts[4:])
        if kind == "resnets":
            return f"input_blocks.{index}.0.{resnet_rest(rest)}"
        if kind == "attentions":
            return f"input_blocks.{index}.1.{rest}"
    if parts[0] == "mid_block":
        rest = ".".join(parts[3:])
        if parts[1] == "resnets":
            return f"middle_block.{2 * int(parts[2])}.{resnet_rest(rest)}"
        if parts[1] == "attentions":
            return f"middle_block.1.{rest}"
    if parts[0] == "up_blocks":
        block, kind = int(parts[1]), parts[2]
        if kind == "upsamplers":  # after the block's last resnet (and its attention)
            index = block * (LAYERS + 1) + LAYERS
            slot = 2 if up_has_attention[block] else 1
            return f"output_blocks.{index}.{slot}.conv.{parts[-1]}"
        index = block * (LAYERS + 1) + int(parts[3])
        rest = ".".join(parts[4:])
        if kind == "resnets":
            return f"output_blocks.{index}.0.{resnet_rest(rest)}"
        if kind == "attentions":
            return f"output_blocks.{index}.1.{rest}"
    raise KeyError(f"no LDM name for unet key {key}")


def unet_to_ldm(unet):
    up_has_attention = ["CrossAttn" in t for t in unet.config.up_block_types]
    return {"model.diffusion_model." + unet_key(k, up_has_attention): v
            for k, v in unet.state_dict().items()}


VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v",
                 "to_out.0": "proj_out"}


def vae_key(key, n_up):
    top = {"quant_conv", "post_quant_conv", "encoder.conv_in", "encoder.conv_out",
           "decoder.conv_in", "decoder.conv_out"}
    module, _, param = key.rpartition(".")
    if module in top:
        return key
    if module in ("encoder.conv_norm_out", "decoder.conv_norm_out"):
        return f"{module.split('.')[0]}.norm_out.{param}"
    parts = key.split(".")
    side = parts[0]
    if parts[1] == "mid_block":
        if parts[2] == "resnets":
            rest = ".".join(parts[4:]).replace("conv_shortcut", "nin_shortcut")
            return f"{side}.mid.block_{int(parts[3]) + 1}.{rest}"
        if parts[2] == "attentions":
            inner = ".".join(parts[4:-1])
            return f"{side}.mid.attn_1.{VAE_ATTENTION[inner]}.{param}"
    if parts[1] in ("down_blocks", "up_blocks"):
        block = int(parts[2])
        ldm_block = block if side == "encoder" else n_up - 1 - block
        stage = "down" if side == "encoder" else "up"
        if parts[3] == "resnets":
            rest = ".".join(parts[5:]).replace("conv_shortcut", "nin_shortcut")
            return f"{side}.{stage}.{ldm_block}.block.{parts[4]}.{rest}"
        if parts[3] in ("downsamplers", "upsamplers"):
            sampler = "downsample" if side == "encoder" else "upsample"
            return f"{side}.{stage}.{ldm_block}.{sampler}.conv.{param}"
    raise KeyError(f"no LDM name for vae key {key}")


def vae_to_ldm(vae):
    n_up = len(vae.config.up_block_types)
    out = {}
    for key, value in vae.state_dict().items():
        name = vae_key(key, n_up)
        if ".mid.attn_1." in name and name.endswith("weight") and ".norm." not in name:
            value = value[:, :, None, None]  # LDM's attention projections are 1x1 convs
        out["first_stage_model." + name] = value
    return out


def clip_to_ldm(text_encoder):
    """SD 1.x: transformers-4 names (`text_model.` included) under cond_stage_model.transformer."""
    out = {f"cond_stage_model.transformer.text_model.{k}": v
           for k, v in text_encoder.state_dict().items()}
    out["cond_stage_model.transformer.text_model.embeddings.position_ids"] = (
        torch.arange(77, dtype=torch.int64)[None])
    return out


def openclip_to_ldm(text_encoder, extra):
    """SD 2.x: OpenCLIP names under cond_stage_model.model.; q, k, v stacked in in_proj."""
    sd = text_encoder.state_dict()
    p = "cond_stage_model.model."
    out = {p + "token_embedding.weight": sd.pop("embeddings.token_embedding.weight"),
           p + "positional_embedding": sd.pop("embeddings.position_embedding.weight"),
           p + "ln_final.weight": sd.pop("final_layer_norm.weight"),
           p + "ln_final.bias": sd.pop("final_layer_norm.bias"),
           p + "text_projection": extra["text_projection"].to(torch.float16),
           p + "logit_scale": extra["logit_scale"].to(torch.float16)}
    for i in range(text_encoder.config.num_hidden_layers):
        src, dst = f"encoder.layers.{i}.", f"{p}transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[dst + f"attn.in_proj_{kind}"] = torch.cat(
                [sd.pop(src + f"self_attn.{x}_proj.{kind}") for x in "qkv"])
            for a, b in (("self_attn.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"),
                         ("layer_norm2", "ln_2"), ("mlp.fc1", "mlp.c_fc"),
                         ("mlp.fc2", "mlp.c_proj")):
                out[dst + f"{b}.{kind}"] = sd.pop(src + f"{a}.{kind}")
    assert not sd, f"unmapped text encoder keys {list(sd)}"
    return out


def schedule_buffers():
    """LatentDiffusion's registered schedule (numpy float64, stored as float32)."""
    betas = np.linspace(BETA_START ** 0.5, BETA_END ** 0.5, TIMESTEPS, dtype=np.float64) ** 2
    alphas_cumprod = np.cumprod(1.0 - betas)
    prev = np.append(1.0, alphas_cumprod[:-1])
    return {k: torch.tensor(v, dtype=torch.float32)
            for k, v in (("betas", betas), ("alphas_cumprod", alphas_cumprod),
                         ("alphas_cumprod_prev", prev))}


# ---------------------------------------------------------------------------------------------
# Writing and checking.


def safetensors_keys(path):
    with safe_open(path, "pt") as f:
        return list(f.keys())


def write_folder(model, folder, text_encoder, unet, vae, scheduler):
    sharded = model == "sd2"
    shard = lambda size: dict(max_shard_size=size) if sharded else {}
    unet.save_pretrained(os.path.join(folder, "unet"), safe_serialization=True, **shard("150KB"))
    vae.save_pretrained(os.path.join(folder, "vae"), safe_serialization=True, **shard("150KB"))
    text_encoder.save_pretrained(os.path.join(folder, "text_encoder"), **shard("150KB"))
    scheduler.save_pretrained(os.path.join(folder, "scheduler"))
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder,
                                   tokenizer=tokenizer_for(model), unet=unet,
                                   scheduler=scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.save_config(folder)  # model_index.json only

    te = os.path.join(folder, "text_encoder")
    te_config = json.load(open(os.path.join(te, "config.json")))
    assert "dtype" in te_config and "torch_dtype" not in te_config, te_config
    for sub, weights in (("unet", "diffusion_pytorch_model"), ("vae", "diffusion_pytorch_model"),
                         ("text_encoder", "model")):
        files = sorted(os.listdir(os.path.join(folder, sub)))
        shards = [f for f in files if f.startswith(weights + "-") and f.endswith(".safetensors")]
        if sharded:
            assert f"{weights}.safetensors.index.json" in files and len(shards) >= 2, files
        else:
            assert f"{weights}.safetensors" in files and not shards, files
        paths = [os.path.join(folder, sub, f) for f in (shards or [f"{weights}.safetensors"])]
        keys = [k for p in paths for k in safetensors_keys(p)]
        if sub == "text_encoder":
            assert keys and not any(k.startswith("text_model.") for k in keys), keys[:4]
        for p in paths:
            with safe_open(p, "pt") as f:
                assert all(f.get_slice(k).get_dtype() == "F16" for k in f.keys()), p


def write_ldm(model, path, full_text, unet, vae, extra):
    tensors = {**unet_to_ldm(unet), **vae_to_ldm(vae), **schedule_buffers()}
    tensors.update(clip_to_ldm(full_text) if model == "sd1" else openclip_to_ldm(full_text, extra))
    save_file({k: v.contiguous() for k, v in tensors.items()}, path)
    return tensors


def config_folder(model, folder, tmp):
    """The diffusers folder's configs (no weights) plus a tokenizer/, as from_single_file's
    `config` wants."""
    config = os.path.join(tmp, model)
    shutil.copytree(folder, config, ignore=shutil.ignore_patterns("*.safetensors"))
    tokenizer_for(model).save_pretrained(os.path.join(config, "tokenizer"))
    return config


def assert_same_weights(name, loaded, expected):
    a, b = loaded.state_dict(), expected.state_dict()
    assert a.keys() == b.keys(), (name, sorted(a.keys() ^ b.keys())[:8])
    for k in b:
        assert a[k].dtype == torch.float32 and b[k].dtype == torch.float32, (name, k)
        assert torch.equal(a[k], b[k]), (name, k)
    print(f"  {name}: {len(b)} tensors equal")


# (name, model, sampler, prediction_type, prompt, steps, guidance, height, width)
CASES = [
    ("sd1", "sd1", "ddim", "epsilon", "a red circle moving left", 4, 7.5, 32, 32),
    ("sd2", "sd2", "ddim", "v_prediction", "a blue square on a green background", 4, 5.0, 32, 32),
    ("sd2-eps", "sd2", "ddim", "epsilon", "a blue square on a green background", 3, 3.0, 32, 32),
]

os.makedirs(ROOT, exist_ok=True)
pipes = {}
with tempfile.TemporaryDirectory() as tmp:
    for model, seed in (("sd1", 21), ("sd2", 22)):
        folder = os.path.join(ROOT, model)
        shutil.rmtree(folder, ignore_errors=True)
        full_text, text_encoder, unet, vae, scheduler, extra = build(model, seed)
        write_folder(model, folder, text_encoder, unet, vae, scheduler)
        ldm_path = os.path.join(ROOT, f"{model}.safetensors")
        ldm = write_ldm(model, ldm_path, full_text, unet, vae, extra)
        print(f"{ldm_path}: {len(ldm)} tensors")

        # diffusers' own reader of the LDM file, against the folder, both in float32.
        pipe = StableDiffusionPipeline.from_single_file(
            ldm_path, config=config_folder(model, folder, tmp), local_files_only=True,
            dtype=torch.float32, safety_checker=None, feature_extractor=None,
            requires_safety_checker=False)
        folder_pipe = StableDiffusionPipeline.from_pretrained(
            folder, tokenizer=tokenizer_for(model), dtype=torch.float32,
            safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        for part in ("unet", "vae", "text_encoder"):
            assert_same_weights(f"{model} {part}", getattr(pipe, part), getattr(folder_pipe, part))
        assert pipe.scheduler.config.prediction_type == scheduler.config.prediction_type
        for p in (pipe, folder_pipe):
            p.set_progress_bar_config(disable=True)
        pipes[model] = (pipe, folder_pipe)

tensors, cases = {}, []
for name, model, sampler, prediction, prompt, steps, guidance, height, width in CASES:
    pipe, folder_pipe = pipes[model]
    assert pipe.vae_scale_factor == 4
    # The user's prediction-type override: the file's scheduler config with that one change.
    scheduler = DDIMScheduler.from_config(pipe.scheduler.config, prediction_type=prediction)
    latents = torch.randn(1, 4, height // 4, width // 4,
                          generator=torch.Generator().manual_seed(7))
    args = dict(prompt=prompt, num_inference_steps=steps, guidance_scale=guidance, height=height,
                width=width)
    outputs = []
    for p in (pipe, folder_pipe):
        p.scheduler = DDIMScheduler.from_config(scheduler.config)
        with torch.no_grad():
            final = p(output_type="latent", latents=latents.clone(), **args).images
            image = p(output_type="pt", latents=latents.clone(), **args).images
        outputs.append((final, image))
    (final, image), (final_b, image_b) = outputs
    assert torch.equal(final, final_b) and torch.equal(image, image_b), name
    ids = pipe.tokenizer(prompt, padding="max_length", max_length=77, truncation=True).input_ids
    tensors[f"{name}.noise"] = latents.contiguous()
    tensors[f"{name}.latents"] = final.contiguous()
    tensors[f"{name}.image"] = image.contiguous()
    tensors[f"{name}.ids"] = torch.tensor(ids, dtype=torch.float32)
    cases.append(dict(name=name, model=model, sampler=sampler, prediction_type=prediction,
                      prompt=prompt, steps=steps, guidance=guidance, height=height, width=width))
    print(f"{name}: latents mean {final.mean():.6f} std {final.std():.6f}, "
          f"image mean {image.mean():.6f}")
save_file(tensors, os.path.join(ROOT, "io.safetensors"))
with open(os.path.join(ROOT, "cases.json"), "w") as f:
    json.dump(cases, f, indent=2)
for model in ("sd1", "sd2"):
    ids = tokenizer_for(model)("a red circle moving left", padding="max_length", max_length=77,
                               truncation=True).input_ids
    print(f"{model} ids for 'a red circle moving left': {ids}")
print(f"wrote {ROOT}")
