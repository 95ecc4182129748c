"""Plugin packages shipped as one archive file (`.tar.gz`, `.tgz`, `.tar` or `.zip`).

An archive is unpacked once into a cache folder named after its sha256, and from then on it is a
package folder like any other (its plugin.toml and [files] hashes are checked the same way). Members
that would land outside the folder (absolute paths, `..`), links and device files are refused: an
archive is untrusted input.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from .errors import ManifestError

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
MANIFEST_NAME = "plugin.toml"


def is_archive(path: Path) -> bool:
    """True for a file whose name ends in one of ARCHIVE_SUFFIXES."""
    return path.is_file() and path.name.endswith(ARCHIVE_SUFFIXES)


def cache_dir() -> Path:
    """Where archives are unpacked: $TRITIUM_PLUGIN_CACHE or ~/.cache/tritium/plugins."""
    return Path(os.environ.get("TRITIUM_PLUGIN_CACHE", Path.home() / ".cache" / "tritium" / "plugins"))


def _safe_name(archive: Path, name: str) -> PurePosixPath:
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise ManifestError(archive.name, f"{archive}: member {name!r} would be unpacked outside the package")
    return p


def _extract(archive: Path, dest: Path) -> None:
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                rel = _safe_name(archive, info.filename)
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    raise ManifestError(
                        archive.name, f"{archive}: member {info.filename!r} is a symbolic link"
                    )
                target = dest.joinpath(*rel.parts)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with z.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
        return
    with tarfile.open(archive) as t:
        for member in t.getmembers():
            rel = _safe_name(archive, member.name)
            if not (member.isfile() or member.isdir()):
                raise ManifestError(
                    archive.name, f"{archive}: member {member.name!r} is not a regular file or folder"
                )
            target = dest.joinpath(*rel.parts)
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with t.extractfile(member) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
            if member.mode & 0o111:
                target.chmod(0o755)


def unpack(archive: Path | str) -> Path:
    """The package folder of an archive (unpacked on first use); the folder holding plugin.toml, which
    may be the archive's root or its single top-level folder. ManifestError if it has no plugin.toml."""
    archive = Path(archive).resolve()
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()[:24]
    dest = cache_dir() / f"{archive.name.split('.')[0]}-{digest}"
    if not dest.is_dir():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=dest.parent))
        try:
            _extract(archive, tmp)
            os.replace(tmp, dest)
        except (tarfile.TarError, zipfile.BadZipFile, OSError) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise ManifestError(archive.name, f"{archive}: cannot unpack: {exc}") from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    if (dest / MANIFEST_NAME).is_file():
        return dest
    subdirs = [p for p in dest.iterdir() if p.is_dir()]
    if len(subdirs) == 1 and (subdirs[0] / MANIFEST_NAME).is_file():
        return subdirs[0]
    raise ManifestError(
        archive.name, f"{archive}: no {MANIFEST_NAME} at its root or in its single top folder"
    )
