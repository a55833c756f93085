"""The command line as a user meets it: outputs parse, mistakes get one line and exit 2."""
import json
import sys

import pytest

from conftest import ROOT, run_cli

TINY = str(ROOT / "tests" / "data" / "configs" / "tiny-gpt2")


def assert_user_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr  # one line, no traceback
    assert lines[0].startswith("mlfootprint: error: ")
    assert "Traceback" not in proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def test_count_json_report(tmp_path):
    out = tmp_path / "r.json"
    proc = run_cli("count", TINY, "--mode", "train", "--seq", "32", "--format", "json", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(out.read_text())
    assert rep["schema"] == "mlfootprint.report/1"
    assert rep["params"]["total"] == 124_672  # tiny-gpt2: see tests/data/configs
    assert rep["flops"]["backward"] == 2 * rep["flops"]["forward"]
    assert rep["provenance"]["flops.forward"] == "counted"
    assert rep["workload"]["mode"] == "train" and "mode" not in rep["workload"]["defaults"]
    assert "batch" in rep["workload"]["defaults"]


def test_count_markdown_and_table_with_depth_and_macs():
    proc = run_cli("count", TINY, "--seq", "16", "--format", "md", "--depth", "3", "--macs", "--by-op")
    assert proc.returncode == 0, proc.stderr
    assert "## FLOPs by module" in proc.stdout and "forward (MACs)" in proc.stdout
    assert "| Forward MACs |" in proc.stdout and "## FLOPs by operator" in proc.stdout
    proc = run_cli("count", TINY, "--seq", "16", "--format", "md", "--macs", "--details")
    assert "| macs_forward |" in proc.stdout  # --details: every key of the section
    proc = run_cli("count", TINY, "--seq", "16")
    assert proc.returncode == 0 and "FLOPs by module" in proc.stdout


def test_unknown_model_suggests_closest():
    line = assert_user_error(run_cli("count", "lama-2-7b"), "unknown model", "llama-2-7b")
    assert "Did you mean" in line


@pytest.mark.parametrize("config, needles", [
    # transformers' own error lists its ~800 model types on one line; ours names the nearest
    ({"model_type": "lama"}, ("model_type 'lama'", "Did you mean: llama")),
    # a validator's ValueError inside transformers' wrapper: the reason, without the wrapper's class names
    ({"model_type": "llama", "hidden_size": 100, "num_attention_heads": 7, "num_hidden_layers": 2,
      "intermediate_size": 64, "vocab_size": 100}, ("hidden size (100) is not a multiple", "fix the value")),
])
def test_a_config_that_cannot_be_built_is_one_short_line(tmp_path, config, needles):
    (tmp_path / "config.json").write_text(json.dumps(config))
    line = assert_user_error(run_cli("count", str(tmp_path / "config.json")), *needles)
    assert len(line) < 400 and "Error:" not in line


def test_sizes_a_config_leaves_out_are_said_to_be_the_class_defaults(tmp_path):
    # LlamaConfig's defaults: vocabulary 32,000 and 2,048 positions; the report says they were taken
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2,
                                                       "num_attention_heads": 4, "intermediate_size": 128}))
    proc = run_cli("count", str(tmp_path / "config.json"), "--seq", "16", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(proc.stdout)
    assert ("config: LlamaConfig's defaults for what the config.json leaves out: vocab_size 32000, "
            "max_position_embeddings 2048") in " ".join(rep["assumptions"])
    assert rep["params"]["embedding"] >= 32000 * 64


@pytest.mark.parametrize("shape", ["8x3xfoo", "8,3,224", "0x3", "4x4:complex7"])
def test_malformed_input_shape(tmp_path, shape):
    f = tmp_path / "m.py"
    f.write_text("import torch\ndef make():\n    return torch.nn.Linear(4, 4)\n")
    assert_user_error(run_cli("count", f"{f}:make", "--input", shape), "--input")


def test_factory_and_inputs_callable(tmp_path):
    f = tmp_path / "m.py"
    f.write_text(
        "import torch\n"
        "def make():\n    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))\n"
        "def inputs(batch):\n    return torch.randn(batch, 4)\n"
    )
    proc = run_cli("count", f"{f}:make", "--input", "3x4", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    # 2·3·4·8 + 2·3·8·2 = 192 + 96
    assert json.loads(proc.stdout)["flops"]["forward"] == 288
    proc = run_cli("count", f"{f}:make", "--inputs", f"{f}:inputs", "--batch", "5", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["flops"]["forward"] == 5 * 96


def test_factory_that_raises(tmp_path):
    f = tmp_path / "bad.py"
    f.write_text("def make():\n    raise ValueError('no such checkpoint')\n")
    assert_user_error(run_cli("count", f"{f}:make", "--input", "2x4"), "raised ValueError", "no such checkpoint")


def test_factory_missing_inputs_and_not_a_module(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import torch\ndef make():\n    return torch.nn.Linear(4, 4)\ndef notmod():\n    return 3\n")
    assert_user_error(run_cli("count", f"{f}:make"), "--input")
    assert_user_error(run_cli("count", f"{f}:notmod", "--input", "2x4"), "not a torch.nn.Module")
    assert_user_error(run_cli("count", f"{f}:nothere", "--input", "2x4"), "no callable")


def test_untraceable_model_names_the_op(tmp_path):
    f = tmp_path / "m.py"
    f.write_text(
        "import torch\n"
        "class M(torch.nn.Module):\n"
        "    def __init__(self):\n        super().__init__(); self.l = torch.nn.Linear(4, 4)\n"
        "    def forward(self, x):\n        y = self.l(x)\n        return y * 2 if y.sum() > 0 else y\n"
        "def make():\n    return M()\n"
    )
    assert_user_error(run_cli("count", f"{f}:make", "--input", "2x4"), "cannot trace the model", "data-dependent")


def test_missing_optional_extra():
    code = ("import sys; sys.modules['transformers'] = None; from mlfootprint.cli import main; "
            "sys.exit(main(['count', 'gpt2']))")
    import subprocess

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert_user_error(proc, "transformers", "pip install 'mlfootprint[hf]'")


@pytest.mark.parametrize("args,needle", [
    (["--batch", "0"], "--batch"),
    (["--batch", "-3"], "--batch"),
    (["--mode", "training"], "--mode"),
    (["--precision", "fp12"], "--precision"),
    (["--optimizer", "adamm"], "adamw"),
    (["--batch", "two"], "invalid int"),
])
def test_bad_workload_options(args, needle):
    assert_user_error(run_cli("count", TINY, *args), needle)


def test_seq_beyond_learned_positions():
    assert_user_error(run_cli("count", TINY, "--seq", "4096"), "context")


def test_unknown_verb_and_missing_config(tmp_path):
    assert_user_error(run_cli("frobnicate"))
    (tmp_path / "empty").mkdir()
    assert_user_error(run_cli("count", str(tmp_path / "empty")), "config.json")
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    assert_user_error(run_cli("count", str(bad)), "malformed")


def test_hub_id_unreachable_is_one_line():
    proc = run_cli("count", "no-such-org/no-such-model-xyz", env={"HF_HUB_OFFLINE": "1"}, isolated=True)
    assert_user_error(proc, "cannot resolve hub id")


def test_output_file_in_missing_folder_leaves_nothing(tmp_path):
    target = tmp_path / "nope" / "r.json"
    assert_user_error(run_cli("count", TINY, "--seq", "8", "-o", str(target)), "does not exist")
    assert not target.exists()


def test_models_list_names_the_columns_a_narrow_terminal_leaves_out():
    # at 80 columns 'context' and 'experts' were cut mid-header ('vocab  co') without a word
    narrow = run_cli("models", "list", env={"COLUMNS": "80"})
    assert narrow.returncode == 0 and max(len(line) for line in narrow.stdout.splitlines()) <= 80
    assert "Not shown at this width: context, experts" in " ".join(narrow.stdout.split())
    wide = run_cli("models", "list", env={"COLUMNS": "140"})
    assert "experts" in wide.stdout.splitlines()[1] and "Not shown" not in wide.stdout


def test_models_list_and_show():
    proc = run_cli("models", "list", "--format", "json")
    assert proc.returncode == 0
    models = json.loads(proc.stdout)["catalog"]["models"]
    for name in ("gpt2", "gpt3-175b", "llama-3.1-405b", "mixtral-8x7b", "opt-175b", "bloom-176b", "vit-base-16", "t5-base"):
        assert name in models
    proc = run_cli("models", "show", "bloom-176b", "--format", "json")
    rep = json.loads(proc.stdout)
    # BLOOM model card: 176,247,271,424 parameters
    assert rep["params"]["total"] == rep["params"]["published"] == 176_247_271_424
    assert_user_error(run_cli("models", "show", "gtp2"), "gpt2")
    # a config.json is a model source for the verbs, not a catalog entry: the error says so and where to go
    assert_user_error(run_cli("models", "show", str(ROOT / "tests" / "data" / "configs" / "tiny-gpt2" / "config.json")),
                      "takes a catalog name")


def test_analyze_default_model_is_gpt2():
    proc = run_cli("analyze", "--seq", "64", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(proc.stdout)
    assert rep["model"]["name"] == "gpt2" and rep["params"]["total"] == 124_439_808


def test_save_to_history(tmp_path):
    db = tmp_path / "h.sqlite"
    proc = run_cli("count", TINY, "--seq", "8", "--save", "--label", "baseline", "--db", str(db), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert "saved to the history as entry 1" in proc.stderr
    from mlfootprint.report.history import History

    entries = History(db).list(label="baseline")
    assert len(entries) == 1
    assert History(db).get(entries[0].id).sections["params"]["total"] == 124_672


def test_the_command_exits_without_teardown_yet_loses_nothing(tmp_path):
    """``python -m mlfootprint`` (and the installed command) skip the interpreter's teardown (cli.run): the exit
    status is the command's, what it printed to a pipe arrives whole, the report file is complete, and atexit
    callbacks (coverage's, logging's) still run."""
    import subprocess

    marker = tmp_path / "atexit-ran"
    report = tmp_path / "r.json"
    code = (f"import atexit, pathlib; atexit.register(lambda: pathlib.Path({str(marker)!r}).write_text('yes')); "
            "import sys; from mlfootprint.cli import run; "
            f"sys.argv = ['mlfootprint', 'count', {TINY!r}, '--format', 'json']; run()")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["verb"] == "count"  # the whole JSON document, flushed before the exit
    assert marker.read_text() == "yes"
    proc = subprocess.run([sys.executable, "-m", "mlfootprint", "count", TINY, "-o", str(report)],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and json.loads(report.read_text())["verb"] == "count"
    proc = subprocess.run([sys.executable, "-m", "mlfootprint", "count", "no-such-model"], capture_output=True,
                          text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("mlfootprint: error: unknown model 'no-such-model'")


def test_an_unknown_option_points_to_the_verb_help(capsys):
    # argparse's leftover arguments were reported by the top-level parser: "(see 'mlfootprint --help')", where the
    # options the user wanted are in the verb's help
    from mlfootprint.cli import main

    for argv, where in ((["bench", TINY, "--runs", "0"], "mlfootprint bench"),
                        (["history", "list", "--frob"], "mlfootprint history"),
                        (["--frob"], "mlfootprint")):
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("mlfootprint: error: unrecognized arguments: ") and err.endswith(f"(see '{where} --help')")
