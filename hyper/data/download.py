"""Fetch an archive, check its md5, unpack it. Used only from ``prepare_data``, never at import."""
import hashlib
import tarfile
import urllib.request
from pathlib import Path

CHUNK = 1 << 20


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(url: str, dest: Path, *, md5: str, timeout: float = 60.0) -> None:
    """Download ``url`` to ``dest`` unless a file with the right md5 is already there.

    The bytes land in ``dest.part`` first, so an interrupted download never looks complete.

    Raises:
        urllib.error.URLError: the network or the server failed (callers word the advice).
        ValueError: the downloaded file's md5 is not ``md5`` (the partial file is removed).
    """
    if dest.is_file() and md5sum(dest) == md5:
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as f:
        for chunk in iter(lambda: response.read(CHUNK), b""):
            f.write(chunk)
    got = md5sum(part)
    if got != md5:
        part.unlink()
        raise ValueError(
            f"checksum mismatch for {url}: md5 {got}, expected {md5}; "
            f"the download is corrupt or the file changed, retry or fetch it by hand"
        )
    part.replace(dest)


def extract(archive: Path, into: Path) -> None:
    """Unpack a tar archive; members that would land outside ``into`` are refused."""
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4
            tar.extractall(into, filter="data")
        else:
            _refuse_escaping_members(tar, into)
            tar.extractall(into)


def _refuse_escaping_members(tar: tarfile.TarFile, into: Path) -> None:
    root = into.resolve()
    for member in tar.getmembers():
        target = (root / member.name).resolve()
        outside = target != root and root not in target.parents
        if outside or member.issym() or member.islnk():
            raise ValueError(f"refusing to extract {member.name!r} from {tar.name}: unsafe path or link")
