"""`benchmarks/sequential.py softmax`: plain and blocked full-softmax losses agree and are both timed."""

from __future__ import annotations

import json

from benchmarks import sequential
from recsys.models import losses


def test_softmax_benchmark_compares_the_two_forms(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(losses, "BLOCK_ELEMENTS", 300)  # the 40 x 50 logits take 7 blocks
    out = tmp_path / "softmax.json"
    argv = ["softmax", "--items", "50", "90", "--rows", "40", "--dim", "8", "--repeats", "1", "--out", str(out)]
    assert sequential.main(argv) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["n_items"] for r in rows] == [50, 90]
    for row in rows:
        assert row["err_max"] < 1e-5
        assert row["plain_fwd_bwd_s"] > 0 and row["blocked_fwd_bwd_s"] > 0
        assert row["speedup"] == row["plain_fwd_bwd_s"] / row["blocked_fwd_bwd_s"]
    assert "blocked_fwd_bwd_s" in capsys.readouterr().out
