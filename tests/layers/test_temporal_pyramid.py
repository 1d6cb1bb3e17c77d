import pytest
import torch
from torch import nn

from vidlit.layers.temporal_pyramid import (
    LocalTransformerBlock,
    MaskedConv1d,
    TemporalPyramid,
    local_attention,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _dense_reference(q, k, v, mask, window):
    t = q.shape[2]
    i = torch.arange(t)
    keep = mask[:, None, None, :].expand(-1, 1, t, t)
    if window is not None:
        keep = keep & ((i[:, None] - i[None, :]).abs() <= window // 2)
    scores = (q @ k.transpose(-1, -2)) / q.shape[-1] ** 0.5
    return scores.masked_fill(~keep, float("-inf")).softmax(-1) @ v


@pytest.mark.parametrize("t", [7, 64, 150])
@pytest.mark.parametrize("window", [1, 5, 9, None])
def test_local_attention_matches_dense_band_attention(t, window):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, t, 8) for _ in range(3))
    mask = torch.ones(2, t, dtype=torch.bool)
    mask[1, t // 2 :] = False
    out = local_attention(q, k, v, mask, window)
    ref = _dense_reference(q, k, v, mask, window)
    assert out.shape == q.shape
    assert torch.allclose(out[0], ref[0], atol=1e-5)
    assert torch.allclose(out[1, :, : t // 2], ref[1, :, : t // 2], atol=1e-5)
    assert torch.isfinite(out).all()  # padded queries never see an empty row


def test_local_attention_only_sees_its_window():
    torch.manual_seed(0)
    t, window, far = 100, 5, 70
    q, k, v = (torch.randn(1, 2, t, 4) for _ in range(3))
    mask = torch.ones(1, t, dtype=torch.bool)
    out = local_attention(q, k, v, mask, window)
    k2, v2 = k.clone(), v.clone()
    k2[:, :, far] += 5
    v2[:, :, far] += 5
    out2 = local_attention(q, k2, v2, mask, window)
    changed = (out2 - out).abs().amax(dim=(0, 1, 3)) > 1e-6
    assert changed.nonzero().squeeze(1).tolist() == list(range(far - 2, far + 3))


def test_block_depends_on_window_plus_conv_reach_only():
    torch.manual_seed(0)
    t, window, p = 48, 5, 30
    block = LocalTransformerBlock(16, heads=2, window=window).eval()
    x = torch.randn(1, t, 16)
    mask = torch.ones(1, t, dtype=torch.bool)
    y, _ = block(x, mask)
    x2 = x.clone()
    x2[0, p] += 3 * torch.randn(16)
    y2, _ = block(x2, mask)
    changed = (y2 - y).abs().amax(dim=(0, 2)) > 1e-6
    # attention reach window // 2, plus 1 for the kernel-3 depthwise convs on q, k, v
    reach = window // 2 + 1
    assert changed.nonzero().squeeze(1).tolist() == list(range(p - reach, p + reach + 1))


def test_downsampling_block_shapes_and_mask():
    block = LocalTransformerBlock(16, heads=4, window=3, stride=2)
    mask = torch.zeros(2, 12, dtype=torch.bool)
    mask[0, :12] = True
    mask[1, :5] = True
    y, out_mask = block(torch.randn(2, 12, 16), mask)
    assert y.shape == (2, 6, 16)
    assert out_mask.tolist() == [[True] * 6, [True] * 3 + [False] * 3]
    assert (y[1, 3:] == 0).all()


def test_masked_conv_zeroes_padding_and_checks_stride():
    conv = MaskedConv1d(4, 6, 3, stride=2)
    mask = torch.tensor([[True] * 5 + [False] * 3])
    x = torch.randn(1, 8, 4)
    y, out_mask = conv(x, mask)
    assert y.shape == (1, 4, 6) and out_mask.tolist() == [[True, True, True, False]]
    assert (y[0, 3] == 0).all()
    x2 = x.clone()
    x2[0, 5:] = 100.0  # padded input is ignored
    assert torch.equal(conv(x2, mask)[0], y)
    with pytest.raises(ValueError, match="divisible"):
        conv(torch.randn(1, 7, 4), torch.ones(1, 7, dtype=torch.bool))


def _pyramid(**kwargs):
    torch.manual_seed(0)
    defaults = dict(in_dim=8, dim=16, heads=2, levels=4, window=5, abs_pos_embed=True, layer_scale_init=None)
    return TemporalPyramid(**{**defaults, **kwargs}).eval()


def test_pyramid_levels_shapes_and_internal_padding():
    pyramid = _pyramid()
    mask = torch.ones(2, 37, dtype=torch.bool)
    mask[1, 20:] = False
    feats, masks = pyramid(torch.randn(2, 37, 8), mask)
    assert [f.shape for f in feats] == [(2, 40, 16), (2, 20, 16), (2, 10, 16), (2, 5, 16)]
    assert [m.sum(1).tolist() for m in masks] == [[37, 20], [19, 10], [10, 5], [5, 3]]
    for f, m in zip(feats, masks, strict=True):
        assert (f[~m] == 0).all()


def test_pyramid_ignores_padding_content_and_amount():
    pyramid = _pyramid(window=[5, 3, 3, 3])
    clip = torch.randn(1, 21, 8)
    alone, alone_masks = pyramid(clip, torch.ones(1, 21, dtype=torch.bool))
    batch = torch.randn(2, 50, 8) * 10  # garbage everywhere, incl. the padding of clip 0
    batch[0, :21] = clip[0]
    mask = torch.ones(2, 50, dtype=torch.bool)
    mask[0, 21:] = False
    batched, batched_masks = pyramid(batch, mask)
    for a, am, b, bm in zip(alone, alone_masks, batched, batched_masks, strict=True):
        n = int(am[0].sum())
        assert int(bm[0].sum()) == n
        assert torch.allclose(a[0, :n], b[0, :n], atol=1e-5)


def test_pyramid_runs_under_bf16_autocast_and_longer_than_max_len():
    pyramid = _pyramid(max_seq_len=16)
    x = torch.randn(2, 40, 8, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        feats, _ = pyramid(x, torch.ones(2, 40, dtype=torch.bool))
    assert all(torch.isfinite(f).all() for f in feats)
    sum(f.float().sum() for f in feats).backward()
    assert torch.isfinite(x.grad).all()


def test_pyramid_rejects_bad_config():
    with pytest.raises(ValueError, match="window"):
        TemporalPyramid(8, 16, 2, levels=3, window=[5, 5])
    with pytest.raises(ValueError, match="odd"):
        _pyramid(window=4)(torch.randn(1, 8, 8), torch.ones(1, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match="divisible"):
        TemporalPyramid(8, 10, 3)


@pytest.mark.parametrize("groups, stride", [(1, 1), (1, 2), (6, 1), (6, 2)])
def test_masked_conv_matches_conv1d_without_layout_copies(groups, stride):
    torch.manual_seed(0)
    conv = MaskedConv1d(6, 6, 3, stride=stride, groups=groups)
    nn.init.normal_(conv.conv.bias)
    x = torch.randn(2, 16, 6, requires_grad=True)
    mask = torch.ones(2, 16, dtype=torch.bool)
    mask[1, 11:] = False
    out, out_mask = conv(x, mask)
    ref = conv.conv((x * mask[..., None]).transpose(1, 2)).transpose(1, 2) * out_mask[..., None]
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert out.is_contiguous()  # [B, T, C] memory: the next layer reads it without a copy
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_downsampling_block_pools_without_layout_copies():
    """The stride-2 skip pools [B, T, C] in place of layout: as the max_pool1d round trip, to 1e-6."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    block = LocalTransformerBlock(16, heads=4, window=5, stride=2, layer_scale_init=0.5).eval()
    x = torch.randn(2, 32, 16)
    mask = torch.ones(2, 32, dtype=torch.bool)
    mask[1, 20:] = False
    with torch.no_grad():
        out, out_mask = block(x, mask)
        # the previous formulation: max_pool1d over a [B, C, T] copy, transposed back
        attn, ref_mask = block.attn(block.norm1(x) * mask[..., None], mask)
        skip = F.max_pool1d(x.transpose(1, 2), 3, 2, 1).transpose(1, 2)
        ref = skip * ref_mask[..., None] + block.ls1(attn)
        ref = ref + block.ls2(block.mlp(block.norm2(ref)) * ref_mask[..., None])
    assert torch.equal(out_mask, ref_mask)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
    assert out.is_contiguous()  # the next block's LayerNorm reads it without a copy
