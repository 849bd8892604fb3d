import pytest
import torch

from submission.schedules import Clock, Constant, Cosine, Cyclical, Exponential, Linear, TorchLRSchedule, value_at


def test_linear_with_delay():
    s = Linear(0.0, 25.0, 100, delay=10)
    assert [s(0), s(10), s(60), s(110), s(1000)] == [0.0, 0.0, 12.5, 25.0, 25.0]


def test_cyclical_rises_then_holds_each_period():
    s = Cyclical(0.0, 1.0, period=10, ratio=0.5)
    assert [s(0), s(2), s(5), s(9), s(10), s(12)] == pytest.approx([0.0, 0.4, 1.0, 1.0, 0.0, 0.4])


def test_exponential_and_constant_and_value_at():
    s = Exponential(8.0, decay=0.5, steps=10, minimum=1.5)
    assert [s(0), s(10), s(20), s(100)] == pytest.approx([8.0, 4.0, 2.0, 1.5])
    assert value_at(3.0, 7) == 3.0 and value_at(Constant(2.0), 7) == 2.0


@pytest.mark.parametrize("bad", [dict(period=0), dict(ratio=0.0)])
def test_bad_schedules_fail_early(bad):
    with pytest.raises(ValueError):
        Cyclical(**bad)


def test_torch_lr_schedule_by_name():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    s = TorchLRSchedule("StepLR", step_size=2, gamma=0.5)
    s.attach(opt)
    for _ in range(4):
        opt.step()                        # the trainer's order: the optimiser, then the schedule
        s.step(1.0)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.25)


def test_plateau_schedule_averages_every_n_losses():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    s = TorchLRSchedule("ReduceLROnPlateau", every=2, factor=0.5, patience=0)
    s.attach(opt)
    for loss in [1.0, 1.0, 2.0, 2.0]:     # means 1.0 then 2.0: no improvement -> halve
        s.step(loss)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5)


def test_unknown_scheduler_is_one_line():
    with pytest.raises(ValueError, match="not in torch.optim.lr_scheduler"):
        TorchLRSchedule("NoSuchLR")


def test_a_schedule_counts_in_its_own_unit():
    by_steps, by_progress = Linear(0.0, 10.0, 100), Linear(0.0, 10.0, 0.5, delay=0.25, unit="progress")
    clock = Clock(step=50, progress=0.5)
    assert value_at(by_steps, clock) == 5.0 and value_at(by_progress, clock) == 5.0
    assert value_at(by_progress, Clock(step=10 ** 6, progress=0.1)) == 0.0   # the step does not matter
    assert value_at(by_steps, 30) == 3.0                                        # a bare step is a clock at that step


def test_cosine_goes_from_start_to_end_along_half_a_cosine():
    s = Cosine(1.0, 0.1, steps=0.8, delay=0.1)
    assert [s(0.0), s(0.1), s(0.5), s(0.9), s(1.0)] == pytest.approx([1.0, 1.0, 0.55, 0.1, 0.1])


@pytest.mark.parametrize("make", [lambda: Linear(unit="epochs"), lambda: Cosine(steps=0),
                                  lambda: Cyclical(unit="seconds")])
def test_bad_units_and_lengths_fail_early(make):
    with pytest.raises(ValueError):
        make()
