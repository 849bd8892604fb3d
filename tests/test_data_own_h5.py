"""Users' own HDF5 files (``h5:PATH``): the README's example loads with the right layout, trains and evaluates; bad files
fail with one line and leave nothing behind."""

import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from submission.data import DatasetError, get_dataset, is_dataset_name
from submission.data import h5_datasets

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example():
    """The Python block after the README's own-data marker: the test runs exactly what users copy."""
    text = README.read_text()
    match = re.search(r"<!-- own-data-example[^>]*-->\s*```python\n(.*?)```", text, re.S)
    assert match, "README.md lost its own-data example block"
    return match.group(1)


@pytest.fixture
def squares(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_example(), "README.md own-data example", "exec"), {})
    return tmp_path / "my_squares.h5"


def test_readme_example_loads_with_its_factor_layout(squares):
    ds = get_dataset(f"h5:{squares}")
    assert ds.factors_num_values == [3, 5] and ds.factor_names == ("colour", "position")
    assert ds.observation_shape == [64, 64, 3]
    images = ds.images_from_factors(np.array([[0, 0], [2, 4], [1, 2]]))
    # Known indices: colour c lights channel c only; position p puts the square's left edge at x = 2 + 10 p.
    for image, (colour, position) in zip(images, [(0, 0), (2, 4), (1, 2)]):
        lit = np.argwhere(image.max(axis=2) > 0)
        assert set(np.flatnonzero(image.reshape(-1, 3).max(axis=0))) == {colour}
        assert lit[:, 1].min() == 2 + 10 * position and lit[:, 0].min() == 22
    assert (squares.parent / "my_squares.images.npy").is_file()
    batch, factors = ds.sample_batch(6, np.random.default_rng(0))
    assert tuple(batch.shape) == (6, 3, 64, 64)
    np.testing.assert_array_equal(batch.numpy().transpose(0, 2, 3, 1), ds.images_from_factors(factors.numpy()))


def test_a_relative_path_and_the_names_the_pipeline_accepts(squares):
    assert get_dataset("h5:my_squares.h5").factors_num_values == [3, 5]
    assert is_dataset_name("h5:my_squares.h5") and is_dataset_name("shapes3d")
    assert not is_dataset_name("h5:") and not is_dataset_name("mnist")


def test_the_second_load_reuses_the_conversion(squares):
    get_dataset(f"h5:{squares}")
    cache = squares.parent / "my_squares.images.npy"
    mtime = cache.stat().st_mtime_ns
    get_dataset(f"h5:{squares}")
    assert cache.stat().st_mtime_ns == mtime


def _write(path, images=None, names=("a", "b"), sizes=(2, 3), skip=()):
    with h5py.File(path, "w") as f:
        if "images" not in skip:
            f["images"] = np.zeros((6, 64, 64, 3), np.uint8) if images is None else images
        if "factor_names" not in skip:
            f.attrs["factor_names"] = list(names)
        if "factor_sizes" not in skip:
            f.attrs["factor_sizes"] = list(sizes)
    return path


def _leftovers(directory, keep):
    return sorted(p.name for p in directory.iterdir() if p.name != keep)


BAD_FILES = {
    "missing images": (dict(skip=("images",)), r"HDF5 datasets \[\]; expected a dataset 'images'"),
    "missing factor_names": (dict(skip=("factor_names",)), r"expected an attribute 'factor_names'"),
    "missing factor_sizes": (dict(skip=("factor_sizes",)), r"expected an attribute 'factor_sizes'"),
    "wrong count": (dict(sizes=(2, 4), names=("a", "b")), r"6 images; expected 8, the product of factor_sizes \[2, 4\]"),
    "wrong dtype": (dict(images=np.zeros((6, 8, 8, 3), np.float32)), "dtype float32; expected uint8"),
    "wrong rank": (dict(images=np.zeros((6, 8, 8), np.uint8)), r"shape \(6, 8, 8\); expected \(N, H, W, C\)"),
    "two channels": (dict(images=np.zeros((6, 8, 8, 2), np.uint8)), "with C 1 or 3"),
    "32x32 images": (dict(images=np.zeros((6, 32, 32, 3), np.uint8)), r"32x32 images; expected \(N, 64, 64, C\)"),
    "names and sizes differ": (dict(names=("a",)), "1 factor_names"),
    "fractional sizes": (dict(sizes=(2.0, 3.0)), "expected a list of positive integers"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_is_one_line_naming_the_file_and_leaves_nothing(tmp_path, case):
    kwargs, match = BAD_FILES[case]
    path = _write(tmp_path / "mine.h5", **kwargs)
    with pytest.raises(DatasetError, match=match) as error:
        get_dataset(f"h5:{path}")
    assert "\n" not in str(error.value) and "mine.h5" in str(error.value)
    assert _leftovers(tmp_path, "mine.h5") == []


def test_missing_and_truncated_files(tmp_path):
    with pytest.raises(DatasetError, match="absent.h5: file not found; expected an HDF5 file"):
        get_dataset(f"h5:{tmp_path / 'absent.h5'}")
    path = _write(tmp_path / "mine.h5", images=np.arange(6 * 64 * 64 * 3, dtype=np.int64).astype(np.uint8)
                  .reshape(6, 64, 64, 3))
    path.write_bytes(path.read_bytes()[:4000])
    with pytest.raises(DatasetError, match="mine.h5: not a readable HDF5 file") as error:
        get_dataset(f"h5:{path}")
    assert "\n" not in str(error.value) and _leftovers(tmp_path, "mine.h5") == []


def test_a_conversion_that_fails_midway_leaves_nothing(tmp_path, monkeypatch):
    path = _write(tmp_path / "mine.h5", images=np.ones((6, 64, 64, 3), np.uint8))

    def failing_chunks(array):
        yield array[:2]
        raise OSError("Can't read data (inflate() failed)")  # what h5py raises on a corrupt chunk

    monkeypatch.setattr(h5_datasets, "_row_chunks", failing_chunks)
    with pytest.raises(DatasetError, match=r"mine.h5\[images\]: OSError: .*inflate") as error:
        get_dataset(f"h5:{path}")
    assert "\n" not in str(error.value) and _leftovers(tmp_path, "mine.h5") == []


@pytest.mark.slow
def test_the_readme_example_trains_and_evaluates(squares, tmp_path):
    """The README's promise end to end: the example file, a few training steps, the export, a quick evaluation."""
    import evaluate
    from submission.train import main as train_main
    name = f"h5:{squares}"
    code = train_main(["--gin_file", str(README.parent / "submission" / "configs" / "beta_vae.gin"), "--dataset", name, "--output",
                       str(tmp_path / "run" / "train"), "--budget", "120s", "--max_steps", "3", "--no_report",
                       "--gin_binding", "model.architecture='mlp'", "--gin_binding", "training.batch_size=8"])
    assert code == 0
    export = tmp_path / "run" / "representation" / "pytorch_model.pt"
    report = evaluate.run(str(export), name, str(tmp_path / "run" / "eval"), metrics=["mig", "sap_score"], quick=True,
                          gin_bindings=["mig.num_train = 500", "sap_score.num_train = 300", "sap_score.num_test = 150"])
    assert report["errors"] == {} and all(np.isfinite(report["scores"][m]) for m in ("mig", "sap_score"))
    assert report["info"]["dataset"] == name


def test_the_pipeline_accepts_an_own_data_name(squares, tmp_path):
    from submission import pipeline
    (tmp_path / "data").mkdir()
    env = {"AICROWD_OUTPUT_PATH": str(tmp_path / "out"), "AICROWD_EVALUATION_NAME": "own",
           "DISENTANGLEMENT_LIB_DATA": str(tmp_path / "data"), "PRETRAINED_DIR": str(tmp_path / "pretrained"),
           "AICROWD_DATASET_NAME": f"h5:{squares}"}
    assert pipeline.read_config(env).dataset == f"h5:{squares}"
    with pytest.raises(pipeline.ConfigError, match="absent.h5: file not found"):
        pipeline.read_config(dict(env, AICROWD_DATASET_NAME=f"h5:{tmp_path / 'absent.h5'}"))


def test_memory_storage_and_a_bad_storage_name(squares):
    in_ram = get_dataset(f"h5:{squares}", storage="memory")
    np.testing.assert_array_equal(in_ram.images_from_factors(np.array([[1, 3]])),
                                  get_dataset(f"h5:{squares}").images_from_factors(np.array([[1, 3]])))
    (squares.parent / "my_squares.images.npy").unlink()
    with pytest.raises(DatasetError, match="storage 'gpu'"):
        get_dataset(f"h5:{squares}", storage="gpu")
    assert not (squares.parent / "my_squares.images.npy").exists()
