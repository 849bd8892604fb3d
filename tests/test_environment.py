"""The pins in requirements.txt are the single source: the other front doors must not drift from them."""
import json
import os
import re
from importlib import metadata

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(name):
    with open(os.path.join(ROOT, name)) as f:
        return f.read()


def _pins(text):
    pins = {}
    for line in text.splitlines():
        line = line.split("#")[0].strip()
        match = re.match(r"^([A-Za-z0-9_.\-]+)(?:\[[A-Za-z0-9_,\-]+\])?==([^\s;]+)$", line)
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins


def test_every_requirement_is_pinned_exactly():
    for name in ("requirements.txt", "requirements-nodeps.txt"):
        lines = [l.split("#")[0].strip() for l in _read(name).splitlines()]
        lines = [l for l in lines if l]
        assert lines and len(_pins(_read(name))) == len(lines), f"{name} has an unpinned line"
    pins = _pins(_read("requirements.txt"))
    assert pins["torch"] == "2.13.0" and pins["tensorflow-cpu"] == "2.15.1" and pins["gin-config"] == "0.4.0"
    assert pins["numpy"].startswith("1.")
    # python -m study runs on Ray Tune; its dependencies must not pull NumPy 2 or protobuf 5 under TensorFlow 2.15.
    assert pins["ray"] == "2.60.0" and "ray[tune]==2.60.0" in _read("requirements.txt")
    assert int(pins["protobuf"].split(".")[0]) < 5 and int(pins["pyarrow"].split(".")[0]) < 26
    assert _pins(_read("requirements-nodeps.txt")) == {"disentanglement-lib": "1.5"}


def test_environment_yml_installs_from_requirements_and_pins_nothing_else():
    text = _read("environment.yml")
    assert re.search(r"^\s*-\s*-r requirements\.txt\s*$", text, re.M)
    assert re.search(r"^\s*-\s*python=3\.11\s*$", text, re.M)
    body = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#"))
    assert not re.search(r"[A-Za-z0-9_\-]+==", body), "environment.yml pins a package itself; pin it in requirements.txt"


def test_dockerfile_installs_the_same_pins_with_gpu_builds():
    text = _read("Dockerfile")
    assert re.search(r"^FROM python:3\.11", text, re.M)
    assert "COPY requirements.txt requirements-nodeps.txt" in text
    assert "pip install --no-cache-dir --no-deps -r requirements-nodeps.txt" in text
    assert "s/^tensorflow-cpu==/tensorflow==/" in text  # the only swap: CUDA TensorFlow for the CPU one
    body = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#"))
    assert not re.search(r"[A-Za-z0-9_\-]+==\d", body), "Dockerfile pins a package itself; pin it in requirements.txt"
    assert re.search(r'^ENTRYPOINT \["\./run\.sh"\]', text, re.M)


def test_installed_environment_matches_the_pins():
    wanted = {**_pins(_read("requirements.txt")), **_pins(_read("requirements-nodeps.txt"))}
    for name, version in wanted.items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            pytest.fail(f"{name} is pinned but not installed")
        assert installed.split("+")[0] == version, f"{name}: installed {installed}, pinned {version}"


def test_aicrowd_json_is_the_challenge_contract():
    config = json.loads(_read("aicrowd.json"))
    assert config["challenge_id"] == config["grader_id"] == "aicrowd-neurips-2019-disentanglement-challenge"
    assert config["gpu"] is True
    for key in ("authors", "description", "license"):
        assert config[key]


def test_ci_runs_the_readme_test_command_exactly():
    readme = _read("README.md")
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^(\./run\.sh.*)$", quick_start, re.M)
    assert commands == ["./run.sh", "./run.sh test"]
    ci_lines = [l.strip() for l in _read(".ci/run").splitlines() if l.strip() and not l.startswith("#")]
    assert "./run.sh test" in ci_lines


def test_ray_tune_imports_beside_the_pinned_numpy_and_protobuf():
    """The study runner's stack must load with NumPy 1.26 and protobuf 4 (what TensorFlow 2.15 needs)."""
    import google.protobuf
    import numpy
    import pandas  # noqa: F401
    import pyarrow  # noqa: F401  (pyarrow >= 26 refuses to import under NumPy 1)
    from ray import tune  # noqa: F401
    assert numpy.__version__.startswith("1.") and google.protobuf.__version__.startswith("4.")
