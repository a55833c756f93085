"""Energy meters: RAPL on a fake powercap tree, NVML through a stand-in module,
the modeled meter, auto_meter's fallback rules and SafeMeter's failure handling.
Everything runs on fake clocks; nothing here needs a GPU or RAPL."""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from mlfootprint.core.errors import UserError
from mlfootprint.measure.energy import (
    EnergyMeter,
    EnergyReading,
    MeterError,
    MeterUnavailable,
    ModeledMeter,
    NvmlMeter,
    RaplMeter,
    SafeMeter,
    auto_meter,
    available_meters,
)
from mlfootprint.measure.energy import rapl as rapl_mod


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


# --------------------------------------------------------------------------- RAPL
BIG_RANGE = 262143328850  # a common max_energy_range_uj


def _zone(root: Path, rel: str, name: str, energy_uj: int, max_range: int = BIG_RANGE) -> Path:
    d = root / rel
    d.mkdir(parents=True, exist_ok=True)
    (d / "name").write_text(name + "\n")
    (d / "energy_uj").write_text(f"{energy_uj}\n")
    (d / "max_energy_range_uj").write_text(f"{max_range}\n")
    return d


def _set(zone_dir: Path, energy_uj: int) -> None:
    (zone_dir / "energy_uj").write_text(f"{energy_uj}\n")


@pytest.fixture
def rapl_tree(tmp_path: Path) -> dict[str, Path]:
    """Two packages, each with a core sub-zone; package 0 also has dram; a psys zone; an mmio duplicate."""
    root = tmp_path / "powercap"
    root.mkdir()
    (root / "intel-rapl").mkdir()  # the control type directory, not a zone
    z = {
        "root": root,
        "pkg0": _zone(root, "intel-rapl:0", "package-0", 1_000_000),
        "core0": _zone(root, "intel-rapl:0:0", "core", 500_000),
        "dram0": _zone(root, "intel-rapl:0:1", "dram", 2_000_000),
        "pkg1": _zone(root, "intel-rapl:1", "package-1", 3_000_000),
        "psys": _zone(root, "intel-rapl:2", "psys", 9_000_000),
        "mmio": _zone(root, "intel-rapl-mmio:0", "package-0", 7_000_000),
    }
    # package 1's core sub-zone only nested inside its package directory, as sysfs may show it
    z["core1"] = _zone(root, "intel-rapl:1/intel-rapl:1:0", "core", 100)
    return z


def test_rapl_sums_packages_and_dram(rapl_tree):
    clock = FakeClock()
    m = RaplMeter(rapl_tree["root"], poll_interval_s=None, clock=clock)
    assert m.provenance == "measured"
    assert m.method == "RAPL powercap package+dram"
    assert [z.domain for z in m.zones] == ["package-0", "dram-0", "package-1"]
    m.start()
    clock.advance(10.0)
    _set(rapl_tree["pkg0"], 1_000_000 + 150_000_000)  # +150 J
    _set(rapl_tree["dram0"], 2_000_000 + 20_000_000)  # +20 J
    _set(rapl_tree["pkg1"], 3_000_000 + 130_000_000)  # +130 J
    _set(rapl_tree["core0"], 500_000 + 100_000_000)  # inside package-0: not added
    _set(rapl_tree["core1"], 100 + 90_000_000)
    _set(rapl_tree["psys"], 9_000_000 + 999_000_000)  # overlaps packages: not added
    _set(rapl_tree["mmio"], 7_000_000 + 150_000_000)  # duplicate interface: not added
    r = m.stop()
    assert isinstance(r, EnergyReading)
    assert r.energy_j == pytest.approx(300.0)
    assert r.by_domain == pytest.approx({"package-0": 150.0, "dram-0": 20.0, "package-1": 130.0})
    assert r.elapsed_s == pytest.approx(10.0)
    assert r.provenance == "measured"
    assert r.mean_power_w == pytest.approx(30.0)
    skipped = next(n for n in r.notes if n.startswith("zones not added"))
    assert "'core'" in skipped and "'psys'" in skipped
    d = r.to_dict()
    assert d["energy_j"] == pytest.approx(300.0) and d["by_domain_j"]["dram-0"] == pytest.approx(20.0)


def test_rapl_counter_wrap(rapl_tree):
    clock = FakeClock()
    _set(rapl_tree["pkg0"], BIG_RANGE - 5_000_000)  # 5 J before the wrap
    m = RaplMeter(rapl_tree["root"], poll_interval_s=None, clock=clock)
    m.start()
    clock.advance(30.0)
    _set(rapl_tree["pkg0"], 7_000_000)  # wrapped, then 7 J more
    r = m.read()
    assert r.by_domain["package-0"] == pytest.approx(12.0)
    assert r.by_domain["package-1"] == 0.0
    assert any("wrap-around" in n for n in r.notes)
    assert not any("may have been missed" in n for n in r.notes)


def test_rapl_poll_catches_each_wrap(rapl_tree):
    """Two wraps over a run are both counted when poll() runs between them."""
    clock = FakeClock()
    small = 100_000_000  # a 100 J counter, to keep the numbers readable
    _zone(rapl_tree["root"], "intel-rapl:0", "package-0", 90_000_000, max_range=small)
    m = RaplMeter(rapl_tree["root"], poll_interval_s=None, clock=clock, wrap_check_power_w=0)
    m.start()
    for value in (40_000_000, 80_000_000, 10_000_000, 60_000_000):  # +50, +40, +30, +50
        clock.advance(1.0)
        _set(rapl_tree["pkg0"], value)
        m.poll()
    assert m.stop().by_domain["package-0"] == pytest.approx(170.0)


def test_rapl_warns_when_reads_are_too_far_apart(rapl_tree):
    clock = FakeClock()
    m = RaplMeter(rapl_tree["root"], poll_interval_s=None, clock=clock, wrap_check_power_w=500)
    m.start()
    clock.advance(BIG_RANGE / 1e6 / 500 + 10)  # longer than a wrap takes at 500 W
    r = m.read()
    assert any("may have been missed" in n and "poll()" in n for n in r.notes)


def test_rapl_unreadable_counter_is_unavailable_with_fix(rapl_tree, monkeypatch):
    real = rapl_mod._read_text

    def deny(path):
        if path.endswith("energy_uj") and not path.endswith("max_energy_range_uj"):
            raise PermissionError(13, "Permission denied", path)
        return real(path)

    monkeypatch.setattr(rapl_mod, "_read_text", deny)
    with pytest.raises(MeterUnavailable) as info:
        RaplMeter(rapl_tree["root"], poll_interval_s=None)
    reason = info.value.reason
    assert "permission denied" in reason
    assert "energy_uj" in reason and "chmod a+r" in reason and "root" in reason


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can read any file")
def test_rapl_unreadable_counter_real_permissions(rapl_tree):
    (rapl_tree["pkg1"] / "energy_uj").chmod(0)
    with pytest.raises(MeterUnavailable, match="chmod a\\+r"):
        RaplMeter(rapl_tree["root"], poll_interval_s=None)


def test_rapl_missing_interface(tmp_path):
    with pytest.raises(MeterUnavailable, match="RAPL"):
        RaplMeter(tmp_path / "nope")
    with pytest.raises(MeterUnavailable, match="no RAPL zones"):
        RaplMeter(tmp_path)


def test_rapl_without_dram_says_so(tmp_path):
    _zone(tmp_path, "intel-rapl:0", "package-0", 0)
    _zone(tmp_path, "intel-rapl:0:0", "core", 0)
    m = RaplMeter(tmp_path, poll_interval_s=None, clock=FakeClock())
    assert m.method == "RAPL powercap package"
    m.start()
    assert any("DRAM energy is not included" in n for n in m.stop().notes)


def test_rapl_background_poll_thread(rapl_tree):
    m = RaplMeter(rapl_tree["root"], poll_interval_s=0.01)
    m.start()
    _set(rapl_tree["pkg0"], 1_000_000 + 4_000_000)
    time.sleep(0.05)
    r = m.stop()
    assert r.by_domain["package-0"] == pytest.approx(4.0)
    assert m._thread is None


# --------------------------------------------------------------------------- NVML
class FakeNVMLError(Exception):
    pass


class FakeNotSupported(FakeNVMLError):
    def __str__(self) -> str:
        return "Not Supported"


def make_nvml(energy_mj: list[int] | None = None, power_mw: list[float] | None = None,
              counter_supported: list[bool] | None = None, init_error: bool = False):
    """A stand-in for the pynvml module; mutate ``state`` to move the counters."""
    n = len(energy_mj if energy_mj is not None else power_mw or [])
    state = SimpleNamespace(
        energy_mj=list(energy_mj or [0] * n),
        power_mw=list(power_mw or [0.0] * n),
        supported=list(counter_supported or [True] * n),
        inits=0,
        shutdowns=0,
        fail_energy=False,
    )

    def nvmlInit():
        if init_error:
            raise FakeNVMLError("Driver Not Loaded")
        state.inits += 1

    def nvmlShutdown():
        state.shutdowns += 1

    def nvmlDeviceGetTotalEnergyConsumption(h):
        if not state.supported[h]:
            raise FakeNotSupported()
        if state.fail_energy:
            raise FakeNVMLError("GPU is lost")
        return state.energy_mj[h]

    mod = SimpleNamespace(
        NVMLError=FakeNVMLError,
        nvmlInit=nvmlInit,
        nvmlShutdown=nvmlShutdown,
        nvmlDeviceGetCount=lambda: n,
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetName=lambda h: b"Fake GPU 80GB",
        nvmlDeviceGetTotalEnergyConsumption=nvmlDeviceGetTotalEnergyConsumption,
        nvmlDeviceGetPowerUsage=lambda h: state.power_mw[h],
    )
    return mod, state


def test_nvml_counter_two_gpus():
    nvml, state = make_nvml(energy_mj=[5_000_000, 9_000_000])
    clock = FakeClock()
    m = NvmlMeter(nvml=nvml, clock=clock, env={})
    assert m.method == "NVML total energy counter"
    assert m.provenance == "measured"
    m.start()
    clock.advance(2.0)
    state.energy_mj[0] += 600_000  # 600 J
    state.energy_mj[1] += 450_500  # 450.5 J
    r = m.stop()
    assert r.by_domain == pytest.approx({"gpu0": 600.0, "gpu1": 450.5})
    assert r.energy_j == pytest.approx(1050.5)
    assert r.elapsed_s == pytest.approx(2.0)
    assert r.provenance == "measured" and r.method == "NVML total energy counter"
    assert not any("sampl" in n for n in r.notes)
    assert any("Fake GPU 80GB" in n for n in r.notes)
    m.close()
    m.close()
    assert state.shutdowns == 1


def test_nvml_falls_back_to_power_sampling():
    nvml, state = make_nvml(power_mw=[250_000.0], counter_supported=[False])
    clock = FakeClock()
    m = NvmlMeter(nvml=nvml, clock=clock, sample_interval_s=None, env={})
    assert "power sampling" in m.method
    m.start()  # first sample: 250 W
    for watts in (250.0, 300.0, 300.0):
        clock.advance(0.1)
        state.power_mw[0] = watts * 1000
        m._sample()
    clock.advance(0.1)
    r = m.read()  # one more sample at 300 W
    # trapezoids: 0.1*250 + 0.1*275 + 0.1*300 + 0.1*300
    assert r.energy_j == pytest.approx(25.0 + 27.5 + 30.0 + 30.0)
    assert r.elapsed_s == pytest.approx(0.4)
    assert r.provenance == "measured"
    assert "power sampling" in r.method
    note = next(n for n in r.notes if n.startswith("gpu0:"))
    assert "Not Supported" in note and "sampled power" in note


def test_nvml_constant_power_sampling_thread():
    nvml, _state = make_nvml(power_mw=[200_000.0], counter_supported=[False])
    m = NvmlMeter(nvml=nvml, sample_interval_s=0.01, env={})
    assert m.method == "NVML power sampling at 100 Hz"
    m.start()
    time.sleep(0.1)
    r = m.stop()
    assert r.energy_j == pytest.approx(200.0 * r.elapsed_s, rel=1e-9)
    assert m._thread is None


def test_nvml_mixed_counter_and_sampling():
    nvml, state = make_nvml(energy_mj=[0, 0], power_mw=[0.0, 100_000.0], counter_supported=[True, False])
    clock = FakeClock()
    m = NvmlMeter(nvml=nvml, clock=clock, sample_interval_s=None, env={})
    assert m.method.startswith("NVML total energy counter (gpu0), power sampling")
    m.start()
    clock.advance(3.0)
    state.energy_mj[0] = 900_000
    r = m.read()
    assert r.by_domain == pytest.approx({"gpu0": 900.0, "gpu1": 300.0})


def test_nvml_devices_and_cuda_visible_devices():
    nvml, state = make_nvml(energy_mj=[0, 0, 0, 0])
    m = NvmlMeter([2], nvml=nvml, env={})
    assert [g.domain for g in m.gpus] == ["gpu2"]
    m = NvmlMeter(nvml=nvml, env={"CUDA_VISIBLE_DEVICES": "3,1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"})
    assert [g.domain for g in m.gpus] == ["gpu3", "gpu1"]
    with pytest.raises(UserError, match="does not exist"):
        NvmlMeter([7], nvml=nvml, env={})
    with pytest.raises(MeterUnavailable, match="hides every GPU"):
        NvmlMeter(nvml=nvml, env={"CUDA_VISIBLE_DEVICES": ""})


def test_nvml_unavailable_reasons(monkeypatch):
    nvml, _ = make_nvml(energy_mj=[0], init_error=True)
    with pytest.raises(MeterUnavailable, match="Driver Not Loaded"):
        NvmlMeter(nvml=nvml, env={})
    nvml0, _ = make_nvml(energy_mj=[])
    with pytest.raises(MeterUnavailable, match="no NVIDIA GPU"):
        NvmlMeter(nvml=nvml0, env={})
    import sys

    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` fail
    with pytest.raises(MeterUnavailable) as info:
        NvmlMeter(env={})
    assert info.value.reason == "nvidia-ml-py is not installed: pip install 'mlfootprint[energy]'"


def test_nvml_counter_reset_is_an_error():
    nvml, state = make_nvml(energy_mj=[10_000])
    m = NvmlMeter(nvml=nvml, clock=FakeClock(), env={})
    m.start()
    state.energy_mj[0] = 5
    with pytest.raises(MeterError, match="backwards"):
        m.read()


# --------------------------------------------------------------------------- modeled
def test_modeled_meter_exact():
    clock = FakeClock()
    m = ModeledMeter(300.0, 0.5, devices=4, clock=clock)
    assert m.provenance == "modeled"
    assert m.method == "modeled: 4 × TDP 300 W × utilization 50% × elapsed time"
    m.start()
    clock.advance(10.0)
    r = m.stop()
    assert r.energy_j == pytest.approx(4 * 300.0 * 0.5 * 10.0)
    assert r.by_domain == pytest.approx({f"device{i}": 1500.0 for i in range(4)})
    assert r.provenance == "modeled"
    assert any("not measured" in n for n in r.notes)


def test_modeled_meter_callable_utilization():
    clock = FakeClock()
    utils = iter([0.0, 1.0, 1.0, 7.0])
    m = ModeledMeter(100.0, lambda: next(utils), clock=clock)
    m.start()  # 0.0
    clock.advance(2.0)
    m.poll()  # 1.0: trapezoid 0.5 * 100 W * 2 s = 100 J
    clock.advance(1.0)
    m.poll()  # 1.0: +100 J
    clock.advance(1.0)
    r = m.read()  # 7.0 clipped to 1.0: +100 J
    assert r.energy_j == pytest.approx(300.0)
    assert any("clipped" in n for n in r.notes)


@pytest.mark.parametrize("kwargs", [
    {"tdp_w": 0}, {"tdp_w": -5}, {"tdp_w": 100, "utilization": 1.5}, {"tdp_w": 100, "devices": 0},
])
def test_modeled_meter_rejects_bad_input(kwargs):
    with pytest.raises(UserError):
        ModeledMeter(**kwargs)


# --------------------------------------------------------------------------- auto_meter
def test_auto_meter_without_any_meter_raises(tmp_path):
    nvml, _ = make_nvml(energy_mj=[0], init_error=True)
    with pytest.raises(MeterUnavailable, match="fallback_tdp_w"):
        auto_meter("cuda", nvml=nvml, env={})
    with pytest.raises(MeterUnavailable, match="RAPL"):
        auto_meter("cpu", rapl_root=tmp_path)


def test_auto_meter_modeled_fallback_is_labelled(tmp_path):
    clock = FakeClock()
    m = auto_meter("cpu", fallback_tdp_w=65.0, fallback_utilization=0.5, rapl_root=tmp_path, clock=clock)
    assert isinstance(m, ModeledMeter) and m.provenance == "modeled"
    m.start()
    clock.advance(4.0)
    r = m.stop()
    assert r.energy_j == pytest.approx(130.0)
    assert r.provenance == "modeled"
    assert r.notes[0].startswith("modeled because: no RAPL zones")
    nvml, _ = make_nvml(energy_mj=[0], init_error=True)
    g = auto_meter("cuda:0", fallback_tdp_w=700, nvml=nvml, clock=clock, env={})
    g.start()
    assert g.read().notes[0].startswith("modeled because: NVML could not start")


def test_auto_meter_picks_measured_meters(rapl_tree):
    nvml, _ = make_nvml(energy_mj=[0, 0])
    m = auto_meter("cuda:1", fallback_tdp_w=700, nvml=nvml, env={"CUDA_VISIBLE_DEVICES": "0,1"})
    assert isinstance(m, NvmlMeter) and [g.domain for g in m.gpus] == ["gpu1"]
    assert isinstance(auto_meter("cpu", rapl_root=rapl_tree["root"]), RaplMeter)
    with pytest.raises(UserError):
        auto_meter("tpu-v9")
    with pytest.raises(MeterUnavailable, match="no energy meter for mps"):
        auto_meter("mps")


def test_available_meters_lists_reasons(rapl_tree):
    nvml, _ = make_nvml(energy_mj=[0], init_error=True)
    found = dict(available_meters(nvml=nvml, rapl_root=rapl_tree["root"], env={}))
    assert isinstance(found["nvml"], str) and "NVML could not start" in found["nvml"]
    assert isinstance(found["rapl"], RaplMeter)


# --------------------------------------------------------------------------- SafeMeter
class FlakyMeter(EnergyMeter):
    name = "flaky"
    provenance = "measured"
    method = "test counter"

    def __init__(self, fail_on: int) -> None:
        self.reads = 0
        self.fail_on = fail_on

    def start(self) -> None:
        self.reads = 0

    def read(self) -> EnergyReading:
        self.reads += 1
        if self.reads == self.fail_on:
            raise OSError("counter vanished")
        return EnergyReading(10.0 * self.reads, {"d0": 10.0 * self.reads}, float(self.reads),
                             "measured", self.method, [])

    def stop(self) -> EnergyReading:
        return self.read()


def test_safe_meter_keeps_energy_and_logs_once(caplog):
    clock = FakeClock()
    m = SafeMeter(FlakyMeter(fail_on=3), clock=clock)
    with caplog.at_level(logging.WARNING, logger="mlfootprint.energy"):
        m.start()
        clock.advance(1.0)
        assert m.read().energy_j == 10.0
        clock.advance(1.0)
        assert m.read().energy_j == 20.0
        clock.advance(1.0)
        r3 = m.read()  # the inner meter raises here
        clock.advance(1.0)
        r4 = m.read()
        m.poll()
        final = m.stop()
    for r in (r3, r4, final):
        assert r.energy_j is None
        assert r.partial_energy_j == 20.0
        assert r.by_domain == {"d0": 20.0}
        assert r.failed_at_s == pytest.approx(3.0)
        assert any(n.startswith("meter failed at 3.000 s: OSError: counter vanished") for n in r.notes)
    assert r4.elapsed_s == pytest.approx(4.0)
    assert r3.to_dict()["partial_energy_j"] == 20.0
    records = [rec for rec in caplog.records if rec.name == "mlfootprint.energy"]
    assert len(records) == 1
    assert m.failed and isinstance(m.error, OSError)


def test_safe_meter_survives_failing_nvml_and_sampling_thread():
    nvml, state = make_nvml(energy_mj=[0])
    clock = FakeClock()
    m = SafeMeter(NvmlMeter(nvml=nvml, clock=clock, env={}), clock=clock)
    m.start()
    clock.advance(1.0)
    state.energy_mj[0] = 250_000
    assert m.read().energy_j == pytest.approx(250.0)
    state.fail_energy = True
    r = m.stop()
    assert r.energy_j is None and r.partial_energy_j == pytest.approx(250.0)

    # a failure inside the sampling thread surfaces at the next read, not as a crash
    nvml2, state2 = make_nvml(power_mw=[100_000.0], counter_supported=[False])
    inner = NvmlMeter(nvml=nvml2, sample_interval_s=0.005, env={})
    safe = SafeMeter(inner)
    safe.start()
    state2.power_mw = None  # subscripting None raises TypeError in the thread
    deadline = time.monotonic() + 2.0
    while inner._thread_error is None and time.monotonic() < deadline:
        time.sleep(0.005)
    r = safe.stop()
    assert r.energy_j is None
    assert any("power sampling failed" in n for n in r.notes)
