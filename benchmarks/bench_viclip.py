"""Benchmark: one ViCLIP training step (video-text contrastive, random video-token dropping).

Times forward + backward + AdamW step of :class:`vidlit.backbones.video_text.VideoTextModel` with
:func:`vidlit.layers.contrastive.contrastive_loss` on random clips and real captions, and reports
clips/s, peak memory (GPU) and model FLOP utilization (MFU, GPU).

FLOPs per clip and step (multiply-adds count 2, backward 2x forward, so "6 x" for trained
weights and "2 x" for a frozen text tower's forward only):

- video tower on ``n_keep = round((1 - drop_ratio) * n)`` kept tokens, ``L`` blocks of width
  ``d``: ``6 * n_keep * L * (4 + 2 * mlp_ratio) * d^2`` (qkv, proj, MLP) plus attention
  ``3 * L * 4 * n_keep^2 * d``; tubelet embedding of all ``n`` tokens ``6 * n * patch_dim * d``;
- text tower (``l`` tokens, ``L_t`` blocks of width ``e``): ``k * l * L_t * (4 + 2 * 4) * e^2`` plus
  attention ``k/2 * L_t * 4 * l^2 * e``, ``k = 6`` trained or ``2`` frozen;
- projections ``6 * (d + e) * p`` and the ``b x b`` logits ``2 * 6 * b * p`` (per clip).

MFU is against a fixed peak (``--peak``, default 790 TFLOP/s: the best bf16 matmul measured on the
H100 this project benchmarks on), so figures are comparable across runs.

    python benchmarks/bench_viclip.py                     # CPU: vit_test + text_test, fp32
    python benchmarks/bench_viclip.py --device cuda       # GPU: ViT-B/16 8x224 + MiniLM, bf16, drop 0.9
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from contextlib import nullcontext

import torch

from vidlit.backbones import create_backbone
from vidlit.backbones.video_text import VideoTextModel
from vidlit.layers.contrastive import contrastive_loss

H100_BF16_PEAK = 790e12


def step_flops(model: VideoTextModel, frames: int, size: int, batch: int, text_tokens: int) -> float:
    """Training FLOPs of one clip-caption pair (the formula of the module docstring)."""
    video = model.video
    t, h, w = video.patch_embed.grid_size(frames, size, size)
    n = t * h * w
    keep = max(1, round((1 - model.drop_ratio) * n)) if model.drop_ratio else n
    d, depth = video.embed_dim, len(video.blocks)
    mlp_ratio = video.blocks[0].mlp.fc1.out_features / d
    patch_dim = video.tubelet_size * video.patch_size[0] * video.patch_size[1] * video.patch_embed.in_chans
    flops = (
        6 * keep * depth * (4 + 2 * mlp_ratio) * d * d + 3 * depth * 4 * keep**2 * d + 6 * n * patch_dim * d
    )
    config = model.text.model.config
    e, text_depth = config.hidden_size, config.num_hidden_layers
    text_mlp = config.intermediate_size / e
    k = 2 if model.text.freeze else 6
    flops += (
        k * text_tokens * text_depth * (4 + 2 * text_mlp) * e * e
        + k / 2 * text_depth * 4 * text_tokens**2 * e
    )
    flops += 6 * (d + e) * model.proj_dim + 12 * batch * model.proj_dim
    return float(flops)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--model", default=None, help="video backbone (default: vit_test on CPU, ViT-B on GPU)"
    )
    parser.add_argument("--text", default=None, help="text tower (default: text_test on CPU, minilm on GPU)")
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--drop-ratio", type=float, default=0.9)
    parser.add_argument("--proj-dim", type=int, default=512)
    parser.add_argument("--freeze-text", action="store_true")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default=None)
    parser.add_argument("--compile", action="store_true", help="torch.compile the video tower")
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--iters", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--peak", type=float, default=H100_BF16_PEAK, help="peak FLOP/s for MFU (GPU)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    gpu = device.type == "cuda"
    args.model = args.model or ("vit_base_patch16_16x224" if gpu else "vit_test")
    args.text = args.text or ("minilm" if gpu else "text_test")
    args.frames = args.frames or 8  # ViCLIP: 8 frames
    args.precision = args.precision or ("bf16" if gpu else "fp32")
    args.batch = args.batch or (128 if gpu else 16)
    args.warmup = args.warmup if args.warmup is not None else (10 if gpu else 2)
    args.iters = args.iters or (20 if gpu else 5)
    args.rounds = args.rounds or (3 if gpu else 3)
    if gpu:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    torch.manual_seed(0)
    overrides = {"num_frames": args.frames, **({"img_size": args.size} if args.size else {})}
    backbone = create_backbone(args.model, **overrides)
    size = backbone.img_size[0]
    model = VideoTextModel(
        backbone,
        text=args.text,
        proj_dim=args.proj_dim,
        drop_ratio=args.drop_ratio,
        freeze_text=args.freeze_text,
    ).to(device)
    model.train()
    if args.compile:
        model.video.compile()
    colors, shapes, motions = ("red", "green", "blue", "white"), ("square", "circle"), ("left", "right", "up")
    captions = [f"a {c} {s} moving {m}" for c in colors for s in shapes for m in motions]
    captions = (captions * (args.batch // len(captions) + 1))[: args.batch]
    tokens = model.text.tokenize(captions)["input_ids"].shape[1]
    video = torch.randn(args.batch, 3, args.frames, size, size, device=device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.98), weight_decay=0.2, fused=gpu)
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if args.precision == "bf16" else nullcontext()
    )

    def step() -> float:
        with autocast:
            out = model(video, captions)
            loss, _ = contrastive_loss(out.video, out.text, out.logit_scale)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    for _ in range(args.warmup):
        step()
    if gpu:
        torch.cuda.reset_peak_memory_stats(device)
    seconds = []
    for _ in range(args.rounds):
        sync(device)
        start = time.perf_counter()
        for _ in range(args.iters):
            loss = step()
        sync(device)
        seconds.append((time.perf_counter() - start) / args.iters)
    per_step = statistics.median(seconds)
    flops = step_flops(model, args.frames, size, args.batch, tokens)
    clips_per_s = args.batch / per_step
    tflops = flops * clips_per_s / 1e12
    mfu = tflops * 1e12 / args.peak if gpu else None
    memory = torch.cuda.max_memory_allocated(device) / 2**30 if gpu else None
    where = torch.cuda.get_device_name(device) if gpu else (platform.processor() or platform.machine())
    t, h, w = model.video.patch_embed.grid_size(args.frames, size, size)
    print(
        f"\n{args.model} ({args.frames} x {size}px, {t * h * w} tokens, drop {args.drop_ratio}) + "
        f"{args.text} text ({'frozen' if args.freeze_text else 'trained'}, {tokens} tokens), "
        f"batch {args.batch}, "
        f"{args.precision}, {'compiled' if args.compile else 'eager'}, {device.type} ({where}, "
        f"{torch.get_num_threads()} threads)"
    )
    print(f"model FLOPs per clip and training step: {flops / 1e9:.3f} GFLOP")
    print(
        f"  {clips_per_s:9.2f} clips/s  {per_step * 1e3:9.2f} ms/step  "
        f"peak {f'{memory:.2f} GiB' if memory is not None else 'n/a (CPU)'}  {tflops:8.3f} TFLOP/s  "
        f"MFU {f'{100 * mfu:.1f}%' if mfu is not None else 'n/a (CPU)'}  loss {float(loss):.4f}  "
        f"(median of {args.rounds} rounds x {args.iters} steps)"
    )
    report = {
        "config": {**vars(args), "device_name": where},
        "flops_per_clip": flops,
        "ms_per_step": per_step * 1e3,
        "clips_per_s": clips_per_s,
        "tflops": tflops,
        "mfu": mfu,
        "peak_mem_gib": memory,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return report


if __name__ == "__main__":
    main()
