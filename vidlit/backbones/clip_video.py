"""CLIPVideoViT: CLIP's ViT with joint space-time attention, the video tower of ViCLIP.

ViCLIP (Wang et al., 2023, "InternVid: A Large-scale Video-Text Dataset for Multimodal
Understanding and Generation", Sec. 4.1) turns CLIP's image ViT (Radford et al., 2021) into a video
encoder with the fewest changes:

- a Conv3d patch embedding with temporal kernel 1 and no bias (each frame embedded as CLIP embeds
  an image; an image CLIP's Conv2d weight loads as the kernel of one frame);
- a class token; CLIP's spatial position table added to every frame, plus a learned temporal table
  ``[1, T, D]``, zero-initialized so an inflated image model starts as a frame-wise CLIP (at
  ``T = 1`` its mean over frames is added, as in the released code);
- ``ln_pre``, pre-LN blocks with global attention over all ``1 + t*h*w`` tokens and QuickGELU MLPs
  (vidlit's :class:`~vidlit.backbones.vit.Block`), ``ln_post`` on the class token;
- in training a random subset of the patch tokens is kept before the transformer (ViCLIP drops
  90%, ``visible_idx``); evaluation encodes every token.

The class token after ``ln_post`` is the clip feature (``output="pooled"``); CLIP's ``proj`` is not
part of the tower: :class:`~vidlit.backbones.VideoTextModel`'s ``video_proj`` holds it
(``video_proj.weight = proj.T``). :meth:`CLIPVideoViT.load_clip_state_dict` reads released ViCLIP
checkpoints (``vision_encoder.*``) and image CLIP / open_clip checkpoints (``visual.*``), resampling
the tables to the model's frame count and resolution (:mod:`vidlit.backbones._clip_interop`).

Shape legend: ``b`` batch, ``c`` channels, ``t`` frames, ``h``/``w`` token grid (pixels / patch),
``n = t*h*w`` patch tokens (laid out ``(t h w)``, as :class:`~vidlit.backbones.VideoViT`'s), ``d`` width.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from einops import rearrange, reduce
from timm.layers import QuickGELU
from torch import Tensor, nn

from vidlit.backbones._builder import _strip_wrappers, _unwrap, load_checkpoint_file
from vidlit.backbones._clip_interop import (
    CLIPLoadReport,
    ClipSource,
    _square_side,
    clip_vision_config,
    clip_vision_weights,
    convert_clip_vision,
    detect_clip_source,
    export_clip_vision,
    official_key,
)
from vidlit.backbones._pretrained import (
    PretrainedMixin,
    init_arguments,
    is_vidlit_folder,
    resolve_pretrained_dir,
    warn_caller,
)
from vidlit.backbones._registry import register_backbone
from vidlit.backbones.vit import (
    Block,
    Output,
    VideoViT,
    block_stack,
    check_output,
    init_weights_vit_timm,
    run_blocks,
)
from vidlit.layers.pos_embed import Grid, interpolate_pos_embed
from vidlit.layers.tubelet import TubeletEmbed, to_pair

__all__ = ["CLIPLoadReport", "CLIPVideoViT", "TemporalAdapt"]

log = logging.getLogger(__name__)

ActLayer = Literal["quick_gelu", "gelu"]
_ACTIVATIONS: dict[str, type[nn.Module]] = {"quick_gelu": QuickGELU, "gelu": nn.GELU}
TemporalAdapt = Literal["interpolate", "zero_pad"]


class CLIPVideoViT(nn.Module, PretrainedMixin):
    """CLIP ViT over video with joint space-time attention (ViCLIP's video tower).

    Clips of another frame count or resolution than configured are accepted: the temporal table is
    resampled linearly (its mean at one frame) and the spatial one bicubically, class position kept.

    Args:
        img_size: configured frame size, an int or ``(height, width)``.
        patch_size: spatial patch side (ViCLIP-B 16, ViCLIP-L 14).
        num_frames: configured frames per clip, the temporal table's length (ViCLIP: 8).
        in_chans: input channels.
        embed_dim: token width.
        depth: number of blocks.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width as a multiple of ``embed_dim``.
        act_layer: MLP activation: ``"quick_gelu"`` (OpenAI CLIP, ViCLIP) or ``"gelu"`` (most
            open_clip LAION models; match the checkpoint you initialize from).
        norm_eps: LayerNorm epsilon (CLIP: PyTorch's default 1e-5).
        init_values: LayerScale initial value (open_clip's ``ls_init_value``); ``None`` for none, CLIP's.
        drop_rate: dropout after the attention projection and in the MLPs.
        attn_drop_rate: dropout on attention weights.
        drop_path_rate: stochastic depth, rising linearly from 0 to this over the blocks (ViCLIP: 0.1).
        grad_checkpointing: recompute each block's activations in the backward pass.

    Attributes:
        block_class: the block type, for FSDP auto-wrap and activation-checkpointing policies.
        grid_size: configured token grid ``(t, h, w)``.
        num_patches: patch tokens per configured clip (the class token not counted).
        tubelet_size: frames per token, always 1.
    """

    block_class = Block
    # arguments that change training, not the function the weights compute
    training_only_args = frozenset({"drop_rate", "attn_drop_rate", "drop_path_rate", "grad_checkpointing"})

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int | tuple[int, int] = 16,
        num_frames: int = 8,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        act_layer: ActLayer = "quick_gelu",
        norm_eps: float = 1e-5,
        init_values: float | None = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        grad_checkpointing: bool = False,
    ):
        init_args = init_arguments(CLIPVideoViT.__init__, locals())
        super().__init__()
        if act_layer not in _ACTIVATIONS:
            raise ValueError(f"act_layer must be one of {sorted(_ACTIVATIONS)}, got {act_layer!r}")
        if num_frames < 1:
            raise ValueError(f"num_frames must be positive, got {num_frames}")
        self._init_args = init_args
        self.img_size = to_pair(img_size)
        self.patch_size = to_pair(patch_size)
        self.num_frames = num_frames
        self.tubelet_size = 1
        self.embed_dim = self.num_features = embed_dim
        self.grad_checkpointing = grad_checkpointing

        self.patch_embed = TubeletEmbed(self.patch_size, 1, in_chans, embed_dim, bias=False)
        self.grid_size: Grid = self.patch_embed.grid_size(num_frames, *self.img_size)
        _, h, w = self.grid_size
        self.num_patches = num_frames * h * w
        self.cls_token = nn.Parameter(torch.empty(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.empty(1, 1 + h * w, embed_dim))  # class position first
        self.temporal_embed = nn.Parameter(torch.empty(1, num_frames, embed_dim))
        self.norm_pre = nn.LayerNorm(embed_dim, eps=norm_eps)
        self.blocks = block_stack(
            embed_dim,
            depth,
            num_heads,
            mlp_ratio=mlp_ratio,
            qkv_bias=True,
            drop=drop_rate,
            attn_drop=attn_drop_rate,
            drop_path_rate=drop_path_rate,
            init_values=init_values,
            norm_eps=norm_eps,
            act_layer=_ACTIVATIONS[act_layer],
        )
        self.norm_post = nn.LayerNorm(embed_dim, eps=norm_eps)
        self.apply(init_weights_vit_timm)  # timm's for CLIP-architecture ViTs; CLIP checkpoints replace it
        self.reset_parameters()

    # -- construction -----------------------------------------------------------------------------

    def reset_parameters(self) -> None:
        """Initialize the tensors the tower owns directly, as CLIP and ViCLIP do.

        Class token and spatial table ``~ N(0, d^-1/2)``; the temporal table zeros (an inflated image
        model then starts as a frame-wise one). FSDP calls this on modules materialized from meta.
        """
        scale = self.embed_dim**-0.5
        with torch.no_grad():
            nn.init.normal_(self.cls_token, std=scale)
            nn.init.normal_(self.pos_embed, std=scale)
            nn.init.zeros_(self.temporal_embed)

    def pretrained_config(self) -> dict[str, Any]:
        """The constructor arguments, for :meth:`save_pretrained`'s ``config.json``."""
        return {**self._init_args, "img_size": list(self.img_size), "patch_size": list(self.patch_size)}

    @classmethod
    def build_for_loading(cls, config: dict[str, Any]) -> CLIPVideoViT:
        """Build without the random initialization (a strict load replaces every tensor): meta, then CPU."""
        with torch.device("meta"):
            model = cls.from_pretrained_config(config)
        return model.to_empty(device="cpu")

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Turn activation checkpointing of every block on or off (timm's method name)."""
        self.grad_checkpointing = enable

    def no_weight_decay(self) -> set[str]:
        """Parameter names to exclude from weight decay (ViCLIP's: the class token and both tables)."""
        return {"cls_token", "pos_embed", "temporal_embed"}

    # -- forward ----------------------------------------------------------------------------------

    def pos_embed_for(self, grid: Grid) -> Tensor:
        """The ``[1, t*h*w, d]`` table added to the patch tokens of a clip with token grid ``grid``.

        Spatial table (bicubic-resampled to ``(h, w)`` when it differs) plus temporal table: the
        configured one, its mean at ``t = 1`` (ViCLIP's image path), linearly resampled otherwise.
        """
        t, h, w = grid
        _, h0, w0 = self.grid_size
        spatial = interpolate_pos_embed(self.pos_embed[:, 1:], (1, h0, w0), (1, h, w))
        if t == 1:
            temporal = self.temporal_embed.mean(dim=1, keepdim=True)
        else:
            temporal = interpolate_pos_embed(self.temporal_embed, (self.num_frames, 1, 1), (t, 1, 1))
        table = temporal[:, :, None, :] + spatial[:, None, :, :]  # 1 t (h w) d
        return rearrange(table, "1 t s d -> 1 (t s) d")

    def forward_features(self, video: Tensor, visible_idx: Tensor | None = None) -> Tensor:
        """Encode a clip into the class token and the patch tokens, after ``ln_post``.

        Args:
            video: ``[b, c, t, h, w]`` clip; ``h`` and ``w`` multiples of the patch size.
            visible_idx: ``[b, n_vis]`` int64 indices into the ``n`` patch tokens; only these (and the
                class token) are encoded, as ViCLIP's training masks tokens after the position
                embeddings and before ``ln_pre``.

        Returns:
            ``[b, 1 + n, d]`` (``[b, 1 + n_vis, d]`` with ``visible_idx``), class token first.
        """
        x = self.patch_embed(video)  # b (t h w) d
        pos = self.pos_embed_for(self.patch_embed.grid_size(*video.shape[2:]))
        x = pos.to(dtype=x.dtype) + x  # table first: the sum is laid out contiguously (see VideoViT)
        if visible_idx is not None:
            x = VideoViT._gather_visible(x, visible_idx)
        # ViCLIP's class token carries the class position and no temporal embedding
        cls = (self.cls_token + self.pos_embed[:, :1]).to(dtype=x.dtype).expand(x.shape[0], -1, -1)
        x = self.norm_pre(torch.cat((cls, x), dim=1))
        return self.norm_post(run_blocks(self.blocks, x, self.grad_checkpointing))

    def forward(self, video: Tensor, output: Output = "tokens", visible_idx: Tensor | None = None) -> Tensor:
        """Encode a clip.

        Args:
            video: ``[b, c, t, h, w]`` clip.
            output: ``"pooled"`` ``[b, d]``, the class token after ``ln_post`` (CLIP's image feature
                before ``proj``); ``"tokens"`` ``[b, n, d]``, the patch tokens after ``ln_post`` in
                ``(t h w)`` order; ``"temporal"`` ``[b, t, d]``, their mean over space per frame.
            visible_idx: encode only these patch tokens (see :meth:`forward_features`); not allowed
                with ``"temporal"``, whose grid needs every token.

        Returns:
            features laid out as ``output`` says.
        """
        check_output(output, visible_idx)
        x = self.forward_features(video, visible_idx)
        if output == "pooled":
            return x[:, 0]
        if output == "tokens":
            return x[:, 1:]
        return reduce(x[:, 1:], "b (t s) d -> b t d", "mean", t=video.shape[2])

    # -- foreign checkpoints ----------------------------------------------------------------------

    def load_clip_state_dict(
        self,
        state_dict: Mapping[str, Any],
        source: ClipSource = "viclip",
        strict: bool = True,
        temporal_adapt: TemporalAdapt = "interpolate",
        where: str = "checkpoint",
    ) -> CLIPLoadReport:
        """Load a ViCLIP or image CLIP vision tower from its official layout.

        Args:
            state_dict: a whole ViCLIP checkpoint (``{"model": {"vision_encoder.*": ...,
                "text_encoder.*": ..., "temp": ...}}``, only ``vision_encoder.*`` is read), an open_clip
                / CLIP model state dict (only ``visual.*`` is read), or a bare vision tower.
            source: ``"viclip"`` (Conv3d kernel, temporal table) or ``"openclip"`` (image CLIP: the
                Conv2d weight is inflated to the one-frame Conv3d kernel and the temporal table is
                set to zeros, not reported missing).
            strict: missing or unexpected keys raise; otherwise they warn and the rest loads.
            temporal_adapt: a shorter temporal table is ``"interpolate"``\\ d linearly or
                ``"zero_pad"``\\ ded (zeros appended), the two choices of ViCLIP's
                ``load_temp_embed_with_mismatch``; a longer one is cut to its first frames in both, as
                there. A spatial table of another grid is always resampled bicubically with the class
                position kept.
            where: the file, for messages.

        Returns:
            the missing and unexpected keys, both in the file's own names (official ones under the
            prefix the tower has there: ``vision_encoder.ln_post.weight``, ``visual.ln_post.weight``,
            or ``ln_post.weight`` for a bare tower), and ``proj`` (``[width, embed]`` or ``None``),
            which belongs to ``VideoTextModel.video_proj`` (``video_proj.weight.copy_(proj.T)``).

        Raises:
            ValueError: one line naming the missing and unexpected keys (strict), or the tensors whose
                shapes do not fit; nothing is loaded then.
        """
        loadable, report = self.check_clip_state_dict(state_dict, source, strict, temporal_adapt, where)
        self.load_checked(loadable)
        return report

    def check_clip_state_dict(
        self,
        state_dict: Mapping[str, Any],
        source: ClipSource = "viclip",
        strict: bool = True,
        temporal_adapt: TemporalAdapt = "interpolate",
        where: str = "checkpoint",
    ) -> tuple[dict[str, Tensor], CLIPLoadReport]:
        """Run :meth:`load_clip_state_dict`'s conversion and checks and load nothing.

        Returns:
            the converted tensors that method loads (:meth:`load_checked` loads them), and its report.

        Raises:
            ValueError: as :meth:`load_clip_state_dict`.
        """
        if temporal_adapt not in ("interpolate", "zero_pad"):
            raise ValueError(f"temporal_adapt must be 'interpolate' or 'zero_pad', got {temporal_adapt!r}")
        tower, prefix = clip_vision_weights(state_dict, source, where)
        converted, proj = convert_clip_vision(tower, where, prefix)
        if source == "openclip" and "temporal_embed" not in converted:
            converted["temporal_embed"] = torch.zeros_like(self.temporal_embed, device="cpu")
        self._adapt_tables(converted, temporal_adapt, where, prefix)
        own = self.state_dict()

        def in_file(key: str) -> str:  # the name a user can look up in the file
            return prefix + official_key(key)

        missing = sorted({in_file(k) for k in own if k not in converted})
        unexpected = sorted({in_file(k) for k in converted if k not in own})
        bad = [
            f"{in_file(k)}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
            for k, v in converted.items()
            if k in own and v.shape != own[k].shape
        ]
        if bad:
            more = f"; and {len(bad) - 4} more" if len(bad) > 4 else ""
            raise ValueError(
                f"{where}: {source} vision tower: shape mismatch for " + "; ".join(bad[:4]) + more
            )
        if missing or unexpected:
            message = f"{where}: {source} vision tower: missing keys {missing}, unexpected keys {unexpected}"
            if strict:
                raise ValueError(message)
            warn_caller(message)
        return {k: v for k, v in converted.items() if k in own}, CLIPLoadReport(missing, unexpected, proj)

    def load_checked(self, loadable: Mapping[str, Tensor]) -> None:
        """Load the tensors :meth:`check_clip_state_dict` returned; its checks are not run again.

        What a caller runs once every check it needs has passed (so that an error loads nothing).
        """
        self.load_state_dict(loadable, strict=False)  # the missing keys were reported by the check

    def _adapt_tables(
        self, converted: dict[str, Tensor], temporal_adapt: TemporalAdapt, where: str, prefix: str
    ) -> None:
        pos = converted.get("pos_embed")
        if pos is not None and pos.ndim == 3 and pos.shape[-1] == self.embed_dim:
            side = _square_side(pos.shape[1] - 1, where, prefix)
            _, h, w = self.grid_size
            # compare the layouts, not the counts: a 7x28 grid has the 14x14 table's 196 positions
            if (side, side) != (h, w):
                log.info("resampling the spatial position table from %dx%d to %dx%d", side, side, h, w)
                patches = interpolate_pos_embed(pos[:, 1:], (1, side, side), (1, h, w))
                converted["pos_embed"] = torch.cat((pos[:, :1], patches), dim=1)
        temporal = converted.get("temporal_embed")
        if temporal is not None and temporal.ndim == 3 and temporal.shape[-1] == self.embed_dim:
            frames = temporal.shape[1]
            if frames != self.num_frames:
                # ViCLIP keeps the first frames' rows of a longer table in both modes
                mode = "cut" if frames > self.num_frames else temporal_adapt
                log.info(
                    "adapting the temporal table from %d to %d frames (%s)", frames, self.num_frames, mode
                )
                if mode == "cut":
                    temporal = temporal[:, : self.num_frames]
                elif mode == "interpolate":
                    temporal = interpolate_pos_embed(temporal, (frames, 1, 1), (self.num_frames, 1, 1))
                else:
                    pad = temporal.new_zeros(1, self.num_frames - frames, self.embed_dim)
                    temporal = torch.cat((temporal, pad), dim=1)
                converted["temporal_embed"] = temporal

    @classmethod
    def from_clip_state_dict(
        cls,
        state_dict: Mapping[str, Any],
        source: ClipSource | None = None,
        strict: bool = True,
        temporal_adapt: TemporalAdapt = "interpolate",
        where: str = "checkpoint",
        **overrides: Any,
    ) -> tuple[CLIPVideoViT, Tensor | None]:
        """Build a tower sized like a ViCLIP / CLIP checkpoint and load it.

        Sizes come from the weights (:func:`~vidlit.backbones._clip_interop.clip_vision_config`);
        ``overrides`` replace them, e.g. ``num_frames=16`` or ``img_size=336`` (the tables are
        resampled), ``act_layer="gelu"`` for a LAION open_clip model, ``drop_path_rate=0.1``.

        Args:
            state_dict: see :meth:`load_clip_state_dict`.
            source: ``"viclip"`` / ``"openclip"``; ``None`` detects it from the keys.

        Returns:
            the model and ``proj`` (``None`` when the checkpoint has none).
        """
        source = source or detect_clip_source(state_dict)
        tower, prefix = clip_vision_weights(state_dict, source, where)
        config = {**clip_vision_config(tower, where, overrides.get("num_heads"), prefix), **overrides}
        model = cls(**config)
        report = model.load_clip_state_dict(state_dict, source, strict, temporal_adapt, where)
        return model, report.proj

    def clip_state_dict(
        self, proj: Tensor | None = None, prefix: str = "vision_encoder."
    ) -> dict[str, Tensor]:
        """This tower's weights in ViCLIP's official layout (``proj`` added when given).

        The inverse of :meth:`load_clip_state_dict` (the key part of each ``in_proj_bias`` is zero).
        """
        return export_clip_vision(self.state_dict(), proj, prefix)

    @classmethod
    def from_pretrained(cls, path: str | Path, strict: bool = True, **overrides: Any) -> CLIPVideoViT:
        """A :meth:`save_pretrained` folder (or Hub repo id), or a ViCLIP / CLIP weights file.

        A file (``.pth`` / ``.pt`` / ``.bin`` / ``.safetensors``, read with ``weights_only=True``) in
        ViCLIP's or open_clip's layout is read by :meth:`from_clip_state_dict` with its layout detected
        (its ``proj`` is dropped: load it with :meth:`from_clip_state_dict` or into a
        ``VideoTextModel``); so is vidlit's own: an exported ``backbone.pt`` or the tower in a Lightning
        ``.ckpt`` of a vidlit module.

        Args:
            path: the folder, file or repo id.
            strict: raise on missing or unexpected keys; otherwise warn and load the rest.
            **overrides: constructor arguments replacing the saved or inferred ones.
        """
        path = resolve_pretrained_dir(path)
        if is_vidlit_folder(path):
            return cls._from_vidlit_folder(path, overrides, strict=strict)
        state_dict = _clip_layout(load_checkpoint_file(path)[0])
        model, proj = cls.from_clip_state_dict(state_dict, strict=strict, where=str(path), **overrides)
        if proj is not None:
            log.info(
                "%s: the tower's proj %s is not part of the backbone; not loaded", path, tuple(proj.shape)
            )
        return model

    def load_pretrained(self, path: str | Path, strict: bool = True) -> None:
        """Load a :meth:`save_pretrained` folder or a ViCLIP / CLIP weights file into this model as built.

        What :func:`~vidlit.backbones.create_backbone`'s ``checkpoint_path`` calls. A folder's config
        must match but for dropout and stochastic depth; a file (ViCLIP, open_clip, an exported
        ``backbone.pt``, a Lightning ``.ckpt``) has its tables resampled to this model's frame count
        and resolution.
        """
        path = resolve_pretrained_dir(path)
        if is_vidlit_folder(path):
            self.load_vidlit_folder(path, strict=strict)
            return
        state_dict = _clip_layout(load_checkpoint_file(path)[0])
        self.load_clip_state_dict(state_dict, detect_clip_source(state_dict), strict=strict, where=str(path))


def _clip_layout(state_dict: Mapping[str, Any]) -> Mapping[str, Any]:
    # vidlit's own key names (an exported backbone.pt, the tower cut out of a Lightning checkpoint)
    # go through the official layout, so that they get the same table adaptation and key report
    state = {_strip_wrappers(k): v for k, v in _unwrap(state_dict).items()}
    if "cls_token" in state and "patch_embed.proj.weight" in state:
        return export_clip_vision(state)
    return state_dict


# -- named sizes --------------------------------------------------------------------------------
# A size's width, depth and heads are its function's keyword defaults (the registry reads the width).

# ViCLIP's input: 8 frames at 224 px.
_VICLIP_8X224 = dict(num_frames=8, img_size=224)


@register_backbone
def viclip_test(embed_dim: int = 64, depth: int = 2, num_heads: int = 4, **kwargs: Any) -> CLIPVideoViT:
    """Tiny CLIPVideoViT for CPU tests: width 64, 2 blocks, 4 heads, 8 frames at 32 px, 8 px patches."""
    clip = dict(num_frames=8, img_size=32, patch_size=8)
    return CLIPVideoViT(**{**clip, **kwargs}, embed_dim=embed_dim, depth=depth, num_heads=num_heads)


@register_backbone
def viclip_base_patch16(
    embed_dim: int = 768, depth: int = 12, num_heads: int = 12, **kwargs: Any
) -> CLIPVideoViT:
    """ViCLIP-B/16 video tower (CLIP ViT-B/16): width 768, 12 blocks, 12 heads, 8 x 224 px clips."""
    clip = dict(**_VICLIP_8X224, patch_size=16)
    return CLIPVideoViT(**{**clip, **kwargs}, embed_dim=embed_dim, depth=depth, num_heads=num_heads)


@register_backbone
def viclip_large_patch14(
    embed_dim: int = 1024, depth: int = 24, num_heads: int = 16, **kwargs: Any
) -> CLIPVideoViT:
    """ViCLIP-L/14 video tower (CLIP ViT-L/14): width 1024, 24 blocks, 16 heads, 8 x 224 px clips."""
    clip = dict(**_VICLIP_8X224, patch_size=14)
    return CLIPVideoViT(**{**clip, **kwargs}, embed_dim=embed_dim, depth=depth, num_heads=num_heads)
