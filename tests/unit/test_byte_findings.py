"""`infinitic-py check` accounts for the byte cap and the count-bounded prefetch (pure)."""

from __future__ import annotations

from infinitic_py.limits import byte_findings

MIB = 1024 * 1024


def test_defaults_are_ok_and_name_both_parts() -> None:
    (finding,) = byte_findings(2000, 256 * MIB, service="Email")
    assert finding.level == "ok"
    assert "max_buffered_bytes 256 MiB" in finding.message and "2000" in finding.message


def test_a_lowered_byte_cap_with_a_large_prefetch_warns_with_a_fix() -> None:
    (finding,) = byte_findings(2000, 32 * MIB)
    assert finding.level == "warn"
    assert any("receiver_queue_size <= 6" in s for s in finding.suggestions)
    assert byte_findings(4, 32 * MIB)[0].level == "ok"
