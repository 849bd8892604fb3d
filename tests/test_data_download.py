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
