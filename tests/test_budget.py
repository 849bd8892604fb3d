import pytest

from submission.budget import format_seconds, parse_budget


@pytest.mark.parametrize("text,seconds", [("90s", 90), ("20m", 1200), ("8h", 28800), ("1h30m", 5400),
                                          ("2m30s", 150), ("45", 45), ("0.5h", 1800), (" 8H ", 28800)])
def test_parse_budget_accepts_human_durations(text, seconds):
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "8x", "h", "-5m", "0", "1m-2s", "nan", "inf", "5 m", "m5"])
def test_parse_budget_rejects_malformed_with_one_line(text):
    with pytest.raises(ValueError) as info:
        parse_budget(text)
    message = str(info.value)
    assert "\n" not in message and "BUDGET" in message and "90s" in message


def test_format_seconds_round_trips_through_parse():
    for seconds in (5, 75, 3600, 5400, 28799):
        assert parse_budget(format_seconds(seconds)) == seconds
