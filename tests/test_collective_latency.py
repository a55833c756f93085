"""Collective latency as NCCL's own tuning model prices a ring (analysis/predict/comm.py RingLatency,
data/collectives.toml: NVIDIA/nccl src/graph/tuning.cc defaults), by hand."""
from __future__ import annotations

import pytest

from mlfootprint.analysis.predict import comm
from mlfootprint.analysis.predict.efficiency import efficiency_for
from mlfootprint.hardware.catalog import get_device

US = 1e-6


def test_a_small_all_reduce_runs_the_ll_protocol():
    nvlink = comm.ring_latency(True)
    # 8 bytes all-reduced over 8 GPUs: 2·(8-1) = 14 ring steps. LL: 6.6 + 14 × 0.6 = 15.0 µs; LL128: 14 + 14 × 1.9 =
    # 40.6 µs; Simple: 8.4 + 14 × 3.4 = 56.0 µs (the bytes are negligible at 240 GB/s)
    t = nvlink.time(8 * 14 / 8, 240e9, 14)
    assert t == pytest.approx(15.0 * US, rel=1e-3)
    # across nodes, LL's 2.7 µs per step: 6.6 + 14 × 2.7 = 44.4 µs
    assert comm.ring_latency(False).time(14.0, 25e9, 14) == pytest.approx(44.4 * US, rel=1e-3)


def test_a_large_all_reduce_runs_at_the_bus_bandwidth():
    nvlink = comm.ring_latency(True)
    nbytes = 2 * 7 / 8 * 25_165_824  # a 24 MiB buffer over 8 ranks: 44,040,192 bytes sent per rank
    rate = 300e9 * 0.8  # A100 NVLink per direction × the network factor
    simple = 8.4 * US + 14 * 3.4 * US + nbytes / rate
    ll128 = 14.0 * US + 14 * 1.9 * US + nbytes / (rate * 0.92)
    ll = 6.6 * US + 14 * 0.6 * US + nbytes / (rate * 0.5)
    assert nvlink.time(nbytes, rate, 14) == pytest.approx(min(simple, ll128, ll))
    assert min(simple, ll128, ll) == simple  # 239.5 µs against LL128's 240.1 and LL's 382
    assert comm.transfer_time(nbytes, 300e9, 0.8, 14, nvlink) == pytest.approx(simple)


def test_a_latency_given_with_efficiency_is_a_flat_latency_per_step():
    dev = get_device("a100-80gb")
    default = efficiency_for(dev, None)
    assert isinstance(comm.link_latency(default, True), comm.RingLatency)
    given = efficiency_for(dev, "collective_latency_intra_s=1e-5")
    assert comm.link_latency(given, True) == 1e-5
    assert isinstance(comm.link_latency(given, False), comm.RingLatency)  # the other link keeps NCCL's model
    # flat: bytes / (bw × factor) + steps × latency
    assert comm.transfer_time(2.4e8, 300e9, 0.8, 14, 1e-5) == pytest.approx(1e-3 + 14e-5)
    # an all-to-all waits the Simple protocol's latency per peer: 7 peers × 3.4 µs inside a node
    assert comm.all_to_all_time(0.0 + 1e-9, 8, 8, 300e9, 25e9, 0.8, comm.ring_latency(True)) == \
        pytest.approx(7 * 3.4 * US, rel=1e-3)
