"""VideoViT: a plain ViT with joint space-time attention over tubelet tokens.

The architecture of VideoMAE (Tong et al., 2022, "VideoMAE: Masked Autoencoders are
Data-Efficient Learners for Self-Supervised Video Pre-Training") and of InternVideo's
VideoMAE branch (Wang et al., 2022): ``tubelet x patch x patch`` Conv3d embedding, a fixed
sin-cos (or learned) position table, pre-norm blocks with global attention over all
``t*h*w`` tokens, and either a final LayerNorm or mean pooling followed by ``fc_norm``.

Parameter names follow the original VideoMAE code, so its checkpoints load as they are;
:func:`checkpoint_filter_fn` maps transformers' ``VideoMAEModel`` layout onto them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from einops import reduce
from timm.layers import DropPath, LayerScale, Mlp
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from vidlit.backbones._builder import (
    config_from_hf,
    config_from_state_dict,
    is_lightning_checkpoint,
    lightning_backbone_weights,
    load_checkpoint_file,
    remap_checkpoint_keys,
)
from vidlit.backbones._pretrained import (
    PretrainedMixin,
    init_arguments,
    is_vidlit_folder,
    resolve_pretrained_dir,
    warn_caller,
)
from vidlit.backbones._registry import register_backbone
from vidlit.layers.attention import Attention
from vidlit.layers.pos_embed import Grid, infer_grid, interpolate_pos_embed, learned_table, sincos_table
from vidlit.layers.tubelet import TubeletEmbed, to_pair

# Checkpoint reading and foreign layouts live in vidlit.backbones._builder; the names are
# re-exported here for code written before the move.
__all__ = [
    "Block",
    "VideoViT",
    "block_stack",
    "check_output",
    "checkpoint_filter_fn",
    "init_weights_vit_timm",
    "is_lightning_checkpoint",
    "lightning_backbone_weights",
    "remap_checkpoint_keys",
    "run_blocks",
]

log = logging.getLogger(__name__)

Output = Literal["tokens", "pooled", "temporal"]
OUTPUTS = ("tokens", "pooled", "temporal")


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``.

    Args:
        dim: token width.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width as a multiple of ``dim``.
        qkv_bias: learn query and value biases (VideoMAE's ``q_bias`` / ``v_bias``).
        drop: dropout after the attention projection and in the MLP.
        attn_drop: dropout on attention weights.
        drop_path: stochastic-depth rate of this block.
        init_values: LayerScale initial value (``gamma_1`` / ``gamma_2`` in VideoMAE); ``None``
            for no LayerScale, VideoMAE's default.
        norm_eps: LayerNorm epsilon.
        act_layer: MLP activation (CLIP and ViCLIP: ``timm.layers.QuickGELU``).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        init_values: float | None = None,
        norm_eps: float = 1e-6,
        act_layer: type[nn.Module] = nn.GELU,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=drop)
        self.ls1 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, hidden_features=round(dim * mlp_ratio), act_layer=act_layer, drop=drop)
        self.ls2 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """``[b, n, d]`` tokens in, ``[b, n, d]`` out."""
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x))))
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


def block_stack(
    dim: int,
    depth: int,
    num_heads: int,
    mlp_ratio: float = 4.0,
    qkv_bias: bool = True,
    drop: float = 0.0,
    attn_drop: float = 0.0,
    drop_path_rate: float = 0.0,
    init_values: float | None = None,
    norm_eps: float = 1e-6,
    act_layer: type[nn.Module] = nn.GELU,
) -> nn.ModuleList:
    """``depth`` :class:`Block`\\ s whose stochastic-depth rate rises linearly from 0 to ``drop_path_rate``.

    The rule of timm's ViT and VideoMAE's encoder and decoder; the other arguments are
    :class:`Block`'s, the same for every block.
    """
    # Python floats, not torch.linspace(...).item(): construction must work on the meta device.
    rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
    return nn.ModuleList(
        Block(
            dim,
            num_heads,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            drop=drop,
            attn_drop=attn_drop,
            drop_path=rate,
            init_values=init_values,
            norm_eps=norm_eps,
            act_layer=act_layer,
        )
        for rate in rates
    )


def run_blocks(blocks: nn.ModuleList, x: Tensor, grad_checkpointing: bool = False) -> Tensor:
    """Apply ``blocks`` in order, with activation checkpointing when ``grad_checkpointing``.

    Checkpointed blocks recompute their activations in the backward pass; only while autograd
    records, so inference is never slowed.
    """
    use_checkpoint = grad_checkpointing and torch.is_grad_enabled()
    for block in blocks:
        x = checkpoint(block, x, use_reentrant=False) if use_checkpoint else block(x)
    return x


def check_output(output: str, visible_idx: Tensor | None) -> None:
    """Refuse an ``output`` a video tower's ``forward`` does not have, or ``"temporal"`` with ``visible_idx``.

    Raises:
        ValueError: ``output`` is not one of :data:`OUTPUTS`, or is ``"temporal"`` (whose grid needs
            every token) with a token subset.
    """
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    if output == "temporal" and visible_idx is not None:
        raise ValueError("output='temporal' needs every token; it cannot be combined with visible_idx")


class VideoViT(nn.Module, PretrainedMixin):
    """Video Vision Transformer with joint space-time attention (VideoMAE / InternVideo backbone).

    Shape legend: ``b`` batch, ``c`` channels, ``t`` frames, ``h``/``w`` pixels; tokens are
    ``n = t' * h' * w'`` with ``t' = t / tubelet_size`` and ``h' = h / patch``; ``d`` width.

    Clips of another frame count or resolution than configured are accepted: the position table
    is resampled to their token grid (:func:`~vidlit.layers.pos_embed.interpolate_pos_embed`).
    At the configured size the sin-cos table is VideoMAE's 1-D table over the flattened
    ``(t h w)`` index, so features match VideoMAE and transformers' ``VideoMAEModel`` exactly.

    Args:
        img_size: configured frame size, an int or ``(height, width)``.
        patch_size: spatial patch side.
        num_frames: configured frames per clip.
        tubelet_size: frames per token.
        in_chans: input channels.
        embed_dim: token width.
        depth: number of blocks.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width as a multiple of ``embed_dim``.
        qkv_bias: learn query and value biases (VideoMAE layout, no key bias).
        pos_embed_type: ``"sincos"`` for VideoMAE's fixed table (not saved in the state dict, as
            in VideoMAE and transformers) or ``"learned"``.
        use_mean_pooling: VideoMAE's fine-tuning head layout: no final norm on the tokens;
            ``pooled`` and ``temporal`` outputs are mean-pooled and then normalized by
            ``fc_norm``. Off: a final ``norm`` on the tokens and plain mean pooling.
        norm_eps: LayerNorm epsilon (VideoMAE uses 1e-6; transformers' configs say
            ``layer_norm_eps``, 1e-12 by default).
        fc_norm_eps: epsilon of ``fc_norm``; defaults to ``norm_eps``.
        init_values: LayerScale initial value, ``None`` for none.
        drop_rate: dropout after the position embedding, the attention projection and in MLPs.
        attn_drop_rate: dropout on attention weights.
        drop_path_rate: stochastic depth, rising linearly from 0 to this over the blocks.
        grad_checkpointing: recompute each block's activations in the backward pass.

    Attributes:
        block_class: the block type, for FSDP auto-wrap and activation-checkpointing policies.
        grid_size: configured token grid ``(t', h', w')``.
        num_patches: tokens per configured clip.
    """

    block_class = Block
    # arguments that change training, not the function the weights compute
    training_only_args = frozenset({"drop_rate", "attn_drop_rate", "drop_path_rate", "grad_checkpointing"})

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int | tuple[int, int] = 16,
        num_frames: int = 16,
        tubelet_size: int = 2,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        pos_embed_type: Literal["sincos", "learned"] = "sincos",
        use_mean_pooling: bool = False,
        norm_eps: float = 1e-6,
        fc_norm_eps: float | None = None,
        init_values: float | None = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        grad_checkpointing: bool = False,
    ):
        init_args = init_arguments(VideoViT.__init__, locals())
        super().__init__()
        self._init_args = init_args
        if pos_embed_type not in ("sincos", "learned"):
            raise ValueError(f"pos_embed_type must be 'sincos' or 'learned', got {pos_embed_type!r}")
        self.img_size = to_pair(img_size)
        self.patch_size = to_pair(patch_size)
        self.num_frames = num_frames
        self.tubelet_size = tubelet_size
        self.embed_dim = self.num_features = embed_dim
        self.pos_embed_type = pos_embed_type
        self.use_mean_pooling = use_mean_pooling
        self.grad_checkpointing = grad_checkpointing

        self.patch_embed = TubeletEmbed(self.patch_size, tubelet_size, in_chans, embed_dim)
        self.grid_size: Grid = self.patch_embed.grid_size(num_frames, *self.img_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1] * self.grid_size[2]
        if pos_embed_type == "learned":
            self.pos_embed = learned_table(self.num_patches, embed_dim)
        else:
            self.register_buffer("pos_embed", sincos_table(self.num_patches, embed_dim), persistent=False)
        self.pos_drop = nn.Dropout(drop_rate)

        self.blocks = block_stack(
            embed_dim,
            depth,
            num_heads,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            drop=drop_rate,
            attn_drop=attn_drop_rate,
            drop_path_rate=drop_path_rate,
            init_values=init_values,
            norm_eps=norm_eps,
        )
        self.norm = nn.Identity() if use_mean_pooling else nn.LayerNorm(embed_dim, eps=norm_eps)
        fc_norm_eps = norm_eps if fc_norm_eps is None else fc_norm_eps
        self.fc_norm = nn.LayerNorm(embed_dim, eps=fc_norm_eps) if use_mean_pooling else nn.Identity()
        self.apply(init_weights_vit_timm)

    def pretrained_config(self) -> dict[str, Any]:
        """The constructor arguments, for :meth:`save_pretrained`'s ``config.json``.

        Raises:
            NotImplementedError: for a subclass with its own constructor that does not override this.
        """
        cls = type(self)
        if cls.__init__ is not VideoViT.__init__ and cls.pretrained_config is VideoViT.pretrained_config:
            raise NotImplementedError(
                f"{type(self).__name__} has its own constructor: override pretrained_config() to save it"
            )
        # pairs as built, so an int and the same (h, w) pair compare equal on loading
        return {**self._init_args, "img_size": list(self.img_size), "patch_size": list(self.patch_size)}

    @classmethod
    def build_for_loading(cls, config: dict[str, Any]) -> VideoViT:
        """Build without the random initialization (a strict load replaces every saved tensor).

        Built on the meta device and allocated on the CPU; the sin-cos table, which no file holds,
        is computed again. ViT-B loads in well under a second instead of the seconds its
        initialization takes.
        """
        with torch.device("meta"):
            model = cls.from_pretrained_config(config)
        model = model.to_empty(device="cpu")
        model.reset_parameters()
        return model

    def reset_parameters(self) -> None:
        """Re-initialize the position table, the one tensor VideoViT owns directly.

        FSDP calls ``reset_parameters`` on modules materialized from the meta device; the sin-cos
        table is a non-persistent buffer that no checkpoint restores, so it is rebuilt here.
        """
        with torch.no_grad():
            if self.pos_embed_type == "learned":
                nn.init.trunc_normal_(self.pos_embed, std=0.02, a=-0.04, b=0.04)
            else:
                self.pos_embed.copy_(sincos_table(self.num_patches, self.embed_dim))

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Turn activation checkpointing of every block on or off (timm's method name)."""
        self.grad_checkpointing = enable

    def no_weight_decay(self) -> set[str]:
        """Parameter names to exclude from weight decay (timm convention)."""
        return {"pos_embed"}

    def pos_embed_for(self, grid: Grid) -> Tensor:
        """Position table ``[1, n, d]`` for a token grid, resampled from the configured one if needed."""
        return interpolate_pos_embed(self.pos_embed, self.grid_size, grid)

    def forward_features(self, video: Tensor, visible_idx: Tensor | None = None) -> Tensor:
        """Encode a clip into tokens.

        Args:
            video: ``[b, c, t, h, w]`` clip; ``t``, ``h``, ``w`` must be multiples of the tubelet
                and patch sizes.
            visible_idx: ``[b, n_vis]`` int64 indices into the ``n`` tokens; only these are
                encoded (after the position embedding is added), as VideoMAE's encoder sees
                only the visible tokens of a masked clip.

        Returns:
            ``[b, n, d]`` tokens (``[b, n_vis, d]`` with ``visible_idx``), after the final norm
            unless ``use_mean_pooling``.
        """
        x = self.patch_embed(video)  # b (t h w) d
        pos = self.pos_embed_for(self.patch_embed.grid_size(*video.shape[2:]))
        # The Conv3d output viewed as (t h w) tokens has channel stride n; adding it to the
        # contiguous table (table first) lays the sum out contiguously, so the residual stream and
        # every LayerNorm after it run on dense [b, n, d] memory. The cast keeps the stream in the
        # embedding's dtype (bf16 under autocast), as VideoMAE does.
        x = pos.to(dtype=x.dtype) + x
        if visible_idx is not None:
            x = self._gather_visible(x, visible_idx)
        x = self.pos_drop(x)
        return self.norm(run_blocks(self.blocks, x, self.grad_checkpointing))

    def forward(self, video: Tensor, output: Output = "tokens", visible_idx: Tensor | None = None) -> Tensor:
        """Encode a clip and pool the tokens as asked.

        Args:
            video: ``[b, c, t, h, w]`` clip.
            output: ``"tokens"`` ``[b, n, d]``; ``"pooled"`` ``[b, d]``, the mean over tokens
                (then ``fc_norm`` when ``use_mean_pooling``); ``"temporal"`` ``[b, t', d]``, the
                mean over space per tubelet time step (then ``fc_norm`` when ``use_mean_pooling``).
            visible_idx: encode only these tokens (see :meth:`forward_features`); not allowed
                with ``"temporal"``, whose grid needs every token.

        Returns:
            features laid out as ``output`` says.
        """
        check_output(output, visible_idx)
        x = self.forward_features(video, visible_idx)
        if output == "tokens":
            return x
        if output == "pooled":
            return self.fc_norm(x.mean(dim=1))
        x = reduce(x, "b (t s) d -> b t d", "mean", t=video.shape[2] // self.tubelet_size)
        return self.fc_norm(x)

    @staticmethod
    def _gather_visible(x: Tensor, visible_idx: Tensor) -> Tensor:
        if visible_idx.ndim != 2 or visible_idx.shape[0] != x.shape[0] or visible_idx.dtype != torch.long:
            raise ValueError(
                f"visible_idx must be an int64 tensor [batch={x.shape[0]}, n_visible], got "
                f"{visible_idx.dtype} of shape {tuple(visible_idx.shape)}"
            )
        return torch.take_along_dim(x, visible_idx[..., None], dim=1)

    # -- checkpoints ---------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, path: str | Path, strict: bool = True, **overrides: Any) -> VideoViT:
        """Build a VideoViT sized like a checkpoint and load its weights.

        Reads (a) a folder :meth:`save_pretrained` wrote (``config.json`` naming the architecture
        plus ``model.safetensors``; a Hub repo id ``owner/name`` is downloaded when online), whose
        config gives every constructor argument; (b) a transformers VideoMAE folder as its
        ``save_pretrained`` writes it (``config.json`` plus ``model.safetensors`` /
        ``pytorch_model.bin``, sharded or not), whose config gives the sizes; or (c) one weights
        file (``.pth``, ``.pt``, ``.bin``, ``.safetensors``) in the original VideoMAE /
        InternVideo layout, vidlit's exported ``backbone.pt``, or a Lightning ``.ckpt`` of a
        vidlit module (its backbone, see
        :func:`~vidlit.backbones._builder.lightning_backbone_weights`), whose sizes are read
        from the weights themselves.
        Frame count and image size are not stored in such a file: they default to VideoMAE's 16
        frames at 224 px, or take the overrides.

        Args:
            path: the folder or file, or a Hub repo id of a :meth:`save_pretrained` folder.
            strict: raise on missing or unexpected keys; otherwise warn and load the rest.
            **overrides: constructor arguments replacing the inferred ones, e.g. ``num_frames=32``
                (a learned position table is resampled to fit), ``drop_path_rate=0.1``, or
                ``use_mean_pooling=True`` to fine-tune a pretraining checkpoint with ``fc_norm``.

        Returns:
            the model, in training mode like any freshly built module.
        """
        path = resolve_pretrained_dir(path)
        if is_vidlit_folder(path):
            return cls._from_vidlit_folder(path, overrides, strict=strict)
        state_dict, hf_config = load_checkpoint_file(path)
        state_dict = remap_checkpoint_keys(state_dict)
        hf_kwargs = config_from_hf(hf_config, path) if hf_config is not None else {}
        num_heads = overrides.get("num_heads", hf_kwargs.get("num_heads"))
        # Precedence: what the weights show < what config.json says < what the caller asks for.
        kwargs = {**config_from_state_dict(state_dict, path, num_heads), **hf_kwargs, **overrides}
        model = cls(**kwargs)
        model.load_state_dict_filtered(state_dict, strict=strict, source=str(path))
        return model

    def load_pretrained(self, path: str | Path, strict: bool = True) -> None:
        """Load a checkpoint (any layout :meth:`from_pretrained` reads) into this model as built.

        Args:
            path: a :meth:`save_pretrained` folder (its config must match the model's but for
                dropout, stochastic depth and activation checkpointing), a transformers VideoMAE
                folder or a weights file.
            strict: raise on missing or unexpected keys; otherwise warn and load the rest.
        """
        path = resolve_pretrained_dir(path)
        if is_vidlit_folder(path):
            self.load_vidlit_folder(path, strict=strict)
            return
        state_dict, hf_config = load_checkpoint_file(Path(path))
        if hf_config is not None:
            self._check_hf_config(config_from_hf(hf_config, Path(path)), source=str(path))
        self.load_state_dict_filtered(state_dict, strict=strict, source=str(path))

    def _check_hf_config(self, config: dict[str, Any], source: str) -> None:
        if not len(self.blocks):
            return
        heads, eps = self.blocks[0].attn.num_heads, self.blocks[0].norm1.eps
        # Weights for another head count load without a shape error but compute something else.
        if config["num_heads"] != heads:
            raise ValueError(
                f"{source}: config.json has num_attention_heads={config['num_heads']}, the model {heads}"
            )
        if config["norm_eps"] != eps:
            warn_caller(
                f"{source}: config.json has layer_norm_eps={config['norm_eps']}, the model uses {eps}; "
                f"features will differ slightly (from_pretrained takes the checkpoint's)"
            )

    def load_state_dict_filtered(
        self, state_dict: Mapping[str, Any], strict: bool = True, source: str = "state dict"
    ) -> None:
        """Remap a foreign state dict with :func:`checkpoint_filter_fn` and load it.

        A final norm that does not match ``use_mean_pooling`` (a pretraining checkpoint's
        ``norm`` loaded for fine-tuning with ``fc_norm``, or the reverse) only warns: those
        layers stay at their initialization, as in VideoMAE's fine-tuning script.

        Raises:
            ValueError: on a shape mismatch, or on other missing or unexpected keys when strict.
        """
        state_dict = checkpoint_filter_fn(state_dict, self)
        own = self.state_dict()
        bad_shapes = [
            f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
            for k, v in state_dict.items()
            if k in own and v.shape != own[k].shape
        ]
        if bad_shapes:
            raise ValueError(f"{source}: shape mismatch for " + "; ".join(bad_shapes))
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        soft = {"norm.weight", "norm.bias", "fc_norm.weight", "fc_norm.bias"}
        soft_missing = [k for k in missing if k in soft]
        soft_unexpected = [k for k in unexpected if k in soft]
        missing = [k for k in missing if k not in soft]
        unexpected = [k for k in unexpected if k not in soft]
        if missing or unexpected:
            hint = ""
            if "pos_embed" in unexpected:
                hint = " (the checkpoint has a learned position table: build with pos_embed_type='learned')"
            message = f"{source}: missing keys {missing}, unexpected keys {unexpected}{hint}"
            if strict:
                raise ValueError(message)
            warn_caller(message)
        if soft_missing or soft_unexpected:
            warn_caller(
                f"{source}: final norm layout differs (use_mean_pooling={self.use_mean_pooling}); "
                f"ignored {soft_unexpected}, left {soft_missing} at initialization"
            )
        self.load_state_dict({k: v for k, v in state_dict.items() if k in own}, strict=False)


def init_weights_vit_timm(module: nn.Module) -> None:
    """timm's ViT initialization of a Linear layer (truncated normal, std 0.02; zero bias), for ``apply``.

    VideoMAE's and timm's CLIP-architecture ViTs both use it; Conv3d keeps PyTorch's default, as in
    VideoMAE fine-tuning, and pretrained checkpoints replace it.
    """
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02, a=-0.04, b=0.04)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


# -- checkpoint interop -------------------------------------------------------------------------


def checkpoint_filter_fn(
    state_dict: Mapping[str, Any], model: VideoViT, pos_embed_grid: Grid | None = None
) -> dict[str, Tensor]:
    """Convert a foreign checkpoint for ``model`` (timm's ``checkpoint_filter_fn`` convention).

    Renames keys (:func:`remap_checkpoint_keys`) and resamples a learned position table stored
    for another frame count or resolution to the model's token grid.

    Args:
        state_dict: checkpoint in transformers' or the original VideoMAE / InternVideo layout.
        model: the model it is loaded into.
        pos_embed_grid: ``(t', h', w')`` grid of the stored table; inferred from its length
            when not given (same spatial grid first, then same frame count).

    Returns:
        state dict with VideoViT keys, ready for ``model.load_state_dict``.
    """
    out = remap_checkpoint_keys(state_dict)
    table = out.get("pos_embed")
    if table is not None and model.pos_embed_type == "learned" and table.ndim == 3:
        if table.shape[1] != model.num_patches or pos_embed_grid is not None:
            src = (
                tuple(pos_embed_grid)
                if pos_embed_grid is not None
                else infer_grid(table.shape[1], model.grid_size)
            )
            if src != model.grid_size:
                log.info("resampling position table from grid %s to %s", src, model.grid_size)
            out["pos_embed"] = interpolate_pos_embed(table, src, model.grid_size)
    return out


# -- named sizes --------------------------------------------------------------------------------
# A size's width, depth and heads are its function's keyword defaults: the registry reads the
# width from the signature (``backbone_width``) without building the model.

# VideoMAE's and InternVideo's input: 16 frames at 224 px, 2 x 16 x 16 tubelets (8 x 14 x 14 tokens).
_CLIP_16X224 = dict(num_frames=16, img_size=224, patch_size=16, tubelet_size=2)


@register_backbone
def vit_test(embed_dim: int = 64, depth: int = 2, num_heads: int = 4, **kwargs: Any) -> VideoViT:
    """Tiny VideoViT for CPU tests: width 64, 2 blocks, 4 heads, 8 frames at 32 px, 2 x 8 x 8 tubelets."""
    clip = dict(num_frames=8, img_size=32, patch_size=8, tubelet_size=2)
    return VideoViT(**{**clip, **kwargs}, embed_dim=embed_dim, depth=depth, num_heads=num_heads)


@register_backbone
def vit_small_patch16_16x224(
    embed_dim: int = 384, depth: int = 12, num_heads: int = 6, **kwargs: Any
) -> VideoViT:
    """ViT-S/16 on 16 x 224 px clips (VideoMAE ViT-S): width 384, 12 blocks, 6 heads."""
    return VideoViT(**{**_CLIP_16X224, **kwargs}, embed_dim=embed_dim, depth=depth, num_heads=num_heads)


@register_backbone
def vit_base_patch16_16x224(
    embed_dim: int = 768, depth: int = 12, num_heads: int = 12, **kwargs: Any
) -> VideoViT:
    """ViT-B/16 on 16 x 224 px clips (VideoMAE / InternVideo ViT-B): width 768, 12 blocks, 12 heads."""
    return VideoViT(**{**_CLIP_16X224, **kwargs}, embed_dim=embed_dim, depth=depth, num_heads=num_heads)


@register_backbone
def vit_large_patch16_16x224(
    embed_dim: int = 1024, depth: int = 24, num_heads: int = 16, **kwargs: Any
) -> VideoViT:
    """ViT-L/16 on 16 x 224 px clips (VideoMAE / InternVideo ViT-L): width 1024, 24 blocks, 16 heads."""
    return VideoViT(**{**_CLIP_16X224, **kwargs}, embed_dim=embed_dim, depth=depth, num_heads=num_heads)


@register_backbone
def vit_huge_patch16_16x224(
    embed_dim: int = 1280, depth: int = 32, num_heads: int = 16, **kwargs: Any
) -> VideoViT:
    """ViT-H/16 on 16 x 224 px clips (VideoMAE / InternVideo ViT-H): width 1280, 32 blocks, 16 heads."""
    return VideoViT(**{**_CLIP_16X224, **kwargs}, embed_dim=embed_dim, depth=depth, num_heads=num_heads)
