import subprocess
import sys

import pytest

# Allocates, touches and frees a 64 MB buffer twice and prints the page faults of the second
# time: with freed memory kept, the second buffer reuses the first one's pages.
PROBE = """
import ctypes, resource, sys
from oppu.trainer.cpu_allocator import keep_freed_memory
print(keep_freed_memory() if sys.argv[1] == "keep" else "default")
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
size = 64 << 20
def touch_and_free():
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    libc.free(block)
touch_and_free()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
touch_and_free()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _second_allocation_faults(mode: str) -> tuple[str, int]:
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                          check=True)
    status, faults = done.stdout.split()
    return status, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_training_keeps_freed_memory_for_reuse_instead_of_faulting_it_in_again():
    pages = (64 << 20) // 4096
    status, faults = _second_allocation_faults("default")
    assert faults > pages // 2  # glibc mmaps a block this big anew each time
    status, faults = _second_allocation_faults("keep")
    assert status == "True"
    assert faults < pages // 20
