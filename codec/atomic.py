"""Atomic file writes: readers see the old file or the whole new one, never a part.

Every output of the package (models, audio, compressed files, token shards,
manifests) is written to a temporary file in the destination's folder and
renamed over the destination only once it is complete; on any failure,
Ctrl-C included, the temporary file is removed and the destination is left
as it was.

Outputs go only to regular files or new paths. A directory, device, FIFO or
socket at the destination is refused by name; a symbolic link is followed and
its target replaced (as ``cp`` does), so the link stays. A replaced file keeps
its permission bits. Temporary files carry the writer's process id; those of a
process that no longer runs (killed with ``kill -9``) are removed by the next
process that writes into the same folder.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from codec.errors import FormatError, OutputError

#: errno values of a write that fails for lack of room (reported as :class:`OutputError`).
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})
_TMP_SUFFIX = ".tmp"


def _default_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _kind(mode: int) -> str:
    """A person's name for the file type in ``mode`` (anything but a regular file)."""
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def output_target(path: str | Path) -> Path:
    """The file a write to ``path`` replaces: ``path`` with every symbolic link followed."""
    return Path(os.path.realpath(path))


def check_output(path: str | Path, inputs: Iterable[str | Path] = ()) -> Path:
    """Checks that ``path`` may be written; returns the file that will be replaced (links followed).

    Args:
        path: The destination.
        inputs: Files the command reads; the destination must be none of them
            (compared by device and inode, so also through links).

    Raises:
        OutputError: If the destination is a directory, device, FIFO or socket,
            its folder does not exist, or it is one of ``inputs``.
    """
    target = output_target(path)
    if not target.parent.is_dir():
        raise OutputError(f"cannot write {path}: folder {target.parent} does not exist")
    try:
        info = os.stat(target)
    except FileNotFoundError:
        return target
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise OutputError(f"cannot write {path}: it is {_kind(info.st_mode)}; give the path of a regular file")
    for source in inputs:
        with contextlib.suppress(OSError):
            if os.path.samestat(info, os.stat(source)):
                raise OutputError(f"output {path} is the input {source}; write to another file")
    return target


#: Name of a temporary file of this module: ``.{target name}.{pid}-{random}.tmp``.
_TEMPORARY = re.compile(r"^\..+\.(\d+)-[A-Za-z0-9_]+\.tmp$")
#: Folders already swept for stale temporary files by this process (one directory scan each).
_SWEPT: set[Path] = set()


def _running(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Removes the temporary files in ``folder`` of writers that no longer run; returns them.

    Only names of this module's pattern are touched, and only when their
    process id is not running: a concurrent writer's file is left alone.
    """
    removed = []
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            match = _TEMPORARY.match(entry.name)
            if match and not _running(int(match.group(1))):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


def _sweep_once(folder: Path) -> None:
    """:func:`remove_stale_temporaries` on the first write of this process into ``folder``.

    Once per folder, so that writing many files into one folder (token shards,
    cached teacher targets) costs one directory scan, not one per file.
    """
    if folder not in _SWEPT:
        remove_stale_temporaries(folder)
        _SWEPT.add(folder)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[str]:
    """Yields a temporary path next to ``path``'s target; renames it onto the target if the block succeeds.

    The file gets the permission bits of the file it replaces, or those a
    plain ``open(path, "w")`` would give a new file.

    Raises:
        OutputError: If the destination cannot be written (see :func:`check_output`),
            or the disk is full or read-only.
    """
    target = check_output(path)
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        mode = _default_mode()
    _sweep_once(target.parent)
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.{os.getpid()}-", suffix=_TMP_SUFFIX)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror} in {target.parent}") from None
    os.close(fd)
    try:
        try:
            yield tmp
        except OSError as e:
            if e.errno in _FULL_ERRNOS:
                raise OutputError(f"cannot write {path}: {e.strerror}") from None
            raise
        try:
            os.chmod(tmp, mode)  # after writing: some writers recreate the file with mode 0600
            os.replace(tmp, target)
        except OSError as e:
            raise OutputError(f"cannot write {path}: {e.strerror}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def atomic_write(path: str | Path, write: Callable[[str], object]) -> None:
    """Calls ``write(tmp_path)`` and then renames the result onto ``path`` (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        write(tmp)


def write_json(path: str | Path, data: object) -> None:
    """Writes ``data`` as indented JSON to ``path``, atomically."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2) + "\n"))


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """Writes one JSON object per line (UTF-8, non-ASCII kept) to ``path``, atomically and flushed to disk.

    ``rows`` may be a generator: it is consumed while writing.
    """

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
            f.flush()
            os.fsync(f.fileno())

    atomic_write(path, write)


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` of each non-blank line of ``path``, numbered from 1.

    Raises:
        FormatError: If a line is not a JSON object; the message names the file and line.
    """
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise FormatError(f"{path}:{number}: not valid JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise FormatError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
        yield number, row


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The JSON objects of the lines of ``path`` (blank lines skipped; see :func:`iter_jsonl`).

    Raises:
        FormatError: If a line is not a JSON object; the message names the file and line.
    """
    return [row for _, row in iter_jsonl(path)]
