"""The device catalog, calibration and the `hardware` verb."""
from __future__ import annotations

import json
import math
import re
import subprocess
from pathlib import Path

import pytest

from mlfootprint.core.datafiles import package_data_dir
from mlfootprint.core.errors import UserError
from mlfootprint.hardware.catalog import (
    PROVENANCES,
    Device,
    dtype_for_precision,
    get_device,
    load_devices,
    load_devices_file,
)

PACKAGE_FILE = package_data_dir("hardware") / "devices.toml"
EXPECTED_IDS = {
    "v100-32gb", "a100-40gb", "a100-80gb", "h100-sxm", "h100-hbm2e-500w", "h100-pcie", "h200", "b200", "l4", "l40s",
    "rtx-3090", "rtx-4090", "mi250x", "mi300x", "tpu-v4", "tpu-v5e", "tpu-v5p", "gaudi2",
}
GiB = 2**30


@pytest.fixture(autouse=True)
def isolated_user_dirs(tmp_path, monkeypatch):
    """No test sees the real ~/.config: user files go to a fresh folder."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("MLFOOTPRINT_HARDWARE_PATH", raising=False)
    return tmp_path / "config" / "mlfootprint" / "hardware"


def _user_file(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    p.write_text(text, encoding="utf-8")
    return p


# --------------------------------------------------------------------------- the package catalog


def test_catalog_has_every_device():
    assert set(load_devices()) == EXPECTED_IDS


@pytest.mark.parametrize(
    "device_id, dtype, expected",
    [
        ("a100-80gb", "bf16", 312e12),     # NVIDIA A100 datasheet: BF16 Tensor Core 312 (624 sparse)
        ("a100-40gb", "tf32", 156e12),     # NVIDIA A100 datasheet: TF32 156 (312 sparse)
        ("a100-80gb", "fp64", 19.5e12),    # NVIDIA A100 datasheet: FP64 Tensor Core 19.5
        ("v100-32gb", "fp16", 125e12),     # NVIDIA V100 datasheet (SXM2): Tensor 125
        ("h100-sxm", "bf16", 989.4e12),    # NVIDIA H100 whitepaper: H100 SXM5 dense BF16 989.4
        ("h100-sxm", "fp8", 1978.9e12),    # NVIDIA H100 whitepaper: H100 SXM5 dense FP8 1978.9
        ("h100-pcie", "bf16", 756.5e12),   # NVIDIA H100 datasheet (PCIe): 1,513* sparse, halved
        # TorchTitan's 500 W H100 96GB HBM2e: 'between SXM and NVL', no value; the midpoint of NVL's 1,671* sparse
        # halved (835.5) and SXM's 989.4
        ("h100-hbm2e-500w", "bf16", (835.5e12 + 989.4e12) / 2),
        ("h100-hbm2e-500w", "fp8", (1670.5e12 + 1978.9e12) / 2),  # NVL 3,341* halved, SXM 1978.9
        ("h200", "bf16", 989.5e12),        # NVIDIA H200 datasheet: 1,979* sparse, halved
        ("b200", "bf16", 2.25e15),         # NVIDIA HGX B200: 36 PFLOPS sparse per 8 GPUs → 2.25 dense each
        ("l4", "fp8", 242.5e12),           # NVIDIA L4 datasheet: 485* sparse, halved
        ("l40s", "bf16", 362.05e12),       # NVIDIA L40S datasheet: 362.05 | 733*
        ("rtx-4090", "fp16", 165.2e12),    # NVIDIA Ada whitepaper: FP16 tensor, FP32 accumulate, dense
        ("rtx-3090", "bf16", 71e12),       # NVIDIA GA102 whitepaper: BF16 tensor, FP32 accumulate, dense
        ("mi250x", "fp16", 383e12),        # AMD MI250X: 383 TFLOPS FP16/BF16
        ("mi300x", "bf16", 1307.4e12),     # AMD MI300X datasheet: 1307.4 dense (2614.9 sparse)
        ("tpu-v4", "bf16", 275e12),        # Google Cloud TPU v4 docs: 275 teraflops (bf16 or int8)
        ("tpu-v5e", "bf16", 197e12),       # Google Cloud TPU v5e docs: 197 TFLOPs
        ("tpu-v5p", "bf16", 459e12),       # Google Cloud TPU v5p docs: 459 TFLOPs
        ("gaudi2", "bf16", 432e12),        # Intel (Hot Chips 2024): Gaudi 2 peak BF16 432 TFLOPs
    ],
)
def test_peaks_match_datasheets(device_id, dtype, expected):
    assert get_device(device_id).peak_for(dtype) == pytest.approx(expected, rel=1e-12)


def test_memory_and_bandwidths_match_datasheets():
    a100 = get_device("a100-80gb")
    assert a100.memory_bytes == 80 * GiB                       # "80GB HBM2e" = 80 GiB (nvidia-smi 81920 MiB)
    assert a100.memory_bandwidth_bytes_per_s == 2039e9          # A100 80GB SXM datasheet: 2,039 GB/s
    assert a100.intra_node_bandwidth_bytes_per_s == 300e9       # NVLink 600 GB/s total → 300 per direction
    assert a100.inter_node_bandwidth_bytes_per_s == 25e9        # DGX A100: one 200 Gb/s HDR NIC per GPU
    h100 = get_device("h100-sxm")
    assert h100.memory_bandwidth_bytes_per_s == 3.35e12         # H100 SXM datasheet: 3.35 TB/s
    assert h100.inter_node_bandwidth_bytes_per_s == 50e9        # DGX H100: one 400 Gb/s NIC per GPU
    assert h100.tdp_w == 700 and h100.devices_per_node == 8
    # TorchTitan's Grand Teton H100 (benchmarks/llama3_h100_202412_torchtitan.md): 96GB HBM2e at 2.4 TB/s, 400 Gb/s
    # RDMA per GPU, 8 per host, the default 500 W power limit; its peak is assumed, and says so
    titan = get_device("h100-hbm2e-500w")
    assert titan.memory_bytes == 96 * GiB and titan.memory_bandwidth_bytes_per_s == 2.4e12
    assert titan.inter_node_bandwidth_bytes_per_s == 50e9 and titan.devices_per_node == 8 and titan.tdp_w == 500
    assert titan.source_of("peak_flops.bf16").startswith("assumed: TorchTitan")
    assert titan.source_of("memory_bandwidth_bytes_per_s").startswith("published: TorchTitan")
    assert get_device("h200").memory_bytes == 141 * GiB         # H200 datasheet: 141GB HBM3e
    assert get_device("tpu-v4").memory_bytes == 32 * GiB        # TPU v4 docs: 32 GiB, 1200 GBps
    assert get_device("tpu-v4").memory_bandwidth_bytes_per_s == 1200e9
    assert get_device("mi300x").memory_bandwidth_bytes_per_s == 5.3e12  # MI300X datasheet: 5.3 TB/s


def test_every_value_has_a_source_and_a_date():
    devices = load_devices_file(PACKAGE_FILE)
    assert set(devices) == EXPECTED_IDS
    fields = ("memory_bytes", "memory_bandwidth_bytes_per_s", "intra_node_bandwidth_bytes_per_s",
              "inter_node_bandwidth_bytes_per_s", "devices_per_node", "tdp_w", "price_usd_per_hour",
              "per_op_overhead_s")
    for dev in devices.values():
        paths = [f"peak_flops.{d}" for d in dev.peak_flops]
        paths += [f for f in fields if getattr(dev, f) is not None]
        assert set(dev.sources) == set(paths), dev.id
        for path in paths:
            src = dev.sources[path]
            assert src["source"].strip(), (dev.id, path)
            assert re.fullmatch(r"\d{4}(-\d{2}(-\d{2})?)?", src["date"]), (dev.id, path)
            assert src["provenance"] in PROVENANCES, (dev.id, path)


def test_the_package_file_is_strict(tmp_path):
    # A value without a source is refused in the package catalog (strict mode).
    from mlfootprint.hardware import catalog

    bad = tmp_path / "devices.toml"
    bad.write_text('[devices.x]\nname="X"\nvendor="V"\nkind="gpu"\nmemory = 1\n', encoding="utf-8")
    with pytest.raises(UserError, match="needs a source"):
        catalog._apply_file(bad, {}, {}, strict=True)


def test_no_sparse_figure_slipped_in():
    # Dense caps: each sparse figure is twice these.
    caps = {"h100-sxm": 1.0e15, "h100-hbm2e-500w": 1.0e15, "h200": 1.0e15, "h100-pcie": 8e14, "a100-80gb": 4e14, "a100-40gb": 4e14,
            "b200": 3e15, "l40s": 4e14, "l4": 1.3e14, "mi300x": 1.5e15, "rtx-4090": 2e14, "rtx-3090": 1e14}
    for device_id, cap in caps.items():
        assert get_device(device_id).peak_for("bf16") < cap, device_id
    # Wherever a note mentions sparsity, the value is the dense one (or the halved sparse one).
    for dev in load_devices_file(PACKAGE_FILE).values():
        for path, src in dev.sources.items():
            note = src.get("note", "")
            if "sparsity" in note:
                assert "dense" in note or "halved" in note, (dev.id, path, note)


def test_dtypes_a_device_does_not_have_are_absent():
    assert "fp8" not in get_device("a100-80gb").peak_flops
    assert "fp8" not in get_device("v100-32gb").peak_flops
    assert "bf16" not in get_device("v100-32gb").peak_flops
    assert get_device("tpu-v4").dtypes == ("bf16", "int8")


def test_peak_for_a_missing_dtype_names_the_ones_it_has():
    with pytest.raises(UserError) as info:
        get_device("a100-80gb").peak_for("fp8")
    msg = str(info.value)
    assert "has no fp8 peak" in msg and "it has: fp64, fp32, tf32, bf16, fp16, int8" in msg
    assert "\n" not in msg


def test_peak_for_accepts_torch_style_names():
    dev = get_device("h100-sxm")
    assert dev.peak_for("bfloat16") == dev.peak_for("bf16") == dev.peak_for("torch.bfloat16")
    assert dev.peak_for("float16") == dev.peak_for("fp16")
    with pytest.raises(UserError, match="unknown dtype 'fp9'"):
        dev.peak_for("fp9")


def test_dtype_for_precision():
    assert dtype_for_precision("fp32") == "fp32"
    assert dtype_for_precision("bf16") == dtype_for_precision("bf16-mixed") == "bf16"
    assert dtype_for_precision("fp16") == dtype_for_precision("fp16-mixed") == "fp16"
    assert dtype_for_precision("fp8-mixed") == "fp8"
    with pytest.raises(UserError, match="Did you mean: bf16-mixed"):
        dtype_for_precision("bf16-mix")


def test_ids_are_case_insensitive_and_unknown_ids_suggest():
    assert get_device("A100-80GB").id == "a100-80gb"
    assert get_device(" h100_sxm ").id == "h100-sxm"
    with pytest.raises(UserError) as info:
        get_device("h100")
    assert "unknown hardware 'h100'" in str(info.value)
    assert "h100-sxm" in str(info.value) and "h100-pcie" in str(info.value)
    with pytest.raises(UserError, match="Did you mean: a100-80gb"):
        get_device("a100-80")


def test_to_dict_is_json_ready_with_units_in_keys():
    d = get_device("h100-sxm").to_dict()
    text = json.dumps(d)
    back = json.loads(text)
    assert back["peak_flop_per_s"]["bf16"] == 989.4e12
    assert back["memory_bytes"] == 80 * GiB
    assert back["memory_bandwidth_bytes_per_s"] == 3.35e12
    assert back["sources"]["peak_flop_per_s.bf16"]["date"] == "2022-03"
    assert back["sources"]["memory_bytes"]["provenance"] == "published"
    assert "per_op_overhead_s" not in back  # unknown figures are absent, never zero
    assert back["origin"].endswith("devices.toml")


# --------------------------------------------------------------------------- user files


def test_user_file_overrides_part_of_a_device_with_base(isolated_user_dirs):
    path = _user_file(isolated_user_dirs, "ours.toml", """
[devices.h100-sxm]
base = "h100-sxm"
price = { value = 2.1, unit = "USD/h", source = "our contract", date = "2026-01" }

[devices.H100-IB200]
base = "h100-sxm"
name = "H100 with one 200 Gb/s NIC per GPU"
inter_node_bandwidth = { value = 200, unit = "Gb/s", source = "our cluster", date = "2026-01" }
[devices.H100-IB200.peak_flops]
fp8 = { value = 1500, unit = "TFLOP/s", source = "our measurement", date = "2026-02", provenance = "measured" }
""")
    h100 = get_device("h100-sxm")
    assert h100.price_usd_per_hour == 2.1
    assert h100.sources["price_usd_per_hour"]["source"] == "our contract"
    assert h100.peak_for("bf16") == 989.4e12  # untouched fields keep their figures and sources
    assert "whitepaper" in h100.sources["peak_flops.bf16"]["source"]
    assert h100.origin == str(path)

    mine = get_device("h100-ib200")
    assert mine.name == "H100 with one 200 Gb/s NIC per GPU"
    assert mine.inter_node_bandwidth_bytes_per_s == 25e9
    assert mine.peak_for("fp8") == 1500e12 and mine.peak_for("bf16") == 989.4e12
    assert mine.sources["peak_flops.fp8"]["provenance"] == "measured"
    assert mine.price_usd_per_hour == 2.1  # based on the already-overridden h100-sxm


def test_user_file_without_base_replaces_the_device(isolated_user_dirs):
    _user_file(isolated_user_dirs, "l4.toml", """
[devices.l4]
name = "Our L4"
vendor = "NVIDIA"
kind = "gpu"
memory = 24e9
memory_bandwidth = { value = 300, unit = "GB/s" }
tdp = 70
[devices.l4.peak_flops]
fp16 = 100e12
""")
    l4 = get_device("l4")
    assert l4.dtypes == ("fp16",) and l4.memory_bytes == 24_000_000_000
    assert l4.price_usd_per_hour is None
    src = l4.sources["tdp_w"]
    assert src["provenance"] == "assumed" and "l4.toml" in src["source"]
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", src["date"])


def test_later_user_folders_override_earlier_ones(isolated_user_dirs, tmp_path, monkeypatch):
    env_dir = tmp_path / "env"
    _user_file(env_dir, "a.toml", '[devices.l4]\nbase = "l4"\nprice = 1.0\n')
    monkeypatch.setenv("MLFOOTPRINT_HARDWARE_PATH", str(env_dir))
    assert get_device("l4").price_usd_per_hour == 1.0
    _user_file(isolated_user_dirs, "b.toml", '[devices.l4]\nbase = "l4"\nprice = 2.0\n')
    assert get_device("l4").price_usd_per_hour == 2.0


@pytest.mark.parametrize(
    "text, problem",
    [
        ("[devices.x\nname = 1", "malformed"),
        ('[devices.h100-sxm]\nbase = "h100-sxm"\nmemroy = 1\n', "unknown field 'memroy'. Did you mean: memory"),
        ('[devices.h100-sxm]\nbase = "h100-sxm"\nmemory = { value = 80, unit = "GB/s" }\n', "not a unit of this field"),
        ('[devices.h100-sxm]\nbase = "h100-sxm"\ntdp = { value = "700" }\n', "needs a numeric 'value'"),
        ('[devices.h100-sxm]\nbase = "h100-sxm"\ntdp = -5\n', "positive finite"),
        ('[devices.x]\nbase = "h100-sxn"\n', "base 'h100-sxn' is not a known device. Did you mean: h100-sxm"),
        ('[devices.x]\nname = "X"\nvendor = "V"\nkind = "gpu"\n', "missing memory, memory_bandwidth, peak_flops"),
        ('[devices.x]\nbase = "l4"\nkind = "fpga"\n', "kind 'fpga' is not one of"),
        ('[devices.x]\nbase = "l4"\n[devices.x.peak_flops]\nfp4 = 1\n', "unknown dtype 'fp4'"),
        ('[devices.x]\nbase = "l4"\ntdp = { value = 1, ref = "nowhere" }\n', "cites ref 'nowhere'"),
        ('[devices.x]\nbase = "l4"\ntdp = { value = 1, date = "last year" }\n', "date must be"),
        ('[devices."My GPU"]\nbase = "l4"\n', "must be lowercase"),
        ('devices = 3\n', "'devices' must be a table"),
        ('[devices.L4]\nbase = "l4"\n[devices.l4]\nbase = "l4"\n', "defined twice in this file"),
    ],
)
def test_a_malformed_user_file_is_a_one_line_error_naming_it(isolated_user_dirs, text, problem):
    path = _user_file(isolated_user_dirs, "broken.toml", text)
    with pytest.raises(UserError) as info:
        load_devices()
    msg = str(info.value)
    assert str(path) in msg and problem in msg
    assert "\n" not in msg


# --------------------------------------------------------------------------- calibration


def test_this_without_a_profile_says_how_to_make_one():
    with pytest.raises(UserError, match=r"run: mf\.hardware_calibrate\(\)"):
        get_device("this")
    from mlfootprint.measure.calibrate import load_profile

    with pytest.raises(UserError, match=r"run: mf\.hardware_calibrate\(\)"):
        load_profile()


def test_calibrate_measures_and_the_profile_round_trips(isolated_user_dirs):
    from mlfootprint.measure.calibrate import calibrate, load_profile, save_profile

    steps = []
    dev = calibrate(budget_s=1.0, progress=lambda message, fraction: steps.append((message, fraction)))
    assert isinstance(dev, Device) and dev.id == "this" and dev.kind == "cpu"
    assert {"fp32", "bf16"} <= set(dev.peak_flops)
    figures = [*dev.peak_flops.values(), dev.memory_bandwidth_bytes_per_s, dev.per_op_overhead_s, dev.memory_bytes]
    assert all(math.isfinite(v) and v > 0 for v in figures)
    assert dev.per_op_overhead_s < 0.1
    for path in ("peak_flops.fp32", "memory_bandwidth_bytes_per_s", "per_op_overhead_s", "memory_bytes"):
        assert dev.sources[path]["provenance"] == "measured"
    assert steps and steps[-1] == ("done", 1.0)
    assert all(0.0 <= f <= 1.0 for _, f in steps)

    saved = save_profile(dev)
    assert saved == isolated_user_dirs / "this.toml"
    back = get_device("this")
    for field in ("peak_flops", "memory_bytes", "memory_bandwidth_bytes_per_s", "per_op_overhead_s",
                  "devices_per_node", "name", "vendor", "kind"):
        assert getattr(back, field) == getattr(dev, field), field
    assert back.sources["peak_flops.fp32"] == dev.sources["peak_flops.fp32"]
    assert load_profile().peak_flops == dev.peak_flops
    assert "this" in load_devices()

    # Saving again replaces our own profile, and nothing else is written there.
    save_profile(dev)
    assert sorted(p.name for p in isolated_user_dirs.iterdir()) == ["this.toml"]


def test_save_profile_never_clobbers_a_file_it_did_not_write(isolated_user_dirs):
    from mlfootprint.measure.calibrate import save_profile

    mine = _user_file(isolated_user_dirs, "this.toml", '[devices.this]\nbase = "l4"\nname = "hand-written"\n')
    before = mine.read_text()
    with pytest.raises(UserError, match="refusing to overwrite"):
        save_profile(get_device("l4"))
    assert mine.read_text() == before


def test_calibrate_rejects_a_bad_budget_or_device():
    import torch

    from mlfootprint.measure.calibrate import calibrate

    with pytest.raises(UserError, match="positive"):
        calibrate(budget_s=0)
    with pytest.raises(UserError, match="not a device"):
        calibrate(device="tpu", budget_s=1)
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA device"):
            calibrate(device="cuda", budget_s=1)


# --------------------------------------------------------------------------- the verb


def _run_cli(*args: str, env_home: Path) -> subprocess.CompletedProcess:
    from conftest import run_cli

    return run_cli("hardware", *args, env={"XDG_CONFIG_HOME": str(env_home), "MLFOOTPRINT_HARDWARE_PATH": None})


def test_cli_show_unknown_id_is_one_line_exit_2(tmp_path):
    r = _run_cli("show", "nope", env_home=tmp_path)
    assert r.returncode == 2
    assert r.stdout == ""
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown hardware 'nope'" in lines[0]


def test_cli_list_json_and_show_md(tmp_path, capsys):
    from mlfootprint.cli import main

    assert main(["hardware", "list", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "mlfootprint.report/1" and doc["verb"] == "hardware list"
    devices = doc["catalog"]["devices"]
    assert set(devices) == EXPECTED_IDS and doc["catalog"]["count"] == len(EXPECTED_IDS)
    a100 = devices["a100-80gb"]
    assert a100["peak_flop_per_s"]["bf16"] == 312e12

    out = tmp_path / "a100.md"
    assert main(["hardware", "show", "a100-80gb", "-o", str(out)]) == 0
    text = out.read_text()
    assert "| peak bf16 (dense) | 312 TFLOP/s | published |" in text and "2021-06" in text


def test_cli_list_table_and_show_table(capsys, monkeypatch):
    from mlfootprint.cli import main

    monkeypatch.setenv("COLUMNS", "100")
    assert main(["hardware", "show", "h100-sxm"]) == 0
    assert max(len(line) for line in capsys.readouterr().out.splitlines()) <= 100  # the terminal's width
    monkeypatch.setenv("COLUMNS", "160")  # wide enough for the sources on one line each
    assert main(["hardware", "list"]) == 0
    out = capsys.readouterr().out
    assert "h100-sxm" in out and "989.4" in out and "dense" in out
    assert main(["hardware", "show", "TPU-V4"]) == 0
    out = capsys.readouterr().out
    assert "275 TFLOP/s" in out and "Google Cloud TPU documentation" in out
    assert "fp8" not in out


def test_cli_calibrate_no_save_json(capsys, isolated_user_dirs):
    from mlfootprint.cli import main

    assert main(["hardware", "calibrate", "--budget-s", "0.5", "--no-save", "--format", "json"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    device = doc["catalog"]["devices"]["this"]
    assert device["id"] == "this" and "saved_to" not in doc["catalog"]
    assert device["peak_flop_per_s"]["fp32"] > 0
    assert "not saved" in captured.err
    assert not (isolated_user_dirs / "this.toml").exists()


def test_cli_bad_budget_is_a_user_error(capsys):
    from mlfootprint.cli import main

    assert main(["hardware", "calibrate", "--budget-s", "-1", "--no-save"]) == 2
    assert "positive" in capsys.readouterr().err
