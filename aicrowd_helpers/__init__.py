"""The challenge's event contract: ``execution_start``, ``register_progress``, ``submit``, ``execution_error``.

One ``Events`` object per job and process. In the grader (the entry point read ``AICROWD_IS_GRADING`` and passed
``grading=True``, and the crowdAI events client ``crowdai_api`` is importable) each call is sent as a
``disentanglement_challenge:*`` event. Everywhere, each call is also appended as one JSON line to the job directory's
``progress.jsonl`` and overall progress is printed to stderr.

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


class Events:
    """The challenge's event log of one job: ``progress.jsonl`` in ``job_dir`` and, when ``grading`` (the entry point
    read ``AICROWD_IS_GRADING``, once, and passed it down), the crowdAI events client. No method ever raises."""

    def __init__(self, job_dir: str, grading: bool = False):
        self.job_dir, self.grading = job_dir, bool(grading)
        self._client, self._client_tried = None, False
        self._last_printed, self._last_fraction = -1.0, 0.0

    def _grader_client(self):
        """The crowdAI events client, only when grading and installed; None otherwise."""
        if not self._client_tried:
            self._client_tried = True
            if self.grading:
                try:
                    from crowdai_api import events  # the grader's client; absent locally
                    self._client = events.CrowdAIEvents(with_oracle=True)
                except Exception as exc:  # not installed or not configured: local log only
                    print(f"aicrowd_helpers: events client unavailable ({exc}); logging locally", file=sys.stderr)
        return self._client

    def _emit(self, name: str, level: str, payload: dict, message: str = "") -> None:
        record = {"time": time.time(), "event": EVENT_PREFIX + name, "message": message, "payload": payload}
        try:
            os.makedirs(self.job_dir, exist_ok=True)
            with open(os.path.join(self.job_dir, "progress.jsonl"), "a") as f:
                f.write(json.dumps(record) + "\n")
        except Exception as exc:
            print(f"aicrowd_helpers: could not append to progress.jsonl ({exc})", file=sys.stderr)
        client = self._grader_client()
        if client is not None:
            try:
                event_type = {"info": client.CROWDAI_EVENT_INFO, "error": client.CROWDAI_EVENT_ERROR,
                              "success": client.CROWDAI_EVENT_SUCCESS}[level]
                client.register_event(event_type=event_type, message=message,
                                      payload=dict(payload, event_type=record["event"]), blocking=True)
            except Exception as exc:
                print(f"aicrowd_helpers: event {record['event']} not sent ({exc})", file=sys.stderr)

    def execution_start(self) -> None:
        self._emit("execution_started", "info", {}, "execution started")

    def register_progress(self, fraction, span=(0.0, 1.0)) -> None:
        """Report this stage's progress in [0, 1], mapped onto ``span`` (a, b) of the whole job."""
        try:
            lo, hi = (float(v) for v in span)
            overall = lo + (hi - lo) * min(max(float(fraction), 0.0), 1.0)
            overall = max(overall, self._last_fraction)  # the grader's bar never goes backwards
            self._last_fraction = overall
            self._emit("register_progress", "info", {"image_count": 0, "progress": overall}, f"progress {overall:.4f}")
            if overall - self._last_printed >= 0.05 or overall >= 1.0 > self._last_printed:
                self._last_printed = overall
                print(f"[progress] {100 * overall:5.1f}% of the whole job", file=sys.stderr, flush=True)
        except Exception as exc:
            print(f"aicrowd_helpers: register_progress failed ({exc})", file=sys.stderr)

    def submit(self, payload=None) -> None:
        try:
            self._emit("execution_completed", "success", dict(payload or {}), "execution completed")
        except Exception as exc:
            print(f"aicrowd_helpers: submit failed ({exc})", file=sys.stderr)

    def execution_error(self, message) -> None:
        try:
            self._emit("execution_failed", "error", {"error": str(message)}, str(message))
        except Exception as exc:
            print(f"aicrowd_helpers: execution_error failed ({exc})", file=sys.stderr)
