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
    python benchmarks/bench_viclip.py --model viclip_base_patch16 --device cuda   # the CLIP-style tower

``--vs-open-clip`` times the CLIP-style video tower (:class:`vidlit.backbones.CLIPVideoViT`) on
one-frame clips against open_clip's image tower (``open_clip.transformer.VisionTransformer``) of the
same config and weights (checked equal first): ``ours(image[:, :, None], output="pooled") @ proj``
vs ``peer(image)``, forward only (eval, no grad) or with ``--backward`` forward + backward. Rounds
alternate which side goes first (``benchmarks/_rounds.py``); the ratio is per round, peer seconds /
ours (above 1: vidlit faster), median and range; the load average is printed before and after. On a
GPU it adds each side's MFU (forward ``2 x`` FLOPs, with backward ``6 x``)::

    python benchmarks/bench_viclip.py --vs-open-clip                 # CPU: ViCLIP-B/16, 224 px, fp32, batch 2
    python benchmarks/bench_viclip.py --vs-open-clip --device cuda   # GPU: bf16, batch 256
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from contextlib import nullcontext

import torch
from _rounds import alternate, ratio_range

from vidlit.backbones import CLIPVideoViT, create_backbone
from vidlit.backbones.video_text import VideoTextModel
from vidlit.layers.contrastive import contrastive_loss

H100_BF16_PEAK = 790e12


def step_flops(model: VideoTextModel, frames: int, size: int, batch: int, text_tokens: int) -> float:
    """Training FLOPs of one clip-caption pair (the formula of the module docstring)."""
    video = model.video
    t, h, w = video.patch_embed.grid_size(frames, size, size)
    n = t * h * w
    keep = max(1, round((1 - model.drop_ratio) * n)) if model.drop_ratio else n
    keep += int(hasattr(video, "cls_token"))  # a CLIP-style tower's class token
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


def tower_forward_flops(tower: CLIPVideoViT, size: int) -> float:
    """Forward FLOPs of one image (one-frame clip) through the tower and ``proj`` (multiply-adds count 2)."""
    _, h, w = tower.patch_embed.grid_size(1, size, size)
    n, d, depth = h * w + 1, tower.embed_dim, len(tower.blocks)
    mlp_ratio = tower.blocks[0].mlp.fc1.out_features / d
    patch_dim = tower.patch_size[0] * tower.patch_size[1] * tower.patch_embed.in_chans
    return float(
        2 * n * depth * (4 + 2 * mlp_ratio) * d * d + 4 * depth * n * n * d + 2 * (n - 1) * patch_dim * d
    )


def tower_vs_open_clip(args: argparse.Namespace, device: torch.device) -> dict:
    """Time CLIPVideoViT at T=1 against open_clip's image tower of the same config and weights."""
    from open_clip.transformer import QuickGELU, VisionTransformer

    gpu = device.type == "cuda"
    torch.manual_seed(0)
    ours = create_backbone(args.model, **({"img_size": args.size} if args.size else {}))
    if not isinstance(ours, CLIPVideoViT):
        raise SystemExit(f"--vs-open-clip needs a CLIP-style tower (viclip_*), got {args.model}")
    size = ours.img_size[0]
    peer = VisionTransformer(
        image_size=size,
        patch_size=ours.patch_size[0],
        width=ours.embed_dim,
        layers=len(ours.blocks),
        heads=ours.blocks[0].attn.num_heads,
        mlp_ratio=ours.blocks[0].mlp.fc1.out_features / ours.embed_dim,
        output_dim=args.proj_dim,
        act_layer=QuickGELU,
    )
    proj = ours.load_clip_state_dict(peer.state_dict(), source="openclip").proj
    ours, peer, proj = ours.to(device).eval(), peer.to(device).eval(), proj.to(device)
    images = torch.randn(args.batch, 3, size, size, device=device)
    with torch.no_grad():  # same function before timing it (fp32)
        diff = (ours(images[:, :, None], output="pooled") @ proj - peer(images)).abs().max().item()
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if args.precision == "bf16" else nullcontext()
    )

    def run(forward):
        def call() -> None:
            for _ in range(args.iters):
                with autocast, torch.set_grad_enabled(args.backward):
                    out = forward()
                if args.backward:
                    out.float().square().mean().backward()
            sync(device)

        return call

    def forward_ours():
        return ours(images[:, :, None], output="pooled") @ proj

    def forward_peer():
        return peer(images)

    a, b = run(forward_ours), run(forward_peer)
    for _ in range(args.warmup):
        a()
        b()
    load_start = os.getloadavg()
    t_ours, t_peer = alternate(args.rounds, a, b)
    load_end = os.getloadavg()
    median, low, high = ratio_range(t_peer, t_ours)
    flops = tower_forward_flops(ours, size) * (3 if args.backward else 1) * args.batch * args.iters
    where = torch.cuda.get_device_name(device) if gpu else (platform.processor() or platform.machine())
    mode = "forward + backward" if args.backward else "forward (no grad)"
    _, h, w = ours.patch_embed.grid_size(1, size, size)
    tokens = h * w + 1
    print(
        f"\n{args.model} at T=1 ({size}px, {tokens} tokens) vs "
        f"open_clip VisionTransformer, same config and weights (max abs diff {diff:.2e} fp32); {mode}, "
        f"batch {args.batch}, {args.precision}, {device.type} ({where}, {torch.get_num_threads()} threads)"
    )
    print("load average at the start: {:.1f} {:.1f} {:.1f}".format(*load_start))
    rows = {}
    for side, seconds in (("vidlit CLIPVideoViT", t_ours), ("open_clip", t_peer)):
        per_image = statistics.median(seconds) / (args.batch * args.iters)
        tflops = flops / statistics.median(seconds) / 1e12
        mfu = tflops * 1e12 / args.peak if gpu else None
        rows[side] = {"ms_per_image": per_image * 1e3, "tflops": tflops, "mfu": mfu}
        print(
            f"  {side:20s} {per_image * 1e3:9.3f} ms/image  {tflops:8.3f} TFLOP/s  "
            f"MFU {f'{100 * mfu:.1f}%' if mfu is not None else 'n/a (CPU)'}"
        )
    print(
        f"  ratio open_clip / vidlit: {median:.2f}x (range {low:.2f}-{high:.2f}) over {args.rounds} rounds "
        f"x {args.iters} calls (above 1: vidlit faster)"
    )
    print("load average at the end: {:.1f} {:.1f} {:.1f}".format(*load_end))
    return {
        "config": {**vars(args), "device_name": where},
        "max_abs_diff_fp32": diff,
        "flops_per_image_forward": tower_forward_flops(ours, size),
        "sides": rows,
        "ratio_peer_over_ours": {"median": median, "min": low, "max": high},
        "load_average": {"start": list(load_start), "end": list(load_end)},
    }


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
    parser.add_argument(
        "--vs-open-clip",
        action="store_true",
        help="time the CLIP-style tower at T=1 against open_clip's image tower (see the docstring)",
    )
    parser.add_argument("--backward", action="store_true", help="--vs-open-clip: forward + backward")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    gpu = device.type == "cuda"
    if args.vs_open_clip:
        args.model = args.model or "viclip_base_patch16"
        args.precision = args.precision or ("bf16" if gpu else "fp32")
        args.batch = args.batch or (256 if gpu else 2)
        args.warmup = args.warmup if args.warmup is not None else (5 if gpu else 1)
        args.iters = args.iters or (10 if gpu else 1)
        args.rounds = args.rounds or (5 if gpu else 5)
        if gpu:
            torch.backends.cuda.matmul.allow_tf32 = True
        report = tower_vs_open_clip(args, device)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(report, f, indent=2)
        return report
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
