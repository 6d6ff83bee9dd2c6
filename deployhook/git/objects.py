"""Answer "is this object surely not here?" from a git directory's files, no git process.

A push's new commit is usually not in the checkout yet; knowing that from the object
database spares the ``git merge-base`` that would only say "not an ancestor".  Only a
sure "absent" is answered: a loose object or a pack index naming it, alternates, a
pack index of another version, a SHA-256 repository or any read error give "maybe",
and the caller asks git.  Loose objects are looked at before the packs, so a ``gc``
packing and pruning meanwhile cannot make a present object look absent.
"""

from __future__ import annotations

import mmap
import re
from pathlib import Path

_SHA1 = re.compile(r"^[0-9a-f]{40}$")
_IDX_V2 = b"\377tOc\0\0\0\2"
_FANOUT = 8  # offset of the 256 big-endian counts
_NAMES = _FANOUT + 256 * 4  # offset of the sorted 20-byte object names


def surely_absent(git_dir: Path, sha: str) -> bool:
    """True only when the object ``sha`` (40 hex digits) is in no loose object and no
    pack of ``git_dir`` and the repository borrows from no other (alternates)."""
    objects = git_dir / "objects"
    if not _SHA1.match(sha) or not (objects / "pack").is_dir() \
            or (objects / "info" / "alternates").exists():
        return False  # a gitfile (a linked work tree), or objects borrowed from elsewhere
    try:
        if (objects / sha[:2] / sha[2:]).exists():
            return False
        indexes = sorted((objects / "pack").glob("*.idx"))
        return all(not _in_index(index, bytes.fromhex(sha)) for index in indexes)
    except (OSError, ValueError):
        return False


def _in_index(index: Path, name: bytes) -> bool:
    """True when the version-2 pack index ``index`` lists ``name``.

    Raises:
        ValueError: it is not a version-2 index, or is cut short.
        OSError: it cannot be read (a repack removed it meanwhile).
    """
    with open(index, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as idx:
        if idx[:_FANOUT] != _IDX_V2 or len(idx) < _NAMES:
            raise ValueError(f"{index} is not a version 2 pack index")
        first = name[0]
        low = _count(idx, first - 1) if first else 0
        high = _count(idx, first)
        if len(idx) < _NAMES + 20 * high:
            raise ValueError(f"{index} is cut short")
        while low < high:  # binary search among the names starting with that byte
            middle = (low + high) // 2
            found = idx[_NAMES + 20 * middle:_NAMES + 20 * middle + 20]
            if found == name:
                return True
            if found < name:
                low = middle + 1
            else:
                high = middle
        return False


def _count(idx: mmap.mmap, byte: int) -> int:
    """How many names in the index start with a byte <= ``byte`` (its fan-out entry)."""
    return int.from_bytes(idx[_FANOUT + 4 * byte:_FANOUT + 4 * byte + 4], "big")
