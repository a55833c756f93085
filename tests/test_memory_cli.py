"""The memory verb from the command line: bad input is one line and exit 2; good input shows the components."""
from __future__ import annotations

import json

import pytest

TINY = "tests/data/configs/tiny-llama"


def run_in_process(capsys, *args: str) -> tuple[int, str, str]:
    """The same CLI entry point without a new interpreter (each costs seconds of torch import)."""
    from mlfootprint.cli import main

    code = main(["memory", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


BAD = [  # the cases: one line on stderr, exit status 2
    (("--tp", "3"), "--tp 3 does not divide the model's 4 attention heads"),
    (("--zero", "3", "--dp", "0"), "--dp must be a positive whole number, got 0"),
    (("--batch", "0"), "--batch must be a positive whole number, got 0"),
    (("--batch", "-4"), "--batch must be a positive whole number, got -4"),
    (("--optimizer", "adamx"), "unknown --optimizer 'adamx'"),
    (("--precision", "fp64"), "unknown --precision 'fp64'"),
]

MORE_BAD = [
    (("--device-memory", "80XB"), "malformed --device-memory '80XB'"),
    (("--max-batch",), "--max-batch needs a device memory size"),
    (("--mode", "train", "--offload", "cpu"), "--offload cpu needs ZeRO"),
    (("--batch", "6", "--dp", "4"), "--batch 6 cannot be split over --dp 4"),
    (("--mode", "train", "--pp", "3"), "--pp 3 exceeds the model's 2 layers"),
    (("--ep", "2"), "--ep 2 needs a mixture-of-experts model"),
    # predict and analyze refused it; memory sized a bf16 run on a device without bf16
    (("--mode", "train", "--hardware", "v100-32gb", "--precision", "bf16-mixed"),
     "--precision bf16-mixed needs a bf16 peak: NVIDIA V100 SXM2 32GB (v100-32gb) has no bf16 peak"),
]


@pytest.mark.parametrize("args,needle", BAD)
def test_bad_input_is_one_line_and_exit_2(args: tuple[str, ...], needle: str) -> None:
    from conftest import run_cli

    proc = run_cli("memory", TINY, *args)
    err = proc.stderr
    assert proc.returncode == 2, (needle, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mlfootprint: error: "), err
    assert needle in lines[0], (needle, lines[0])
    assert "Traceback" not in err


@pytest.mark.parametrize("args,needle", MORE_BAD)
def test_more_bad_input(capsys, args: tuple[str, ...], needle: str) -> None:
    code, _, err = run_in_process(capsys, TINY, *args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and needle in lines[0], err


def test_memory_json_components_and_fit(capsys) -> None:
    code, out, err = run_in_process(capsys, TINY, "--mode", "train", "--batch", "4", "--seq", "64", "--device-memory",
                                    "1GB", "--other-bytes", "0", "--max-batch", "--format", "json")
    assert code == 0, err
    rep = json.loads(out)
    mem = rep["memory"]
    assert mem["device_bytes"] == 10**9 and mem["fits"] is True and mem["other_bytes"] == 0
    # tiny-llama: 125,248 fp32 parameters → weights and gradients 500,992 bytes, AdamW states 1,001,984
    assert (mem["weights_bytes"], mem["gradients_bytes"], mem["optimizer_bytes"]) == (500_992, 500_992, 1_001_984)
    assert mem["peak_bytes"] == sum(mem["at_peak"].values())
    assert mem["max_batch"] >= 4 and mem["max_micro_batch"] == mem["max_batch"]
    assert rep["provenance"]["memory.max_batch"] == "counted"
    assert rep["provenance"]["memory.device_bytes"] == "assumed"


def test_memory_table_shows_components_and_fits(capsys) -> None:
    code, out, err = run_in_process(capsys, TINY, "--mode", "generate", "--seq", "32", "--gen-tokens", "16",
                                    "--device-memory", "0.001GB", "--format", "md")
    assert code == 0, err
    for word in ("| Weights |", "| KV cache |", "| Peak memory |", "DOES NOT FIT", "**Does not fit:"):
        assert word in out
    assert "does not fit in device memory" in err  # said on stderr too: a file or a pipe would hide it
    code, out, err = run_in_process(capsys, TINY, "--mode", "generate", "--seq", "32", "--gen-tokens", "16",
                                    "--device-memory", "0.001GB", "--format", "md", "--details")
    for word in ("weights_bytes", "kv_cache_bytes", "peak_bytes", "fits"):
        assert word in out


@pytest.mark.parametrize("size,expected", [("80GB", 80 * 10**9), ("80GiB", 80 * 2**30), ("8e10", 8 * 10**10),
                                           ("1.5 gb", 1_500_000_000), ("1024", 1024)])
def test_size_parsing(size: str, expected: int) -> None:
    from mlfootprint.core.units import parse_size

    assert parse_size(size, "--device-memory") == expected
