"""The copy under staging (``jobs.stage.copy``): the kernel copies (copy_file_range, else sendfile, else a
buffer), and the checksum is taken from what landed in the destination.

The cross-filesystem case is real, not faked: /dev/shm is a tmpfs and the test's directory is not, and on
this kernel copy_file_range between them is refused with EXDEV, as it is from a parallel filesystem to a node's
SSD, so the copy goes on by sendfile.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import xxhash

from clusterdeck.jobs.checksum import FAST
from clusterdeck.jobs.stage.copy import CHUNK, Mismatch, Throttle, _KernelCopy, copy_verified

SIZE = 2 * CHUNK + 12345  # two full chunks and a ragged tail


@pytest.fixture
def payload() -> bytes:
    return os.urandom(SIZE)


@pytest.fixture
def shm_file(payload: bytes) -> Iterator[Path]:
    if not Path("/dev/shm").is_dir():
        pytest.fail("/dev/shm is missing: the cross-filesystem copy has nowhere to start from")
    path = Path(f"/dev/shm/clusterdeck-test-{os.getpid()}.tar")
    path.write_bytes(payload)
    yield path
    path.unlink(missing_ok=True)


def copy(src: Path, dest: Path, want: str, size: int = SIZE) -> list[int]:
    seen: list[int] = []
    copy_verified(
        src, dest, size=size, digest=(FAST, want), progress=seen.append, stop=threading.Event(), throttle=Throttle(0)
    )
    return seen


def kernel_ways(src: Path, dest: Path) -> list[str]:
    """The ways a _KernelCopy of ``src`` to ``dest`` has left after its first chunk (at the end of the file,
    a copy_file_range that copies nothing hands over to sendfile, which confirms the end)."""
    with open(src, "rb", buffering=0) as a, open(dest, "wb", buffering=0) as b:
        kernel = _KernelCopy(a.fileno(), b.fileno(), bytearray(CHUNK))
        assert kernel.chunk(CHUNK) == CHUNK
        ways = [way.__name__ for way in kernel.ways]
        while kernel.chunk(CHUNK):
            pass
    assert dest.read_bytes() == src.read_bytes()
    return ways


def test_a_copy_on_one_filesystem_is_whole_and_verified(tmp_path: Path, payload: bytes) -> None:
    src = tmp_path / "a.tar"
    src.write_bytes(payload)
    seen = copy(src, tmp_path / "b.tar", xxhash.xxh3_128_hexdigest(payload))
    assert (tmp_path / "b.tar").read_bytes() == payload
    assert sum(seen) == SIZE and len(seen) == 3  # progress a chunk at a time
    assert not list(tmp_path.glob("*.tmp-*"))
    assert kernel_ways(src, tmp_path / "c.tar") == ["_range", "_sendfile", "_buffered"]


def test_a_copy_between_filesystems_goes_on_by_sendfile(tmp_path: Path, shm_file: Path, payload: bytes) -> None:
    copy(shm_file, tmp_path / "b.tar", xxhash.xxh3_128_hexdigest(payload))
    assert (tmp_path / "b.tar").read_bytes() == payload
    assert kernel_ways(shm_file, tmp_path / "c.tar") == ["_sendfile", "_buffered"]  # EXDEV: no copy_file_range


def test_the_buffered_way_copies_the_same_bytes(tmp_path: Path, payload: bytes) -> None:
    src = tmp_path / "a.tar"
    src.write_bytes(payload)
    with open(src, "rb", buffering=0) as a, open(tmp_path / "b.tar", "wb", buffering=0) as b:
        kernel = _KernelCopy(a.fileno(), b.fileno(), bytearray(CHUNK))
        kernel.ways = [kernel._buffered]  # what is left where neither call is offered
        assert [kernel.chunk(CHUNK) for _ in range(4)] == [CHUNK, CHUNK, 12345, 0]
    assert (tmp_path / "b.tar").read_bytes() == payload


def test_a_source_that_differs_from_the_index_leaves_nothing(tmp_path: Path, payload: bytes) -> None:
    src = tmp_path / "a.tar"
    src.write_bytes(payload)
    with pytest.raises(Mismatch, match=r"a\.tar does not match its index"):
        copy(src, tmp_path / "b.tar", xxhash.xxh3_128_hexdigest(payload[:-1] + b"x"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar"]
