"""Mixed precision on a GPU target follows CUDA autocast's operator lists, not the CPU's (issue 11).

The lists are data (trace/data/kernels.toml ``[autocast]``), cited from PyTorch's aten/src/ATen/autocast_mode.h and
autocast_mode.cpp. They are checked here against the autocast kernels the installed torch registers, then against
the output dtypes of real small modules traced for a GPU and for the CPU target, and against a hand derivation of
what a GPT-2 block keeps for backward.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import mlfootprint as mf
from mlfootprint.core.errors import UserError
from mlfootprint.models import resolve
from mlfootprint.trace.cpu_rnn import lstm_workspace_bytes
from mlfootprint.trace.run import trace
from mlfootprint.trace.kernels import CONSTANTS, _overload
from mlfootprint.verbs.common import traced

GPU = "h100-sxm"
CUDA_LISTS = ("cuda_lower_precision_fp", "cuda_fp32", "cuda_fp32_set_opt_dtype", "cuda_fp32_append_dtype",
              "cuda_promote", "cuda_banned")
CPU_LISTS = ("cpu_lower_precision_fp", "cpu_fp32", "cpu_promote")


def _listed(keys: tuple[str, ...]) -> set[str]:
    """The listed overloads this torch build has, named as the dispatcher names them ('aten::softmax.int')."""
    names = {name for key in keys for name in CONSTANTS.value("autocast", key)}
    return {"aten::" + name for name in names if _overload(name) is not None}


def _registered(key: str) -> set[str]:
    has = torch._C._dispatch_has_kernel_for_dispatch_key
    return {n for n in torch._C._dispatch_get_all_op_names() if n.startswith("aten::") and has(n, key)}


def test_the_cited_lists_are_the_autocast_kernels_torch_registers():
    # Every operator CUDA autocast has a kernel for in this torch is on exactly one cited list, and nothing else is;
    # the same for the CPU. (The named-tensor overloads of the cited lists are absent from this build.)
    assert _listed(CUDA_LISTS) == _registered("AutocastCUDA")
    assert _listed(CPU_LISTS) == _registered("AutocastCPU")
    for keys in (CUDA_LISTS, CPU_LISTS):
        lists = [set(CONSTANTS.value("autocast", k)) for k in keys]
        assert sum(len(s) for s in lists) == len(set().union(*lists))  # no operator under two policies
    # the lists the issue names: CUDA runs these in fp32, the CPU has no fp32 rule for them
    for name in ("softmax.int", "log_softmax.int", "layer_norm", "group_norm", "exp", "pow.Tensor_Scalar",
                 "cumsum", "sum", "linalg_vector_norm"):
        assert name in CONSTANTS.value("autocast", "cuda_fp32") + CONSTANTS.value("autocast", "cuda_fp32_set_opt_dtype")
        assert name not in CONSTANTS.value("autocast", "cpu_fp32")
    assert {"matmul", "conv2d", "baddbmm", "addbmm", "linear", "prelu", "scaled_dot_product_attention"} <= set(
        CONSTANTS.value("autocast", "cuda_lower_precision_fp"))


class _Op(torch.nn.Module):
    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.fn(h, x)


# (the operator autocast sees, the call). h is a bf16 activation (a Linear's output under autocast), x fp32 (4×8).
SAMPLES = {
    "linear": lambda h, x: F.linear(x, torch.ones(8, 8)),
    "matmul": lambda h, x: x @ x.t(),
    "bmm": lambda h, x: torch.bmm(x[None], x.t()[None]),
    "baddbmm": lambda h, x: torch.baddbmm(torch.zeros(1, 4, 4), x[None], x.t()[None]),
    "einsum": lambda h, x: torch.einsum("bi,ci->bc", x, x),
    "prelu": lambda h, x: F.prelu(x, torch.ones(1)),
    "conv1d": lambda h, x: F.conv1d(x[None], torch.ones(8, 4, 3)),
    "softmax.int": lambda h, x: h.softmax(-1),
    "log_softmax.int": lambda h, x: F.log_softmax(h, -1),
    "cumsum": lambda h, x: h.cumsum(-1),
    "sum": lambda h, x: h.sum(),
    "prod": lambda h, x: h.prod(),
    "layer_norm": lambda h, x: F.layer_norm(h, (8,)),
    "group_norm": lambda h, x: F.group_norm(h, 2),
    "rms_norm": lambda h, x: F.rms_norm(h, (8,)),
    "exp": lambda h, x: h.exp(),
    "log1p": lambda h, x: h.abs().log1p(),
    "pow.Tensor_Scalar": lambda h, x: h.pow(3),
    "softplus": lambda h, x: F.softplus(h),
    "logsumexp": lambda h, x: h.logsumexp(-1),
    "mse_loss": lambda h, x: F.mse_loss(h, h),
    "nll_loss": lambda h, x: F.nll_loss(h, torch.zeros(4, dtype=torch.long)),
    "linalg_vector_norm": lambda h, x: h.norm(),
    "norm.Scalar": lambda h, x: torch.ops.aten.norm.Scalar(h),
    "addcmul": lambda h, x: torch.addcmul(h, h, h),
    "dot": lambda h, x: torch.dot(h[0], x[0]),  # bf16 · fp32: only autocast's promote makes this legal
    "gelu": lambda h, x: F.gelu(h),  # on no list: the input's dtype
}


class _Zoo(torch.nn.Module):
    def __init__(self, names: list[str]) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(8, 8)
        self.ops = torch.nn.ModuleDict({n.replace(".", "_"): _Op(SAMPLES[n]) for n in names})

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = self.lin(x)
        return [op(h, x) for op in self.ops.values()]


def _out_dtypes(names: list[str], hardware: str | None) -> dict[str, torch.dtype]:
    seen: dict[str, torch.dtype] = {}
    zoo = _Zoo(names)
    for name, op in zip(names, zoo.ops.values()):
        op.register_forward_hook(lambda mod, args, out, name=name: seen.__setitem__(name, out.dtype))
    wl = mf.Workload(mode="inference", precision="bf16-mixed", hardware=hardware)
    traced(zoo, wl, inputs=[torch.randn(4, 8)])
    return seen


def _policy(name: str, prefix: str) -> str | None:
    keys = CUDA_LISTS if prefix == "cuda" else CPU_LISTS
    return next((k.split("_", 1)[1] for k in keys if name in CONSTANTS.value("autocast", k)), None)


def _expected(policy: str | None, name: str) -> torch.dtype:
    # autocast_mode.h: lower_precision_fp casts to the autocast dtype; fp32, fp32_set_opt_dtype (no dtype given) and
    # fp32_append_dtype give fp32; promote runs in the widest input (fp32 wherever one input is fp32); off the lists
    # the operator runs on its inputs as they come (h is bf16; x is fp32 for the matrix samples).
    if policy == "lower_precision_fp":
        return torch.bfloat16
    if policy in ("fp32", "fp32_set_opt_dtype", "fp32_append_dtype"):
        return torch.float32
    if policy == "promote":
        return torch.float32 if name == "dot" else torch.bfloat16
    takes_x = name in ("linear", "matmul", "bmm", "baddbmm", "einsum", "prelu", "conv1d")
    return torch.float32 if takes_x else torch.bfloat16


def test_gpu_target_output_dtypes_follow_cudas_lists():
    names = list(SAMPLES)
    got = _out_dtypes(names, GPU)
    for name in names:
        assert got[name] == _expected(_policy(name, "cuda"), name), name
    # the samples cover every CUDA policy but the ban (tested below)
    assert {_policy(n, "cuda") for n in names} == {"lower_precision_fp", "fp32", "fp32_set_opt_dtype",
                                                  "fp32_append_dtype", "promote", None}


def test_cpu_target_keeps_the_cpus_lists():
    names = [n for n in SAMPLES if n != "dot"]  # the CPU does not promote dot: bf16 · fp32 is an error there
    got = _out_dtypes(names, None)
    for name in names:
        if name != "einsum":
            assert got[name] == _expected(_policy(name, "cpu"), name), name
    # einsum is on no CPU list, but autocast also sees the operators a composite calls: this contraction runs as
    # bmm, which is on the CPU's lower-precision list
    assert got["einsum"] == torch.bfloat16
    # where the two devices differ: the CPU keeps these in bf16, CUDA gives fp32
    assert got["softmax.int"] == got["layer_norm"] == got["exp"] == got["sum"] == torch.bfloat16


def test_binary_cross_entropy_is_refused_under_cuda_autocast():
    class BCE(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(8, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.binary_cross_entropy(torch.sigmoid(self.lin(x)).float(), torch.zeros(4, 1))

    wl = mf.Workload(mode="inference", precision="bf16-mixed", hardware=GPU)
    with pytest.raises(UserError, match="unsafe to autocast.*binary_cross_entropy_with_logits"):
        traced(BCE(), wl, inputs=[torch.randn(4, 8)])
    traced(BCE(), mf.Workload(mode="inference", precision="bf16-mixed"), inputs=[torch.randn(4, 8)])  # CPU: fp32


def _gpt2(tmp: Path, layers: int, activation: str) -> str:
    folder = tmp / f"gpt2-{layers}-{activation}"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_layer": layers, "n_embd": 64, "n_head": 4,
        "n_positions": 32, "vocab_size": 128, "activation_function": activation,
        "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}))
    return str(folder)


def _saved(model: str, hardware: str | None):
    wl = mf.Workload(mode="train", seq=32, batch=2, precision="bf16-mixed", attention="eager", optimizer="sgd",
                     hardware=hardware)
    tr = trace(resolve(model), wl)
    unique = {s.storage: s for s in tr.memory.saved}.values()
    return sum(s.nbytes for s in unique), sorted((s.shape, s.dtype) for s in unique)


def test_gpt2_block_keeps_what_cuda_autocast_keeps(tmp_path):
    # Eager-attention GPT-2 blocks, bf16-mixed training, batch b = 2, T = 32 tokens, h = 64, no dropout.
    # GPT-2's MLP activation gelu_new is 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) on x = c_fc's bf16 output (b×T×4h).
    # CUDA autocast runs pow in fp32 (its fp32 list): pow keeps an fp32 copy of x for backward where the CPU keeps x
    # itself, and from there the sum x + 0.044715·x³ is fp32 (type promotion), so tanh keeps an fp32 output and the
    # last product keeps an fp32 (1 + tanh); the next Linear casts back to bf16 on both devices. Three tensors of
    # b·T·4h elements, 4 bytes instead of 2: 3·2·(2·32·256) = 98,304 bytes more per block on the GPU target.
    # Attention: the fp32 causal mask is added to the bf16 scores before softmax on both targets (type promotion),
    # so softmax runs on fp32 there and CUDA's fp32 softmax changes nothing: with the exact "gelu" the difference is 0.
    per_block = 3 * 2 * (2 * 32 * 4 * 64)
    assert per_block == 98_304
    for layers in (1, 2):
        model = _gpt2(tmp_path, layers, "gelu_new")
        (cpu, cpu_kept), (gpu, gpu_kept) = _saved(model, None), _saved(model, GPU)
        assert gpu - cpu == layers * per_block
        only_cpu = [k for k in cpu_kept if k not in gpu_kept or cpu_kept.count(k) > gpu_kept.count(k)]
        assert set(only_cpu) == {((2, 32, 256), "bfloat16")}
        assert gpu_kept.count(((2, 32, 256), "float32")) - cpu_kept.count(((2, 32, 256), "float32")) == 3 * layers
    exact = _gpt2(tmp_path, 2, "gelu")
    assert _saved(exact, None)[0] == _saved(exact, GPU)[0]


def test_weight_casts_are_cached_in_the_forward_as_cuda_autocast_does():
    # A Linear applied twice: autocast casts its fp32 weight to bf16 once per forward (cached_cast), on both targets.
    class Twice(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(8, 8, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lin(self.lin(x)).float().sum()

    for hardware in (None, GPU):
        wl = mf.Workload(mode="train", precision="bf16-mixed", optimizer="sgd", hardware=hardware)
        _, _, tr = traced(Twice(), wl, inputs=[torch.randn(4, 8)])
        assert len(tr.memory.param_casts) == 1, hardware


def test_lstm_on_a_gpu_target_runs_cudnn_and_keeps_its_reserve_not_onednns_workspace():
    # The CPU target keeps oneDNN's workspace (uint8, kept for backward); a GPU target runs cuDNN's one call
    # (aten._cudnn_rnn), whose reserve space was measured on an H200 (kernels.toml [cudnn_rnn]):
    # e·T·B·D·H·(5·L + L − 1) + 256 = e · 10·4·1·32 · 5 + 256: 25,856 bytes in fp32, 13,056 in bf16 (CUDA autocast
    # casts cuDNN's RNN).
    class LSTM(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = torch.nn.LSTM(16, 32, num_layers=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.rnn(x)[0].float().sum()

    def run(hardware: str | None, precision: str = "fp32"):
        wl = mf.Workload(mode="train", precision=precision, optimizer="sgd", hardware=hardware)
        _, _, tr = traced(LSTM(), wl, inputs=[torch.randn(10, 4, 16)])
        return tr

    cpu, gpu = run(None), run(GPU)
    assert [s.nbytes for s in cpu.memory.saved if s.dtype == "uint8"] == [lstm_workspace_bytes(16, 32, 10, 4)]
    assert [s.nbytes for s in gpu.memory.saved if s.dtype == "uint8"] == [25_856]
    assert [r.op for r in gpu.records if "rnn" in r.op] == ["aten._cudnn_rnn.default", "aten._cudnn_rnn_backward.default"]
    assert any("cuDNN's reserve space" in a and "workspace inside each call" in a for a in gpu.assumptions)
    assert not any("cuDNN" in a for a in cpu.assumptions)
    # the same model FLOPs: 2·T·B·4H·(I + H) = 2·40·128·48 forward, twice that backward
    for tr in (cpu, gpu):
        assert sum(r.model_flops for r in tr.records if r.phase == "forward") == 2 * 40 * 128 * 48
        assert sum(r.model_flops for r in tr.records if r.phase == "backward") == 2 * 2 * 40 * 128 * 48
    mixed = run(GPU, "bf16-mixed")
    assert any(r.op == "aten._cudnn_rnn.default" and r.out_dtype == "bfloat16" for r in mixed.records)
    assert [s.nbytes for s in mixed.memory.saved if s.dtype == "uint8"] == [13_056]


@pytest.mark.parametrize("kind, units", [("GRU", 6), ("RNN", 1)])
def test_gru_and_rnn_on_a_gpu_target_are_one_cudnn_call_with_its_reserve(kind: str, units: int) -> None:
    # On the CPU a GRU or RNN decomposes into a GEMM and pointwise ops per step; CUDA runs one cuDNN call. A
    # 2-layer bidirectional one, T 10, B 4, H 32, fp32: reserve 4·10·4·2·32·(k·2 + 1) + 256 bytes; the forward's
    # model FLOPs are the CPU's: per layer and direction 2·T·B·G·H·(I + H), I = 16 then 64 (both directions).
    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = getattr(torch.nn, kind)(16, 32, num_layers=2, bidirectional=True, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.rnn(x)[0].float().sum()

    gates = 3 if kind == "GRU" else 1
    traces = {}
    for hardware in (None, GPU):
        wl = mf.Workload(mode="train", precision="fp32", optimizer="sgd", hardware=hardware)
        traces[hardware] = traced(Net(), wl, inputs=[torch.randn(4, 10, 16)])[2]
    gpu, cpu = traces[GPU], traces[None]
    assert [s.nbytes for s in gpu.memory.saved if s.dtype == "uint8"] == [4 * 10 * 4 * 2 * 32 * (units * 2 + 1) + 256]
    forward = 2 * 2 * 40 * gates * 32 * ((16 + 32) + (64 + 32))
    assert sum(r.model_flops for r in gpu.records if r.phase == "forward") == forward
    assert sum(r.model_flops for r in cpu.records if r.phase == "forward") == forward
    assert len(gpu.records) < len(cpu.records) / 10  # one call, not a GEMM and a few pointwise ops per step


def test_other_threads_keep_the_cpus_autocast_while_a_gpu_target_is_traced():
    # The registrations are process-wide for the step; a user's own CPU autocast in another thread (real tensors)
    # keeps the CPU's lists: softmax on bf16 stays bf16 there, while the tracing thread gets CUDA's fp32.
    import threading

    from mlfootprint.trace.kernels import CudaAutocast

    h = torch.randn(4, 8, dtype=torch.bfloat16)
    other: list[torch.dtype] = []

    def user_loop() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            other.append(h.softmax(-1).dtype)
            other.append(torch.mm(torch.randn(4, 8), torch.randn(8, 4)).dtype)

    with CudaAutocast(torch.bfloat16) as emulation, emulation.forward():
        ours = h.softmax(-1).dtype
        worker = threading.Thread(target=user_loop)
        worker.start()
        worker.join()
    assert ours == torch.float32
    assert other == [torch.bfloat16, torch.bfloat16]
    with torch.autocast("cpu", dtype=torch.bfloat16):  # and the CPU's own kernels are back afterwards
        assert h.softmax(-1).dtype == torch.bfloat16
