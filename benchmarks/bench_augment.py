"""Cost of the fine-tuning batch augmentations against the training step they feed.

VideoMAE's fine-tuning augments every training batch: RandAugment (rand-m7-n4-mstd0.5, one
draw per clip for all of its frames), random erasing (0.25 per clip) and mixup / cutmix. vidlit
runs them on the training device after the data module's crop and normalization
(:class:`vidlit.data.augment.VideoAugment`, the ``augment`` option of
:class:`~vidlit.tasks.TaskModule`). This benchmark times, on one batch of normalized float clips
``[b, 3, t, size, size]``:

- each augmentation alone and the whole :meth:`VideoAugment.videomae` pipeline;
- one training step of a VideoViT with a linear head: forward, soft-target cross-entropy,
  backward and an AdamW step;

and prints the median milliseconds of each (``--repeats`` runs after one warm-up), the
augmentation's cost as a fraction of the step, the device and the load average (other processes
on the machine skew CPU figures).

    python benchmarks/bench_augment.py                                  # CPU, ViT-S, 4 x 8 x 112
    python benchmarks/bench_augment.py --device cuda --batch 16 --frames 16 --size 224 \\
        --backbone vit_base_patch16_16x224
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from vidlit.backbones import create_backbone
from vidlit.data.augment import ClipErasing, ClipRandAugment, MixupCutmix, VideoAugment


def _time(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median wall milliseconds of ``fn`` over ``repeats`` runs, after one warm-up run."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backbone", default="vit_small_patch16_16x224")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--classes", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--bf16", action="store_true", help="autocast the training step to bfloat16")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    torch.manual_seed(0)
    video = torch.randn(args.batch, 3, args.frames, args.size, args.size, device=device)
    labels = torch.randint(0, args.classes, (args.batch,), device=device)
    batch = {"video": video, "labels": labels}

    backbone = create_backbone(
        args.backbone, num_frames=args.frames, img_size=args.size, use_mean_pooling=True, drop_path_rate=0.1
    ).to(device)
    head = torch.nn.Linear(backbone.embed_dim, args.classes).to(device)
    params = [*backbone.parameters(), *head.parameters()]
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.05)
    augment = VideoAugment.videomae()
    parts = {
        "rand_augment": VideoAugment(rand_augment=ClipRandAugment()),
        "erasing": VideoAugment(erasing=ClipErasing()),
        "mixup_cutmix": VideoAugment(mix=MixupCutmix()),
    }

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            logits = head(backbone(video, output="pooled"))
            soft = F.one_hot(labels, args.classes).float()
            loss = F.cross_entropy(logits.float(), soft)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    ms = {
        name: _time(lambda p=part: p(batch, args.classes), args.repeats, device)
        for name, part in parts.items()
    }
    ms["augment_total"] = _time(lambda: augment(batch, args.classes), args.repeats, device)
    ms["train_step"] = _time(step, max(2, args.repeats // 2), device)
    result = {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "torch_threads": torch.get_num_threads(),
        "shape": [args.batch, 3, args.frames, args.size, args.size],
        "backbone": args.backbone,
        "ms": {k: round(v, 2) for k, v in ms.items()},
        "augment_over_step": round(ms["augment_total"] / ms["train_step"], 4),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
