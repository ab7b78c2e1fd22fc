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


def write_bytes(path, data):
    """Write ``data`` (bytes) to ``path`` atomically, creating parent folders."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    try:
        with os.fdopen(handle, 'wb') as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


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
