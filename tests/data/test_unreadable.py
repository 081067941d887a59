"""A folder the user cannot read is named as unreadable, not reported as empty (run as another user: root reads all)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from vitlight.data.readers.folder import class_folders, list_images

NOBODY = 65534


def as_nobody(call) -> str:
    """`call()` in a forked child that dropped root for user nobody; its error message or 'ok'."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run a child as another user; as a user, chmod 0 would do without it")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no pytest machinery past this point
        os.close(read)
        try:
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            call()
            message = "ok"
        except Exception as error:
            message = str(error)
        os.write(write, message.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as stream:
        message = stream.read()
    os.waitpid(pid, 0)
    return message


@pytest.fixture()
def shared(tmp_path: Path) -> Iterator[Path]:
    """A folder that user nobody can reach (pytest's own tmp folders are root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="vitlight-unreadable-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    for path in folder.rglob("*"):
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)
    shutil.rmtree(folder)


def test_an_unreadable_class_folder_is_named(shared: Path):
    tmp_path = shared
    (tmp_path / "train" / "cat").mkdir(parents=True)
    (tmp_path / "train" / "cat" / "1.png").write_bytes(b"")
    (tmp_path / "train" / "cat").chmod(0)
    message = as_nobody(lambda: list_images(tmp_path / "train" / "cat"))
    assert f"cannot read the folder '{tmp_path / 'train' / 'cat'}': Permission denied" in message


def test_an_unreadable_split_folder_is_named(shared: Path):
    tmp_path = shared
    (tmp_path / "train" / "cat").mkdir(parents=True)
    (tmp_path / "train").chmod(0)
    message = as_nobody(lambda: class_folders(tmp_path / "train"))
    assert "cannot read the folder" in message and "permission denied" in message
