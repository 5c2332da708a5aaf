"""scripts/download_sbd.py (research.data.download's SBD command line) offline: a tiny
benchmark.tgz served from 127.0.0.1 (the download and extraction machinery itself is
tested in test_download_voc.py)."""
import hashlib
import io
import os
import tarfile

from research.data import download, sbd
from tests.research.data import sbd_files
from tests.scripts.http_files import FileServer


def _sbd_tgz(tmp_path):
    """Bytes of a gzipped tar laid out like SBD's benchmark.tgz (a tiny dataset/)."""
    _, sbd_root, _ = sbd_files.make_tiny_world(tmp_path / "source")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(sbd_root, arcname="benchmark_RELEASE")
    return buffer.getvalue()


def _run(data_dir, url, md5):
    return download.command_line(download.SBD, ["--data-dir", str(data_dir), "--url", url, "--md5", md5,
                                                "--no-progress", "--timeout", "10"])


def test_download_resume_verify_extract_and_no_refetch(tmp_path, capsys):
    tgz = _sbd_tgz(tmp_path)
    md5 = hashlib.md5(tgz).hexdigest()
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    half = len(tgz) // 2
    (data_dir / "benchmark.tgz.part").write_bytes(tgz[:half])     # an interrupted download
    with FileServer({"/benchmark.tgz": tgz}) as server:
        assert _run(data_dir, server.url("/benchmark.tgz"), md5) == 0
        assert server.ranges == [f"bytes={half}-"]
        sbd_root = str(data_dir / "benchmark_RELEASE")
        assert download.SBD.is_extracted(data_dir)
        out = capsys.readouterr().out
        assert f"SBD ready: {sbd_root}" in out and f"prepare_sbd.py --sbd-root {sbd_root}" in out
        dataset = sbd.dataset_dir(sbd_root)
        assert sbd.read_sbd_mask(sbd.cls_path(dataset, "g")).shape == (sbd_files.HEIGHT, sbd_files.WIDTH)
        assert [p for p in os.listdir(data_dir) if p.startswith(".")] == []   # no staging left
        assert _run(data_dir, server.url("/benchmark.tgz"), md5) == 0           # no request now
        assert len(server.ranges) == 1 and "already extracted" in capsys.readouterr().out


def test_md5_mismatch_is_refused(tmp_path, capsys):
    tgz = _sbd_tgz(tmp_path)
    with FileServer({"/benchmark.tgz": tgz}) as server:
        assert _run(tmp_path / "data", server.url("/benchmark.tgz"), "0" * 32) == 1
    assert "expected " + "0" * 32 in capsys.readouterr().err
    assert os.listdir(tmp_path / "data") == []


def test_defaults_are_the_berkeley_release():
    assert download.SBD.url.endswith("/semantic_contours/benchmark.tgz")
    assert download.SBD.md5 == "82b4d87ceb2ed10f6038a1cba92111cb"
    assert download.SBD.folder == "benchmark_RELEASE"
