"""Peak memory of one call, on CPU (resident set, Linux) or CUDA (allocator statistics).

On CPU the kernel's high-water mark of the resident set is reset before the call and
read after it; glibc is told to return large blocks to the system at once, so memory
freed by an earlier call is not silently reused (which would hide a later peak).
"""

import ctypes
import gc
import os

import torch

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_libc = None


def _prepare_glibc():
    global _libc
    if _libc is not None:
        return _libc
    try:
        _libc = ctypes.CDLL('libc.so.6')
        # Fixed thresholds switch off glibc's adaptive ones, which would keep freed
        # memory resident and make later measurements read low.
        _libc.mallopt(_M_MMAP_THRESHOLD, 64 * 1024)
        _libc.mallopt(_M_TRIM_THRESHOLD, 64 * 1024)
    except OSError:
        _libc = False
    return _libc


def _status_kib(field):
    with open('/proc/self/status') as status:
        for line in status:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise OSError(f'{field} not in /proc/self/status')


def cpu_memory_supported():
    """Whether :func:`peak_memory_bytes` can measure on CPU here (Linux with glibc)."""
    return bool(_prepare_glibc()) and os.path.exists('/proc/self/clear_refs')


def peak_memory_bytes(call, device):
    """Run ``call()`` once and return the extra peak memory it used, in bytes.

    Args:
        call: callable with no arguments.
        device: ``torch.device``; CUDA devices read the caching allocator's peak,
            CPU reads the resident set.

    Returns:
        int bytes, or None where it cannot be measured (CPU off Linux/glibc).
    """
    gc.collect()
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        call()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    if not cpu_memory_supported():
        call()
        return None
    _libc.malloc_trim(0)
    with open('/proc/self/clear_refs', 'w') as clear_refs:
        clear_refs.write('5')  # resets VmHWM to the current resident set
    before = _status_kib('VmRSS')
    call()
    return max(0, _status_kib('VmHWM') - before) * 1024
