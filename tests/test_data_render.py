"""Procedural renderers: deterministic, every factor visible in the pixels, toy and realistic differ."""

import numpy as np
import pytest

from submission.data import get_dataset
from submission.data import mpi3d_render, shapes3d_render


@pytest.mark.parametrize("name", ["mpi3d_sim_toy", "mpi3d_sim_realistic", "dsprites_sim", "shapes3d_sim"])
def test_same_factors_give_the_same_image_even_after_the_caches_are_rebuilt(name):
    ds = get_dataset(name)
    factors = ds.sample_factors(32, np.random.RandomState(3))
    first = ds.images_from_factors(factors)
    mpi3d_render._CACHES.clear()
    shapes3d_render._TABLES.clear()
    np.testing.assert_array_equal(first, get_dataset(name).images_from_factors(factors[::-1])[::-1])


@pytest.mark.parametrize("name", ["mpi3d_sim_toy", "mpi3d_sim_realistic", "dsprites_sim", "shapes3d_sim"])
def test_changing_any_single_factor_by_one_step_changes_the_image(name):
    ds = get_dataset(name)
    sizes = np.array(ds.factors_num_values)
    factors = ds.sample_factors(64, np.random.RandomState(4))
    base = ds.images_from_factors(factors)
    for factor, size in enumerate(sizes):
        stepped = factors.copy()
        stepped[:, factor] = (stepped[:, factor] + 1) % size
        changed = np.any(ds.images_from_factors(stepped) != base, axis=(1, 2, 3))
        if name == "dsprites_sim" and factor == 2:
            # Orientation is only mostly visible, as in the official file: 0 and 2*pi are both in the grid, and a small
            # square rotated by 9.2 degrees can rasterise to the same pixels (it has 90-degree symmetry).
            assert changed.mean() >= 0.9, f"orientation changed only {changed.mean():.2f} of images"
        else:
            assert changed.all(), f"factor {factor}: {np.flatnonzero(~changed)} unchanged"


def test_toy_and_realistic_share_the_scene_but_differ_in_appearance():
    toy, realistic = get_dataset("mpi3d_sim_toy"), get_dataset("mpi3d_sim_realistic")
    factors = toy.sample_factors(32, np.random.RandomState(5))
    a = toy.images_from_factors(factors).astype(np.float32)
    b = realistic.images_from_factors(factors).astype(np.float32)
    difference = np.abs(a - b).mean()
    assert 2.0 < difference < 40.0  # a domain shift, not a different scene
    # Toy is flat-shaded: few distinct colours per image; realistic has noise and shading: many.
    assert max(len(np.unique(im.reshape(-1, 3), axis=0)) for im in a.astype(np.uint8)) < 40
    assert min(len(np.unique(im.reshape(-1, 3), axis=0)) for im in b.astype(np.uint8)) > 500


def test_object_sits_at_the_arm_tip():
    """Pixels that change with the object colour all lie in the patch around the tip pixel."""
    ds = get_dataset("mpi3d_sim_toy")
    factors = ds.sample_factors(32, np.random.RandomState(6))
    recoloured = factors.copy()
    recoloured[:, 0] = (recoloured[:, 0] + 3) % 6
    changed = np.any(ds.images_from_factors(factors) != ds.images_from_factors(recoloured), axis=-1)
    _, _, tip = mpi3d_render.arm_joints(factors[:, 3], factors[:, 5], factors[:, 6])
    for mask, (x, y) in zip(changed, tip):
        rows, cols = np.nonzero(mask)
        assert rows.size > 0
        assert np.abs(rows + 0.5 - y).max() <= 8 and np.abs(cols + 0.5 - x).max() <= 8


@pytest.mark.parametrize("style", ["toy", "realistic"])
def test_each_arm_factor_has_an_ideal_code_in_the_tips_image_position(style):
    """Both arm factors turn the whole arm (stand-in version 2): on the 40 x 40 arm grid, with every other factor held
    fixed, the tip's image x codes first_dof and its image y codes second_dof, each at normalised MI >= 0.5 (20 histogram
    bins, the captured-factor measure), for every camera.  The tip is read off the rendered images, not the geometry."""
    from submission.metrics.captured import factor_capture
    ds = get_dataset(f"mpi3d_sim_{style}")
    first, second = (a.ravel() for a in np.meshgrid(np.arange(40), np.arange(40), indexing="ij"))
    for camera in range(3):
        factors = np.zeros((1600, 7), np.int64)
        factors[:, 3], factors[:, 5], factors[:, 6] = camera, first, second
        recoloured = factors.copy()
        recoloured[:, 0] = 3
        changed = np.any(ds.images_from_factors(factors) != ds.images_from_factors(recoloured), axis=-1)
        assert changed.any(axis=(1, 2)).all()
        # Where the object is: the centre of the pixels that its colour changes.
        tip_y = np.array([np.flatnonzero(r).mean() for r in changed.any(axis=2)])
        tip_x = np.array([np.flatnonzero(c).mean() for c in changed.any(axis=1)])
        capture = factor_capture(np.stack([tip_x, tip_y], 1), factors[:, 5:], ["first_dof", "second_dof"])
        assert capture["best_latent"] == {"first_dof": 0, "second_dof": 1}, capture
        assert min(capture["capture_nmi"].values()) >= 0.5, (camera, capture)


def test_the_stand_in_records_its_version():
    assert mpi3d_render.STANDIN_VERSION == 2 and get_dataset("mpi3d_sim_toy").standin_version == 2
    assert get_dataset("mpi3d_sim_realistic").standin_version == 2


def _ridge_accuracies(features, factors, sizes, train):
    """Per-factor test accuracy of one-vs-rest ridge classifiers (closed form, dual, one solve for all factors)."""
    mean = features[:train].mean(0)
    xtr, xte = features[:train] - mean, features[train:] - mean
    targets = np.concatenate([np.eye(size)[factors[:train, f]] - 1.0 / size for f, size in enumerate(sizes)], axis=1)
    gram = xtr @ xtr.T
    weights = np.linalg.solve(gram + 1e-2 * np.trace(gram) / len(gram) * np.eye(len(gram)), targets)
    scores = np.split(xte @ (xtr.T @ weights), np.cumsum(sizes)[:-1], axis=1)
    return [float(np.mean(np.argmax(score, axis=1) == factors[train:, f])) for f, score in enumerate(scores)]


def probe_features(images):
    """2x2-pooled pixels (where things are) plus the log amplitude spectrum of the grey image (what they look like:
    the amplitude spectrum does not change under translation, so a linear probe can read shape wherever the object is)."""
    n = len(images)
    pooled = images.reshape(n, 32, 2, 32, 2, -1).mean(axis=(2, 4)).reshape(n, -1)
    grey = images.mean(-1)
    spectrum = np.abs(np.fft.rfft2(grey - grey.mean((1, 2), keepdims=True)))[:, :, :16]
    spectrum = np.concatenate([spectrum[:, :16], spectrum[:, -16:]], axis=1).reshape(n, -1)
    return np.concatenate([pooled, np.log1p(spectrum)], axis=1)


@pytest.mark.parametrize("name", ["mpi3d_sim_toy", "mpi3d_sim_realistic", "dsprites_sim", "shapes3d_sim"])
def test_every_factor_is_recoverable_by_a_simple_classifier(name):
    ds = get_dataset(name)
    factors = ds.sample_factors(2500, np.random.RandomState(7))
    features = probe_features(ds.images_from_factors(factors).astype(np.float32) / 255.0)
    accuracies = _ridge_accuracies(features, factors, ds.factors_num_values, train=2000)
    for factor, (accuracy, size) in enumerate(zip(accuracies, ds.factors_num_values)):
        # "Well above chance": at least twice chance, and for binary factors at least 0.65.
        assert accuracy > (0.65 if size == 2 else 2.0 / size), f"{name} factor {factor}: {accuracy:.2f}, chance {1 / size:.2f}"


def test_shapes3d_sim_each_hue_colours_its_own_region():
    """Floor hue changes only the lower image, wall hue only the upper, object hue only the box around the object."""
    ds = get_dataset("shapes3d_sim")
    factors = ds.sample_factors(64, np.random.RandomState(8))
    base = ds.images_from_factors(factors)
    rows = {}
    for factor in range(3):
        stepped = factors.copy()
        stepped[:, factor] = (stepped[:, factor] + 5) % 10
        changed = np.any(ds.images_from_factors(stepped) != base, axis=(0, 3))
        assert changed.any()
        rows[factor] = np.flatnonzero(changed.any(axis=1))
        if factor == 2:
            columns = np.flatnonzero(changed.any(axis=0))
            assert columns.min() >= 12 and columns.max() <= 52 and rows[2].min() >= 20
    assert rows[0].min() >= 28 and rows[1].max() <= 52 and rows[1].min() == 0


def test_shapes3d_sim_grid_is_the_published_one():
    ds = get_dataset("shapes3d_sim")
    assert ds.factors_num_values == [10, 10, 10, 8, 4, 15] and ds.observation_shape == [64, 64, 3]
    assert ds.factor_names == ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")


@pytest.mark.slow
def test_training_and_evaluation_run_on_shapes3d_sim(tmp_path):
    import evaluate
    from submission.train import main as train_main
    code = train_main(["--gin_file", "submission/configs/beta_vae.gin", "--dataset", "shapes3d_sim", "--output",
                       str(tmp_path / "train"), "--budget", "120s", "--max_steps", "3", "--no_report",
                       "--gin_binding", "model.architecture='mlp'", "--gin_binding", "training.batch_size=8"])
    assert code == 0
    report = evaluate.run(str(tmp_path / "representation" / "pytorch_model.pt"), "shapes3d_sim", str(tmp_path / "eval"),
                          metrics=["mig"], quick=True, gin_bindings=["mig.num_train = 500"])
    assert report["errors"] == {} and np.isfinite(report["scores"]["mig"])


def test_the_render_cache_never_changes_an_image(tmp_path, monkeypatch):
    """The first process renders and keeps the base images; a later one memory-maps the same bytes; a damaged or
    foreign cache file is not used."""
    from submission.data import mpi3d_render
    monkeypatch.setenv("KIT_RENDER_CACHE", str(tmp_path))

    class SmallCache(mpi3d_render._BaseImageCache):       # the first 30 base images, so the test stays fast
        count = 30
        shape = (30, 64, 64, 3)

    first = SmallCache("toy")
    assert not first.built and not first.path.exists()
    keys = np.array([0, 7, 29, 7])
    built = first.take(keys)
    assert first.path.exists() and first.path.parent == tmp_path
    second = SmallCache("toy")
    assert second.built and isinstance(second.images, np.memmap)               # loaded, not rendered
    assert np.array_equal(second.take(keys), built)
    assert np.array_equal(built, first.render(keys))                           # identical to fresh renders
    np.save(first.path, np.zeros((30, 64, 64, 3), np.uint8))                   # same shape, wrong images
    assert not SmallCache("toy").built
    np.save(first.path, np.zeros((3, 64, 64, 3), np.uint8))                    # wrong shape
    assert not SmallCache("toy").built
    assert mpi3d_render._cache_file("toy") != mpi3d_render._cache_file("realistic")
