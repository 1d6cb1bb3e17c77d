import pytest
import torch

from vidlit.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    VideoBatchTransform,
    center_boxes,
    random_resized_boxes,
)


def _clips(b=3, t=4, h=24, w=32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, t, h, w, 3), generator=generator, dtype=torch.uint8)


def _normalize(frames):
    """Reference normalization of uint8 [b, c, t, h, w]."""
    mean = torch.tensor(IMAGENET_MEAN).view(-1, 1, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(-1, 1, 1, 1)
    return (frames.float() / 255 - mean) / std


def test_shapes_and_dtype():
    video = _clips()
    for train in (True, False):
        out = VideoBatchTransform(16, train=train)(video, generator=torch.Generator().manual_seed(0))
        assert out.shape == (3, 3, 4, 16, 16) and out.dtype == torch.float32


def test_eval_identity_size_is_plain_normalization():
    video = _clips(h=16, w=16)
    out = VideoBatchTransform(16, train=False)(video)
    expected = _normalize(video.permute(0, 4, 1, 2, 3))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_eval_is_the_centre_crop_of_the_short_side():
    video = _clips(h=16, w=24)
    out = VideoBatchTransform(16, train=False)(video)
    # short side 16 already: the centre 16 x 16 of 24 columns starts at column 4
    expected = _normalize(video[:, :, :, 4:20].permute(0, 4, 1, 2, 3))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    # resizing the short side to 32 first means a 16-pixel crop covers the centre 8 x 8 source pixels
    boxes = center_boxes(torch.tensor([[16, 24]]), size=16, short_side=32)
    assert boxes.tolist() == [[4.0, 8.0, 8.0, 8.0]]


def test_training_crops_are_deterministic_given_a_generator():
    video = _clips()
    transform = VideoBatchTransform(16, train=True)
    a = transform(video, generator=torch.Generator().manual_seed(3))
    b = transform(video, generator=torch.Generator().manual_seed(3))
    c = transform(video, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_crop_is_the_same_for_every_frame_of_a_clip():
    # every frame of a clip shows the same image: any per-frame crop difference would show
    image = _clips(b=4, t=1, h=40, w=40)
    video = image.expand(4, 6, 40, 40, 3).contiguous()
    out = VideoBatchTransform(16, train=True, hflip=0.5)(video, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, out[:, :, :1].expand_as(out))
    # while different clips of the batch got different boxes
    assert not torch.equal(out[0], out[1])


def test_flip_mirrors_the_frames():
    video = _clips(h=16, w=16)
    keep = VideoBatchTransform(16, train=True, scale=(1, 1), ratio=(1, 1), hflip=0.0)(video)
    flip = VideoBatchTransform(16, train=True, scale=(1, 1), ratio=(1, 1), hflip=1.0)(video)
    # the whole square frame at its own size is the identity; flipping reverses the columns
    torch.testing.assert_close(keep, _normalize(video.permute(0, 4, 1, 2, 3)), atol=1e-5, rtol=0)
    torch.testing.assert_close(flip, keep.flip(-1), atol=1e-5, rtol=0)


def test_random_boxes_stay_inside_the_frame_and_follow_scale_and_ratio():
    frame_size = torch.tensor([[24, 32]]).expand(500, 2)
    boxes = random_resized_boxes(frame_size, scale=(0.2, 0.6), ratio=(0.5, 2.0), generator=torch.Generator())
    y0, x0, h, w = boxes.unbind(1)
    assert (y0 >= 0).all() and (x0 >= 0).all() and (y0 + h <= 24 + 1e-4).all() and (x0 + w <= 32 + 1e-4).all()
    area = h * w / (24 * 32)
    assert area.min() >= 0.2 - 1e-4 and area.max() <= 0.6 + 1e-4
    assert (w / h).min() >= 0.5 - 1e-4 and (w / h).max() <= 2.0 + 1e-4


def test_unreachable_scale_falls_back_to_the_centred_whole_frame():
    # a box of the whole area at aspect 2 cannot fit a square frame: torchvision's fallback
    boxes = random_resized_boxes(torch.tensor([[20, 20]]), scale=(1, 1), ratio=(2, 2))
    assert boxes.tolist() == [[5.0, 0.0, 10.0, 20.0]]


def test_padding_of_smaller_clips_never_bleeds_in():
    # clip 1 is 16 x 16 padded with zeros to 16 x 24; clamping replicates its own border
    video = torch.full((2, 2, 16, 24, 3), 200, dtype=torch.uint8)
    video[1, :, :, 16:] = 0
    frame_size = torch.tensor([[16, 24], [16, 16]])
    out = VideoBatchTransform(8, train=True, scale=(0.9, 1.0))(video, frame_size, torch.Generator())
    torch.testing.assert_close(out[1], out[0], atol=1e-5, rtol=0)
    out = VideoBatchTransform(8, train=False)(video, frame_size)
    torch.testing.assert_close(out[1], out[0], atol=1e-5, rtol=0)


def test_empty_batch():
    out = VideoBatchTransform(8, train=True)(torch.zeros(0, 4, 16, 16, 3, dtype=torch.uint8))
    assert out.shape == (0, 3, 4, 8, 8)


def test_bad_arguments():
    with pytest.raises(ValueError, match="scale"):
        VideoBatchTransform(8, train=True, scale=(0.5, 0.1))
    with pytest.raises(ValueError, match="eval_short_side"):
        VideoBatchTransform(8, train=False, eval_short_side=4)
    with pytest.raises(ValueError, match=r"\[b, t, h, w, c=3\]"):
        VideoBatchTransform(8, train=False)(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))


def _assert_device_matches_cpu(device: str) -> None:
    """The transform on ``device`` gives the CPU's result for the same crops, flips and inputs.

    A CUDA generator draws other numbers than a CPU one with the same seed, so the random boxes
    and flips are drawn once on the CPU and both devices resample with them (:func:`crop_resize`,
    the transform's deterministic part); evaluation (centre crops) runs end to end on both.
    """
    from vidlit.data.transforms import crop_resize

    video = _clips(b=4, h=24, w=32)
    frame_size = torch.tensor([[24, 32], [24, 32], [20, 28], [24, 30]])
    generator = torch.Generator().manual_seed(0)
    boxes = random_resized_boxes(frame_size, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3), generator=generator)
    flip = torch.rand(4, generator=generator) < 0.5
    on_cpu = crop_resize(video, boxes, 16, flip=flip, frame_size=frame_size)
    on_device = crop_resize(
        video.to(device), boxes.to(device), 16, flip=flip.to(device), frame_size=frame_size.to(device)
    )
    assert on_device.device.type == torch.device(device).type
    torch.testing.assert_close(on_device.cpu(), on_cpu, atol=1e-3, rtol=0)  # uint8-range values
    for eval_short_side in (None, 24):
        transform = VideoBatchTransform(16, train=False, eval_short_side=eval_short_side)
        expected = transform(video, frame_size)
        torch.testing.assert_close(
            transform(video.to(device), frame_size.to(device)).cpu(), expected, atol=1e-4, rtol=0
        )
    # training end to end: a device generator's seed fixes the crops there too
    transform = VideoBatchTransform(16, train=True)
    first = transform(video.to(device), generator=torch.Generator(device=device).manual_seed(0))
    again = transform(video.to(device), generator=torch.Generator(device=device).manual_seed(0))
    assert first.shape == (4, 3, 4, 16, 16) and torch.equal(first, again)


def test_device_comparison_helper_runs():
    # a smoke test of the comparison itself (CPU against CPU); the device parity is
    # test_cuda_matches_cpu, which needs a GPU
    _assert_device_matches_cpu("cpu")


@pytest.mark.gpu
def test_cuda_matches_cpu():
    _assert_device_matches_cpu("cuda")
