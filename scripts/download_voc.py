"""Downloads Pascal VOC 2012 trainval, checks its MD5 and extracts it safely.

    python scripts/download_voc.py --data-dir data

Result: DATA_DIR/VOCdevkit/VOC2012 (the voc_root the rest of the project takes).
- A partial download (DATA_DIR/<name>.tar.part) is resumed with an HTTP Range request.
- The tar is used only if its MD5 matches.
- Extraction refuses any member that could write outside the target (absolute paths,
  "..", links pointing outside, paths or link targets going through another link of the
  archive, device files, FIFOs); every member is checked before anything is written,
  and tarfile's "data" filter checks again while extracting.
- Extraction goes to a hidden staging folder that is moved into place in one rename, so
  a killed run never leaves a VOC2012 folder that looks complete.
- An extracted dataset, or a verified tar, is not fetched again.
"""
import argparse
import glob
import hashlib
import http.client
import os
import posixpath
import shutil
import socket
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request

from research.data import voc
from research.progress import ProgressBar

DEFAULT_URL = "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"
DEFAULT_MD5 = "6cd6e144f989b92b3379bac3b3de84fd"
MIB = 1 << 20
STAGING_PREFIX = ".voc-extract-"


class DownloadError(Exception):
    """The download failed; the message says why, without urllib's stack."""


class UnsafeArchiveError(Exception):
    """A tar member that could write outside the target folder; the message names it."""


# ---------------------------------------------------------------- presence checks

def is_extracted(data_dir):
    """True when DATA_DIR/VOCdevkit/VOC2012 has the split lists and both image folders."""
    voc_root = voc.voc_root_in(data_dir)
    return (all(os.path.isfile(voc.split_file(voc_root, name)) for name in ("train", "val"))
            and os.path.isdir(os.path.join(voc_root, "JPEGImages"))
            and os.path.isdir(os.path.join(voc_root, "SegmentationClass")))


def md5_of(path, progress=False):
    """Hex MD5 of a file, read in 1 MiB blocks."""
    digest = hashlib.md5()
    size = os.path.getsize(path)
    bar = ProgressBar(total=max(1, size // MIB), desc="md5", unit="MB") if progress else None
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MIB), b""):
            digest.update(block)
            if bar:
                bar.update(len(block) // MIB)
    if bar:
        bar.close()
    return digest.hexdigest()


# ---------------------------------------------------------------- download

def _open(url, offset, timeout):
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:    # nothing after offset: the .part is complete
            return None
        raise DownloadError(f"could not download {url}: HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", error)
        raise DownloadError(f"could not download {url}: {reason} "
                            f"(check the network or pass --url)") from None


def _copy_body(response, part, offset, url, progress):
    resumed = offset and response.status == 206
    if offset and not resumed:
        offset = 0                          # the server ignored Range: start again
    remaining = int(response.headers.get("Content-Length") or 0)
    desc = f"download (resuming at {offset // MIB} MB)" if resumed else "download"
    bar = ProgressBar(total=remaining // MIB or None, desc=desc, unit="MB") if progress else None
    received = 0
    try:
        with open(part, "ab" if resumed else "wb") as f:
            while True:
                block = response.read(MIB)
                if not block:
                    break
                f.write(block)
                if bar:
                    bar.update((received + len(block)) // MIB - received // MIB)
                received += len(block)
    except (OSError, http.client.HTTPException) as error:
        raise DownloadError(f"download of {url} interrupted after {offset + received} bytes "
                            f"({error}); run again to resume") from None
    finally:
        if bar:
            bar.close()
    if remaining and received < remaining:
        raise DownloadError(f"download of {url} ended early ({received} of {remaining} bytes); "
                            f"run again to resume")


def download(url, tar_path, expected_md5, timeout=60, progress=True):
    """Fetches `url` to `tar_path` through `tar_path + ".part"`, resuming a partial file.

    The file is renamed into place only after its MD5 matches `expected_md5`; on a
    mismatch the .part file is deleted (a resume cannot repair it) and DownloadError raised.
    """
    part = tar_path + ".part"
    offset = os.path.getsize(part) if os.path.exists(part) else 0
    response = _open(url, offset, timeout)
    if response is not None:
        with response:
            _copy_body(response, part, offset, url, progress)
    found = md5_of(part, progress)
    if found != expected_md5:
        os.remove(part)
        raise DownloadError(f"MD5 of the download from {url} is {found}, expected {expected_md5}; "
                            f"deleted {part}, run again to download afresh")
    os.replace(part, tar_path)
    return tar_path


# ---------------------------------------------------------------- safe extraction

def _inside(target, path):
    target = os.path.realpath(target)
    return os.path.commonpath([target, os.path.realpath(path)]) == target


def _through_link(path, links):
    """The archive symlink (in `links`) that the archive path `path` is or passes through.

    Prefixes are compared after lexical normalisation, which is exact up to the first
    symlink: every component before it is a real folder.
    """
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    for end in range(1, len(parts) + 1):
        prefix = posixpath.normpath("/".join(parts[:end]))
        if prefix in links:
            return prefix
    return None


def check_member(member, target, links=frozenset()):
    """Raises UnsafeArchiveError when extracting `member` into `target` could write or
    point outside it, or would create anything but files, folders and links.

    `links`: the (normalised) names of the symlinks among the members before this one.
    The checks here are lexical; a member that goes through, or replaces, one of those
    links (or a link whose target does) is refused, since the lexical path says nothing
    about where it really lands.
    """
    name = member.name
    if os.path.isabs(name) or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"refusing to extract {name!r}: absolute path")
    if not _inside(target, os.path.join(target, name)):
        raise UnsafeArchiveError(f"refusing to extract {name!r}: path leaves the target folder")
    via = _through_link(name, links)
    if via is not None:
        raise UnsafeArchiveError(f"refusing to extract {name!r}: goes through or replaces the "
                                 f"link {via!r} of the archive")
    if member.issym() or member.islnk():
        if os.path.isabs(member.linkname):
            raise UnsafeArchiveError(f"refusing to extract {name!r}: link to absolute path "
                                     f"{member.linkname!r}")
        # a symlink's target is relative to its own folder; a hard link's to the archive root
        pointed = (posixpath.join(posixpath.dirname(name), member.linkname) if member.issym()
                   else member.linkname)
        via = _through_link(pointed, links)
        if via is not None:
            raise UnsafeArchiveError(f"refusing to extract {name!r}: link to {member.linkname!r} "
                                     f"goes through the link {via!r} of the archive")
        # a symlink is relative to its own folder; a hard link to the archive root
        base = os.path.dirname(os.path.join(target, name)) if member.issym() else target
        if not _inside(target, os.path.join(base, member.linkname)):
            raise UnsafeArchiveError(f"refusing to extract {name!r}: link to {member.linkname!r} "
                                     f"points outside the target folder")
    elif not (member.isfile() or member.isdir()):
        kind = ("device file" if member.ischr() or member.isblk() else
                "FIFO" if member.isfifo() else f"member of tar type {member.type!r}")
        raise UnsafeArchiveError(f"refusing to extract {name!r}: {kind}")


def safe_extract(tar_path, data_dir, progress=True):
    """Extracts the VOC tar into DATA_DIR so that DATA_DIR/VOCdevkit/VOC2012 appears at
    once and complete. Returns that voc_root."""
    os.makedirs(data_dir, exist_ok=True)
    for leftover in glob.glob(os.path.join(data_dir, STAGING_PREFIX + "*")):
        shutil.rmtree(leftover, ignore_errors=True)      # a killed run's staging folder
    staging = tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=data_dir)
    try:
        with tarfile.open(tar_path) as archive:
            members = archive.getmembers()
            links = set()
            for member in members:                       # all checked before any write
                check_member(member, staging, links)
                if member.issym():
                    links.add(posixpath.normpath(member.name.replace("\\", "/")))
            bar = ProgressBar(total=len(members), desc="extract", unit="file") if progress else None
            for member in members:
                if hasattr(tarfile, "data_filter"):      # Python >= 3.11.4
                    archive.extract(member, staging, filter="data")
                else:
                    archive.extract(member, staging)
                if bar:
                    bar.update(1)
            if bar:
                bar.close()
        extracted = voc.voc_root_in(staging)
        if not os.path.isdir(extracted):
            raise UnsafeArchiveError(f"{tar_path} has no VOCdevkit/VOC2012 folder")
        voc_root = voc.voc_root_in(data_dir)
        os.makedirs(os.path.dirname(voc_root), exist_ok=True)
        if os.path.exists(voc_root):                     # incomplete (else we would not be here)
            os.replace(voc_root, os.path.join(staging, "old-VOC2012"))
        os.replace(extracted, voc_root)
        return voc_root
    except tarfile.TarError as error:
        raise UnsafeArchiveError(f"{tar_path} is not a readable tar: {error}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# ---------------------------------------------------------------- command line

def fetch_voc(data_dir, url=DEFAULT_URL, md5=DEFAULT_MD5, timeout=60, progress=True, log=print):
    """Makes sure DATA_DIR/VOCdevkit/VOC2012 exists; returns it. Raises DownloadError or
    UnsafeArchiveError."""
    if is_extracted(data_dir):
        log(f"already extracted: {voc.voc_root_in(data_dir)}")
        return voc.voc_root_in(data_dir)
    os.makedirs(data_dir, exist_ok=True)
    name = os.path.basename(urllib.parse.urlparse(url).path) or "VOCtrainval.tar"
    tar_path = os.path.join(data_dir, name)
    if os.path.exists(tar_path):
        if md5_of(tar_path, progress) == md5:
            log(f"found verified {tar_path}; not downloading")
        else:
            log(f"{tar_path} does not match MD5 {md5}; downloading it again")
            os.remove(tar_path)
    if not os.path.exists(tar_path):
        download(url, tar_path, md5, timeout, progress)
        log(f"downloaded and verified {tar_path}")
    voc_root = safe_extract(tar_path, data_dir, progress)
    log(f"extracted: {voc_root}")
    return voc_root


def main(argv=None):
    """Returns the exit status: 0 on success, 1 with a one-line reason on stderr."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="data", help="where the tar and VOCdevkit go (default data)")
    parser.add_argument("--url", default=DEFAULT_URL, help="the tar's address")
    parser.add_argument("--md5", default=DEFAULT_MD5, help="expected MD5 of the tar")
    parser.add_argument("--timeout", type=float, default=60, help="network timeout in seconds (default 60)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    try:
        voc_root = fetch_voc(args.data_dir, args.url, args.md5, args.timeout, not args.no_progress)
    except (DownloadError, UnsafeArchiveError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"VOC 2012 ready: {voc_root}\ncheck it with: python -m research.data.validate {voc_root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
