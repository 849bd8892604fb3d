"""The challenge's event contract: ``execution_start``, ``register_progress``, ``submit``, ``execution_error``.

In the grader (``AICROWD_IS_GRADING`` set and the crowdAI events client ``crowdai_api`` importable) each call is sent as a
``disentanglement_challenge:*`` event. Everywhere, each call is also appended as one JSON line to the job directory's
``progress.jsonl`` (``job_dir``; by default ``$AICROWD_OUTPUT_PATH/$AICROWD_EVALUATION_NAME``, the challenge's
variables) and overall progress is printed to stderr.

A stage of a longer job reports its own fraction in [0, 1] with its ``span`` (a, b), given by the pipeline as a stage
argument: the fraction maps onto [a, b] of the whole job, so the grader sees one monotone progress bar across
pretraining, fine-tuning, export and evaluation.

No function here ever raises: a failing event sink must never stop training.
"""
import json
import os
import sys
import time

EVENT_PREFIX = "disentanglement_challenge:"

_state = {"client": None, "client_tried": False, "last_printed": -1.0, "last_fraction": 0.0}


def _output_dir(job_dir: str = None) -> str:
    if job_dir:
        return job_dir
    from submission.files import JobLayout
    return JobLayout.of(os.environ.get("AICROWD_OUTPUT_PATH", "./scratch/shared"),
                        os.environ.get("AICROWD_EVALUATION_NAME", "local_evaluation")).root


def _grader_client():
    """The crowdAI events client, only when grading and installed; None otherwise."""
    if not _state["client_tried"]:
        _state["client_tried"] = True
        if os.environ.get("AICROWD_IS_GRADING"):
            try:
                from crowdai_api import events  # the grader's client; absent locally
                _state["client"] = events.CrowdAIEvents(with_oracle=True)
            except Exception as exc:  # not installed or not configured: local log only
                print(f"aicrowd_helpers: events client unavailable ({exc}); logging locally", file=sys.stderr)
    return _state["client"]


def _emit(name: str, level: str, payload: dict, message: str = "", job_dir: str = None) -> None:
    record = {"time": time.time(), "event": EVENT_PREFIX + name, "message": message, "payload": payload}
    try:
        path = _output_dir(job_dir)
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, "progress.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")
    except Exception as exc:
        print(f"aicrowd_helpers: could not append to progress.jsonl ({exc})", file=sys.stderr)
    client = _grader_client()
    if client is not None:
        try:
            event_type = {"info": client.CROWDAI_EVENT_INFO, "error": client.CROWDAI_EVENT_ERROR,
                          "success": client.CROWDAI_EVENT_SUCCESS}[level]
            client.register_event(event_type=event_type, message=message, payload=dict(payload, event_type=record["event"]),
                                  blocking=True)
        except Exception as exc:
            print(f"aicrowd_helpers: event {record['event']} not sent ({exc})", file=sys.stderr)


def execution_start(job_dir: str = None) -> None:
    _emit("execution_started", "info", {}, "execution started", job_dir)


def register_progress(fraction, job_dir: str = None, span=(0.0, 1.0)) -> None:
    """Report this stage's progress in [0, 1], mapped onto ``span`` (a, b) of the whole job."""
    try:
        lo, hi = (float(v) for v in span)
        overall = lo + (hi - lo) * min(max(float(fraction), 0.0), 1.0)
        overall = max(overall, _state["last_fraction"])  # the grader's bar never goes backwards
        _state["last_fraction"] = overall
        _emit("register_progress", "info", {"image_count": 0, "progress": overall}, f"progress {overall:.4f}",
              job_dir)
        if overall - _state["last_printed"] >= 0.05 or overall >= 1.0 > _state["last_printed"]:
            _state["last_printed"] = overall
            print(f"[progress] {100 * overall:5.1f}% of the whole job", file=sys.stderr, flush=True)
    except Exception as exc:
        print(f"aicrowd_helpers: register_progress failed ({exc})", file=sys.stderr)


def submit(payload=None, job_dir: str = None) -> None:
    try:
        _emit("execution_completed", "success", dict(payload or {}), "execution completed", job_dir)
    except Exception as exc:
        print(f"aicrowd_helpers: submit failed ({exc})", file=sys.stderr)


def execution_error(message, job_dir: str = None) -> None:
    try:
        _emit("execution_failed", "error", {"error": str(message)}, str(message), job_dir)
    except Exception as exc:
        print(f"aicrowd_helpers: execution_error failed ({exc})", file=sys.stderr)
