"""The on-disk spool: records survive reopening, a torn tail is cut off, the size cap holds."""

from __future__ import annotations

import logging
import os

import pytest

from infersight_collector.spool import Record, Spool, SpoolFull, encode


def test_records_survive_reopening_in_order(tmp_path, span_batch):
    records = [Record(f"t{i}", span_batch(i + 1)) for i in range(3)]
    spool = Spool(str(tmp_path), max_bytes=1 << 24)
    spool.append(records[:2])
    spool.append(records[2:])
    spool.close()
    reopened = Spool(str(tmp_path), max_bytes=1 << 24)
    assert reopened.records == 3 and reopened.bytes == spool.bytes
    got = list(reopened)
    assert [r.token for r in got] == ["t0", "t1", "t2"]
    assert all(a.batch.equals(b.batch) for a, b in zip(got, records))


@pytest.mark.parametrize("damage", ["torn", "flipped"])
def test_a_damaged_tail_is_truncated_with_a_warning(tmp_path, span_batch, caplog, damage):
    spool = Spool(str(tmp_path), max_bytes=1 << 24)
    spool.append([Record("good", span_batch(4))])
    spool.close()
    (segment,) = [tmp_path / n for n in os.listdir(tmp_path)]
    good_size = segment.stat().st_size
    last = encode(Record("last", span_batch(4)))
    with open(segment, "ab") as f:
        if damage == "torn":  # a write cut short by a crash
            f.write(last[: len(last) // 2])
        else:  # a complete record whose bytes changed on disk
            f.write(last[:-1] + bytes([last[-1] ^ 0xFF]))
    with caplog.at_level(logging.WARNING, logger="infersight_collector.spool"):
        reopened = Spool(str(tmp_path), max_bytes=1 << 24)
    assert [r.token for r in reopened] == ["good"]
    assert segment.stat().st_size == good_size
    assert "dropping the last" in caplog.text


def test_append_past_the_cap_raises_and_writes_nothing(tmp_path, span_batch):
    one = Record("a", span_batch(10))
    spool = Spool(str(tmp_path), max_bytes=int(len(encode(one)) * 1.5))
    spool.append([one])
    with pytest.raises(SpoolFull):
        spool.append([Record("b", span_batch(10))])
    assert spool.records == 1 and [r.token for r in spool] == ["a"]


def test_segments_roll_over_and_drained_ones_are_deleted(tmp_path, span_batch):
    spool = Spool(str(tmp_path), max_bytes=1 << 24, segment_bytes=1)
    for i in range(3):
        spool.append([Record(f"t{i}", span_batch(2))])
    assert len(os.listdir(tmp_path)) == 3
    segment, records = spool.oldest()
    assert [r.token for r in records] == ["t0"]
    spool.remove(segment)
    assert spool.records == 2 and len(os.listdir(tmp_path)) == 2
