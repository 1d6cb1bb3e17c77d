"""Mean and contact-frame hand displacement: the Ego4D Future Hand Prediction protocol."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import rank_zero_warn

from vidlit.core.ids import stable_ids
from vidlit.formats.ego4d_fhp import HANDS, KEY_FRAMES
from vidlit.metrics._inputs import check_lengths, check_pair
from vidlit.metrics._state import cat_state, first_occurrence

__all__ = ["HANDS", "KEY_FRAMES", "HandDisplacement"]


class HandDisplacement(Metric):
    """Mean key-point displacement and contact-frame displacement, per hand, in pixels (lower is better).

    Reproduces the evaluation of the Ego4D Future Hand Prediction benchmark (Grauman et al.,
    "Ego4D: Around the World in 3,000 Hours of Egocentric Video", CVPR 2022, Sec. I.1;
    ``EGO4D/forecasting``, ``Ego4D-Future-Hand-Prediction/tools/eval.py`` and
    ``generate_submission.py``):

    - Each sample (an action's pre-45 frame, keyed ``"<clip_id>_<pre45_frame - 1>"``) has up to 10
      key points: the left and right hand ``(x, y)`` at the five key frames ``pre_45``, ``pre_30``,
      ``pre_15``, ``pre_frame`` and ``contact_frame``.
    - **Multi-view test averaging**: the official test runs several views per sample
      (``NUM_ENSEMBLE_VIEWS x NUM_SPATIAL_CROPS``), sums their predictions per key and divides by
      the number of views. Here every prediction ``update`` receives for a ``video_id`` is one
      view, and the views are averaged per ``video_id``.
    - The displacement of a key point is the L2 distance between prediction and ground truth.
      Key points without ground truth are skipped: the official code marks them by ``(0, 0)``
      (its loader pads missing hands with zeros, so a hand annotated exactly at pixel (0, 0)
      would be dropped too); here the target's ``valid`` mask says which are annotated.
    - ``mean_disp_{left,right}``: mean over every annotated key point of that hand (all five
      frames of all samples, pooled). ``contact_disp_{left,right}``: the same over the contact
      frame only. ``mean_disp`` / ``contact_disp`` pool both hands (not in the official printout;
      the headline used for checkpointing).
    - The official script divides by zero when a hand is never annotated; here that value is
      NaN, with a warning.

    ``update(preds, targets)`` takes lists of dicts, one per view / sample, matched by position:

    - ``preds[i]``: ``{"video_id": str, "hands": [5, 2, 2]}`` (key frame, hand left/right, x/y),
      or the flat official 20-vector ``[l_x, l_y, r_x, r_y]`` x 5 frames;
    - ``targets[i]``: ``{"video_id": str, "hands": [5, 2, 2], "valid": [5, 2] bool}``.

    Args:
        kwargs: passed to :class:`torchmetrics.Metric`.

    Example:
        >>> metric = HandDisplacement()
        >>> hands = torch.zeros(5, 2, 2)
        >>> valid = torch.ones(5, 2, dtype=torch.bool)
        >>> target = {"video_id": "1_44", "hands": hands, "valid": valid}
        >>> metric.update([{"video_id": "1_44", "hands": hands + 3}], [target])
        >>> round(float(metric.compute()["mean_disp"]), 3)  # sqrt(3^2 + 3^2)
        4.243
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("sample_key", default=[], dist_reduce_fx="cat")
        self.add_state("pred", default=[], dist_reduce_fx="cat")
        self.add_state("target", default=[], dist_reduce_fx="cat")
        self.add_state("valid", default=[], dist_reduce_fx="cat")

    @staticmethod
    def _points(value: Any, where: str) -> Tensor:
        value = torch.as_tensor(value).detach().float()
        if value.shape == (20,):
            value = value.reshape(5, 2, 2)  # official order: frames, then l_x, l_y, r_x, r_y
        if value.shape != (5, 2, 2):
            raise ValueError(f"{where} must have shape [5, 2, 2] (or the flat [20]), got {list(value.shape)}")
        return value

    def update(self, preds: list[dict[str, Any]], targets: list[dict[str, Any]]) -> None:
        """Add one view per entry (see the class docstring for the formats)."""
        check_lengths(preds, targets)
        if not preds:
            return
        keys, p, t, v = [], [], [], []
        for i, (pred, target) in enumerate(zip(preds, targets)):
            keys.append(check_pair(i, pred, target, ("hands",), ("hands", "valid"), noun="sample"))
            where = f"(video_id {target['video_id']!r})"
            p.append(self._points(pred["hands"], f"preds[{i}] {where}['hands']"))
            t.append(self._points(target["hands"], f"targets[{i}] {where}['hands']"))
            valid = torch.as_tensor(target["valid"]).detach().bool()
            if valid.shape != (5, 2):
                raise ValueError(
                    f"targets[{i}] {where}['valid'] must have shape [5, 2], got {list(valid.shape)}"
                )
            v.append(valid)
        self.sample_key.append(stable_ids(keys, device=self.device))
        self.pred.append(torch.stack(p).to(self.device))
        self.target.append(torch.stack(t).to(self.device))
        self.valid.append(torch.stack(v).to(self.device))

    def compute(self) -> dict[str, Tensor]:
        """``mean_disp``, ``mean_disp_left``, ``mean_disp_right``, ``contact_disp``, ``contact_disp_left``,
        ``contact_disp_right`` in pixels."""
        names = [
            f"{kind}{suffix}" for kind in ("mean_disp", "contact_disp") for suffix in ("", "_left", "_right")
        ]
        keys = cat_state(self.sample_key, dtype=torch.long)
        if keys.numel() == 0:
            rank_zero_warn("HandDisplacement.compute() called without any sample; returning NaN")
            nan = torch.tensor(float("nan"), device=self.device)
            return dict.fromkeys(names, nan)
        pred, target, valid = cat_state(self.pred), cat_state(self.target), cat_state(self.valid)
        # average the views of each sample (the official sum / num_clips); its ground truth is its
        # first view's (all views share it)
        first, view_to_sample = first_occurrence(keys, return_inverse=True)
        counts = torch.bincount(view_to_sample, minlength=len(first)).float()
        mean_pred = torch.zeros(len(first), 5, 2, 2, device=pred.device).index_add_(0, view_to_sample, pred)
        mean_pred = mean_pred / counts[:, None, None, None]
        target, valid = target[first], valid[first]
        dist = (mean_pred - target).norm(dim=-1)  # samples frames hands

        def mean(selection: Tensor, what: str) -> Tensor:
            if not selection.any():
                rank_zero_warn(f"HandDisplacement: no annotated key point for {what}; it is NaN")
                return torch.tensor(float("nan"), device=dist.device)
            return dist[selection].mean()

        out = {}
        for kind, frames in (("mean_disp", slice(None)), ("contact_disp", slice(4, 5))):
            sub = torch.zeros_like(valid)
            sub[:, frames] = valid[:, frames]
            out[kind] = mean(sub, kind)
            for h, hand in enumerate(HANDS):
                only = torch.zeros_like(sub)
                only[..., h] = sub[..., h]
                out[f"{kind}_{hand}"] = mean(only, f"{kind}_{hand}")
        return out
