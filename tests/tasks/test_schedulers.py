import math

import pytest
import torch

from vidlit.tasks import WarmupCosineLR


def _lrs(scheduler, steps):
    out = []
    for _ in range(steps):
        out.append(scheduler.optimizer.param_groups[0]["lr"])
        scheduler.optimizer.step()
        scheduler.step()
    return out


def test_warmup_then_cosine_to_min():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    scheduler = WarmupCosineLR(opt, warmup_steps=4, total_steps=14, min_lr_ratio=0.1)
    lrs = _lrs(scheduler, 15)
    assert lrs[:4] == pytest.approx([1 / 5, 2 / 5, 3 / 5, 4 / 5])
    assert lrs[4] == pytest.approx(1.0)
    assert lrs[9] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lrs[14] == pytest.approx(0.1)


def test_total_steps_set_later_and_fractional_warmup():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=2.0)
    scheduler = WarmupCosineLR(opt, warmup_steps=0.1)
    scheduler.set_total_steps(100)
    lrs = _lrs(scheduler, 101)
    assert lrs[0] == pytest.approx(2.0 / 11)
    assert max(lrs) == pytest.approx(2.0) and lrs[10] == pytest.approx(2.0)
    assert lrs[100] == pytest.approx(0.0, abs=1e-9)


def test_state_dict_round_trip_weights_only(tmp_path):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    scheduler = WarmupCosineLR(opt, warmup_steps=2, total_steps=10)
    _lrs(scheduler, 5)
    torch.save(scheduler.state_dict(), tmp_path / "s.pt")
    restored = WarmupCosineLR(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0), 2, 10)
    restored.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    assert restored.last_epoch == 5 and restored.get_last_lr() == scheduler.get_last_lr()
