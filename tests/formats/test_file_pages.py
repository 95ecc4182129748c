"""Repacked tensors give their file pages back, and the mapping stays readable."""

import numpy as np
from tritium.core.formats.file_pages import release_file_pages


def _rss_file_kib() -> int:
    status = open("/proc/self/status").read()
    return int(status.split("RssFile:")[1].split()[0])


def test_release_drops_resident_pages_and_data_reads_back(tmp_path):
    path = tmp_path / "blob.bin"
    data = np.arange(64 << 20, dtype=np.uint8)  # 64 MiB
    data.tofile(path)
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    view = mm[4096: 4096 + (48 << 20)]
    assert int(view.astype(np.uint64).sum()) > 0  # touch every page: now resident
    before = _rss_file_kib()
    assert release_file_pages(view)
    after = _rss_file_kib()
    assert before - after > 40 * 1024  # most of the 48 MiB left RSS
    assert np.array_equal(view[:1000], data[4096:5096])  # still readable (from the page cache)


def test_arrays_without_a_mapping_are_left_alone():
    assert not release_file_pages(np.zeros(1 << 16, dtype=np.uint8))
