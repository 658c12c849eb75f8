"""PyTorch eager versions of this project's networks at the sizes `cmdv bench` times, for the
side-by-side benchmark (`tests/reference/bench_vs_pytorch.py`). Not run in CI.

Pinned: torch==2.15.0 (CPU), diffusers==0.42.1, transformers==5.24.0, numpy==2.4.6.

The networks are independent of the Rust code: the autoencoder of `make_ae_fixture.py` (from
the spec), DiT from the spec and DiT's `models.py` (as `make_dit_fixture.py`, here as a
module), diffusers' `UNet2DConditionModel`, transformers' `CLIPTextModel` and diffusers'
`DDIMScheduler`. Random weights: the time does not depend on them. Every row runs in float32
at batch 1 (a guided sampling step: batch 2), under `torch.inference_mode()`.

    python tests/reference/bench_torch.py ROW [--iters N] [--threads T]

prints one JSON line per timed quantity: {"row": ..., "ms": [one number per iteration]}.
ROW is one of the names in ROWS (`--list` prints them).
"""

import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_ae_fixture import Autoencoder  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")

# The autoencoder presets of crates/cmd-model/src/ae/config.rs:
# (channels, height, width, patch, hidden, motion_dim, depth, heads, head_dim).
AE_PRESETS = {
    "tiny": (3, 64, 64, 4, 96, 8, 2, 4, 24),
    "teaching": (3, 32, 32, 4, 96, 8, 2, 4, 24),
    "ucf64": (3, 64, 64, 2, 384, 8, 12, 8, 64),
}
# DiT presets (depth, hidden, heads), patch 2, as DIT_PRESETS in crates/cmd-model/src/dit.rs.
DIT_PRESETS = {"tiny": (4, 128, 4), "S": (12, 384, 6), "L": (24, 1024, 16)}


def ae_config(preset, depth=None):
    c, h, w, p, hidden, d, depth0, heads, head_dim = AE_PRESETS[preset]
    return dict(channels=c, frames=16, height=h, width=w, patch=p, hidden=hidden,
                motion_dim=d, depth=depth or depth0, heads=heads, head_dim=head_dim,
                base=10000.0)


def sincos_1d(dim, pos):
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0))
    out = pos.reshape(-1, 1).double() * omega.reshape(1, -1)
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1)


def sincos_2d(dim, rows, cols):
    gw, gh = torch.meshgrid(torch.arange(cols), torch.arange(rows), indexing="xy")
    return torch.cat([sincos_1d(dim // 2, gw), sincos_1d(dim // 2, gh)], dim=1).float()


def modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class DitBlock(nn.Module):
    def __init__(self, hidden, heads):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.fc1 = nn.Linear(hidden, 4 * hidden)
        self.fc2 = nn.Linear(4 * hidden, hidden)
        self.ada = nn.Linear(hidden, 6 * hidden)

    def forward(self, h, c):
        sm, cm, gm, sp, cp, gp = self.ada(F.silu(c)).chunk(6, dim=1)
        b, n, d = h.shape
        x = modulate(self.norm1(h), sm, cm)
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
        h = h + gm.unsqueeze(1) * self.proj(a)
        x = modulate(self.norm2(h), sp, cp)
        return h + gp.unsqueeze(1) * self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class Dit(nn.Module):
    """The motion DiT (spec section 3): motion and content tokens through adaLN-Zero blocks."""

    def __init__(self, preset, motion, content, content_patch, text_dim):
        super().__init__()
        depth, hidden, heads = DIT_PRESETS[preset]
        self.motion, self.content, self.kp, self.hidden = motion, content, content_patch, hidden
        d = motion[0]
        self.x_embed = nn.Conv2d(d, hidden, 2, stride=2)
        self.c_embed = nn.Conv2d(content[0], hidden, content_patch, stride=content_patch)
        self.t1, self.t2 = nn.Linear(256, hidden), nn.Linear(hidden, hidden)
        self.y_embed = nn.Linear(text_dim, hidden)
        self.blocks = nn.ModuleList([DitBlock(hidden, heads) for _ in range(depth)])
        self.final_norm = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.final = nn.Linear(hidden, 4 * d)
        self.final_ada = nn.Linear(hidden, 2 * hidden)

    def forward(self, z, t, content, text):
        b, d, frames, width = z.shape
        rows, cols = frames // 2, width // 2
        _, ch, cw = self.content
        x = self.x_embed(z).flatten(2).transpose(1, 2) + sincos_2d(self.hidden, rows, cols)
        y = self.c_embed(content).flatten(2).transpose(1, 2)
        y = y + sincos_2d(self.hidden, ch // self.kp, cw // self.kp)
        h = torch.cat([x, y], dim=1)
        half = 128
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
        args = t[:, None].float() * freqs[None]
        tf = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        c = self.t2(F.silu(self.t1(tf))) + self.y_embed(text)
        for blk in self.blocks:
            h = blk(h, c)
        shift, scale = self.final_ada(F.silu(c)).chunk(2, dim=1)
        out = self.final(modulate(self.final_norm(h[:, : rows * cols]), shift, scale))
        out = out.reshape(b, rows, cols, d, 2, 2).permute(0, 3, 1, 4, 2, 5)
        return out.reshape(b, d, frames, width)


def dit_shapes(preset):
    """(motion, content, content patch, text width) of `cmdv bench dit --preset P`: the `tiny`
    autoencoder's latents for `tiny`, SD1.5 at 512x512 (`sd15-512`) for the paper's sizes."""
    if preset == "tiny":
        return (8, 16, 16 + 16), (3, 64, 64), 4, 128
    return (8, 16, 32 + 32), (4, 64, 64), 4, 768


def unet_model(config):
    from diffusers import UNet2DConditionModel
    if config == "teaching":
        with open(os.path.join(ROOT, "models", "teaching", "model.json")) as f:
            u = json.load(f)["unet"]
        keep = ["in_channels", "out_channels", "block_out_channels", "down_block_types",
                "up_block_types", "layers_per_block", "norm_num_groups", "norm_eps",
                "cross_attention_dim", "attention_head_dim", "use_linear_projection",
                "flip_sin_to_cos", "freq_shift", "sample_size"]
        return UNet2DConditionModel(**{k: u[k] for k in keep}).eval(), (3, 32, 32), u[
            "cross_attention_dim"]
    # Stable Diffusion 1.5's unet/config.json (diffusers' defaults but the text width).
    return UNet2DConditionModel(cross_attention_dim=768).eval(), (4, 64, 64), 768


def timed(fn, iters):
    fn()  # warm-up
    out = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def bench_ae(preset, iters, depth=None):
    c = ae_config(preset, depth)
    ae = Autoencoder(c).eval()
    x = torch.rand(1, 16, c["channels"], c["height"], c["width"]) * 2 - 1
    content, _, motion = ae.encode(x)
    name = preset if depth is None else f"{preset}-depth{depth}"
    return {f"ae-{name}-encode": timed(lambda: ae.encode(x), iters),
            f"ae-{name}-decode": timed(lambda: ae.decode(content, motion), iters)}


def bench_dit(preset, iters):
    motion, content, kp, text_dim = dit_shapes(preset)
    dit = Dit(preset, motion, content, kp, text_dim).eval()
    # One guided step: the conditional and the null rows in one batch of 2.
    z = torch.randn(2, *motion)
    t = torch.tensor([500, 500])
    cf = torch.rand(2, *content) * 2 - 1
    text = torch.randn(2, text_dim)
    return {f"dit-{preset}-step": timed(lambda: dit(z, t, cf, text), iters)}


def bench_unet(config, iters):
    unet, shape, width = unet_model(config)
    x = torch.randn(1, *shape)
    text = torch.randn(1, 77, width)
    t = torch.tensor([500])
    return {f"unet-{config}": timed(lambda: unet(x, t, encoder_hidden_states=text), iters)}


def bench_generate(iters, steps=10, motion_steps=10):
    """The shipped teaching model's sizes: text, guided DDIM content and motion steps (the
    conditional and null rows in one batch of 2, as diffusers' pipelines), then decoding."""
    from diffusers import DDIMScheduler
    from transformers import CLIPTextConfig, CLIPTextModel
    with open(os.path.join(ROOT, "models", "teaching", "model.json")) as f:
        cfg = json.load(f)
    te = cfg["text_encoder"]
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=te["vocab_size"], hidden_size=te["hidden_size"],
        intermediate_size=te["intermediate_size"], num_hidden_layers=te["num_hidden_layers"],
        num_attention_heads=te["num_attention_heads"],
        max_position_embeddings=te["max_position_embeddings"], hidden_act=te["hidden_act"],
        eos_token_id=te["eos_token_id"])).eval()
    unet, shape, _ = unet_model("teaching")
    d = cfg["dit"]
    dit = Dit("tiny", (d["motion_channels"], d["frames"], d["motion_width"]),
              (d["content_channels"], d["content_height"], d["content_width"]),
              d["content_patch"], d["text_dim"])
    assert (d["depth"], d["hidden"], d["heads"]) == DIT_PRESETS["tiny"]
    dit.eval()
    ae = Autoencoder(ae_config("teaching")).eval()
    sched = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                 beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False,
                 steps_offset=1)
    content_sched = DDIMScheduler(**sched, prediction_type="v_prediction")
    motion_sched = DDIMScheduler(**sched, prediction_type=d["prediction"])
    ids = torch.randint(0, te["vocab_size"], (1, 77))
    null_ids = torch.randint(0, te["vocab_size"], (1, 77))
    times = {"generate-teaching-text": [], "generate-teaching-content": [],
             "generate-teaching-motion": [], "generate-teaching-decode": []}

    def once(record):
        t0 = time.perf_counter()
        cond = text_encoder(ids).last_hidden_state
        uncond = text_encoder(null_ids).last_hidden_state
        pooled = cond.mean(1)
        context = torch.cat([uncond, cond])
        t1 = time.perf_counter()
        x = torch.randn(1, *shape)
        content_sched.set_timesteps(steps)
        for t in content_sched.timesteps:
            out = unet(torch.cat([x, x]), t, encoder_hidden_states=context).sample
            u, c = out.chunk(2)
            x = content_sched.step(u + 7.5 * (c - u), t, x).prev_sample
        t2 = time.perf_counter()
        z = torch.randn(1, d["motion_channels"], d["frames"], d["motion_width"])
        contents, texts = torch.cat([x, x]), torch.cat([torch.zeros_like(pooled), pooled])
        motion_sched.set_timesteps(motion_steps)
        for t in motion_sched.timesteps:
            out = dit(torch.cat([z, z]), torch.stack([t, t]), contents, texts)
            u, c = out.chunk(2)
            z = motion_sched.step(u + 7.5 * (c - u), t, z).prev_sample
        t3 = time.perf_counter()
        ae.decode(x, z)
        t4 = time.perf_counter()
        if record:
            for key, ms in zip(times, [t1 - t0, t2 - t1, t3 - t2, t4 - t3]):
                times[key].append(ms * 1e3)

    once(False)
    for _ in range(iters):
        once(True)
    times["generate-teaching"] = [sum(v) for v in zip(*times.values())]
    return times


ROWS = {
    "ae-tiny": lambda n: bench_ae("tiny", n),
    "ae-teaching": lambda n: bench_ae("teaching", n),
    "ae-ucf64-depth2": lambda n: bench_ae("ucf64", n, depth=2),
    "dit-tiny": lambda n: bench_dit("tiny", n),
    "dit-S": lambda n: bench_dit("S", n),
    "dit-L": lambda n: bench_dit("L", n),
    "unet-teaching": lambda n: bench_unet("teaching", n),
    "unet-sd15": lambda n: bench_unet("sd15", n),
    "generate-teaching": lambda n: bench_generate(n),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("row", nargs="?")
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args()
    if args.list or args.row is None:
        print("\n".join(ROWS))
        return
    if args.row not in ROWS:
        parser.error(f"unknown row {args.row!r}; expected one of {', '.join(ROWS)}")
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    with torch.inference_mode():
        for name, ms in ROWS[args.row](args.iters).items():
            print(json.dumps({"row": name, "ms": ms}), flush=True)


if __name__ == "__main__":
    main()
