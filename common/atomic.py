"""Atomic file writing: a reader sees the old file or the complete new one, never half.

Every file is written to a temporary name in the same folder, flushed to disk, then
renamed over the target (``os.replace`` is atomic on POSIX and Windows), so a run
killed midway leaves no truncated result, data set or checkpoint behind.
"""

import io
import json
import os
import pathlib
import tempfile

import numpy as np

TEMPORARY_SUFFIX = '.tmp'


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path, data):
    """Write ``data`` (bytes) to ``path`` atomically, creating parent folders.

    The file gets the permissions the umask gives a new file (``mkstemp`` alone would
    make it private to its owner).
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        prefix=f'.{path.name}.', suffix=TEMPORARY_SUFFIX, dir=path.parent
    )
    try:
        os.fchmod(handle, 0o666 & ~_umask())
        with os.fdopen(handle, 'wb') as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def remove_stale_temporaries(folder):
    """Delete what writes killed midway left in ``folder`` (``.NAME.xxxx.tmp`` files).

    Call it where no other process writes into ``folder`` at the same time.

    Returns:
        int, the number of files removed.
    """
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    for path in folder.glob(f'.*{TEMPORARY_SUFFIX}'):
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    return removed


def save_npy(path, array):
    """Save one array as ``.npy`` atomically."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    write_bytes(path, buffer.getvalue())


def save_npz(path, **arrays):
    """Save named arrays as ``.npz`` atomically."""
    buffer = io.BytesIO()
    np.savez(buffer, **{name: np.asarray(value) for name, value in arrays.items()})
    write_bytes(path, buffer.getvalue())


def save_json(path, value):
    """Save a JSON-serialisable value, indented, atomically."""
    write_bytes(path, (json.dumps(value, indent=2, sort_keys=True) + '\n').encode())


def save_torch(path, value):
    """Save with ``torch.save`` atomically (checkpoints)."""
    import torch

    buffer = io.BytesIO()
    torch.save(value, buffer)
    write_bytes(path, buffer.getvalue())
