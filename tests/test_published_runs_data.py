"""The published-runs dataset (benchmarks/data/published_runs.toml) and its runner (benchmarks/published_runs.py).

The data: every run parses, names its source (URL, date, split) and quotes it, resolves its model and hardware,
and its layout multiplies out to its device count; the split rule holds (a source is in one split; the sources
the pinned predict_step claims use are calibration); where a source prints two figures of one run, the row's
figure agrees with the other one (a transcription check). The runner: the conversions against hand-derived
values, the summary against hand-computed medians, a layout feature the predictor lacks reported and never
dropped, and one small row run end to end, the shared-trace path giving the step time mlfootprint.predict gives.
"""
from __future__ import annotations

import datetime
import importlib.util
import io
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "data" / "published_runs.toml"
CLAIMS = ROOT / "src" / "mlfootprint" / "papers" / "data" / "claims.toml"


def _runner():
    spec = importlib.util.spec_from_file_location("published_runs", ROOT / "benchmarks" / "published_runs.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["published_runs"] = mod
    spec.loader.exec_module(mod)
    return mod


pr = _runner()
DS = pr.load(DATA)
RUNS = {r["id"]: r for r in DS.runs}


def test_the_file_parses_with_enough_runs_and_unique_ids():
    assert len(DS.runs) >= 40
    assert len(RUNS) == len(DS.runs), "run ids must be unique"
    validation = [r for r in DS.runs if r["split"] == "validation"]
    assert len(validation) >= 25
    # the issue asks for validation rows from sources other than the calibration ones: several of them
    assert len({r["source"] for r in validation}) >= 5


REQUIRED = {"id": str, "split": str, "source": str, "model": str, "hardware": str, "devices": int, "global_batch": int,
            "micro_batch": int, "seq": int, "tp": int, "pp": int, "vp": int, "cp": int, "ep": int, "dp": int, "zero": int,
            "recompute": str, "precision": str, "framework": str, "published": dict, "passage": str, "assumed": list}


@pytest.mark.parametrize("run", DS.runs, ids=lambda r: r["id"])
def test_every_run_is_complete_and_its_layout_multiplies_out(run):
    for key, typ in REQUIRED.items():
        assert isinstance(run.get(key), typ), f"{run['id']}: {key} missing or not {typ.__name__}"
    assert run["split"] in pr.SPLITS
    assert run["precision"] in pr.PRECISIONS
    assert run["recompute"] in ("none", "selective", "selective-op", "full")
    assert run["zero"] in (0, 1, 2, 3)
    assert len(run["passage"]) >= 30
    assert run["dp"] * run["tp"] * run["pp"] * run["cp"] == run["devices"]
    assert run["dp"] % run["ep"] == 0, "expert-parallel groups are carved out of the data-parallel devices"
    assert run["global_batch"] % run["dp"] == 0
    assert (run["global_batch"] // run["dp"]) % run["micro_batch"] == 0
    # WORKING WEIGHTS: Megatron-LM (Float16Module), its descendants and TorchTitan (FSDP2 param_dtype bf16) keep
    # 16-bit weights; the flash-attention scripts autocast over fp32 ones; a framework not public states none
    expected = ("fp32" if run["source"] == "flashattention2-2023" else None if run["source"] == "llama3-2024"
                else "16-bit")
    assert run.get("mixed_weights") == expected, run["id"]
    if run["vp"] > 1:
        # Megatron's interleaved schedule: each stage's layers split evenly into vp chunks, and the micro-batches
        # of a replica come in whole rounds of pp (schedules.py: "number of microbatches ... divisible by pp")
        assert (run["global_batch"] // run["dp"] // run["micro_batch"]) % run["pp"] == 0, run["id"]
    pub = run["published"]
    assert pub["kind"] in pr.KINDS and pub["value"] > 0
    if pub["kind"] == "tflops_per_device":
        assert pub.get("formula") in pr.FORMULAS, f"{run['id']}: a TFLOP/s figure names its FLOP formula"
        if pub["formula"] == "counted":
            assert any("FLOPs" in a for a in run["assumed"]), "a counted FLOP basis is an assumption, said so"
    for feature in run.get("features", []):
        assert feature in ("torch.compile", "async-tp", "parallel-block", "sliding-window-attention", "comm-overlap",
                           "interleaved-schedule", "uneven-stages", "pp-comm-overlap", "fp8-params")


def test_every_source_has_url_date_and_split():
    for key, src in DS.sources.items():
        assert src["split"] in pr.SPLITS, key
        assert src["url"].startswith("https://"), key
        datetime.date.fromisoformat(src["date"])
        assert src["title"] and src["definitions"] and src["transcription"], key
    for run in DS.runs:
        assert run["source"] in DS.sources, run["id"]
        assert run["split"] == DS.sources[run["source"]]["split"], f"{run['id']}: a run carries its source's split"


def test_validation_sources_are_disjoint_from_calibration_and_from_the_pinned_claims():
    by_split = {s: {k for k, v in DS.sources.items() if v["split"] == s} for s in pr.SPLITS}
    assert not by_split["calibration"] & by_split["validation"]
    urls = {s: {DS.sources[k]["url"] for k in keys} for s, keys in by_split.items()}
    assert not urls["calibration"] & urls["validation"]
    # the sources the pinned predict_step claims use (NeMo 24.09 / DGX Cloud, TorchTitan) are calibration
    claims = tomllib.loads(CLAIMS.read_text())["claim"]
    claim_urls = {c["url"] for c in claims if c["kind"] == "predict_step"}
    assert claim_urls, "claims.toml has predict_step rows"
    for url in claim_urls:
        assert url not in urls["validation"], f"{url} informs pinned claims: it cannot be held out"
    assert "https://github.com/NVIDIA/dgxc-benchmarking" in urls["calibration"]
    assert "https://arxiv.org/abs/2410.06511" in urls["calibration"]
    # the held-out list: none of these is calibration
    held_out = ("2104.04473", "2205.05198", "2402.15627", "2407.21783", "2307.08691")
    assert not [u for u in urls["calibration"] if any(h in u for h in held_out)]
    assert all(any(h in u for u in urls["validation"]) for h in held_out)


def test_every_model_and_hardware_id_resolves():
    from mlfootprint.hardware.catalog import get_device
    from mlfootprint.models import resolve

    for key, m in DS.models.items():
        assert (DATA.parent / m["path"] / "config.json").is_file(), key
        assert m["source"], key
    facts = {}
    for run in DS.runs:
        ref = DS.model_ref(run)
        if ref not in facts:
            facts[ref] = resolve(ref).facts
        layers = facts[ref]["layers"]
        assert run["pp"] <= layers, f"{run['id']}: pp {run['pp']} > {layers} layers"
        assert facts[ref]["heads"] % run["tp"] == 0, f"{run['id']}: tp must divide the heads"
        get_device(run["hardware"])
    # a shipped config agrees with the table row it was transcribed from (heads | hidden | layers)
    for run in DS.runs:
        m = re.match(r"Table 1 row: [\d.]+ \| (\d+) \| (\d+) \| (\d+) \|", run["passage"])
        if run["source"] == "narayanan-2021":
            assert m, run["id"]
            f = facts[DS.model_ref(run)]
            assert (f["heads"], f["hidden"], f["layers"]) == tuple(map(int, m.groups())), run["id"]


def test_narayanan_layouts_are_the_papers_run_script():
    # Megatron-LM examples/sc21/run_table_1.sh at de7dc40f88 (2021-08-10, "scripts for sc21"), one case per Table 1
    # row: TP, PP, MBS, GBS, --DDP-impl and --num-layers-per-virtual-pipeline-stage (layers per virtual stage)
    script = {"1.7b": (1, 1, 16, 512, "torch", None), "3.6b": (2, 1, 16, 512, "torch", None),
              "7.5b": (4, 1, 16, 512, "torch", None), "18.4b": (8, 1, 8, 1024, "torch", None),
              "39.1b": (8, 2, 4, 1536, "local", None), "76.1b": (8, 4, 2, 1792, "local", 5),
              "145.6b": (8, 8, 2, 2304, "local", 5), "310.1b": (8, 16, 1, 2160, "local", 3),
              "529.6b": (8, 35, 1, 2520, "local", 1), "1008b": (8, 64, 1, 3072, "local", None)}
    rows = {r["id"].split("-")[2]: r for r in DS.runs if r["source"] == "narayanan-2021"}
    assert sorted(rows) == sorted(script)
    for size, (tp, pp, mbs, gbs, ddp, per_chunk) in script.items():
        run = rows[size]
        layers = int(run["passage"].split(" | ")[3])
        vp = 1 if per_chunk is None else layers // pp // per_chunk  # 76.1B: 60 layers / 4 stages / 5 = 3 chunks
        assert (run["tp"], run["pp"], run["micro_batch"], run["global_batch"], run["vp"]) == (tp, pp, mbs, gbs, vp), size
        # torch DDP all-reduces bucket by bucket during the backward; Megatron's local DDP after it
        assert run["grad_reduce"] == ("overlap" if ddp == "torch" else "after-backward"), size
        assert run["recompute"] == "full" and run["precision"] == "fp16", size  # --checkpoint-activations, --fp16


def test_flashattention2_batches_are_the_repositorys_training_configs():
    # Dao-AILab/flash-attention training/configs/experiment/pile at 0251105a, for a GPU of 80 GB or more:
    # (global_batch_size, datamodule.batch_size, heads); optimizer adamw-zero = ZeroRedundancyOptimizer (ZeRO-1)
    configs = {"fa2-gpt3-1.3b-seq2048": (512, 8, 16),  # gpt3xl-flash.yaml
               "fa2-gpt3-1.3b-seq8192": (128, 4, 16),  # gpt3xl-flash-8k.yaml
               "fa2-gpt3-2.7b-seq2048": (512, 4, 20),  # gpt3-2.7B-flash-hdim128.yaml (head dimension 128)
               "fa2-gpt3-2.7b-seq8192": (128, 4, 32)}  # gpt3-2.7B-flash-8k.yaml
    from mlfootprint.models import resolve

    for rid, (gbs, mbs, heads) in configs.items():
        run = RUNS[rid]
        assert (run["global_batch"], run["micro_batch"], run["zero"], run["dp"]) == (gbs, mbs, 1, 8), rid
        assert resolve(DS.model_ref(run)).facts["heads"] == heads, rid
        assert run["recompute"] == "none" and run["mixed_weights"] == "fp32", rid  # Lightning bf16: autocast
        # flash_attn/models/gpt.py create_mlp_cls (fused_mlp: True) runs gelu_new as FusedMLP's "gelu_approx", the
        # tanh GELU in the autocast dtype; Hugging Face's gelu_new would run its pow in fp32 under CUDA autocast
        assert resolve(DS.model_ref(run)).hf_config["activation_function"] == "gelu_pytorch_tanh", rid


def test_llama3_layout_follows_the_papers_section_3_3_2():
    # "the first model chunk on the first stage has only the embedding, and the last model chunk on the last stage
    # has only output projection and loss calculation": one layer per chunk, so (126 + 2) / 16 = 8 virtual stages;
    # "our CP implementation adopts an all-gather based method": the K/V all-gather
    from mlfootprint.models import resolve
    from mlfootprint.workload import max_virtual_stages

    rows = [r for r in DS.runs if r["source"] == "llama3-2024"]
    assert len(rows) == 3
    for run in rows:
        layers = resolve(DS.model_ref(run)).facts["layers"]
        assert layers == 126 and run["pp"] == 16
        assert run["vp"] == (layers + 2) // run["pp"] == max_virtual_stages(layers, run["pp"]) == 8, run["id"]
        assert "has only the embedding" in run["passage"] and "interleaved-schedule" not in run.get("features", [])
        assert run.get("cp_comm", "ring") == ("all-gather" if run["cp"] > 1 else "ring"), run["id"]
        assert run["recompute"] == "none"  # Sec. 3.3.2: 8K sequences without activation checkpointing


def test_dgx_cloud_rows_run_their_recipes_configs():
    # dgxc-benchmarking's configs (llama3.1/llama3.1_*.yaml at 35a9aec, nemo_megatron/gpt3_175b_hydra.yaml at
    # 8f5cbb3): distributed_fused_adam with grad_sync_dtype bf16, ub_tp_comm_overlap on wherever TP > 1 (the 8B
    # config has TP 1 and ub_tp_comm_overlap false), no recomputation; the benchmark passes "compute" on
    rows = [r for r in DS.runs if r["source"] == "dgxc-nemo-24.09"]
    assert len(rows) == 9
    for run in rows:
        assert run["grad_reduce_dtype"] == "compute" and run["zero"] == 1 and run["recompute"] == "none", run["id"]
        assert ("comm-overlap" in run.get("features", [])) == (run["tp"] > 1), run["id"]
        assert any(a.startswith("the recipe's own config") for a in run["assumed"]), run["id"]
        wl, missing, _ = pr.workload_for(run, pr.workload_fields())
        assert wl.grad_reduce_dtype == "compute" and wl.tp_comm_overlap == (run["tp"] > 1) and not missing, run["id"]
        assert wl.tp_overlap == "userbuffers"
        # FP8 runs set fp8_params (configure.sh: +model.fp8_params=$FP8_ENABLED; gpt3_175b_hydra.yaml fp8_params:
        # true): FP8 primary weights, the fp8-params feature
        assert wl.fp8_weights == (run["precision"] == "fp8") == ("fp8-params" in run.get("features", [])), run["id"]


def test_megatron_bridge_rows_run_the_performance_scripts_of_their_table():
    # scripts/performance at Megatron-Bridge d83f5a0d9 (the commit adding the 25.09 table): grad_reduce_in_fp32
    # false in every config, the ds FP8 recipe by default (fp8_param_gather true), and the 70B and 405B recipes'
    # tp_comm_overlap with userbuffers
    rows = [r for r in DS.runs if r["source"] == "megatron-bridge-25.09"]
    assert len(rows) == 3
    for run in rows:
        wl, missing, _ = pr.workload_for(run, pr.workload_fields())
        assert not missing and wl.grad_reduce_dtype == "compute" and wl.fp8_weights, run["id"]
        assert wl.tp_comm_overlap == (run["tp"] > 1) and wl.tp_overlap == "userbuffers", run["id"]
        assert "d83f5a0d9" in run["assumed"][0], run["id"]


def test_runs_from_before_sequence_parallelism_run_without_it():
    # Megatron-LM's --sequence-parallel arrived on 2022-04-28 (cfd2e21607, with Korthikanti et al. 2022): the
    # Narayanan et al. runs (examples/sc21 at de7dc40f88, 2021) had none, and BLOOM's script passes none
    rows = [r for r in DS.runs if (r["source"] == "narayanan-2021" and r["tp"] > 1) or r["id"] == "bloom-176b-384"]
    assert len(rows) == 10  # nine Narayanan runs with TP > 1, and BLOOM
    for run in rows:
        wl, missing, _ = pr.workload_for(run, pr.workload_fields())
        assert wl.sequence_parallel is False and not wl.sequence_parallel_on, run["id"]
        assert run["assumed"][0].startswith("no sequence parallelism"), run["id"]


def test_runs_without_flash_attention_time_their_frameworks_own_attention():
    # Megatron-LM before FlashAttention (Narayanan et al. 2021, Korthikanti et al. 2022) and MegaScale's baseline,
    # Megatron-LM at 285068c8: the merge that adds FlashAttention behind --use-flash-attn, off by default, with
    # FlashAttention-2 one of MegaScale's own 'efficient operators' (section 3.3): Megatron's unfused core attention.
    # BLOOM's Megatron-DeepSpeed ran the same with ALiBi; transformers' BLOOM takes no attention function, so its
    # eager code is what is traced, and the row says so
    unfused = [r for r in DS.runs if r["source"] in ("narayanan-2021", "korthikanti-2022")
               or r.get("framework") == "Megatron-LM (commit 285068c8)"]
    assert len(unfused) == 10 + 8 + 9
    for run in unfused:
        wl, missing, _ = pr.workload_for(run, pr.workload_fields())
        assert wl.attention == "unfused" and not missing, run["id"]
        if run["source"] == "megascale-2024":  # the stored s² scores fit an 80 GB part only with SP on
            assert wl.sequence_parallel_on and any("--use-flash-attn" in a for a in run["assumed"]), run["id"]
    bloom = next(r for r in DS.runs if r["id"] == "bloom-176b-384")
    assert pr.workload_for(bloom, pr.workload_fields())[0].attention == "eager"
    assert any(a.startswith("attention eager") and "ALiBi" in a for a in bloom["assumed"])
    megascale_own = [r for r in DS.runs if r["source"] == "megascale-2024" and "MegaScale" in r["framework"]]
    assert len(megascale_own) == 8 and all(r.get("attention", "sdpa") == "sdpa" for r in megascale_own)  # FA2


def test_runs_whose_framework_ran_the_backward_tp_collectives_after_each_linear_say_so():
    # TP BACKWARD in the data file: Megatron-LM overlaps a column-parallel linear's input-gradient all-reduce with its
    # weight-gradient GEMM since 16c90445e7 (2021-09-02); Narayanan et al.'s script is of 2021-08-10, BigScience's
    # Megatron-DeepSpeed all-reduces in _CopyToModelParallelRegion's backward, TorchTitan's DTensor after the matmul
    exposed = {r["id"] for r in DS.runs if r["tp"] > 1 and (r["source"] in ("narayanan-2021", "bloom-2022")
                                                           or r["source"].startswith("torchtitan"))}
    assert len(exposed) == 9 + 1 + 7
    for run in DS.runs:
        wl, missing, _ = pr.workload_for(run, pr.workload_fields())
        assert wl.tp_backward == ("exposed" if run["id"] in exposed else "auto"), run["id"]
        assert not any("tp_backward" in m for m in missing), run["id"]
        if run["tp"] > 1 and run["id"] not in exposed:  # auto takes overlap on the fused stack they run on
            assert wl.fusion in (None, "fused"), run["id"]
    # where the source does not say, the row says it took the default (Llama 3's own stack)
    for run in (r for r in DS.runs if r["source"] == "llama3-2024"):
        assert any(a.startswith("tp_backward overlap") for a in run["assumed"]), run["id"]


def test_published_figures_agree_with_the_other_figures_their_sources_print():
    checked = 0
    for run in DS.runs:
        p = run["passage"]
        if run["source"] == "megascale-2024" and run["published"]["kind"] == "step_s":
            # Table 2: throughput k tokens/s = batch × 2,048 / iteration time (to 1%)
            tput = float(re.search(r"throughput ([\d.]+)k tokens/s", p).group(1)) * 1e3
            assert run["global_batch"] * run["seq"] / run["published"]["value"] == pytest.approx(tput, rel=0.01), run["id"]
            checked += 1
        elif run["source"] == "megascale-2024":  # Table 3: MFU only; TFLOP/s = MFU × the 312 TFLOP/s peak
            mfu = float(re.search(r"\| baseline \| ([\d.]+)%", p).group(1)) / 100
            assert run["published"]["value"] == pytest.approx(mfu * 312, abs=0.05), run["id"]
            checked += 1
        if run["source"] == "dgxc-nemo-24.09":  # tokens/s = GBS × seq / step (the README's definition)
            tput = float(re.search(r"throughput (\d+) tokens/s", p).group(1))
            assert run["global_batch"] * run["seq"] / run["published"]["value"] == pytest.approx(tput, rel=0.002), run["id"]
            checked += 1
        if run["source"] == "narayanan-2021":
            # aggregate PFLOP/s = TFLOP/s per GPU × GPUs; the per-GPU figure is printed to 1 TFLOP/s and the
            # aggregate to 0.1 PFLOP/s, so they agree within 0.5 × GPUs / 1000 + 0.05
            agg = float(p.split(" | ")[10].split(" ")[0])
            tol = 0.5 * run["devices"] / 1e3 + 0.05
            assert run["published"]["value"] * run["devices"] / 1e3 == pytest.approx(agg, abs=tol), run["id"]
            checked += 1
    assert checked == 17 + 9 + 10


def test_torchtitan_a100_throughputs_reproduce_the_docs_mfu_column():
    # TorchTitan at 1ea476e9f (torchtitan/utils.py get_num_flop_per_token, train.py): MFU = (6·N + 12·l·H·q·s) × WPS /
    # 312 TFLOP/s, N every parameter (untied embedding and output). N by hand from each Llama's dimensions:
    # 2·V·h + l·(2·h² (q, o) + 2·h·kv (k, v) + 3·h·ffn + 2·h (norms)) + h. The check holds only with the
    # sequence lengths the rows take from the train configs (8,192 for Llama 3, 4,096 for Llama 2).
    dims = {"llama-3-8b": (128256, 4096, 32, 1024, 14336), "llama-3-70b": (128256, 8192, 80, 1024, 28672),
            "llama-2-13b": (32000, 5120, 40, 5120, 13824), "llama-2-70b": (32000, 8192, 80, 1024, 28672)}
    rows = [r for r in DS.runs if r["source"] == "torchtitan-a100-2024"]
    assert len(rows) == 6 and all(r["split"] == "calibration" for r in rows)
    for run in rows:
        v, h, l, kv, ffn = dims[run["model"]]
        n = 2 * v * h + l * (2 * h * h + 2 * h * kv + 3 * h * ffn + 2 * h) + h
        flop_per_token = 6 * n + 12 * l * h * run["seq"]  # heads × head dim = h
        mfu = float(re.search(r"\| ([\d.]+)% \|$", run["passage"]).group(1)) / 100
        assert flop_per_token * run["published"]["value"] / 312e12 == pytest.approx(mfu, abs=0.0006), run["id"]


def test_the_a100_gemm_level_is_calibrated_on_calibration_rows_only():
    # gemm.toml's [a100] calibrated_scale names the runs it was chosen from; every one of them is a calibration row
    gemm = tomllib.loads((ROOT / "src" / "mlfootprint" / "analysis" / "predict" / "data" / "gemm.toml").read_text())
    entry = gemm["a100"]["calibrated_scale"]
    assert entry["provenance"] == "calibrated" and "torchtitan-a100-" in entry["source"]
    named = [r for r in DS.runs if r["id"].startswith("torchtitan-a100-")]
    assert len(named) == 6 and {r["split"] for r in named} == {"calibration"}
    assert DS.sources["torchtitan-a100-2024"]["split"] == "calibration"


def test_the_async_tp_share_is_calibrated_on_a_calibration_pair_only():
    # step_model.toml's async_tp_hidden_share names the two rows it was solved from: the same source's 2D run with
    # and without async TP, both calibration rows, differing in that feature alone
    step = tomllib.loads((ROOT / "src" / "mlfootprint" / "analysis" / "predict" / "data" / "step_model.toml").read_text())
    entry = step["communication"]["async_tp_hidden_share"]
    assert entry["provenance"] == "calibrated"
    off, on = RUNS["torchtitan-t4-70b-256-2d-fp8"], RUNS["torchtitan-t4-70b-256-2d-asynctp-fp8"]
    assert off["id"] in entry["source"] and on["id"] in entry["source"]
    assert {off["split"], on["split"]} == {"calibration"} and DS.sources[on["source"]]["split"] == "calibration"
    differ = {k for k in off.keys() | on.keys() if off.get(k) != on.get(k)}
    assert differ == {"id", "features", "published", "published_memory_gib", "passage", "assumed", "framework"}
    assert set(on["features"]) - set(off["features"]) == {"async-tp"}
    # the feature sets TP-comm overlap of PyTorch's kind; a Workload without tp_overlap reports it as not modelled
    accepted = pr.workload_fields()
    wl, missing, _ = pr.workload_for(on, accepted)
    assert (wl.tp_comm_overlap, wl.tp_overlap, missing) == (True, "async-tp", [])
    wl, missing, _ = pr.workload_for(on, accepted - {"tp_overlap"})
    assert not wl.tp_comm_overlap and missing == ["async-tp"]


def test_korthikanti_iteration_times_reproduce_the_papers_mfu():
    # Korthikanti et al. 2022, model FLOPs per iteration 72·B·s·l·h²·(1 + s/(6h) + V/(12·l·h)); MFU against
    # 312 TFLOP/s: the paper prints 41.5% (22B), 51.4% (175B), 56.0% (530B), 56.3% (1T) for the present work.
    shapes = {"22b": (48, 6144, 0.415), "175b": (96, 12288, 0.514), "530b": (105, 20480, 0.560), "1t": (128, 25600, 0.563)}
    for size, (l, h, mfu) in shapes.items():
        run = RUNS[f"korthikanti2022-{size}-sp-selective"]
        b, s, v = run["global_batch"], run["seq"], 51200
        flops = 72 * b * s * l * h * h * (1 + s / (6 * h) + v / (12 * l * h))
        assert flops / (run["devices"] * 312e12 * run["published"]["value"]) == pytest.approx(mfu, abs=0.003), size


def test_conversions_by_hand():
    run = RUNS["narayanan2021-gpt-1.7b-32"]
    facts = {"layers": 24, "hidden": 2304, "vocab": 51200}
    # 96 × 512 × 2048 × 24 × 2304² × (1 + 2048/13824 + 51200/884736) = 1.28248e16 × 1.206019 = 1.54670e16
    flops = pr.formula_flops("megatron-hfu", run, facts, params=0, counted=0.0)
    assert flops == pytest.approx(1.54670e16, rel=1e-4)
    # 1.54670e16 / (32 GPUs × 137e12) = 3.5280 s
    assert pr.to_step_s("tflops_per_device", 137, run, flops) == pytest.approx(3.5280, rel=1e-4)
    assert pr.from_step_s("tflops_per_device", 3.5280, run, flops) == pytest.approx(137, rel=1e-4)
    nemo = RUNS["nemo2407-llama2-7b-8"]  # 128 × 4096 / (16,847 × 8) = 3.8902 s
    assert pr.to_step_s("tokens_per_s_per_device", 16847, nemo, None) == pytest.approx(3.8902, rel=1e-4)
    assert pr.from_step_s("tokens_per_s_per_device", 3.8902, nemo, None) == pytest.approx(16847, rel=1e-4)
    # FlashAttention-2: B·(6·s·N + 12·l·h·s²); the row's B 512 (the repository's global_batch_size), s 2048,
    # N 1.3e9, l 24, h 2048: 512 × (1.59744e13 + 2.47390e12) = 512 × 1.84483e13 = 9.44553e15
    fa = RUNS["fa2-gpt3-1.3b-seq2048"]
    assert fa["global_batch"] == 512
    assert pr.formula_flops("fa2", fa, {"layers": 24, "hidden": 2048}, params=1_300_000_000, counted=0.0) == \
        pytest.approx(9.44553e15, rel=1e-5)
    with pytest.raises(ValueError):
        pr.formula_flops("6nd", run, facts, 0, 0.0)


def test_a_feature_the_predictor_lacks_is_reported_not_dropped():
    accepted = pr.workload_fields() - {"vp", "cp", "virtual_stages", "virtual_pipeline", "context_parallel"}
    # NeMo Llama 3 8B: TP 1, PP 1, CP 2, GBS 128 on 8 GPUs (dp 4): without a pipeline CP folds into dp 8
    wl, missing, notes = pr.workload_for(RUNS["nemo2407-llama3-8b-8"], accepted)
    assert missing == ["cp"]
    assert notes == ["cp 2 folded into data parallelism (dp 8)"]
    assert (wl.dp, wl.seq, wl.batch) == (8, 8192, 128)
    # NeMo Llama 3 70B: TP 4, PP 4, CP 2, VP 5, GBS 128 on 64 GPUs (dp 2, 64 micro-batches per replica): under a
    # pipeline the sequences are halved over dp 4 × 64 micro-batches of 4096 tokens, keeping the bubble 3/64
    wl, missing, notes = pr.workload_for(RUNS["nemo2407-llama3-70b-64"], accepted)
    assert missing == ["vp", "cp"]
    assert (wl.dp, wl.seq, wl.batch, wl.batch // wl.dp // wl.micro_batch) == (4, 4096, 256, 64)
    assert "under-counted" in notes[0]
    # Llama 3.1 405B on 576 GPUs: GBS 252 does not split over dp 4 × cp 2 = 8 either way: halved sequences
    wl, missing, notes = pr.workload_for(RUNS["dgxc-llama31-405b-576-bf16"], accepted)
    assert "cp" in missing and (wl.batch, wl.seq, wl.dp) == (504, 4096, 8)
    # features without a Workload field are listed too
    _, missing, _ = pr.workload_for(RUNS["megascale-175b-256-megascale"], accepted - {"tp_comm_overlap"})
    assert missing == ["vp", "parallel-block", "sliding-window-attention", "comm-overlap"]


def test_summary_by_hand():
    rows = [{"id": "a", "split": "validation", "source": "p1", "error": 0.02, "not_modelled": []},
            {"id": "b", "split": "validation", "source": "p2", "error": -0.20, "not_modelled": ["vp"]},
            {"id": "c", "split": "validation", "source": "p1", "error": 0.05, "not_modelled": []},
            {"id": "d", "split": "calibration", "source": "p3", "error": "RuntimeError: x", "not_modelled": []}]
    s = pr.summarize(rows)
    v = s["validation"]["all"]
    assert (v["rows"], v["median_abs_error"], v["worst_abs_error"], v["worst_id"], v["within_15pct"]) == \
        (3, 0.05, 0.20, "b", 2)
    assert s["validation"]["fully_modelled"]["median_abs_error"] == pytest.approx(0.035)
    assert s["validation"]["with_gaps"]["rows"] == 1
    assert s["calibration"]["failed"] == ["d"] and s["not_modelled_counts"] == {"vp": 1}
    # per source: p1's two rows (|0.02|, |0.05|: median 0.035, mean signed +0.035), p2's one, p3's none that ran
    p1 = s["by_source"]["p1"]
    assert (p1["split"], p1["rows"], p1["worst_id"]) == ("validation", 2, "c")
    assert p1["median_abs_error"] == pytest.approx(0.035) and p1["mean_error"] == pytest.approx(0.035)
    assert s["by_source"]["p2"]["mean_error"] == pytest.approx(-0.20) and s["by_source"]["p3"] == {"split": "calibration",
                                                                                                 "rows": 0}
    out = io.StringIO()
    pr.print_by_source(s, out)
    assert "  p1                     valid n=  2  median   3.5%  worst   5.0%  mean signed  +3.5%" in out.getvalue()
    with pytest.raises(SystemExit):
        pr.select(DS, "all", ["no-such-run"])


def test_memory_summary_by_hand_and_the_rows_that_carry_a_published_peak():
    # predicted 76.5 GiB against 82.4 published: -7.16%; 90 against 75: +20%; median |.| of two = their mean
    rows = [{"id": "a", "split": "calibration", "source": "p", "error": -0.1, "not_modelled": [],
             "published_memory_gib": 82.4, "peak_bytes": 76.5 * 2**30, "memory_error": 76.5 / 82.4 - 1},
            {"id": "b", "split": "calibration", "source": "p", "error": 0.1, "not_modelled": [],
             "published_memory_gib": 75.0, "peak_bytes": 90.0 * 2**30, "memory_error": 90.0 / 75.0 - 1},
            {"id": "c", "split": "calibration", "source": "p", "error": 0.0, "not_modelled": []}]
    m = pr.summarize(rows)["memory"]
    assert (m["rows"], m["worst_id"]) == (2, "b")
    assert m["median_abs_error"] == pytest.approx((0.0716 + 0.2) / 2, abs=1e-4)
    assert m["mean_error"] == pytest.approx((76.5 / 82.4 - 1 + 0.2) / 2)
    out = io.StringIO()
    pr.print_memory(rows, pr.summarize(rows), out)
    assert "published   82.4 GiB  predicted   76.5 GiB    -7.2%" in out.getvalue()
    assert pr.summarize(rows[2:])["memory"] == {"rows": 0}
    # the data: a published peak only where the source defines one, in the row's own table row, under the device
    from mlfootprint.hardware.catalog import get_device
    carrying = [r for r in DS.runs if "published_memory_gib" in r]
    assert len(carrying) == 17
    for run in carrying:
        assert "published_memory_gib" in DS.sources[run["source"]]["definitions"], run["id"]
        assert f"| {run['published_memory_gib']:.1f} |" in run["passage"], run["id"]
        assert 0 < run["published_memory_gib"] * 2**30 <= get_device(run["hardware"]).memory_bytes, run["id"]


def test_a_small_row_end_to_end_matches_mlfootprint_predict():
    run = RUNS["narayanan2021-gpt-1.7b-32"]
    shared = pr.evaluate(DS, run, pr.Predictor())
    assert "error" in shared and not isinstance(shared["error"], str), shared.get("error")
    assert shared["not_modelled"] == []
    assert shared["published_step_s"] == pytest.approx(3.5280, rel=1e-4)
    assert shared["error"] == pytest.approx(shared["predicted_step_s"] / 3.5280 - 1, rel=1e-3)
    assert shared["predicted"] == pytest.approx(137 * 3.5280 / shared["predicted_step_s"], rel=1e-3)
    via_api = pr.evaluate(DS, run, None)
    assert via_api["predicted_step_s"] == pytest.approx(shared["predicted_step_s"], rel=1e-9)
    assert via_api["published_step_s"] == pytest.approx(shared["published_step_s"], rel=1e-9)
