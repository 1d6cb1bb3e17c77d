"""The built-in region grower: clicked points or a box -> a token mask over the whole clip.

No extra weights: a clicked point selects the backbone token under it; the region is the connected
set of tokens (4-neighbours) whose feature is similar enough to the seed's, and it is tracked
through the clip's token time steps by growing, at each next step, from the tokens that look like
the region so far and touch where it was. A box is taken as given, the same at every step.

Token features are centred (the clip's mean token subtracted) before the cosine similarity: what
every token shares (the position-embedding bias, a uniform background) would otherwise make all
tokens look alike.
"""

from __future__ import annotations

from collections import deque

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["box_region", "grow_region", "to_token"]


def to_token(
    x: float, y: float, crop: tuple[float, float, float, float], grid_hw: tuple[int, int]
) -> tuple[int, int]:
    """The ``(row, col)`` of the token under a point given as fractions of the frame.

    Args:
        x: horizontal position, 0 (left edge) to 1.
        y: vertical position, 0 (top edge) to 1.
        crop: ``(y0, x0, h, w)`` of the model's crop, fractions of the frame.
        grid_hw: token rows and columns.

    Raises:
        ValueError: the point lies outside the part of the frame the model sees.
    """
    y0, x0, h, w = crop
    u, v = (x - x0) / w, (y - y0) / h
    if not (0 <= u < 1 and 0 <= v < 1):
        raise ValueError(f"point ({x:.3f}, {y:.3f}) is outside the model's centre crop of the frame")
    return int(v * grid_hw[0]), int(u * grid_hw[1])


def _component(candidates: Tensor, seeds: Tensor) -> Tensor:
    """Tokens of ``candidates`` ([h, w] bool) 4-connected to any of ``seeds`` ([h, w] bool)."""
    h, w = candidates.shape
    out = torch.zeros_like(candidates)
    queue = deque((int(r), int(c)) for r, c in (seeds & candidates).nonzero().tolist())
    for r, c in queue:
        out[r, c] = True
    while queue:
        r, c = queue.popleft()
        for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            rr, cc = r + dr, c + dc
            if 0 <= rr < h and 0 <= cc < w and candidates[rr, cc] and not out[rr, cc]:
                out[rr, cc] = True
                queue.append((rr, cc))
    return out


def _dilate(mask: Tensor, radius: int = 1) -> Tensor:
    kernel = 2 * radius + 1
    return F.max_pool2d(mask[None, None].float(), kernel, stride=1, padding=radius)[0, 0] > 0


def grow_region(tokens: Tensor, seeds: list[tuple[int, int, int]], threshold: float = 0.5) -> Tensor:
    """Grow a region from seed tokens by feature similarity and track it through time.

    Args:
        tokens: ``[t, h, w, d]`` backbone tokens of one clip.
        seeds: ``(step, row, col)`` of each clicked token.
        threshold: cosine similarity (of centred features) a token needs to join.

    Returns:
        bool ``[t, h, w]``: the union of the regions grown from every seed.
    """
    t, h, w, _ = tokens.shape
    feats = F.normalize((tokens - tokens.mean(dim=(0, 1, 2))).float(), dim=-1)  # [t, h, w, d]
    region = torch.zeros(t, h, w, dtype=torch.bool)
    for step, row, col in seeds:
        if not (0 <= step < t and 0 <= row < h and 0 <= col < w):
            raise ValueError(f"seed token ({step}, {row}, {col}) is outside the token grid {(t, h, w)}")
        seed = torch.zeros(h, w, dtype=torch.bool)
        seed[row, col] = True
        grown = {step: _component(feats[step] @ feats[step, row, col] >= threshold, seed)}
        for direction in (1, -1):
            previous = grown[step]
            for s in range(step + direction, t if direction > 0 else -1, direction):
                reference = F.normalize(feats[s - direction][previous].mean(0), dim=-1)
                similarity = feats[s] @ reference
                near = _dilate(previous)
                candidates = similarity >= threshold
                current = _component(candidates, near)
                if not current.any():
                    break  # lost it: the region ends here
                grown[s] = previous = current
        for s, mask in grown.items():
            region[s] |= mask
    return region


def box_region(
    box: tuple[float, float, float, float],
    crop: tuple[float, float, float, float],
    grid: tuple[int, int, int],
) -> Tensor:
    """The tokens whose centres lie inside a box, at every time step.

    Args:
        box: ``(x0, y0, x1, y1)`` as fractions of the frame.
        crop: ``(y0, x0, h, w)`` of the model's crop, fractions of the frame.
        grid: ``(t, h, w)`` token grid.

    Raises:
        ValueError: the box covers no token centre.
    """
    x0, y0, x1, y1 = box
    x0, x1 = sorted((x0, x1))
    y0, y1 = sorted((y0, y1))
    t, h, w = grid
    cy0, cx0, ch, cw = crop
    ys = cy0 + (torch.arange(h) + 0.5) / h * ch
    xs = cx0 + (torch.arange(w) + 0.5) / w * cw
    inside = ((ys >= y0) & (ys <= y1))[:, None] & ((xs >= x0) & (xs <= x1))[None, :]
    if not inside.any():
        raise ValueError("the box covers no token of the model's view; draw it larger")
    return inside[None].expand(t, h, w).clone()
