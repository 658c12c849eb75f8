"""Reference AutoencoderKL (Stable Diffusion's VAE) from diffusers, for cmd-model's parity test.

Pinned: diffusers==0.35.2, torch==2.9.1 (CPU), safetensors==0.6.2.
Run from the repository root: python tests/reference/make_vae_fixture.py
Writes tests/fixtures/reference/vae/: a small random AutoencoderKL saved as a diffusers `vae/`
folder (config.json + diffusion_pytorch_model.safetensors) with SD's block layout at small
widths, and io.safetensors: an input image, the latent mean, and the decoding of that mean.
"""

import os

import torch
from diffusers import AutoencoderKL
from safetensors.torch import save_file

torch.manual_seed(3)
vae = AutoencoderKL(in_channels=3, out_channels=3,
                    down_block_types=("DownEncoderBlock2D",) * 3,
                    up_block_types=("UpDecoderBlock2D",) * 3,
                    block_out_channels=(8, 16, 16), layers_per_block=2, latent_channels=4,
                    norm_num_groups=4, sample_size=32).eval()
with torch.no_grad():
    for p in vae.parameters():
        p.add_(0.05 * torch.randn_like(p))
x = torch.rand(2, 3, 32, 24) * 2 - 1
with torch.no_grad():
    mean = vae.encode(x).latent_dist.mean
    decoded = vae.decode(mean).sample
folder = os.path.join("tests", "fixtures", "reference", "vae")
vae.save_pretrained(folder, safe_serialization=True)
save_file({"input": x.contiguous(), "mean": mean.contiguous(), "decoded": decoded.contiguous()},
          os.path.join(folder, "io.safetensors"))
print(f"wrote {folder}: latent {tuple(mean.shape)}")
