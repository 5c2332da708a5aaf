"""scripts/download_voc.py (research.data.download's VOC_2012 command line) offline: a tiny
VOC tar served from 127.0.0.1."""
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile

import numpy as np
import pytest

from research.data import download, voc
from tests.research.data import voc_files
from tests.scripts.http_files import FileServer

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "scripts", "download_voc.py")


def _voc_tar(tmp_path):
    """Bytes of a tar holding a tiny VOCdevkit/VOC2012 (2 train, 1 val)."""
    source = tmp_path / "source"
    voc_files.make_tiny_voc(voc.voc_root_in(source), ["a", "b"], ["c"])
    voc_files.write_bytes(str(source / "VOCdevkit" / "VOC2012" / "noise.bin"),
                          np.random.default_rng(0).bytes(300_000))   # a body worth resuming
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.add(source / "VOCdevkit", arcname="VOCdevkit")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def tar_bytes(tmp_path_factory):
    return _voc_tar(tmp_path_factory.mktemp("tar"))


def _md5(data):
    return hashlib.md5(data).hexdigest()


def _run(data_dir, url, md5):
    return download.command_line(download.VOC_2012, ["--data-dir", str(data_dir), "--url", url, "--md5", md5,
                                                     "--no-progress", "--timeout", "10"])


def test_download_verify_extract_and_no_refetch(tmp_path, tar_bytes, capsys):
    data_dir = tmp_path / "data"
    with FileServer({"/voc.tar": tar_bytes}) as server:
        assert _run(data_dir, server.url("/voc.tar"), _md5(tar_bytes)) == 0
        assert server.ranges == [None]
        voc_root = voc.voc_root_in(data_dir)
        assert voc.read_split(voc_root, "train") == ["a", "b"]
        assert os.path.isfile(voc.mask_path(voc_root, "c"))
        assert (data_dir / "voc.tar").is_file() and not (data_dir / "voc.tar.part").exists()
        assert [p for p in os.listdir(data_dir) if p.startswith(".")] == []   # no staging left
        # already extracted: no request at all
        assert _run(data_dir, server.url("/voc.tar"), _md5(tar_bytes)) == 0
        assert server.ranges == [None] and "already extracted" in capsys.readouterr().out
        # a verified tar but no extracted folder: extract without downloading
        shutil.rmtree(data_dir / "VOCdevkit")
        assert _run(data_dir, server.url("/voc.tar"), _md5(tar_bytes)) == 0
        assert server.ranges == [None] and "not downloading" in capsys.readouterr().out
        assert download.VOC_2012.is_extracted(data_dir)


def test_partial_download_is_resumed_with_range(tmp_path, tar_bytes):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    half = len(tar_bytes) // 2
    (data_dir / "voc.tar.part").write_bytes(tar_bytes[:half])
    with FileServer({"/voc.tar": tar_bytes}) as server:
        assert _run(data_dir, server.url("/voc.tar"), _md5(tar_bytes)) == 0
        assert server.ranges == [f"bytes={half}-"]
    assert (data_dir / "voc.tar").read_bytes() == tar_bytes
    assert download.VOC_2012.is_extracted(data_dir)


def test_complete_part_file_gets_416_and_is_used(tmp_path, tar_bytes):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "voc.tar.part").write_bytes(tar_bytes)
    with FileServer({"/voc.tar": tar_bytes}) as server:
        assert _run(data_dir, server.url("/voc.tar"), _md5(tar_bytes)) == 0
        assert server.ranges == [f"bytes={len(tar_bytes)}-"]
    assert download.VOC_2012.is_extracted(data_dir)


def test_md5_mismatch_is_refused_and_nothing_extracted(tmp_path, tar_bytes, capsys):
    data_dir = tmp_path / "data"
    with FileServer({"/voc.tar": tar_bytes}) as server:
        assert _run(data_dir, server.url("/voc.tar"), "0" * 32) == 1
    err = capsys.readouterr().err
    assert f"is {_md5(tar_bytes)}, expected {'0' * 32}" in err and "Traceback" not in err
    assert os.listdir(data_dir) == []              # .part deleted, nothing extracted


def test_network_errors_are_one_clear_line(tmp_path, capsys):
    with FileServer({}) as server:
        assert _run(tmp_path / "d1", server.url("/missing.tar"), "0" * 32) == 1
        assert "HTTP 404" in capsys.readouterr().err
        port = server.httpd.server_address[1]
    # the server is gone: connection refused
    assert _run(tmp_path / "d2", f"http://127.0.0.1:{port}/voc.tar", "0" * 32) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: could not download") and "Traceback" not in err


def _evil_tar(kind, outside):
    """A tar with one `kind` of malicious member; "absolute" names a file in `outside`."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        good = tarfile.TarInfo("VOCdevkit/VOC2012/ok.txt")
        good.size = 2
        archive.addfile(good, io.BytesIO(b"ok"))
        if kind in ("traversal", "absolute"):
            name = "VOCdevkit/../../evil.txt" if kind == "traversal" else str(outside / "evil.txt")
            info = tarfile.TarInfo(name)
            info.size = 4
            archive.addfile(info, io.BytesIO(b"evil"))
        elif kind in ("symlink", "hardlink"):
            info = tarfile.TarInfo("VOCdevkit/VOC2012/link")
            info.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
            info.linkname = "../../../outside.txt" if kind == "symlink" else "../outside.txt"
            archive.addfile(info)
            then = tarfile.TarInfo("VOCdevkit/VOC2012/link")   # a write through the link
            then.size = 4
            archive.addfile(then, io.BytesIO(b"evil"))
        elif kind in ("device", "fifo"):
            info = tarfile.TarInfo("VOCdevkit/VOC2012/dev")
            info.type = tarfile.CHRTYPE if kind == "device" else tarfile.FIFOTYPE
            info.devmajor, info.devminor = 1, 3
            archive.addfile(info)
        else:
            for info, data in _MORE_EVIL[kind]:
                archive.addfile(info, None if data is None else io.BytesIO(data))
    return buffer.getvalue()


def _link(name, target, type=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = type, target
    return info, None


def _file(name, data=b"evil"):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _block_device():
    info = tarfile.TarInfo("VOCdevkit/VOC2012/disk")
    info.type, info.devmajor, info.devminor = tarfile.BLKTYPE, 8, 0
    return info, None


# Members that each look harmless to a lexical check but, once the archive's links
# are created, write or point outside the target (the first four), or that are
# outside on their own (the rest).
_MORE_EVIL = {
    # up -> VOCdevkit (inside); "up/../../escape.txt" is VOCdevkit/escape.txt on paper,
    # really the folder above the target.
    "dotdot_through_link": [_link("VOCdevkit/VOC2012/up", ".."),
                            _file("VOCdevkit/VOC2012/up/../../escape.txt")],
    # d -> the target root (inside); d/up -> ".." is VOC2012 on paper, really the folder
    # above the target; then a file through both.
    "link_chain": [_link("VOCdevkit/VOC2012/d", "../.."), _link("VOCdevkit/VOC2012/d/up", ".."),
                   _file("VOCdevkit/VOC2012/d/up/escape.txt")],
    # e -> d/.. is VOC2012 on paper, really the folder above the target.
    "link_target_through_link": [_link("VOCdevkit/VOC2012/d", "../.."), _link("VOCdevkit/VOC2012/e", "d/.."),
                                 _file("VOCdevkit/VOC2012/e/escape.txt")],
    # b -> a/a/../../../.. is the target root on paper while "a" is not yet a link; once
    # "a" (later in the archive) links to ".", b is the folder above the target.
    "link_target_through_a_later_link": [_link("VOCdevkit/VOC2012/b", "a/a/../../../.."),
                                         _link("VOCdevkit/VOC2012/a", ".")],
    # a file replacing a link would be written through it
    "file_over_link": [_link("VOCdevkit/VOC2012/l", "ok.txt"), _file("VOCdevkit/VOC2012/l")],
    "absolute_symlink": [_link("VOCdevkit/VOC2012/passwd", "/etc/passwd")],
    "absolute_hardlink": [_link("VOCdevkit/VOC2012/passwd", "/etc/passwd", tarfile.LNKTYPE)],
    "block_device": [_block_device()],
}


@pytest.mark.parametrize("kind, phrase", [
    ("traversal", "path leaves the target folder"), ("absolute", "absolute path"),
    ("symlink", "points outside"), ("hardlink", "points outside"),
    ("device", "device file"), ("fifo", "FIFO"),
    ("dotdot_through_link", "goes through or replaces the link 'VOCdevkit/VOC2012/up'"),
    ("link_chain", "goes through or replaces the link 'VOCdevkit/VOC2012/d'"),
    ("link_target_through_link", "goes through the link 'VOCdevkit/VOC2012/d'"),
    ("link_target_through_a_later_link", "goes through the link 'VOCdevkit/VOC2012/a'"),
    ("file_over_link", "goes through or replaces the link 'VOCdevkit/VOC2012/l'"),
    ("absolute_symlink", "link to absolute path '/etc/passwd'"),
    ("absolute_hardlink", "link to absolute path '/etc/passwd'"),
    ("block_device", "device file")])
def test_malicious_members_are_refused_before_anything_is_written(tmp_path, kind, phrase, capsys):
    sandbox = tmp_path / "sandbox"
    data_dir = sandbox / "data"
    data_dir.mkdir(parents=True)
    evil = _evil_tar(kind, tmp_path / "outside")
    (data_dir / "voc.tar").write_bytes(evil)       # a "verified" tar already present
    assert _run(data_dir, "http://127.0.0.1:9/voc.tar", _md5(evil)) == 1
    err = capsys.readouterr().err
    assert "refusing to extract" in err and phrase in err and "Traceback" not in err
    written = sorted(os.path.relpath(os.path.join(d, f), tmp_path)
                     for d, dirs, files in os.walk(tmp_path) for f in files + dirs)
    assert written == ["sandbox", os.path.join("sandbox", "data"), os.path.join("sandbox", "data", "voc.tar")]


@pytest.mark.parametrize("kind", ["traversal", "absolute", "symlink", "hardlink", "device", "fifo"]
                         + sorted(_MORE_EVIL))
def test_every_member_is_checked_before_anything_is_extracted(tmp_path, kind, monkeypatch):
    """The checks refuse these archives up front: tarfile's data filter (a second line of
    defence, absent on older Pythons) never has to."""
    (tmp_path / "voc.tar").write_bytes(_evil_tar(kind, tmp_path / "outside"))
    extracted = []
    monkeypatch.setattr(tarfile.TarFile, "extract", lambda self, member, *a, **k: extracted.append(member))
    with pytest.raises(download.UnsafeArchiveError, match="refusing to extract"):
        download.VOC_2012.extract(str(tmp_path / "voc.tar"), str(tmp_path / "data"), progress=False)
    assert extracted == []
    assert os.listdir(tmp_path / "data") == [] and not (tmp_path / "outside").exists()


def test_killed_extraction_leaves_no_dataset_that_looks_complete(tmp_path, tar_bytes, monkeypatch):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "voc.tar").write_bytes(tar_bytes)
    real_extract = tarfile.TarFile.extract
    calls = []

    def extract_then_die(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt     # killed half way
        return real_extract(self, *args, **kwargs)

    monkeypatch.setattr(tarfile.TarFile, "extract", extract_then_die)
    with pytest.raises(KeyboardInterrupt):
        download.VOC_2012.extract(str(data_dir / "voc.tar"), str(data_dir), progress=False)
    assert not download.VOC_2012.is_extracted(data_dir)
    assert not os.path.exists(voc.voc_root_in(data_dir))
    monkeypatch.setattr(tarfile.TarFile, "extract", real_extract)
    assert download.VOC_2012.extract(str(data_dir / "voc.tar"), str(data_dir), progress=False)
    assert download.VOC_2012.is_extracted(data_dir)
    assert [p for p in os.listdir(data_dir) if p.startswith(".")] == []


def test_links_inside_the_target_are_allowed(tmp_path):
    target = str(tmp_path)
    inside = tarfile.TarInfo("VOCdevkit/VOC2012/link")
    inside.type, inside.linkname = tarfile.SYMTYPE, "JPEGImages/a.jpg"
    download.check_member(inside, target)       # no error


def test_help():
    result = subprocess.run([sys.executable, SCRIPT, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "--data-dir" in result.stdout and "--md5" in result.stdout
