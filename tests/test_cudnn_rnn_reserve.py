"""cuDNN's LSTM reserve space: the rule the GPU target books, against every shape measured on an H200.

benchmarks/cudnn_rnn_reserve.py read the reserve tensor that autograd saves for `_cudnn_rnn_backward` on an
NVIDIA H200 (torch 2.11.0+cu130, cuDNN 9.19.0, 2026-12-04); its output is kept in
benchmarks/results/h200-2026-12-04/cudnn_rnn_reserve.json. The trace books, per layer and direction, the share
`lstm_reserve_bytes` (5·T·B·H elements) and already keeps each layer's output but the last for the next layer;
cuDNN adds 256 bytes per call. Together they must give every measured LSTM reserve, byte for byte.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlfootprint.trace.gpu_rnn import lstm_reserve_bytes

MEASURED = Path(__file__).parent.parent / "benchmarks" / "results" / "h200-2026-12-04" / "cudnn_rnn_reserve.json"
ELEMENT_BYTES = {"float32": 4, "bfloat16": 2}


def _lstm_rows() -> list[dict]:
    rows = json.loads(MEASURED.read_text())["records"]
    return [r for r in rows if r["mode"] == "LSTM" and r["proj"] == 0]


def test_the_measurement_covers_the_shapes_the_rule_claims() -> None:
    rows = _lstm_rows()
    assert len(rows) == 96
    assert {r["dtype"] for r in rows} == {"float32", "bfloat16"}
    assert {(r["layers"], r["bidirectional"]) for r in rows} == {(1, False), (1, True), (2, False), (2, True)}


@pytest.mark.parametrize("row", _lstm_rows(), ids=lambda r: "{dtype}-L{layers}-{bidirectional}-T{seq}-B{batch}-I{input}-H{hidden}".format(**r))
def test_the_lstm_reserve_rule_gives_every_measured_size(row: dict) -> None:
    e = ELEMENT_BYTES[row["dtype"]]
    layers, dirs = row["layers"], 2 if row["bidirectional"] else 1
    steps, batch, hidden = row["seq"], row["batch"], row["hidden"]
    shares = layers * dirs * lstm_reserve_bytes(hidden, steps, batch, e)
    layer_outputs = (layers - 1) * dirs * steps * batch * hidden * e  # kept by the trace as the next layer's input
    assert shares + layer_outputs + 256 == row["reserve_bytes"]


def test_the_rule_is_not_claimed_for_projections() -> None:
    # proj_size > 0 (a 2-layer LSTM, H 1024, projection 256: 8 sizes measured) is 22.7% above the rule: the data
    # file says it is not covered.
    rows = [r for r in json.loads(MEASURED.read_text())["records"] if r["mode"] == "LSTM" and r["proj"]]
    assert rows
    for r in rows:
        e = ELEMENT_BYTES[r["dtype"]]
        rule = 2 * lstm_reserve_bytes(r["hidden"], r["seq"], r["batch"], e) + r["seq"] * r["batch"] * r["hidden"] * e + 256
        assert 1.22 < r["reserve_bytes"] / rule < 1.23
