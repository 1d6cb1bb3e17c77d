import pytest
import torch

from vidlit.layers.av_pyramid import DilatedConvBlock, MMPyramid, PyramidUnit, WindowedAttentionLayer

pytestmark = pytest.mark.usefixtures("one_thread")


def test_mm_pyramid_shapes_and_backward():
    torch.manual_seed(0)
    pyramid = MMPyramid(dim=16, num_levels=4, num_heads=2)
    assert pyramid.dilations == (1, 2, 4, 8)
    audio, visual = torch.randn(3, 10, 16, requires_grad=True), torch.randn(3, 10, 16, requires_grad=True)
    a, v = pyramid(audio, visual)
    assert a.shape == v.shape == (3, 10, 16)
    (a.sum() + v.square().sum()).backward()
    assert audio.grad.abs().sum() > 0 and visual.grad.abs().sum() > 0
    # both modalities reach both outputs (cross-modal attention)
    assert all(p.grad is not None for p in pyramid.parameters())


def test_each_modality_output_depends_on_the_other_modality():
    torch.manual_seed(0)
    pyramid = MMPyramid(dim=8, num_levels=2, num_heads=2).eval()
    audio, visual = torch.randn(1, 10, 8), torch.randn(1, 10, 8)
    a, v = pyramid(audio, visual)
    a2, v2 = pyramid(audio, visual + 1.0)
    assert not torch.allclose(a, a2)  # visual reaches the audio stream
    assert not torch.allclose(v, v2)


def test_padding_does_not_leak_into_real_segments():
    torch.manual_seed(0)
    pyramid = MMPyramid(dim=8, num_levels=3, num_heads=2).eval()
    audio, visual = torch.randn(2, 12, 8), torch.randn(2, 12, 8)
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[1, 7:] = False
    a, v = pyramid(audio, visual, mask)
    audio2, visual2 = audio.clone(), visual.clone()
    audio2[1, 7:] = 100.0
    visual2[1, 7:] = -100.0
    a2, v2 = pyramid(audio2, visual2, mask)
    assert torch.allclose(a, a2, atol=1e-5) and torch.allclose(v, v2, atol=1e-5)
    assert (a[1, 7:] == 0).all() and (v[1, 7:] == 0).all()
    # a padded clip gives the same features as the unpadded clip alone
    a_alone, v_alone = pyramid(audio[1:, :7], visual[1:, :7])
    assert torch.allclose(a[1, :7], a_alone[0], atol=1e-5)
    assert torch.allclose(v[1, :7], v_alone[0], atol=1e-5)


def test_unit_attention_window_follows_the_dilation():
    """Official masksize = 2 * dilation: query i sees |i - j| <= dilation."""
    torch.manual_seed(0)
    layer = WindowedAttentionLayer(8, num_heads=2, window=5, dropout=0.0).eval()
    x = torch.randn(1, 20, 8)
    ctx = torch.randn(1, 20, 8)
    mask = torch.ones(1, 20, dtype=torch.bool)
    y = layer(x, ctx, mask)
    ctx2 = ctx.clone()
    ctx2[0, 10] = torch.randn(8)
    changed = (layer(x, ctx2, mask) - y).abs().amax(-1)[0] > 1e-6
    assert changed.nonzero().squeeze(1).tolist() == [8, 9, 10, 11, 12]
    assert PyramidUnit(8, dilation=4, num_heads=2).self_audio.window == 9


def test_dilated_conv_reach():
    torch.manual_seed(0)
    block = DilatedConvBlock(4, dilation=4)
    x = torch.randn(1, 20, 4)
    mask = torch.ones(1, 20, dtype=torch.bool)
    x2 = x.clone()
    x2[0, 10] += 1.0
    changed = (block(x2, mask) - block(x, mask)).abs().amax(-1)[0] > 1e-6
    assert set(changed.nonzero().squeeze(1).tolist()) <= {6, 10, 14}
    assert changed[10]


def test_dilations_and_errors():
    assert MMPyramid(8, num_levels=2, num_heads=2).dilations == (1, 2)
    assert MMPyramid(8, num_levels=3, dilations=(1, 3, 5), num_heads=2).dilations == (1, 3, 5)
    with pytest.raises(ValueError, match="num_levels=2"):
        MMPyramid(8, num_levels=2, dilations=(1, 3, 5), num_heads=2)
    with pytest.raises(ValueError, match="divisible"):
        MMPyramid(10, num_heads=4)
    with pytest.raises(ValueError, match="expects audio and visual"):
        MMPyramid(8, num_levels=1, num_heads=2)(torch.randn(1, 10, 8), torch.randn(1, 9, 8))
    with pytest.raises(ValueError, match="odd"):
        MMPyramid(8, num_levels=1, num_heads=2, window=4)
