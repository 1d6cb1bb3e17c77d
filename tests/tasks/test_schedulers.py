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


def test_configure_optimizers_is_shared_by_the_task_modules():
    """One implementation: sizes a WarmupCosineLR to the run, an lr override comes before the schedule."""
    import lightning as L

    from vidlit.heads import LinearProbeHead
    from vidlit.tasks import TaskModule
    from vidlit.tasks.optim import (
        check_interval,
        configure_optimizers,
        default_scheduler,
        weight_decay_groups,
    )

    module = TaskModule(LinearProbeHead(8, 3), scheduler=default_scheduler, scheduler_interval="epoch")
    module.trainer = L.Trainer(max_epochs=-1, max_steps=40, logger=False, enable_progress_bar=False)
    config = module.configure_optimizers()
    schedule = config["lr_scheduler"]["scheduler"]
    assert config["lr_scheduler"]["interval"] == "epoch" and schedule.total_steps == 40
    assert schedule.get_last_lr() == pytest.approx([1e-4 / 3])  # 5% warmup of 40 steps, at step 0
    groups = weight_decay_groups(module)
    built = configure_optimizers(module, groups, torch.optim.AdamW, default_scheduler, "step", lr=0.5)
    assert built["lr_scheduler"]["scheduler"].base_lrs == [0.5] * len(groups)
    plain = configure_optimizers(module, groups, torch.optim.SGD, None, "step", lr=0.5)
    assert isinstance(plain, torch.optim.SGD) and [g["lr"] for g in plain.param_groups] == [0.5] * len(groups)
    module.requires_grad_(False)
    with pytest.raises(ValueError, match="nothing to train"):
        module.configure_optimizers()
    with pytest.raises(ValueError, match="scheduler_interval must be 'step' or 'epoch'"):
        check_interval("batch")
