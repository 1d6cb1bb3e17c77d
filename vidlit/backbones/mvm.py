"""Masked video modeling: tube masking, pixel targets and the VideoMAE decoder.

The pretraining recipe of VideoMAE (Tong et al., 2022, "VideoMAE: Masked Autoencoders are
Data-Efficient Learners for Self-Supervised Video Pre-Training") and of InternVideo's masked
branch (Wang et al., 2022, "InternVideo: General Video Foundation Models via Generative and
Discriminative Learning"): hide 90% of a clip's tubelets with one random spatial mask shared by
every time step (tube masking, Sec. 3.3), encode only the visible tubelets with a
:class:`~vidlit.backbones.VideoViT`, and let a narrow transformer decoder reconstruct the
pixels of the hidden ones, each tubelet normalized by its own mean and standard deviation
(VideoMAE's default target, after MAE, He et al., 2022). The loss is the mean squared error
over the masked tubelets only.

Shape legend: ``b`` batch, ``c`` channels, ``t``/``h``/``w`` frames and pixels; tokens on the
``(t', h', w')`` grid with ``t' = t / p0``, ``h' = h / p1``, ``w' = w / p2`` for a
``p0 x p1 x p2`` tubelet, flattened time-major ``(t' h' w')`` exactly as
:class:`~vidlit.layers.tubelet.TubeletEmbed` emits them; ``n`` all tokens, ``v`` visible,
``m`` masked; ``d`` encoder width, ``e`` decoder width.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from vidlit.backbones._builder import _unwrap, remap_checkpoint_keys
from vidlit.backbones.vit import block_stack
from vidlit.core.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from vidlit.layers.pos_embed import Grid, sincos_table
from vidlit.layers.tubelet import tile_grid, to_pair

__all__ = [
    "IMAGENET_DEFAULT_MEAN",
    "IMAGENET_DEFAULT_STD",
    "MVMDecoder",
    "MVMOutput",
    "MaskedVideoModel",
    "bool_masked_pos",
    "decoder_for",
    "masked_reconstruction",
    "patchify",
    "pixel_targets",
    "remap_decoder_keys",
    "tube_mask",
    "unpatchify",
]


def tube_mask(
    batch_size: int,
    grid: Grid,
    ratio: float = 0.9,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """Random tube masks: one spatial mask per clip, repeated over every time step.

    VideoMAE's ``TubeMaskingGenerator`` (Tong et al., 2022, Sec. 3.3): masking the same spatial
    positions in every frame stops the model from copying a hidden patch from its neighbour in
    time, which makes 90% masking a hard enough task. Each clip masks exactly
    ``round(ratio * h' * w')`` positions per time step (VideoMAE truncates with ``int``; the
    two agree unless the fraction is at least one half).

    Args:
        batch_size: clips.
        grid: ``(t', h', w')`` token grid, e.g. ``backbone.grid_size``.
        ratio: fraction of the spatial positions to mask.
        generator: random generator (its device draws the mask); the global generator of
            ``device`` when ``None``.
        device: where the returned indices live.

    Returns:
        ``(visible_idx [b, t' * v_s], masked_idx [b, t' * m_s])``: int64 token indices into the
        ``(t' h' w')``-flattened tokens, each row sorted ascending, disjoint, together covering
        every token (``v_s + m_s = h' * w'``).

    Raises:
        ValueError: if the ratio would leave no visible or no masked position.
    """
    t, h, w = (int(x) for x in grid)
    space = h * w
    num_masked = round(ratio * space)
    if not 0 < num_masked < space:
        raise ValueError(
            f"mask ratio {ratio} masks {num_masked} of the {h}x{w}={space} positions per frame; "
            f"at least one must stay visible and one be masked"
        )
    # Drawn where the generator lives, else directly on the target device: a host-to-device copy
    # of the indices every step would stall the GPU pipeline.
    source = generator.device if generator is not None else device
    # a uniformly random permutation per clip: its first num_masked positions are hidden
    order = torch.rand(batch_size, space, generator=generator, device=source).argsort(dim=1)
    masked_space = order[:, :num_masked].sort(dim=1).values
    visible_space = order[:, num_masked:].sort(dim=1).values
    # token index of (time step i, spatial position s) is i * space + s: rows stay sorted
    offsets = torch.arange(t, device=source)[None, :, None] * space

    def tubes(positions: Tensor) -> Tensor:
        return (offsets + positions[:, None, :]).flatten(1).to(device)

    return tubes(visible_space), tubes(masked_space)


def bool_masked_pos(masked_idx: Tensor, num_tokens: int) -> Tensor:
    """``[b, n]`` bool, True at masked tokens: transformers' ``bool_masked_pos`` (VideoMAE's ``mask``)."""
    mask = torch.zeros(masked_idx.shape[0], num_tokens, dtype=torch.bool, device=masked_idx.device)
    return mask.scatter_(1, masked_idx, True)


def patchify(video: Tensor, tubelet_size: int, patch_size: int | tuple[int, int]) -> Tensor:
    """Cut a clip into flattened tubelets in VideoMAE's target layout.

    Args:
        video: ``[b, c, t, h, w]`` clip.
        tubelet_size: frames per tubelet ``p0``.
        patch_size: spatial patch side ``p1`` (= ``p2``), or ``(p1, p2)``.

    Returns:
        ``[b, n, p0 * p1 * p2 * c]``: tokens in ``(t' h' w')`` order; within a token the
        pixels in ``(p0 p1 p2)`` order with the channel last, as VideoMAE's
        ``rearrange(..., 'b c (t p0) (h p1) (w p2) -> b (t h w) (p0 p1 p2 c)')``.
    """
    p1, p2 = to_pair(patch_size)
    _check_tiles(video, tubelet_size, (p1, p2))
    return rearrange(
        video, "b c (t p0) (h p1) (w p2) -> b (t h w) (p0 p1 p2 c)", p0=tubelet_size, p1=p1, p2=p2
    )


def unpatchify(
    patches: Tensor, grid: Grid, tubelet_size: int, patch_size: int | tuple[int, int], channels: int = 3
) -> Tensor:
    """Inverse of :func:`patchify`: ``[b, n, p0 * p1 * p2 * c]`` back to ``[b, c, t, h, w]``."""
    p1, p2 = to_pair(patch_size)
    t, h, w = grid
    return rearrange(
        patches,
        "b (t h w) (p0 p1 p2 c) -> b c (t p0) (h p1) (w p2)",
        t=t,
        h=h,
        w=w,
        p0=tubelet_size,
        p1=p1,
        p2=p2,
        c=channels,
    )


def pixel_targets(
    video: Tensor,
    tubelet_size: int,
    patch_size: int | tuple[int, int],
    norm_pix: bool = True,
    pixel_mean: Sequence[float] | None = IMAGENET_DEFAULT_MEAN,
    pixel_std: Sequence[float] | None = IMAGENET_DEFAULT_STD,
    eps: float = 1e-6,
) -> Tensor:
    """Reconstruction targets of every tubelet, as VideoMAE's pretraining loop builds them.

    The input clip is first mapped back to ``[0, 1]`` pixels (``video * std + mean``) when
    ``pixel_mean``/``pixel_std`` are given, the normalization the loader applied. With
    ``norm_pix`` (the ``--normlize_target`` option of VideoMAE's ``run_mae_pretraining.py``, on
    by default; after the normalized-pixel targets of MAE, He et al., 2022) each tubelet's
    pixels are standardized per channel: ``(x - mean) / (std + eps)`` over the tubelet's
    ``p0 * p1 * p2`` pixels, with the unbiased standard deviation, as VideoMAE and
    transformers compute it.

    Computed in float32 without gradients, whatever the input dtype.

    Args:
        video: ``[b, c, t, h, w]`` clip as the model sees it.
        tubelet_size: frames per tubelet.
        patch_size: spatial patch side or ``(height, width)``.
        norm_pix: standardize each tubelet.
        pixel_mean: per-channel mean the loader subtracted, or ``None`` to use ``video`` as is.
        pixel_std: per-channel std the loader divided by; given together with ``pixel_mean``.
        eps: added to the standard deviation.

    Returns:
        ``[b, n, p0 * p1 * p2 * c]`` float32 targets in :func:`patchify`'s layout.
    """
    if (pixel_mean is None) != (pixel_std is None):
        raise ValueError("pixel_mean and pixel_std must be given together (or both None)")
    with torch.no_grad():
        video = video.float()
        channels = video.shape[1]
        if pixel_mean is not None:
            if len(pixel_mean) != channels or len(pixel_std) != channels:
                raise ValueError(
                    f"pixel_mean/pixel_std have {len(pixel_mean)}/{len(pixel_std)} entries for a "
                    f"{channels}-channel video"
                )
            mean = video.new_tensor(pixel_mean)[None, :, None, None, None]
            std = video.new_tensor(pixel_std)[None, :, None, None, None]
            video = video * std + mean
        patches = patchify(video, tubelet_size, patch_size)
        if not norm_pix:
            return patches
        patches = rearrange(patches, "b n (p c) -> b n p c", c=channels)
        patches = (patches - patches.mean(dim=-2, keepdim=True)) / (
            patches.var(dim=-2, unbiased=True, keepdim=True).sqrt() + eps
        )
        return rearrange(patches, "b n p c -> b n (p c)")


def _check_tiles(video: Tensor, tubelet_size: int, patch: tuple[int, int]) -> None:
    if video.ndim != 5:
        raise ValueError(
            f"expected a video [batch, channels, frames, height, width], got {tuple(video.shape)}"
        )
    t, h, w = video.shape[2:]
    tile_grid(t, h, w, tubelet_size, *patch)


def _gather(x: Tensor, idx: Tensor) -> Tensor:
    """``x[b, idx[b, k]]`` for ``x [b, n, d]`` and ``idx [b, k]``."""
    return torch.take_along_dim(x, idx[..., None], dim=1)


class MVMDecoder(nn.Module):
    """VideoMAE's pretraining decoder (Tong et al., 2022, Sec. 3.3; ``PretrainVisionTransformerDecoder``).

    Projects the encoder's visible tokens to the decoder width, appends one shared learned
    mask token for every hidden position, adds the fixed 1-D sin-cos position table of the
    full ``(t' h' w')`` token sequence (visible tokens at their own positions, mask tokens at
    theirs), runs ``depth`` pre-norm :class:`~vidlit.backbones.vit.Block`\\ s over all tokens,
    and predicts pixels for the masked tokens only (final norm + linear head).

    Parameter names follow VideoMAE (``encoder_to_decoder``, ``mask_token``, ``blocks``,
    ``norm``, ``head``), with the first two moved inside the decoder. Initialization is
    VideoMAE's: Xavier-uniform linear weights, zero biases, a truncated-normal mask token.

    Args:
        embed_dim: encoder width ``d``.
        patch_dim: pixels per tubelet, ``p0 * p1 * p2 * c`` (1536 for 2 x 16 x 16 RGB).
        num_patches: tokens per configured clip, the length of the cached position table
            (longer clips get a table computed on the fly).
        decoder_dim: decoder width ``e`` (VideoMAE: 192 for ViT-S, 384 for ViT-B, 512 for ViT-L/H).
        depth: decoder blocks (VideoMAE: 4).
        num_heads: decoder attention heads (VideoMAE: 3 for ViT-S, 6 for ViT-B, 8 for ViT-L/H).
        mlp_ratio: MLP hidden width as a multiple of ``decoder_dim``.
        qkv_bias: learn query and value biases.
        norm_eps: LayerNorm epsilon (VideoMAE: 1e-6).
        init_values: LayerScale initial value, ``None`` for none (VideoMAE's default).
        drop_path_rate: stochastic depth, rising linearly over the decoder blocks.
    """

    def __init__(
        self,
        embed_dim: int,
        patch_dim: int,
        num_patches: int = 1568,
        decoder_dim: int = 384,
        depth: int = 4,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        norm_eps: float = 1e-6,
        init_values: float | None = None,
        drop_path_rate: float = 0.0,
    ):
        super().__init__()
        self.decoder_dim = decoder_dim
        self.num_patches = num_patches
        self.register_buffer("pos_embed", sincos_table(num_patches, decoder_dim), persistent=False)
        self.encoder_to_decoder = nn.Linear(embed_dim, decoder_dim, bias=False)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.blocks = block_stack(
            decoder_dim,
            depth,
            num_heads,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            drop_path_rate=drop_path_rate,
            init_values=init_values,
            norm_eps=norm_eps,
        )
        self.norm = nn.LayerNorm(decoder_dim, eps=norm_eps)
        self.head = nn.Linear(decoder_dim, patch_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """VideoMAE's initialization of the decoder (and the fixed table, for meta-device builds)."""
        with torch.no_grad():
            self.pos_embed.copy_(sincos_table(self.num_patches, self.decoder_dim))
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.trunc_normal_(self.mask_token, std=0.02, a=-0.02, b=0.02)

    def no_weight_decay(self) -> set[str]:
        """Parameter names to exclude from weight decay (VideoMAE skips the mask token)."""
        return {"mask_token"}

    def pos_table(self, num_tokens: int) -> Tensor:
        """``[1, n, e]`` fixed position table of an ``n``-token clip.

        VideoMAE's table is 1-D over the flattened ``(t h w)`` index: row ``p`` does not depend
        on the clip's length, so a shorter clip takes a prefix of the cached table.
        """
        if num_tokens <= self.num_patches:
            return self.pos_embed[:, :num_tokens]
        return sincos_table(num_tokens, self.decoder_dim).to(self.pos_embed.device)

    def forward(self, tokens: Tensor, visible_idx: Tensor, masked_idx: Tensor) -> Tensor:
        """Predict the pixels of the masked tubelets.

        Args:
            tokens: ``[b, v, d]`` encoder output for the visible tokens, in ``visible_idx`` order.
            visible_idx: ``[b, v]`` int64 token indices of the visible tokens.
            masked_idx: ``[b, m]`` int64 token indices of the masked tokens; visible and masked
                together must cover the ``n = v + m`` tokens of the clip.

        Returns:
            ``[b, m, patch_dim]`` predictions, in ``masked_idx`` order.
        """
        b, v, _ = tokens.shape
        m = masked_idx.shape[1]
        if visible_idx.shape != (b, v) or masked_idx.shape[0] != b:
            raise ValueError(
                f"visible_idx {tuple(visible_idx.shape)} and masked_idx {tuple(masked_idx.shape)} do not "
                f"match {b} clips with {v} visible tokens"
            )
        x = self.encoder_to_decoder(tokens)  # b v e
        pos = self.pos_table(v + m).to(dtype=x.dtype).expand(b, -1, -1)
        x = torch.cat(
            (x + _gather(pos, visible_idx), self.mask_token.to(x.dtype) + _gather(pos, masked_idx)), 1
        )
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x[:, -m:]))  # b m patch_dim


class MVMOutput(NamedTuple):
    """What :class:`MaskedVideoModel` returns.

    Attributes:
        loss: scalar mean squared error over the masked tubelets.
        pred: ``[b, m, patch_dim]`` predicted (normalized) pixels of the masked tubelets.
        target: ``[b, m, patch_dim]`` float32 targets at the same positions.
    """

    loss: Tensor
    pred: Tensor
    target: Tensor


class MaskedVideoModel(nn.Module):
    """A :class:`~vidlit.backbones.VideoViT` encoder plus :class:`MVMDecoder`: VideoMAE pretraining.

    ``forward(video, visible_idx, masked_idx)`` encodes only the visible tubelets (the encoder
    never sees a mask token, Tong et al., 2022, Sec. 3.3), decodes every position and returns
    the mean squared error between the predicted and the target pixels of the masked tubelets
    (:func:`pixel_targets`). Masks come from :func:`tube_mask`. Plain PyTorch;
    :class:`vidlit.tasks.MVMPretrain` trains the same computation with Lightning.

    Args:
        backbone: the encoder; called as ``backbone(video, visible_idx=...)`` and read for
            ``embed_dim``, ``tubelet_size``, ``patch_size`` and ``patch_embed.in_chans``.
        decoder_dim: decoder width.
        decoder_depth: decoder blocks.
        decoder_heads: decoder attention heads.
        norm_pix_loss: per-tubelet normalized pixel targets (VideoMAE's default).
        pixel_mean: per-channel mean the data loader subtracted; targets are built on
            un-normalized pixels. ``None`` when the clips are not normalized.
        pixel_std: per-channel standard deviation the data loader divided by.
    """

    def __init__(
        self,
        backbone: nn.Module,
        decoder_dim: int = 384,
        decoder_depth: int = 4,
        decoder_heads: int = 6,
        norm_pix_loss: bool = True,
        pixel_mean: Sequence[float] | None = IMAGENET_DEFAULT_MEAN,
        pixel_std: Sequence[float] | None = IMAGENET_DEFAULT_STD,
    ):
        super().__init__()
        self.backbone = backbone
        self.decoder = decoder_for(backbone, decoder_dim, decoder_depth, decoder_heads)
        self.norm_pix_loss = norm_pix_loss
        self.pixel_mean = pixel_mean
        self.pixel_std = pixel_std

    def forward(self, video: Tensor, visible_idx: Tensor, masked_idx: Tensor) -> MVMOutput:
        """Masked reconstruction loss of a batch of clips.

        Args:
            video: ``[b, c, t, h, w]`` clips, normalized as ``pixel_mean``/``pixel_std`` say.
            visible_idx: ``[b, v]`` int64 indices of the tokens the encoder sees.
            masked_idx: ``[b, m]`` int64 indices of the tokens to reconstruct.

        Returns:
            loss, predictions and targets of the masked tubelets.
        """
        return reconstruct(self, video, visible_idx, masked_idx)


# what decoder_for, reconstruct and masked_reconstruction read from an encoder
ENCODER_ATTRIBUTES = ("embed_dim", "tubelet_size", "patch_size", "grid_size", "num_patches", "patch_embed")


def decoder_for(
    backbone: nn.Module, decoder_dim: int, depth: int, num_heads: int, mask_ratio: float | None = None
) -> MVMDecoder:
    """An :class:`MVMDecoder` sized for a VideoViT's width and tubelet.

    Args:
        backbone: the encoder (a :class:`~vidlit.backbones.VideoViT` or one with its attributes).
        decoder_dim: decoder width.
        depth: decoder blocks.
        num_heads: decoder attention heads.
        mask_ratio: when given, checked against the backbone's token grid now, so that a ratio
            that leaves nothing visible or nothing masked fails at construction, not at the first step.

    Raises:
        ValueError: if the backbone is not VideoViT-like, or the mask ratio is unusable.
    """
    missing = [attr for attr in ENCODER_ATTRIBUTES if not hasattr(backbone, attr)]
    if missing:
        raise ValueError(
            f"backbone {type(backbone).__name__} has no {', '.join(map(repr, missing))}: masked video "
            f"modeling needs a VideoViT-like encoder (e.g. vidlit.backbones.create_backbone, a vit_* name)"
        )
    if mask_ratio is not None:
        tube_mask(1, backbone.grid_size, mask_ratio)
    p1, p2 = to_pair(backbone.patch_size)
    patch_dim = backbone.tubelet_size * p1 * p2 * backbone.patch_embed.in_chans
    return MVMDecoder(
        backbone.embed_dim,
        patch_dim,
        num_patches=backbone.num_patches,
        decoder_dim=decoder_dim,
        depth=depth,
        num_heads=num_heads,
    )


def reconstruct(model: nn.Module, video: Tensor, visible_idx: Tensor, masked_idx: Tensor) -> MVMOutput:
    """The masked reconstruction loss of ``model.backbone`` + ``model.decoder``.

    Shared by :class:`MaskedVideoModel`, :class:`vidlit.tasks.MVMPretrain` and
    :class:`vidlit.tasks.VideoTextPretrain`, which hold the same attributes (``backbone``,
    ``decoder``, ``norm_pix_loss``, ``pixel_mean``, ``pixel_std``), so that the plain module and
    the Lightning tasks compute exactly one loss.
    """
    backbone = model.backbone
    target = pixel_targets(
        video,
        backbone.tubelet_size,
        backbone.patch_size,
        norm_pix=model.norm_pix_loss,
        pixel_mean=model.pixel_mean,
        pixel_std=model.pixel_std,
    )
    target = _gather(target, masked_idx)
    pred = model.decoder(backbone(video, visible_idx=visible_idx), visible_idx, masked_idx)
    # the loss in float32: bf16 squared errors of unit-variance targets lose too many bits
    return MVMOutput(F.mse_loss(pred.float(), target), pred, target)


def remap_decoder_keys(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """:class:`MVMDecoder` weights from a VideoMAE pretraining checkpoint.

    Reads the original layout (``encoder_to_decoder.weight``, ``mask_token``,
    ``decoder.blocks.N.*``, ``decoder.norm.*``, ``decoder.head.*``, as ``run_mae_pretraining.py``
    saves it, nested under ``model`` or not) and transformers' ``VideoMAEForPreTraining``
    (``decoder.decoder_layers.N.*`` with separate query/key/value weights). The encoder's weights
    load into the backbone with :func:`~vidlit.backbones._builder.remap_checkpoint_keys` (e.g.
    ``VideoViT.load_state_dict_filtered``).

    Returns:
        a state dict for ``MVMDecoder.load_state_dict``.
    """
    out: dict[str, Tensor] = {}
    layers: dict[str, Tensor] = {}
    for key, value in _unwrap(state_dict).items():
        key = key.removeprefix("module.")
        if key in ("encoder_to_decoder.weight", "mask_token"):
            out[key] = value
        elif key.startswith("decoder.decoder_layers."):  # transformers: the encoder's layer layout
            layers["encoder.layer." + key.removeprefix("decoder.decoder_layers.")] = value
        elif key.startswith("decoder.blocks."):
            layers[key.removeprefix("decoder.")] = value
        elif key.startswith(("decoder.norm.", "decoder.head.")):
            out[key.removeprefix("decoder.")] = value
    out.update(remap_checkpoint_keys(layers) if layers else {})
    return out


def masked_reconstruction(
    model: nn.Module, video: Tensor, mask_ratio: float, generator: torch.Generator | None = None
) -> MVMOutput:
    """Draw fresh tube masks (:func:`tube_mask`) for ``video`` and :func:`reconstruct` the hidden tubelets.

    The training (and, with a seeded ``generator``, evaluation) step of masked video modeling in
    :class:`vidlit.tasks.MVMPretrain` and :class:`vidlit.tasks.VideoTextPretrain`.

    Args:
        model: holds ``backbone``, ``decoder``, ``norm_pix_loss``, ``pixel_mean``, ``pixel_std``.
        video: ``[b, c, t, h, w]`` clips; the mask covers their token grid (which may differ from
            the backbone's configured one).
        mask_ratio: fraction of spatial positions hidden per clip.
        generator: draws the masks; the global generator of ``video``'s device when ``None``.
    """
    grid = model.backbone.patch_embed.grid_size(*video.shape[2:])
    visible_idx, masked_idx = tube_mask(
        video.shape[0], grid, mask_ratio, generator=generator, device=video.device
    )
    return reconstruct(model, video, visible_idx, masked_idx)
