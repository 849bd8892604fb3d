import json
import os
import sys
import types

import pytest


@pytest.fixture
def helpers(tmp_path):
    from aicrowd_helpers import Events
    return Events(str(tmp_path / "run1"))


def _events(tmp_path):
    with open(os.path.join(tmp_path, "run1", "progress.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_local_sink_appends_prefixed_json_lines(helpers, tmp_path):
    helpers.execution_start()
    helpers.register_progress(0.5)
    helpers.submit({"score": 1})
    helpers.execution_error("boom")
    events = _events(tmp_path)
    assert [e["event"] for e in events] == [
        "disentanglement_challenge:execution_started", "disentanglement_challenge:register_progress",
        "disentanglement_challenge:execution_completed", "disentanglement_challenge:execution_failed"]
    assert events[1]["payload"]["progress"] == 0.5
    assert events[2]["payload"] == {"score": 1}
    assert events[3]["payload"]["error"] == "boom"


def test_progress_span_maps_stage_fraction_and_never_goes_back(helpers, tmp_path):
    for fraction in (0.0, 0.5, 0.2, 1.0, 7.0):
        helpers.register_progress(fraction, span=(0.4, 0.9))
    progress = [e["payload"]["progress"] for e in _events(tmp_path)]
    assert progress == pytest.approx([0.4, 0.65, 0.65, 0.9, 0.9])


def test_failing_sinks_never_raise(helpers, tmp_path, monkeypatch, capsys):
    from aicrowd_helpers import Events
    blocker = tmp_path / "file"
    blocker.write_text("")
    helpers = Events(str(blocker / "run1"))                   # under a file: the log cannot be created
    helpers.register_progress("not a number")
    helpers.register_progress(0.3)
    helpers.submit(None)
    assert "could not append" in capsys.readouterr().err


def test_grader_client_receives_events_and_its_failures_are_swallowed(helpers, tmp_path, monkeypatch):
    sent = []

    class FakeEvents:
        CROWDAI_EVENT_INFO, CROWDAI_EVENT_ERROR, CROWDAI_EVENT_SUCCESS = "info", "error", "success"

        def __init__(self, with_oracle):
            self.calls = 0

        def register_event(self, event_type, message, payload, blocking):
            self.calls += 1
            if self.calls == 2:
                raise ConnectionError("oracle down")
            sent.append((event_type, payload["event_type"]))

    module = types.ModuleType("crowdai_api")
    module.events = types.SimpleNamespace(CrowdAIEvents=FakeEvents)
    monkeypatch.setitem(sys.modules, "crowdai_api", module)
    from aicrowd_helpers import Events
    helpers = Events(str(tmp_path / "run1"), grading=True)    # the entry point read AICROWD_IS_GRADING
    helpers.execution_start()
    helpers.register_progress(0.1)  # the client raises here; training must go on
    helpers.submit({})
    assert sent == [("info", "disentanglement_challenge:execution_started"),
                    ("success", "disentanglement_challenge:execution_completed")]
    assert len(_events(tmp_path)) == 3
