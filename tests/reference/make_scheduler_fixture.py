"""Reference numbers for cmd-model's schedulers, from the `diffusers` package.

Pinned: diffusers==0.35.2, torch==2.9.1 (CPU), numpy==2.2.6.
Run from the repository root: python tests/reference/make_scheduler_fixture.py
Writes tests/fixtures/reference/schedulers.json: timesteps and alphas_cumprod of several
configs, and whole deterministic DDIM (eta = 0) and DPM-Solver++(2M) trajectories driven by a
fixed stand-in model, eps(x, t) = (0.5 + 0.4 sin(t / 137)) x, from a fixed start sample.
"""

import json
import math
import os

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

SD = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
          beta_schedule="scaled_linear", steps_offset=1, set_alpha_to_one=False,
          clip_sample=False)


def fake_model(x, t):
    return (0.5 + 0.4 * math.sin(float(t) / 137.0)) * x


def trajectory(scheduler, x, steps):
    scheduler.set_timesteps(steps)
    out = []
    for t in scheduler.timesteps:
        x = scheduler.step(fake_model(x, t), t, x).prev_sample
        out.append(x.flatten().tolist())
    return [int(t) for t in scheduler.timesteps], out


def main():
    torch.manual_seed(0)
    x0 = torch.randn(1, 2, 3, 3)
    fixture = {"start": x0.flatten().tolist(), "shape": list(x0.shape), "cases": []}
    cases = [
        ("ddim", "sd-leading-eps", DDIMScheduler(**SD), 10),
        ("ddim", "sd-trailing-v", DDIMScheduler(**SD, timestep_spacing="trailing",
                                                prediction_type="v_prediction"), 8),
        ("ddim", "linear-linspace", DDIMScheduler(num_train_timesteps=1000, beta_start=1e-4,
                                                  beta_end=0.02, beta_schedule="linear",
                                                  timestep_spacing="linspace",
                                                  clip_sample=False), 12),
        ("dpmpp2m", "sd-linspace-eps", DPMSolverMultistepScheduler(
            num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
            beta_schedule="scaled_linear", algorithm_type="dpmsolver++", solver_order=2), 10),
        ("dpmpp2m", "cos-leading-v", DPMSolverMultistepScheduler(
            num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", steps_offset=1,
            timestep_spacing="leading", prediction_type="v_prediction",
            algorithm_type="dpmsolver++", solver_order=2), 20),
    ]
    for kind, name, scheduler, steps in cases:
        # JSON has no infinities; lambda_min_clipped = -inf is diffusers' "no clipping".
        config = {k: v for k, v in scheduler.config.items()
                  if not k.startswith("_") and v != float("-inf")}
        timesteps, states = trajectory(scheduler, x0.clone(), steps)
        fixture["cases"].append({
            "kind": kind, "name": name, "steps": steps, "config": config,
            "timesteps": timesteps, "trajectory": states,
        })
    # Schedules and DDPM noising.
    ddpm = DDPMScheduler(**{k: v for k, v in SD.items() if k != "set_alpha_to_one"})
    cos = DDPMScheduler(beta_schedule="squaredcos_cap_v2")
    noise = torch.randn(1, 2, 3, 3)
    t = torch.tensor([500])
    fixture["alphas_cumprod"] = {
        "scaled_linear": ddpm.alphas_cumprod[::111].tolist(),
        "squaredcos_cap_v2": cos.alphas_cumprod[::111].tolist(),
        "linear": DDPMScheduler().alphas_cumprod[::111].tolist(),
    }
    fixture["add_noise"] = {"t": 500, "noise": noise.flatten().tolist(),
                            "noisy": ddpm.add_noise(x0, noise, t).flatten().tolist(),
                            "velocity": ddpm.get_velocity(x0, noise, t).flatten().tolist()}
    out = os.path.join("tests", "fixtures", "reference", "schedulers.json")
    with open(out, "w") as f:
        json.dump(fixture, f, indent=1)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
