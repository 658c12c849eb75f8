"""PyTorch reference for the CMD autoencoder (spec section 1), written independently of the
Rust code from the spec, to check cmd-model's numerics.

Pinned: torch==2.9.1 (CPU), safetensors==0.6.2, numpy==2.2.6.
Run from the repository root: python tests/reference/make_ae_fixture.py
Writes tests/fixtures/reference/ae_small.safetensors: the weights of a small random autoencoder
(PyTorch names and layouts), plus `io.*` tensors: an input batch and the reference content
frame, importance weights, motion latent and reconstruction. H' != W' on purpose, so a wrong
motion split order would show.
"""

import math
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

CFG = dict(channels=3, frames=4, height=16, width=8, patch=4, hidden=32, motion_dim=4,
           depth=2, heads=2, head_dim=8, base=10000.0)


def rope_tables(angles):
    """angles: (n, d/2) -> cos, sin of shape (n, d); pair i is (i, i + d/2)."""
    return torch.cat([angles.cos()] * 2, -1), torch.cat([angles.sin()] * 2, -1)


def temporal_rope(n, d, base):
    freqs = base ** (-2.0 * torch.arange(d // 2, dtype=torch.float64) / d)
    return rope_tables(torch.arange(n, dtype=torch.float64)[:, None] * freqs)


def axial_rope(rows, cols, d, base):
    freqs = base ** (-2.0 * torch.arange(d // 4, dtype=torch.float64) / (d // 2))
    h, w = torch.meshgrid(torch.arange(rows, dtype=torch.float64),
                          torch.arange(cols, dtype=torch.float64), indexing="ij")
    angles = torch.cat([h.reshape(-1, 1) * freqs, w.reshape(-1, 1) * freqs], -1)
    return rope_tables(angles)


def apply_rope(x, table):
    cos, sin = (t.float() for t in table)
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], -1)
    return x * cos + rotated * sin


class Attention(nn.Module):
    def __init__(self, dim, heads, head_dim):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.norm = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, 3 * heads * head_dim, bias=False)
        self.to_out = nn.Linear(heads * head_dim, dim)

    def forward(self, x, table):
        b, n, _ = x.shape
        qkv = self.to_qkv(self.norm(x)).reshape(b, n, 3, self.heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(apply_rope(q, table), apply_rope(k, table), v)
        return x + self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class FeedForward(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.proj_in = nn.Linear(dim, 8 * dim)
        self.proj_out = nn.Linear(4 * dim, dim)

    def forward(self, x):
        a, gate = self.proj_in(self.norm(x)).chunk(2, -1)
        return x + self.proj_out(a * F.gelu(gate))


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.time_attn = Attention(c["hidden"], c["heads"], c["head_dim"])
        self.space_attn = Attention(c["hidden"], c["heads"], c["head_dim"])
        self.ff = FeedForward(c["hidden"])

    def forward(self, x, t_table, s_table):  # x: (b, l, n, c)
        b, l, n, c = x.shape
        x = self.time_attn(x.transpose(1, 2).reshape(b * n, l, c), t_table)
        x = x.reshape(b, n, l, c).transpose(1, 2).reshape(b * l, n, c)
        x = self.space_attn(x, s_table)
        return self.ff(x.reshape(b, l, n, c))


class Transformer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.blocks = nn.ModuleList([Block(c) for _ in range(c["depth"])])
        self.norm = nn.LayerNorm(c["hidden"])

    def forward(self, x, t_table, s_table):
        for block in self.blocks:
            x = block(x, t_table, s_table)
        return self.norm(x)


def patchify(x, p):  # b l c (h p1) (w p2) -> b l (h w) (c p1 p2)
    b, l, c, h, w = x.shape
    x = x.reshape(b, l, c, h // p, p, w // p, p).permute(0, 1, 3, 5, 2, 4, 6)
    return x.reshape(b, l, (h // p) * (w // p), c * p * p)


def unpatchify(x, p, gh, gw):
    b, l, _, f = x.shape
    c = f // (p * p)
    x = x.reshape(b, l, gh, gw, c, p, p).permute(0, 1, 4, 2, 5, 3, 6)
    return x.reshape(b, l, c, gh * p, gw * p)


class Autoencoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        pd, h, d = c["channels"] * c["patch"] ** 2, c["hidden"], c["motion_dim"]
        self.patch_embed = nn.Linear(pd, h)
        self.encoder = Transformer(c)
        self.importance_head = nn.Linear(h, pd)
        self.to_motion_y = nn.Linear(h, d)
        self.to_motion_x = nn.Linear(h, d)
        self.content_embed = nn.Linear(pd, h)
        self.from_motion_y = nn.Linear(d, h)
        self.from_motion_x = nn.Linear(d, h)
        self.decoder = Transformer(c)
        self.head = nn.Linear(h, pd)

    def tables(self):
        c = self.c
        gh, gw = c["height"] // c["patch"], c["width"] // c["patch"]
        return (temporal_rope(c["frames"], c["head_dim"], c["base"]),
                axial_rope(gh, gw, c["head_dim"], c["base"]))

    def encode(self, x):
        """(content, weights, motion) of clips x: (b, l, c, h, w)."""
        c, p = self.c, self.c["patch"]
        gh, gw = c["height"] // p, c["width"] // p
        b, l = x.shape[:2]
        t_table, s_table = self.tables()
        u = self.encoder(self.patch_embed(patchify(x, p)), t_table, s_table)
        weights = unpatchify(self.importance_head(u), p, gh, gw).softmax(1)
        content = (weights * x).sum(1)
        u = u.reshape(b, l, gh, gw, -1)
        z_y = torch.tanh(self.to_motion_y(u.mean(3))).permute(0, 3, 1, 2)  # b d l h
        z_x = torch.tanh(self.to_motion_x(u.mean(2))).permute(0, 3, 1, 2)  # b d l w
        return content, weights, torch.cat([z_y, z_x], -1)

    def decode(self, content, motion):
        """The clip of (content, motion) only."""
        c, p = self.c, self.c["patch"]
        gh, gw = c["height"] // p, c["width"] // p
        b, l = motion.shape[0], c["frames"]
        t_table, s_table = self.tables()
        z_y, z_x = motion[..., :gh], motion[..., gh:]
        v_c = self.content_embed(patchify(content[:, None], p)).reshape(b, 1, gh, gw, -1)
        v_y = self.from_motion_y(z_y.permute(0, 2, 3, 1))[:, :, :, None, :]
        v_x = self.from_motion_x(z_x.permute(0, 2, 3, 1))[:, :, None, :, :]
        v = (v_c + v_y + v_x).reshape(b, l, gh * gw, -1)
        out = unpatchify(self.head(self.decoder(v, t_table, s_table)), p, gh, gw)
        return 2 * torch.sigmoid(out) - 1

    def forward(self, x):
        content, weights, motion = self.encode(x)
        return content, weights, motion, self.decode(content, motion)


def main():
    torch.manual_seed(0)
    model = Autoencoder(CFG)
    # Non-trivial importance logits and larger weights so every path matters.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("weight") and param.dim() == 2:
                param.normal_(0.0, 1.5 / math.sqrt(param.shape[1]))
            elif "norm" in name:
                param.add_(0.1 * torch.randn_like(param))
            else:
                param.normal_(0.0, 0.1)
    c = CFG
    x = torch.rand(2, c["frames"], c["channels"], c["height"], c["width"]) * 2 - 1
    with torch.no_grad():
        content, weights, motion, recon = model(x)
    tensors = dict(model.state_dict())
    tensors.update({"io.input": x, "io.content": content, "io.weights": weights,
                    "io.motion": motion, "io.recon": recon})
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    out = os.path.join("tests", "fixtures", "reference", "ae_small.safetensors")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    save_file(tensors, out)
    print(f"wrote {out}: {sum(t.numel() for t in tensors.values())} numbers")


if __name__ == "__main__":
    main()
