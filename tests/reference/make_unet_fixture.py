"""Reference UNet2DConditionModel from diffusers, for cmd-model's parity test.

Pinned: diffusers==0.35.2, torch==2.9.1 (CPU), safetensors==0.6.2.
Run from the repository root: python tests/reference/make_unet_fixture.py
Writes two small random `unet/` folders in diffusers form with the real block layouts at small
widths: `unet_sd15` (conv projections, one head count for all blocks) and `unet_sd21` (linear
projections, per-block head counts), each with io.safetensors: a latent, a timestep, text
states and the noise prediction.
"""

import os

import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import save_file


def make(name, seed, **extra):
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(8, 16, 24, 24), norm_num_groups=4, cross_attention_dim=12,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, **extra).eval()
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x = torch.randn(2, 4, 16, 8)
    t = torch.tensor([999, 420])
    text = torch.randn(2, 7, 12)
    with torch.no_grad():
        eps = unet(x, t, encoder_hidden_states=text).sample
    folder = os.path.join("tests", "fixtures", "reference", name)
    unet.save_pretrained(folder, safe_serialization=True)
    save_file({"sample": x, "timesteps": t.to(torch.float32), "text": text, "eps": eps.contiguous()},
              os.path.join(folder, "io.safetensors"))
    print(f"wrote {folder}")


make("unet_sd15", 4, attention_head_dim=2)
make("unet_sd21", 5, attention_head_dim=(2, 2, 4, 4), use_linear_projection=True)
