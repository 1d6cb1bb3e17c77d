"""One masked-video-modeling training step: vidlit's MaskedVideoModel vs transformers' VideoMAEForPreTraining.

Both models are built from the same configuration (encoder width / depth / heads, a 384-wide
4-block decoder, the same tubelet and frame size, ``norm_pix_loss``) and trained on the same clip
with the SAME tube mask (vidlit's ``tube_mask``, handed to transformers as ``bool_masked_pos``).
One step is forward + backward + ``AdamW.step`` (+ ``zero_grad``); under ``--precision bf16``
both run in ``torch.autocast(bfloat16)`` with float32 weights, as Lightning's ``bf16-mixed``.
On a GPU the models run one after
the other, each alone on the device (build, warm up, time, record peak memory, free); on a CPU,
where the background load drifts, both are built first and timed in alternating rounds
(``--interleave``), and the per-round ratios are printed too.

    python benchmarks/bench_mvm.py                        # CPU: vit_test-sized, fp32
    python benchmarks/bench_mvm.py --device cuda          # GPU: ViT-B 16x224, mask 0.9, bf16
    python benchmarks/bench_mvm.py --model vit_large_patch16_16x224 --batch 16 --compile

Printed per model: clips/s, ms/step, peak memory (CUDA ``max_memory_allocated``; not measured
on CPU, where neither RSS nor ``tracemalloc`` sees torch's allocator reliably) and, on a GPU,
MFU. The last line is the vidlit / transformers throughput ratio.

FLOPs are counted analytically per clip and step (training = 3x forward: forward + backward):

    encoder, on the n_v visible tokens of width d, L blocks, MLP ratio r:
        linear:    6 * n_v * L * (4 + 2r) * d^2        (qkv 3d^2, proj d^2, MLP 2r d^2)
        attention: 3 * L * 4 * n_v^2 * d                (QK^T and AV, 2 FLOPs per MAC)
    patch embedding, on all n tokens:      6 * n * (p0 p1 p2 c) * d
    encoder_to_decoder, visible tokens:    6 * n_v * d * e
    decoder, on all n tokens of width e, L_d blocks:
        linear:    6 * n * L_d * (4 + 2r) * e^2
        attention: 3 * L_d * 4 * n^2 * e
    pixel head, masked tokens only:        6 * n_m * e * (p0 p1 p2 c)

Norms, activations, softmax, the loss and the optimizer are left out (they are memory-bound, not
FLOPs). MFU = (FLOPs per clip * clips/s) / peak, where the peak is MEASURED here: the best
throughput of a large bf16 (or fp32) matmul on the same device, so MFU says how close the step
gets to what this GPU really sustains, not to the datasheet (H100 SXM: 989 dense bf16 TFLOP/s).
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass

import torch

from vidlit.backbones import MaskedVideoModel, create_backbone, tube_mask
from vidlit.backbones.mvm import bool_masked_pos


@dataclass
class Result:
    name: str
    ms_per_step: float
    clips_per_s: float
    peak_mem_gib: float | None
    tflops: float | None
    mfu: float | None
    loss: float


def mvm_flops_per_clip(
    n: int, n_vis: int, d: int, depth: int, e: int, dec_depth: int, patch_dim: int, mlp_ratio: float
) -> float:
    """Training FLOPs of one clip (the formula of the module docstring)."""
    n_mask = n - n_vis
    per_token_block = 4 + 2 * mlp_ratio  # x width^2 MACs per token per block
    flops = 6 * n_vis * depth * per_token_block * d * d + 3 * depth * 4 * n_vis**2 * d
    flops += 6 * n * patch_dim * d + 6 * n_vis * d * e
    flops += 6 * n * dec_depth * per_token_block * e * e + 3 * dec_depth * 4 * n**2 * e
    flops += 6 * n_mask * e * patch_dim
    return float(flops)


def measured_peak_flops(device: torch.device, dtype: torch.dtype, size: int = 8192, reps: int = 20) -> float:
    """Best FLOP/s of a ``size^3`` matmul in ``dtype`` on ``device``."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(reps):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    del a, b
    return 2 * size**3 / best


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def hf_model(backbone, args: argparse.Namespace):
    """transformers' VideoMAEForPreTraining with the backbone's and the decoder's sizes."""
    import transformers

    config = transformers.VideoMAEConfig(
        image_size=backbone.img_size[0],
        patch_size=backbone.patch_size[0],
        num_channels=backbone.patch_embed.in_chans,
        num_frames=backbone.num_frames,
        tubelet_size=backbone.tubelet_size,
        hidden_size=backbone.embed_dim,
        num_hidden_layers=len(backbone.blocks),
        num_attention_heads=backbone.blocks[0].attn.num_heads,
        intermediate_size=backbone.blocks[0].mlp.fc1.out_features,
        qkv_bias=True,
        use_mean_pooling=False,  # VideoMAE's pretraining encoder ends in a LayerNorm, as vidlit's
        layer_norm_eps=1e-6,
        decoder_hidden_size=args.decoder_dim,
        decoder_num_hidden_layers=args.decoder_depth,
        decoder_num_attention_heads=args.decoder_heads,
        decoder_intermediate_size=4 * args.decoder_dim,
        norm_pix_loss=True,
    )
    config._attn_implementation = "sdpa"  # fused attention, as vidlit's
    return transformers.VideoMAEForPreTraining(config)


def make_step(build: Callable, inputs: dict, args, device: torch.device) -> Callable[[], torch.Tensor]:
    """Build a model and its optimizer; return one training step (returns the detached loss)."""
    torch.manual_seed(0)
    model, forward = build()
    model.to(device).train()
    if args.compile:
        model.compile()
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.05, fused=device.type == "cuda"
    )
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if args.precision == "bf16" else nullcontext()
    )

    def step() -> torch.Tensor:
        with autocast:
            loss = forward(model, inputs)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return step


def time_round(step: Callable[[], torch.Tensor], device: torch.device, iters: int) -> tuple[float, float]:
    """Seconds per step over ``iters`` steps, and the last loss."""
    sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        loss = step()
    sync(device)
    return (time.perf_counter() - start) / iters, float(loss)


def bench(builds: dict[str, Callable], inputs: dict, args, device: torch.device) -> dict[str, dict]:
    """Time every model; returns ``{name: {"seconds": [per round], "loss", "peak_mem_gib"}}``.

    ``args.interleave``: build all models first and alternate them round by round, so that both
    see the same background load (a shared CPU); peak memory is then not attributable and is not
    measured. Otherwise each model runs alone: built, warmed up, timed, its peak memory recorded,
    freed.
    """
    out: dict[str, dict] = {}
    if args.interleave:
        steps = {name: make_step(build, inputs, args, device) for name, build in builds.items()}
        for step in steps.values():
            for _ in range(args.warmup):
                step()
        for name in steps:
            out[name] = {"seconds": [], "loss": None, "peak_mem_gib": None}
        for _ in range(args.rounds):
            for name, step in steps.items():
                seconds, loss = time_round(step, device, args.iters)
                out[name]["seconds"].append(seconds)
                out[name]["loss"] = loss
        return out
    for name, build in builds.items():
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        step = make_step(build, inputs, args, device)
        for _ in range(args.warmup):
            step()
        rounds = [time_round(step, device, args.iters) for _ in range(args.rounds)]
        peak_mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
        out[name] = {"seconds": [r[0] for r in rounds], "loss": rounds[-1][1], "peak_mem_gib": peak_mem}
        del step
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--model", default=None, help="registered backbone (vit_test, vit_base_patch16_16x224, ...)"
    )
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--precision", choices=("bf16", "fp32"), default=None)
    parser.add_argument("--mask-ratio", type=float, default=0.9)
    parser.add_argument("--decoder-dim", type=int, default=384)
    parser.add_argument("--decoder-depth", type=int, default=4)
    parser.add_argument("--decoder-heads", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--iters", type=int, default=None, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds; the median counts")
    parser.add_argument(
        "--interleave",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="alternate the models round by round (default on CPU, where the load varies; "
        "off on GPU, where each model runs alone so its peak memory is its own)",
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile both models")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    gpu = device.type == "cuda"
    # GPU defaults: VideoMAE ViT-B pretraining (16 x 224, mask 0.9, bf16); CPU: vit_test-sized
    args.model = args.model or ("vit_base_patch16_16x224" if gpu else "vit_test")
    args.precision = args.precision or ("bf16" if gpu else "fp32")
    args.batch = args.batch or (32 if gpu else 8)
    args.warmup = args.warmup if args.warmup is not None else (10 if gpu else 3)
    args.iters = args.iters or (20 if gpu else 5)
    args.rounds = args.rounds or (3 if gpu else 8)
    args.interleave = (not gpu) if args.interleave is None else args.interleave
    if args.threads:
        torch.set_num_threads(args.threads)
    if gpu:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    overrides = {k: v for k, v in (("num_frames", args.frames), ("img_size", args.size)) if v is not None}
    probe = create_backbone(args.model, **overrides)
    frames, (height, width) = probe.num_frames, probe.img_size
    grid = probe.grid_size
    n = grid[0] * grid[1] * grid[2]
    generator = torch.Generator().manual_seed(0)
    video = torch.randn(args.batch, probe.patch_embed.in_chans, frames, height, width, generator=generator)
    visible_idx, masked_idx = tube_mask(args.batch, grid, args.mask_ratio, generator=generator)
    inputs = {
        "video": video.to(device),
        "pixel_values": video.transpose(1, 2).contiguous().to(device),  # transformers: [b, t, c, h, w]
        "visible_idx": visible_idx.to(device),
        "masked_idx": masked_idx.to(device),
        "bool_masked_pos": bool_masked_pos(masked_idx, n).to(device),
    }
    patch_dim = probe.tubelet_size * probe.patch_size[0] * probe.patch_size[1] * probe.patch_embed.in_chans
    flops = mvm_flops_per_clip(
        n,
        visible_idx.shape[1],
        probe.embed_dim,
        len(probe.blocks),
        args.decoder_dim,
        args.decoder_depth,
        patch_dim,
        probe.blocks[0].mlp.fc1.out_features / probe.embed_dim,
    )
    peak = None
    if gpu:
        peak = measured_peak_flops(device, torch.bfloat16 if args.precision == "bf16" else torch.float32)

    def build_vidlit():
        model = MaskedVideoModel(
            create_backbone(args.model, **overrides),
            decoder_dim=args.decoder_dim,
            decoder_depth=args.decoder_depth,
            decoder_heads=args.decoder_heads,
            norm_pix_loss=True,
        )
        return model, lambda m, x: m(x["video"], x["visible_idx"], x["masked_idx"]).loss

    def build_hf():
        model = hf_model(probe, args)
        return (
            model,
            lambda m, x: m(pixel_values=x["pixel_values"], bool_masked_pos=x["bool_masked_pos"]).loss,
        )

    timings = bench(
        {"vidlit MaskedVideoModel": build_vidlit, "transformers VideoMAEForPreTraining": build_hf},
        inputs,
        args,
        device,
    )
    results = []
    for name, timing in timings.items():
        seconds = statistics.median(timing["seconds"])
        clips_per_s = args.batch / seconds
        tflops = flops * clips_per_s / 1e12
        mfu = tflops * 1e12 / peak if peak else None
        results.append(
            Result(name, seconds * 1e3, clips_per_s, timing["peak_mem_gib"], tflops, mfu, timing["loss"])
        )
    # per-round ratios: with interleaving, both models of a round saw the same load
    round_ratios = [b / a for a, b in zip(*(t["seconds"] for t in timings.values()))]

    where = torch.cuda.get_device_name(device) if gpu else (platform.processor() or platform.machine())
    print(
        f"\n{args.model}: {frames} frames x {height}x{width}, token grid {grid} ({n} tokens, "
        f"{visible_idx.shape[1]} visible at mask ratio {args.mask_ratio}), decoder "
        f"{args.decoder_dim}/{args.decoder_depth}/{args.decoder_heads}, batch {args.batch}, "
        f"{args.precision}, {'compiled' if args.compile else 'eager'}, {device.type} ({where}, "
        f"{torch.get_num_threads()} threads)"
    )
    print(f"model FLOPs per clip and training step: {flops / 1e9:.3f} GFLOP")
    if peak:
        print(f"measured peak ({args.precision} matmul): {peak / 1e12:.1f} TFLOP/s")
    for r in results:
        memory = f"{r.peak_mem_gib:6.2f} GiB" if r.peak_mem_gib is not None else "   n/a (CPU)"
        mfu = f"{100 * r.mfu:5.1f}%" if r.mfu is not None else "n/a (CPU)"
        print(
            f"  {r.name:38s} {r.clips_per_s:9.2f} clips/s  {r.ms_per_step:9.2f} ms/step  peak {memory}  "
            f"{r.tflops:8.4f} TFLOP/s  MFU {mfu}  loss {r.loss:.4f}"
        )
    ratio = results[0].clips_per_s / results[1].clips_per_s
    spread = f"{min(round_ratios):.2f}-{max(round_ratios):.2f}"
    print(
        f"throughput ratio vidlit / transformers: {ratio:.2f}x (median step times; per round {spread}, "
        f"median {statistics.median(round_ratios):.2f}x over {args.rounds} rounds of {args.iters} steps"
        f"{', interleaved' if args.interleave else ''})"
    )
    report = {
        "config": {
            **vars(args),
            "device": str(device),
            "device_name": where,
            "threads": torch.get_num_threads(),
        },
        "flops_per_clip": flops,
        "peak_flops": peak,
        "results": [asdict(r) for r in results],
        "ratio": ratio,
        "round_ratios": round_ratios,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return report


if __name__ == "__main__":
    main()
