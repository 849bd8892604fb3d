"""Wall-clock budgets written the way people write them: ``90s``, ``20m``, ``8h``, ``1h30m`` or plain seconds."""
import re

_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0}
_BUDGET_RE = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")


def parse_budget(text) -> float:
    """Return the budget in seconds; raise ValueError with one line for a person when it is malformed."""
    raw = str(text).strip().lower()
    try:
        seconds = float(raw)
    except ValueError:
        match = _BUDGET_RE.match(raw)
        if not raw or not match or not any(match.groups()):
            raise ValueError(
                f"BUDGET {text!r} is malformed: expected a duration such as 90s, 20m, 8h or 1h30m") from None
        seconds = sum(float(v) * _UNIT_SECONDS[u] for v, u in zip(match.groups(), "hms") if v)
    if not seconds > 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError(f"BUDGET {text!r} is malformed: expected a positive finite duration such as 90s, 20m or 8h")
    return seconds


def format_seconds(seconds: float) -> str:
    """``5400`` -> ``1h30m00s``: short and unambiguous for logs."""
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")
