"""submission.progress: a tqdm bar on a TTY, a plain line per 10% without one (the grader's logs)."""
import io

import pytest

from submission.progress import progress


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture(autouse=True)
def no_forced_mode(monkeypatch):
    monkeypatch.delenv("KIT_PROGRESS", raising=False)
    monkeypatch.setattr("submission.progress.QUIET_S", 0.0)  # these tests count lines of instant loops


def test_a_step_shorter_than_the_quiet_time_prints_nothing(monkeypatch):
    monkeypatch.setattr("submission.progress.QUIET_S", 60.0)
    stream = io.StringIO()
    with progress(10, "tiny", stream=stream) as bar:
        for _ in range(10):
            bar.update()
    assert stream.getvalue() == ""


def test_plain_lines_every_ten_percent_without_a_tty():
    stream = io.StringIO()
    bar = progress(1000, "train", unit="steps", stream=stream)
    for _ in range(1000):
        bar.update()
    bar.set_postfix(loss=1.23456)
    bar.close()
    bar.close()                                   # closing twice prints nothing more
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert [line.split()[1] for line in lines] == [f"{p}%" for p in range(10, 101, 10)]
    assert lines[0].startswith("[train]  10% 100/1000 steps") and "left" in lines[0]
    assert lines[-1].endswith("done (loss=1.235)")


def test_big_jumps_print_one_line_and_iterables_are_counted():
    stream = io.StringIO()
    bar = progress(100, "evaluate", stream=stream)
    bar.update_to(55)                             # crosses five thresholds at once
    bar.update_to(60)
    bar.update_to(61)
    assert [line.split()[1] for line in stream.getvalue().splitlines()] == ["55%", "60%"]
    stream = io.StringIO()
    assert list(progress(["a", "b", "c", "d"], "convert", stream=stream)) == ["a", "b", "c", "d"]
    assert stream.getvalue().splitlines()[-1].startswith("[convert] 100% 4/4 it")


def test_unknown_total_prints_by_time(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr("submission.progress.time.monotonic", lambda: clock[0])
    stream = io.StringIO()
    bar = progress(None, "download", unit="MB", interval_s=30, stream=stream)
    for _ in range(10):
        clock[0] += 10
        bar.update(5)
    assert stream.getvalue().splitlines() == ["[download] 15 MB, 30s elapsed", "[download] 30 MB, 1m00s elapsed",
                                              "[download] 45 MB, 1m30s elapsed"]


def test_tty_uses_tqdm_and_env_can_force_plain(monkeypatch):
    stream = FakeTTY()
    with progress(10, "train", stream=stream) as bar:
        bar.update(10)
    assert bar.mode == "tty" and "\r" in stream.getvalue() and "10/10" in stream.getvalue()
    monkeypatch.setenv("KIT_PROGRESS", "plain")
    assert progress(10, "train", stream=FakeTTY()).mode == "plain"
    monkeypatch.setenv("KIT_PROGRESS", "off")
    stream = io.StringIO()
    with progress(10, "train", stream=stream) as bar:
        bar.update(10)
    assert stream.getvalue() == ""


def test_bad_total_is_refused_in_one_line():
    with pytest.raises(ValueError, match="total=-1"):
        progress(-1, "train")
