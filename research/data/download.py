"""Downloading a dataset release: resumable, MD5-checked, extracted safely.

One `Release` describes an archive (its address, MD5 and the dataset folder inside it):
`VOC_2012` and `SBD` are the two this project uses. `fetch` makes sure DATA_DIR/<folder>
exists, and `command_line(VOC_2012)` / `command_line(SBD)` is the whole command line of
scripts/download_voc.py / scripts/download_sbd.py.

- A partial download (DATA_DIR/<name>.part) is resumed with an HTTP Range request.
- The archive is used only if its MD5 matches.
- Extraction refuses any member that could write outside the target (absolute paths,
  "..", links pointing outside, paths or link targets going through another link of the
  archive, device files, FIFOs); every member is checked before anything is written,
  and tarfile's "data" filter checks again while extracting.
- Extraction goes to a hidden staging folder whose dataset folder is moved into place in
  one rename, so a killed run never leaves a dataset folder that looks complete.
- An extracted dataset, or a verified archive, is not fetched again.
"""
import argparse
import dataclasses
import glob
import hashlib
import http.client
import os
import posixpath
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request

from research import cli
from research.progress import ProgressBar

MIB = 1 << 20


class DownloadError(Exception):
    """The download failed; the message says why, without urllib's stack."""


class UnsafeArchiveError(Exception):
    """A tar member that could write outside the target folder; the message names it."""


# ---------------------------------------------------------------- checksum

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


def _link_name(member):
    """A symlink member's name as `links` and `archive_links` of `check_member` hold it."""
    return posixpath.normpath(member.name.replace("\\", "/"))


def check_member(member, target, links=frozenset(), archive_links=None):
    """Raises UnsafeArchiveError when extracting `member` into `target` could write or
    point outside it, or would create anything but files, folders and links.

    `links`: the (normalised) names of the symlinks among the members before this one;
    `archive_links`: those of all the archive's symlinks (default: `links`).
    The checks here are lexical; a member that goes through, or replaces, one of `links`
    (they exist when it is written), or a link whose target goes through any of
    `archive_links` (a link is followed after the whole archive is out, so a link
    extracted after this one counts too), is refused, since the lexical path says nothing
    about where it really lands.
    """
    archive_links = links if archive_links is None else archive_links
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
        via = _through_link(pointed, archive_links)
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


def safe_extract(tar_path, data_dir, folder, staging_prefix, progress=True):
    """Extracts a tar (plain or compressed) into DATA_DIR so that DATA_DIR/`folder`
    appears at once and complete. Returns that folder.

    Args:
      tar_path: the archive (its MD5 already checked).
      data_dir: where `folder` goes.
      folder: the archive's dataset folder, a relative path such as "VOCdevkit/VOC2012";
        only it is moved into place (the rest of the archive is dropped).
      staging_prefix: name prefix of the hidden staging folder in DATA_DIR; a killed
        run's staging folder of the same prefix is removed first, so give each dataset
        its own (two datasets may be fetched into one DATA_DIR at once).
      progress: show a progress bar.
    Raises:
      UnsafeArchiveError: a dangerous member (nothing written), an unreadable tar, or
        no `folder` in it.
    """
    os.makedirs(data_dir, exist_ok=True)
    for leftover in glob.glob(os.path.join(glob.escape(data_dir), staging_prefix + "*")):
        shutil.rmtree(leftover, ignore_errors=True)      # a killed run's staging folder
    staging = tempfile.mkdtemp(prefix=staging_prefix, dir=data_dir)
    try:
        with tarfile.open(tar_path) as archive:
            members = archive.getmembers()
            archive_links = {_link_name(m) for m in members if m.issym()}
            links = set()
            for member in members:                       # all checked before any write
                check_member(member, staging, links, archive_links)
                if member.issym():
                    links.add(_link_name(member))
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
        extracted = os.path.join(staging, folder)
        if not os.path.isdir(extracted):
            raise UnsafeArchiveError(f"{tar_path} has no {folder} folder")
        target = os.path.join(data_dir, folder)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.exists(target):                       # incomplete (else we would not be here)
            os.replace(target, os.path.join(staging, "old-" + os.path.basename(target)))
        os.replace(extracted, target)
        return target
    except tarfile.TarError as error:
        raise UnsafeArchiveError(f"{tar_path} is not a readable tar: {error}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# ---------------------------------------------------------------- a release

@dataclasses.dataclass(frozen=True)
class Release:
    """A downloadable dataset archive.

    Attributes:
      title: what to call it in messages ("VOC 2012").
      url, md5: where the archive is and its MD5 (hex).
      folder: the dataset folder inside the archive, and under DATA_DIR after extraction
        (a relative POSIX path, e.g. "VOCdevkit/VOC2012").
      required: paths inside `folder` that a complete extraction has.
      staging_prefix: name prefix of the hidden staging folder (one per dataset).
      description: the first line of its download command's --help.
      next_steps: printed after a successful download; "{target}" is the dataset folder.
    """
    title: str
    url: str
    md5: str
    folder: str
    required: tuple
    staging_prefix: str
    description: str = ""
    next_steps: str = ""

    def target(self, data_dir):
        """DATA_DIR/`folder`: where the dataset is once extracted."""
        return os.path.join(os.fspath(data_dir), *self.folder.split("/"))

    def is_extracted(self, data_dir):
        """True when DATA_DIR/`folder` holds every `required` path."""
        target = self.target(data_dir)
        return all(os.path.exists(os.path.join(target, *path.split("/"))) for path in self.required)

    def extract(self, tar_path, data_dir, progress=True):
        """Extracts the archive so that DATA_DIR/`folder` appears at once and complete;
        returns that folder (see `safe_extract`)."""
        return safe_extract(tar_path, data_dir, self.folder, self.staging_prefix, progress)


VOC_2012 = Release(
    title="VOC 2012", url="http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
    md5="6cd6e144f989b92b3379bac3b3de84fd", folder="VOCdevkit/VOC2012",
    required=("ImageSets/Segmentation/train.txt", "ImageSets/Segmentation/val.txt",
              "JPEGImages", "SegmentationClass"),
    staging_prefix=".voc-extract-",
    description="Downloads Pascal VOC 2012 trainval, checks its MD5 and extracts it safely.",
    next_steps="check it with: python -m research.data.validate {target}")

SBD = Release(
    title="SBD", url=("http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/"
                      "semantic_contours/benchmark.tgz"),
    md5="82b4d87ceb2ed10f6038a1cba92111cb", folder="benchmark_RELEASE",
    required=("dataset/cls", "dataset/train.txt", "dataset/val.txt"),
    staging_prefix=".sbd-extract-",
    description=("Downloads SBD (the Semantic Boundaries Dataset, benchmark.tgz), checks its MD5 and "
                 "extracts it safely."),
    next_steps=("next: python scripts/prepare_sbd.py --sbd-root {target} "
                "--voc-root VOC_ROOT (the .../VOCdevkit/VOC2012 folder)"))


def fetch(release, data_dir, url=None, md5=None, timeout=60, progress=True, log=print):
    """Makes sure DATA_DIR/`release.folder` exists; returns it.

    `url` and `md5` replace the release's (a mirror). Raises DownloadError or
    UnsafeArchiveError.
    """
    url, md5 = url or release.url, md5 or release.md5
    target = release.target(data_dir)
    if release.is_extracted(data_dir):
        log(f"already extracted: {target}")
        return target
    os.makedirs(data_dir, exist_ok=True)
    name = os.path.basename(urllib.parse.urlparse(url).path) or "download.tar"
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
    target = release.extract(tar_path, data_dir, progress)
    log(f"extracted: {target}")
    return target


def command_line(release, argv=None):
    """The command line of a download script; returns the exit status (0, or 1 with a
    one-line reason on stderr).

    Args:
      release: the `Release` to fetch (its `description` heads --help; its `next_steps`
        is printed after success).
      argv: the arguments (default sys.argv[1:]).
    """
    parser = argparse.ArgumentParser(description=release.description)
    parser.add_argument("--data-dir", default="data",
                        help=f"where the archive and {release.folder} go (default data)")
    parser.add_argument("--url", default=release.url, help="the archive's address")
    parser.add_argument("--md5", default=release.md5, help="expected MD5 of the archive")
    parser.add_argument("--timeout", type=float, default=60, help="network timeout in seconds (default 60)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    def work():
        target = fetch(release, args.data_dir, args.url, args.md5, args.timeout, not args.no_progress)
        print(f"{release.title} ready: {target}\n{release.next_steps.format(target=target)}")

    return cli.run_main(work, errors=(DownloadError, UnsafeArchiveError))
