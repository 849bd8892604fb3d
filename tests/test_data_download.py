"""The download command against a small file served on loopback (127.0.0.1 only, stops with the test)."""

import hashlib
import http.server
import threading

import pytest

from submission.data import DatasetError
from submission.data.download import download, fetch, main

PAYLOAD = bytes(range(256)) * 1000


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD, honouring 'Range: bytes=N-' with 206 as RFC 7233 describes; records the Range headers seen."""

    ranges_seen = []

    def do_GET(self):
        requested = self.headers.get("Range")
        type(self).ranges_seen.append(requested)
        start = int(requested.split("=")[1].rstrip("-")) if requested else 0
        if start >= len(PAYLOAD):
            self.send_response(416)
            self.end_headers()
            return
        self.send_response(206 if requested else 200)
        self.send_header("Content-Length", str(len(PAYLOAD) - start))
        self.end_headers()
        self.wfile.write(PAYLOAD[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _RangeHandler.ranges_seen = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    httpd.timeout = 5
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/file.npz"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def test_download_to_the_dataset_path_and_check_md5(server, tmp_path):
    path = download("mpi3d_real", tmp_path, url=server, md5=hashlib.md5(PAYLOAD).hexdigest(), timeout=5)
    assert path == tmp_path / "mpi3d_real" / "mpi3d_real.npz"
    assert path.read_bytes() == PAYLOAD
    assert not path.with_name(path.name + ".part").exists()


def test_resume_a_partial_download_with_a_range_request(server, tmp_path):
    destination = tmp_path / "f.npz"
    destination.with_name("f.npz.part").write_bytes(PAYLOAD[:1234])
    fetch(server, destination, timeout=5, show_progress=False)
    assert _RangeHandler.ranges_seen == ["bytes=1234-"]
    assert destination.read_bytes() == PAYLOAD


def test_md5_mismatch_is_an_error_and_the_file_is_set_aside(server, tmp_path):
    with pytest.raises(DatasetError, match="MD5 .* expected 0+") as error:
        download("dsprites_full", tmp_path, url=server, md5="0" * 32, timeout=5)
    assert "\n" not in str(error.value)
    target = tmp_path / "dsprites" / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
    assert not target.exists() and target.with_name(target.name + ".bad-md5").exists()


def test_offline_gives_one_clear_line_and_exit_code_1(tmp_path, capsys):
    import socket
    with socket.socket() as probe:  # a loopback port with nobody listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = main(["mpi3d_toy", "--data_dir", str(tmp_path), "--url", f"http://127.0.0.1:{port}/x.npz", "--timeout", "2"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.startswith("error:") and "cannot connect" in err and "\n" not in err


def test_unknown_name(tmp_path):
    with pytest.raises(DatasetError, match="mpi3d_toy"):
        download("mnist", tmp_path)


def test_list_shows_every_dataset_with_size_source_and_presence(tmp_path, capsys):
    from submission.data import DATASET_NAMES
    (tmp_path / "mpi3d_toy").mkdir()
    (tmp_path / "mpi3d_toy" / "mpi3d_toy.npz").write_bytes(b"x")
    assert main(["--list", "--data_dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line for line in lines[2:]}
    assert set(DATASET_NAMES) | {"h5:PATH"} == set(rows)
    assert rows["mpi3d_toy"].split()[1:4] == ["12.7", "GB", "yes"] and "huggingface.co" in rows["mpi3d_toy"]
    assert rows["mpi3d_realistic"].split()[3] == "no"
    assert "3d-shapes" in rows["shapes3d"] and "procedural" in rows["shapes3d_sim"]


def test_current_urls_are_the_hugging_face_ones():
    from submission.data.download import SOURCES
    for name in ("mpi3d_toy", "mpi3d_realistic", "mpi3d_real"):
        assert SOURCES[name].files[0].url == f"https://huggingface.co/datasets/waleedgondal/mpi3d/resolve/main/{name}.npz"
    assert [SOURCES[n].files[0].md5_enforced for n in ("mpi3d_toy", "mpi3d_realistic", "mpi3d_real")] == [True, True, False]


def test_a_known_sum_is_enforced_without_being_passed(server, tmp_path):
    with pytest.raises(DatasetError, match="MD5 .* expected 55889cb7c7dfc655d6e0277beee88868"):
        download("mpi3d_toy", tmp_path, url=server, timeout=5)
    assert (tmp_path / "mpi3d_toy" / "mpi3d_toy.npz.bad-md5").exists()


def test_an_unenforced_sum_is_printed_beside_the_files_own(server, tmp_path, capsys):
    download("mpi3d_real", tmp_path, url=server, timeout=5)
    err = capsys.readouterr().err
    assert hashlib.md5(PAYLOAD).hexdigest() in err and "0f33f609918fb5c97996692f91129802" in err


def test_progress_goes_through_the_kit_helper(server, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KIT_PROGRESS", "plain")
    monkeypatch.setattr("submission.progress.QUIET_S", 0.0)
    fetch(server, tmp_path / "f.npz", timeout=5)
    err = capsys.readouterr().err
    assert "[download f.npz]" in err and "done" in err


def test_a_dataset_of_two_files_fetches_the_missing_one(server, tmp_path, monkeypatch):
    from submission.data import download as download_module
    files = download_module.SOURCES["scream_dsprites"].files
    monkeypatch.setitem(download_module.SOURCES, "scream_dsprites", download_module.Source(
        tuple(download_module.DataFile(f.path, server) for f in files), "?", "loopback"))
    (tmp_path / files[0].path).parent.mkdir(parents=True)
    (tmp_path / files[0].path).write_bytes(b"already here")
    download("scream_dsprites", tmp_path, timeout=5)
    assert (tmp_path / files[0].path).read_bytes() == b"already here"
    assert (tmp_path / "scream" / "scream.jpg").read_bytes() == PAYLOAD and _RangeHandler.ranges_seen == [None]


def test_a_dataset_fetched_by_hand_says_where_to_get_it(tmp_path):
    with pytest.raises(DatasetError, match="cars: not found and not downloadable here; expected it placed by hand: "
                                           "www.scottreed.info"):
        download("cars3d", tmp_path)
    with pytest.raises(DatasetError, match="nothing to download"):
        download("shapes3d_sim", tmp_path)


def test_readme_datasets_table_lists_every_dataset():
    from pathlib import Path
    from submission.data import DATASET_NAMES
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("## Datasets"):readme.index("## Evaluating an existing TorchScript file")]
    table = [line for line in section.splitlines() if line.startswith("| `")]
    listed = {name for line in table for name in line.split("|")[1].replace("`", "").replace(" ", "").split(",")}
    assert set(DATASET_NAMES) | {"h5:PATH"} == listed
