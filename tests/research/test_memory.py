"""research.memory reads this process's peak RSS (and restarts it) and TF's allocator."""
import sys

import pytest

from research import memory, runtime

MiB = 2 ** 20
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def _touch(megabytes):
    """A bytearray of that size with every page written (so it is resident)."""
    block = bytearray(megabytes * MiB)
    block[::4096] = b"\x01" * len(block[::4096])
    return block


@linux_only
def test_peak_rss_follows_a_large_block_and_restarts():
    assert memory.reset_peak_rss()
    now = memory.rss_bytes()
    before = memory.peak_rss_bytes()  # read second: the process may grow in between
    assert 10 * MiB < now <= before  # bytes, not kilobytes
    block = _touch(96)
    assert memory.peak_rss_bytes() >= before + 90 * MiB
    del block
    assert memory.reset_peak_rss()
    # Restarted from the RSS after the block was freed: below the peak that held it.
    assert memory.peak_rss_bytes() < before + 90 * MiB


def test_peak_rss_without_proc_falls_back_to_getrusage(monkeypatch):
    monkeypatch.setattr(memory, "_STATUS", "/nonexistent/status")
    assert memory.rss_bytes() is None
    assert memory.peak_rss_bytes() > 10 * MiB  # ru_maxrss, scaled to bytes


def test_allocator_stats_count_live_tensors_where_tf_keeps_them():
    import tensorflow as tf

    stats = memory.allocator_stats()
    if not runtime.onednn_state()["enabled"]:  # TF keeps no CPU statistics without oneDNN
        assert stats is None and not memory.reset_allocator_peak()
        return
    assert memory.reset_allocator_peak()
    before = memory.allocator_stats()
    tensor = tf.fill([16 * MiB // 4], 1.0)  # 16 MiB of float32
    during = memory.allocator_stats()
    assert during["current"] >= before["current"] + 16 * MiB
    del tensor
    assert memory.allocator_stats()["peak"] >= during["current"]
    assert memory.reset_allocator_peak()
    assert memory.allocator_stats()["peak"] < during["current"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim and /proc")
def test_release_free_heap_gives_back_freed_blocks_malloc_kept():
    import ctypes

    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    # 64 KB blocks come from the heap (below malloc's 128 KB mmap threshold); the last
    # one stays allocated, so the freed ones lie below a live block: malloc keeps them.
    blocks = [libc.malloc(64 * 1024) for _ in range(1600)]
    for block in blocks:
        ctypes.memset(block, 1, 64 * 1024)
    for block in blocks[:-1]:
        libc.free(block)
    before = memory.rss_bytes()
    assert memory.release_free_heap()
    assert memory.rss_bytes() < before - 64 * MiB  # of the 100 MiB freed
    libc.free(blocks[-1])
