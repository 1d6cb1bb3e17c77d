"""LORIS speed: seconds of audio generated per second, per sampler step count, and training throughput.

Sampling runs :meth:`vidlit.heads.loris.LorisHead.sample` (Karras sigmas, DPM-Solver++(2M), one
network call per step on the conditional and the null halves together when ``guidance_scale != 1``)
on random conditions; the figure is ``clips * segment seconds / wall seconds``, so 1.0 is real time.
A training step is forward + EDM loss + backward + ``AdamW.step`` on a batch of random audio.

    python benchmarks/bench_loris.py                                   # CPU: the recipe's tiny model
    python benchmarks/bench_loris.py --device cuda --size loris --sample-rate 22050 --samples 524288

``--size recipe`` is recipes/loris_dance.yaml's U-Net (4,096 Hz, 2^14 samples by default); ``--size
loris`` a LORIS-scale one (channels 128-512, patch 16), for a GPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from vidlit.heads.loris import LorisHead

SIZES = {
    "recipe": dict(
        patch=16, channels=(32, 48, 64), factors=(4, 4), attn_levels=(1, 2), cond_dim=64, num_heads=4
    ),
    "loris": dict(
        patch=16,
        channels=(128, 256, 512, 512),
        factors=(4, 4, 4),
        attn_levels=(2, 3),
        cond_dim=256,
        num_heads=8,
    ),
}


def make_batch(batch: int, samples: int, rate: int, feature_dim: int, device: str) -> dict:
    seconds = samples / rate
    frames, steps = int(seconds * 16 + 0.999), int(seconds * 2 + 0.999)
    return {
        "audio": torch.randn(batch, 1, samples, device=device) * 0.2,
        "beats": (torch.rand(batch, frames, device=device) > 0.9).float(),
        "visual": torch.randn(batch, steps, feature_dim, device=device),
        "genre": torch.zeros(batch, dtype=torch.long, device=device),
        "sample_rate": rate,
        "video_ids": [str(i) for i in range(batch)],
    }


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", choices=sorted(SIZES), default="recipe")
    parser.add_argument("--sample-rate", type=int, default=4096)
    parser.add_argument("--samples", type=int, default=2**14)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, nargs="+", default=[5, 10, 25, 50])
    parser.add_argument("--guidance", type=float, default=2.0)
    parser.add_argument("--train-steps", type=int, default=5)
    parser.add_argument("--bf16", action="store_true", help="autocast to bfloat16 (GPU)")
    args = parser.parse_args()

    torch.manual_seed(0)
    head = LorisHead(in_dim=1024, num_classes=10, progress=False, **SIZES[args.size]).to(args.device)
    batch = make_batch(args.batch, args.samples, args.sample_rate, 1024, args.device)
    seconds = args.batch * args.samples / args.sample_rate
    autocast = torch.autocast(args.device.split(":")[0], dtype=torch.bfloat16, enabled=args.bf16)
    results = {
        "device": torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else platform.processor() or "cpu",
        "size": args.size,
        "params_M": round(sum(p.numel() for p in head.parameters()) / 1e6, 2),
        "clip_seconds": args.samples / args.sample_rate,
        "batch": args.batch,
        "threads": torch.get_num_threads(),
    }

    head.train()
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-4)
    times = []
    for i in range(args.train_steps + 1):  # the first step warms up
        sync(args.device)
        start = time.perf_counter()
        with autocast:
            loss = head.loss(head(batch["audio"], batch), batch)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync(args.device)
        if i:
            times.append(time.perf_counter() - start)
    step = sorted(times)[len(times) // 2]
    results["train_step_s"] = round(step, 4)
    results["train_audio_s_per_s"] = round(seconds / step, 2)

    head.eval()
    with autocast:
        head.sample(batch, steps=2, guidance_scale=args.guidance)  # warm-up
    for steps in args.steps:
        sync(args.device)
        start = time.perf_counter()
        with autocast:
            head.sample(batch, steps=steps, guidance_scale=args.guidance)
        sync(args.device)
        wall = time.perf_counter() - start
        results[f"sample_{steps}_steps_audio_s_per_s"] = round(seconds / wall, 3)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
