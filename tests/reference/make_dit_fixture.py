"""Reference motion DiT, written from the spec (section 3) and DiT's models.py, for cmd-model's
parity test.

Pinned: torch==2.9.1 (CPU), safetensors==0.6.2.
Run from the repository root: python tests/reference/make_dit_fixture.py
Writes tests/fixtures/reference/dit_small.safetensors: random weights (the zero-initialised
adaLN and output layers are filled with random values too, so every path is exercised) under
cmd-model's key names, and inputs/outputs for a rectangular motion grid and a rectangular
content frame.
"""

import math
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(0)
D, L, MW, P = 8, 16, 24, 2           # motion latent 8 x 16 x (8 + 16)
C, H, W, KP = 3, 32, 64, 8           # content frame 3 x 32 x 64, patches of 8
TEXT, HID, DEPTH, HEADS = 12, 32, 2, 4


def lin(i, o):
    return torch.nn.Linear(i, o)


def sincos_1d(dim, pos):
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0))
    out = pos.reshape(-1, 1).double() * omega.reshape(1, -1)
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1)


def sincos_2d(dim, rows, cols):
    # DiT's get_2d_sincos_pos_embed on a rows x cols grid: meshgrid(w, h), first half from w.
    gw, gh = torch.meshgrid(torch.arange(cols), torch.arange(rows), indexing="xy")
    return torch.cat([sincos_1d(dim // 2, gw), sincos_1d(dim // 2, gh)], dim=1).float()


def timestep_features(t, dim=256):
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


def norm(x):
    return F.layer_norm(x, (x.shape[-1],), eps=1e-6)


x_embed = torch.nn.Conv2d(D, HID, P, stride=P)       # DiT's PatchEmbed
c_embed = torch.nn.Conv2d(C, HID, KP, stride=KP)
t1, t2, y_embed = lin(256, HID), lin(HID, HID), lin(TEXT, HID)
blocks = [dict(qkv=lin(HID, 3 * HID), proj=lin(HID, HID), fc1=lin(HID, 4 * HID),
               fc2=lin(4 * HID, HID), ada=lin(HID, 6 * HID)) for _ in range(DEPTH)]
final, final_ada = lin(HID, P * P * D), lin(HID, 2 * HID)


def attention(x, qkv, proj):
    b, n, d = x.shape
    q, k, v = qkv(x).reshape(b, n, 3, HEADS, d // HEADS).permute(2, 0, 3, 1, 4)
    out = F.scaled_dot_product_attention(q, k, v)
    return proj(out.transpose(1, 2).reshape(b, n, d))


def forward(z, t, content, text):
    b = z.shape[0]
    rows, cols = L // P, MW // P
    x = x_embed(z).flatten(2).transpose(1, 2) + sincos_2d(HID, rows, cols)
    y = c_embed(content).flatten(2).transpose(1, 2) + sincos_2d(HID, H // KP, W // KP)
    h = torch.cat([x, y], dim=1)
    c = t2(F.silu(t1(timestep_features(t)))) + y_embed(text)
    for blk in blocks:
        sm, cm, gm, sp, cp, gp = blk["ada"](F.silu(c)).chunk(6, dim=1)
        h = h + gm.unsqueeze(1) * attention(modulate(norm(h), sm, cm), blk["qkv"], blk["proj"])
        h = h + gp.unsqueeze(1) * blk["fc2"](F.gelu(blk["fc1"](modulate(norm(h), sp, cp)),
                                                     approximate="tanh"))
    shift, scale = final_ada(F.silu(c)).chunk(2, dim=1)
    out = final(modulate(norm(h[:, : rows * cols]), shift, scale))      # b (r c) (D p p)
    out = out.reshape(b, rows, cols, D, P, P).permute(0, 3, 1, 4, 2, 5)
    return out.reshape(b, D, L, MW)


weights = {
    "x_embedder.weight": x_embed.weight.reshape(HID, -1), "x_embedder.bias": x_embed.bias,
    "content_embedder.weight": c_embed.weight.reshape(HID, -1),
    "content_embedder.bias": c_embed.bias,
    "t_embedder.linear_1.weight": t1.weight, "t_embedder.linear_1.bias": t1.bias,
    "t_embedder.linear_2.weight": t2.weight, "t_embedder.linear_2.bias": t2.bias,
    "y_embedder.weight": y_embed.weight, "y_embedder.bias": y_embed.bias,
    "final_layer.linear.weight": final.weight, "final_layer.linear.bias": final.bias,
    "final_layer.adaln_modulation.weight": final_ada.weight,
    "final_layer.adaln_modulation.bias": final_ada.bias,
}
for i, blk in enumerate(blocks):
    for name, key in [("qkv", "attn.qkv"), ("proj", "attn.proj"), ("fc1", "mlp.fc1"),
                      ("fc2", "mlp.fc2"), ("ada", "adaln_modulation")]:
        weights[f"blocks.{i}.{key}.weight"] = blk[name].weight
        weights[f"blocks.{i}.{key}.bias"] = blk[name].bias

z = torch.randn(2, D, L, MW)
t = torch.tensor([999, 17])
content = torch.rand(2, C, H, W) * 2 - 1
text = torch.randn(2, TEXT)
with torch.no_grad():
    eps = forward(z, t, content, text)
    eps_null = forward(z, t, content, torch.zeros_like(text))
tensors = {f"weights.{k}": v.detach().contiguous() for k, v in weights.items()}
tensors.update({"motion": z, "timesteps": t.float(), "content": content, "text": text,
                "eps": eps.contiguous(), "eps_null": eps_null.contiguous()})
out = os.path.join("tests", "fixtures", "reference", "dit_small.safetensors")
save_file(tensors, out)
print(f"wrote {out}: {sum(v.numel() for v in weights.values())} parameters")
