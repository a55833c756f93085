"""Per-operator FLOP formulas against hand-derived counts, traced through real small modules."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import mlfootprint as mf
from mlfootprint.verbs.common import resolve_model as model_spec
from mlfootprint.trace.run import trace


def traced(module, *inputs, mode="inference", fake=True):
    spec = model_spec(module, list(inputs))
    tr = trace(spec, mf.Workload(mode=mode), fake=fake)
    return tr


def model_flops(tr, phase):
    return sum(r.model_flops for r in tr.records if r.phase == phase)


@pytest.mark.parametrize("fake", [True, False])
def test_linear_stack_backward_skips_first_input_gradient(fake):
    # fwd: 2·3·8·16 (768) + 2·3·16·4 (384) = 1152.
    # bwd: layer 2 weight grad 384 + input grad 384; layer 1 weight grad 768; its input grad is
    # not needed (the data needs no gradient) → 1536 = 2·1152 − 768.
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    tr = traced(net, torch.randn(3, 8), mode="train", fake=fake)
    assert model_flops(tr, "forward") == 1152
    assert model_flops(tr, "backward") == 2 * 1152 - 768


def test_frozen_first_layer_contributes_no_backward():
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    net[0].requires_grad_(False)
    tr = traced(net, torch.randn(3, 8), mode="train")
    # only layer 2's weight grad (2·3·16·4 = 384): its input comes from a frozen layer fed with data,
    # so no input gradient is needed anywhere.
    assert model_flops(tr, "backward") == 384
    assert all(r.module != "0" for r in tr.records if r.phase == "backward" and r.model_flops)
    # and the user's module was not touched by tracing
    assert net[0].weight.requires_grad is False and net[2].weight.grad is None
    assert not isinstance(net[2].weight, torch._subclasses.fake_tensor.FakeTensor)


@pytest.mark.parametrize("conv,x,expected", [
    # regular: out (2,8,10,10), W (8,3,3,3)=216 → 2·N·∏out·numel(W) = 2·2·100·216
    (nn.Conv2d(3, 8, 3, padding=1), (2, 3, 10, 10), 2 * 2 * 100 * 216),
    # grouped (groups 4): out (1,16,4,4), W (16,2,3,3)=288 → 2·1·16·288
    (nn.Conv2d(8, 16, 3, groups=4), (1, 8, 6, 6), 2 * 16 * 288),
    # depthwise: out (1,8,5,5), W (8,1,3,3)=72 → 2·25·72
    (nn.Conv2d(8, 8, 3, groups=8, padding=1), (1, 8, 5, 5), 2 * 25 * 72),
    # transposed: each of the 25 input positions scatters through W (4,6,3,3)=216 → 2·25·216
    (nn.ConvTranspose2d(4, 6, 3, stride=2), (1, 4, 5, 5), 2 * 25 * 216),
    # grouped transposed: W (4, 6/2, 3) = 36 per input position, 2·N·L_in·numel(W) = 2·2·7·36
    (nn.ConvTranspose1d(4, 6, 3, groups=2), (2, 4, 7), 2 * 2 * 7 * 36),
    # 1-d: out length 16, W (8,4,5)=160 → 2·2·16·160
    (nn.Conv1d(4, 8, 5), (2, 4, 20), 2 * 2 * 16 * 160),
    # 3-d: out 4³, W (4,2,3,3,3)=216 → 2·64·216
    (nn.Conv3d(2, 4, 3), (1, 2, 6, 6, 6), 2 * 64 * 216),
])
def test_convolutions_forward(conv, x, expected):
    tr = traced(conv, torch.randn(*x))
    assert model_flops(tr, "forward") == expected


def test_depthwise_is_brute_force_exact():
    # Brute force: a depthwise 3×3 conv does 9 multiply-adds per output element.
    conv = nn.Conv2d(6, 6, 3, groups=6, padding=1, bias=False)
    tr = traced(conv, torch.randn(2, 6, 7, 7))
    assert model_flops(tr, "forward") == 2 * 9 * (2 * 6 * 7 * 7)


def test_conv_backward_from_real_ops():
    # Two convs; data needs no gradient: conv1 computes only its weight grad (= its forward),
    # conv2 computes weight and input grads (= 2 × its forward).
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 3, padding=1))
    tr = traced(net, torch.randn(2, 3, 8, 8), mode="train")
    f1 = 2 * 2 * 64 * (4 * 3 * 9)
    f2 = 2 * 2 * 64 * (5 * 4 * 9)
    assert model_flops(tr, "forward") == f1 + f2
    assert model_flops(tr, "backward") == f1 + 2 * f2


def test_recurrent_layers():
    # Per step and sample: 2·G·H·(I + H). LSTM(16→32): G=4 → 2·128·48; GRU(32→8): G=3 → 2·24·40;
    # RNN(8→4): G=1 → 2·4·12. T·B = 10 steps·samples.
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(16, 32, batch_first=True)
            self.gru = nn.GRU(32, 8, batch_first=True)
            self.rnn = nn.RNN(8, 4, batch_first=True)

        def forward(self, x):
            return self.rnn(self.gru(self.lstm(x)[0])[0])[0]

    tr = traced(Net(), torch.randn(2, 5, 16), mode="train")
    lstm, gru, rnn = 10 * 2 * 128 * 48, 10 * 2 * 24 * 40, 10 * 2 * 4 * 12
    assert model_flops(tr, "forward") == lstm + gru + rnn
    # backward: 2× forward, less the products autograd skips for the zero initial hidden state of the
    # unfused GRU/RNN (h0·W_hh input-gradient: 2·B·G·H·H = 2·2·24·8 + 2·2·4·4 = 832)
    assert model_flops(tr, "backward") == 2 * (lstm + gru + rnn) - 832
    assert not tr.unsupported


class TinyGPT(nn.Module):
    """A plain-PyTorch GPT block stack using F.scaled_dot_product_attention."""

    def __init__(self, vocab=64, d=32, heads=4, layers=2):
        super().__init__()
        self.heads = heads
        self.emb = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList(nn.ModuleDict({"ln": nn.LayerNorm(d), "qkv": nn.Linear(d, 3 * d),
                                                   "proj": nn.Linear(d, d), "mlp": nn.Linear(d, d)}) for _ in range(layers))
        self.head = nn.Linear(d, vocab, bias=False)

    def forward(self, ids):
        x = self.emb(ids)
        b, t, d = x.shape
        for blk in self.blocks:
            q, k, v = blk["qkv"](blk["ln"](x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + blk["proj"](y.transpose(1, 2).reshape(b, t, d))
            x = x + blk["mlp"](x)
        return self.head(x)


@pytest.mark.parametrize("fake", [False, True])
def test_sdpa_on_cpu_tensors_is_counted(fake):
    # PyTorch's FlopCounterMode counts 0 for SDPA's CPU kernel; here: QKᵀ and PV, 2·B·H·T·T·E each,
    # per layer: 4·B·T²·d = 4·2·16²·32 = 65,536 (d = H·E).
    ids = torch.zeros(2, 16, dtype=torch.long)
    tr = traced(TinyGPT(), ids, mode="train", fake=fake)
    fwd_attn = sum(r.attention_flops for r in tr.records if r.phase == "forward")
    bwd_attn = sum(r.attention_flops for r in tr.records if r.phase == "backward")
    assert fwd_attn == 2 * 65_536
    assert bwd_attn == 2 * fwd_attn  # dQ, dK, dV, dP: twice the forward products
    assert any("scaled_dot_product" in r.op for r in tr.records)
    # all matmuls: per layer qkv 2·32·32·96, proj and mlp 2·32·32·32 each; head 2·32·32·64
    tokens = 32
    linear = 2 * (2 * tokens * 32 * 96 + 2 * 2 * tokens * 32 * 32) + 2 * tokens * 32 * 64
    assert model_flops(tr, "forward") == linear + 2 * 65_536
    # the recomputation of QKᵀ by the fused CPU kernel is hardware FLOPs, not model FLOPs
    assert sum(r.recompute_flops for r in tr.records) == 2 * 65_536 // 2


def test_eager_attention_products_are_attention():
    class Eager(nn.Module):
        def forward(self, q, k, v):
            return torch.softmax(q @ k.transpose(-1, -2), dim=-1) @ v

    q = torch.randn(2, 3, 8, 4)
    tr = traced(Eager(), q, q.clone(), q.clone())
    # two batched products of 2·(2·3)·8·8·4 each
    assert sum(r.attention_flops for r in tr.records) == 2 * (2 * 6 * 8 * 8 * 4)


def test_unsupported_op_is_listed_not_zero():
    lib = torch.library.Library("mlfp_test", "DEF")
    lib.define("mystery(Tensor x) -> Tensor")
    lib.impl("mystery", lambda x: x * 2, "CompositeExplicitAutograd")

    @torch.library.register_fake("mlfp_test::mystery", lib=lib)
    def _(x):
        return torch.empty_like(x)

    class M(nn.Module):
        def forward(self, x):
            return torch.ops.mlfp_test.mystery(x) + torch.ops.mlfp_test.mystery(x)

    rep = mf.count(M(), mf.Workload(), inputs=[torch.randn(4, 4)])
    assert rep.sections["flops"]["unsupported_ops"] == {"mystery": 2}
    assert any("mystery ×2" in a for a in rep.assumptions)


def test_registry_names_cover_every_attention_backend():
    from mlfootprint.formulas import registered_names

    names = " ".join(registered_names())
    for op in ("_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_efficient_attention",
               "_scaled_dot_product_cudnn_attention", "_flash_attention_forward", "_efficient_attention_backward",
               "_scaled_dot_product_fused_attention_overrideable"):
        assert op in names


def test_user_module_with_buffers_is_traced_without_being_touched():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    stats = net[1].running_mean.clone()
    rep = mf.count(net, mf.Workload(mode="train"), inputs=[torch.randn(2, 3, 8, 8)])
    # conv: out (2,4,6,6), W (4,3,3,3) → 2·2·36·108
    assert rep.sections["flops"]["forward"] == 2 * 2 * 36 * 108
    assert torch.equal(net[1].running_mean, stats) and int(net[1].num_batches_tracked) == 0
    assert net[0].weight.grad is None


def test_adafactor_is_traced_with_factored_state():
    # torch.optim.Adafactor keeps a row and a column statistic per matrix and a full one per vector;
    # the traced optimizer must keep the same number of elements.
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    real = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    opt = torch.optim.Adafactor(real.parameters())
    real(torch.randn(3, 8)).mean().backward()
    opt.step()
    torch_state = sum(v.numel() for st in opt.state.values() for v in st.values()
                      if isinstance(v, torch.Tensor) and v.dim() > 0)
    from mlfootprint.verbs.common import traced

    _, _, tr = traced(net, mf.Workload(mode="train", optimizer="adafactor"), inputs=[torch.randn(3, 8)])
    assert tr.optimizer_state_bytes == 4 * torch_state  # fp32
    assert torch_state == (16 + 8) + 16 + (4 + 16) + 4


def test_einsum_counted_through_its_decomposition():
    # einsum has no formula of its own: PyTorch lowers it to bmm/mm, which are counted.
    # 'bij,bjk->bik' with b=3, i=4, j=5, k=6: 2·3·4·5·6 = 720; 'ij,j->i' (4×5 matrix-vector): 2·4·5 = 40.
    class E(nn.Module):
        def forward(self, a, b, m, v):
            return torch.einsum("bij,bjk->bik", a, b).sum() + torch.einsum("ij,j->i", m, v).sum()

    tr = traced(E(), torch.randn(3, 4, 5), torch.randn(3, 5, 6), torch.randn(4, 5), torch.randn(5))
    assert model_flops(tr, "forward") == 720 + 40
    assert not tr.unsupported


class _PoolUpsample(nn.Module):
    """relu6 → 2×2 average pool → bilinear ×2 → log-sigmoid → GLU (MobileNet, EfficientNet, BEiT, SigLIP, Speech2Text ops)."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x):
        y = F.relu6(x * self.scale)
        y = F.logsigmoid(F.interpolate(F.avg_pool2d(y, 2), scale_factor=2, mode="bilinear"))
        return F.glu(y, dim=1 if y.shape[1] % 2 == 0 else -1)


@pytest.mark.parametrize("fake", [True, False])
def test_pooling_upsampling_and_log_sigmoid(fake):
    tr = traced(_PoolUpsample(), torch.randn(2, 3, 8, 8), mode="train", fake=fake)
    assert tr.unsupported == {}
    other = {}
    for r in tr.records:
        other[r.op] = other.get(r.op, 0) + r.other_flops
    n = 2 * 3 * 8 * 8  # 384 elements in and out (the pool halves, the upsample restores)
    pooled = n // 4
    assert other["aten.avg_pool2d.default"] == 4 * pooled  # a 2×2 window per pooled element
    assert other["aten.avg_pool2d_backward.default"] == 4 * pooled
    assert other["aten.upsample_bilinear2d.default"] == 7 * n  # 4 products + 3 adds per output element
    assert other["aten.upsample_bilinear2d_backward.default"] == 8 * n  # 4 neighbours × (product + add)
    assert other["aten.log_sigmoid_forward.default"] == 4 * n
    assert other["aten.log_sigmoid_backward.default"] == 3 * n
    assert other["aten.hardtanh_backward.default"] == n
    assert other["aten.glu.default"] == 5 * n // 2  # σ + product per output element (half the input)
    assert other["aten.glu_backward.default"] == 8 * n // 2  # per element of the output gradient


class Fn(nn.Module):
    """A module around a function of its inputs (and its own parameters, when given)."""

    def __init__(self, fn, **params):
        super().__init__()
        self.fn = fn
        for name, value in params.items():
            self.register_parameter(name, nn.Parameter(value))

    def forward(self, *xs):
        return self.fn(self, *xs)


def _flops_by_op(tr, op, phase="forward"):
    rows = [r for r in tr.records if r.op.startswith(f"aten.{op}.") and r.phase == phase]
    return sum(r.model_flops for r in rows), sum(r.other_flops for r in rows)


@pytest.mark.parametrize("fake", [True, False])
def test_addbmm(fake):
    # Σ over 3 batches of (4×5)·(5×6): one dot product of length 3·5 per output element → 2·3·4·5·6 = 720 model;
    # the added input (4×6): 24 other.
    m = Fn(lambda s, c, a, b: torch.addbmm(c, a, b))
    tr = traced(m, torch.randn(4, 6), torch.randn(3, 4, 5), torch.randn(3, 5, 6), fake=fake)
    assert _flops_by_op(tr, "addbmm") == (720, 24)
    assert not tr.unsupported


@pytest.mark.parametrize("fake", [True, False])
def test_bilinear_trilinear(fake):
    # nn.Bilinear(5, 7, 3), batch 4: y[b,o] = Σ_ij x1[b,i]·W[o,i,j]·x2[b,j]. ATen sums i first (x1·W → (4,3,7):
    # 4·3·5·7 = 420 multiply–adds), then j with x2 (4·3·7 = 84): 2·(420 + 84) = 1008.
    tr = traced(nn.Bilinear(5, 7, 3), torch.randn(4, 5), torch.randn(4, 7), fake=fake)
    assert _flops_by_op(tr, "_trilinear")[0] == 1008
    assert not tr.unsupported


def test_conv_tbc_forward_and_backward():
    # input (T=10, B=2, C_in=4), weight (K=3, 4, 6), pad 1 → T_out = 10. Taps skip padded steps: t_0 = 9, t_1 = 10,
    # t_2 = 9 → 28 steps · B 2 · 4·6 multiply–adds = 1344 → 2688 FLOPs. Backward (addmm_ per tap): grad_input and
    # grad_weight, the same 2688 each.
    m = Fn(lambda s, x: torch.conv_tbc(x, s.w, s.b, 1), w=torch.randn(3, 4, 6), b=torch.zeros(6))
    tr = traced(m, torch.randn(10, 2, 4), mode="train")
    assert _flops_by_op(tr, "conv_tbc")[0] == 2688
    assert model_flops(tr, "backward") == 2 * 2688
    assert not tr.unsupported
    real = traced(m, torch.randn(10, 2, 4), fake=False)
    assert _flops_by_op(real, "conv_tbc")[0] == 2688


@pytest.mark.parametrize("fake", [True, False])
def test_int_mm(fake):
    # int8 (32×8)·(8×16): 2·32·8·16 = 8192 integer operations, matrix-class.
    m = Fn(lambda s, a, b: torch._int_mm(a, b))
    a = torch.randint(-3, 3, (32, 8), dtype=torch.int8)
    b = torch.randint(-3, 3, (8, 16), dtype=torch.int8)
    tr = traced(m, a, b, fake=fake)
    assert _flops_by_op(tr, "_int_mm") == (8192, 0)


def test_polar():
    # r·cos θ + i·r·sin θ: 4 FLOPs per complex output, 5 outputs → 20.
    tr = traced(Fn(lambda s, r, t: torch.polar(r, t)), torch.rand(5), torch.rand(5))
    assert _flops_by_op(tr, "polar") == (0, 20)
    assert not tr.unsupported


def test_softplus_backward():
    # softplus' = sigmoid(beta·x) times the gradient: 5 FLOPs per element of the (3, 4) activation → 60.
    tr = traced(nn.Sequential(nn.Linear(4, 4), nn.Softplus()), torch.randn(3, 4), mode="train")
    assert _flops_by_op(tr, "softplus_backward", "backward") == (0, 60)
    assert not tr.unsupported


def test_weight_norm_interface():
    # parametrized weight norm of Linear(4, 5): v (5, 4) = 20 elements, g (5, 1) = 5 norms.
    # forward 3·20 + 2·5 = 70; backward 5·20 + 3·5 = 115.
    net = nn.utils.parametrizations.weight_norm(nn.Linear(4, 5))
    tr = traced(net, torch.randn(3, 4), mode="train")
    assert _flops_by_op(tr, "_weight_norm_interface") == (0, 70)
    assert _flops_by_op(tr, "_weight_norm_interface_backward", "backward") == (0, 115)
    assert not tr.unsupported


# nn.TransformerEncoder in eval: D = 32, 4 heads, F = 64, batch 2, length 10 (N = 20 tokens). Per layer:
#   QKV projection 2·20·32·96 = 122,880; Q·Kᵀ and P·V 2·(2·2·10·10·32) = 25,600; out projection 2·20·32·32 = 40,960;
#   feed-forward 2·(2·20·32·64) = 163,840 → 353,280.
ENCODER_LAYER_FLOPS = 122_880 + 25_600 + 40_960 + 163_840


class Encoder(nn.Module):
    def __init__(self, layers: int, nested: bool = False):
        super().__init__()
        layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, layers, enable_nested_tensor=nested)

    def forward(self, x, pad=None):
        return self.enc(x, src_key_padding_mask=pad)


def _encoder_inputs(masked: bool):
    x = torch.randn(2, 10, 32)
    pad = torch.zeros(2, 10, dtype=torch.bool)
    pad[0, 7:] = True
    return [x, pad] if masked else [x]


@pytest.mark.parametrize("layers,fast_op", [(1, "_transformer_encoder_layer_fwd"),
                                            (2, "_native_multi_head_attention")])
@pytest.mark.parametrize("masked", [False, True])
def test_transformer_encoder_in_eval_equals_analytic_and_training(layers, fast_op, masked):
    # One layer runs TransformerEncoderLayer's fused fast path; two run MultiheadAttention's (the trace's per-block
    # hooks turn the layer's own fast path off) or, with a padding mask, the SDPA path. All count the same.
    tr = traced(Encoder(layers).eval(), *_encoder_inputs(masked))
    assert model_flops(tr, "forward") == layers * ENCODER_LAYER_FLOPS
    assert not tr.unsupported
    if not masked or layers == 1:
        assert any(fast_op in r.op for r in tr.records)
    train = traced(Encoder(layers), *_encoder_inputs(masked), mode="train")
    assert model_flops(train, "forward") == model_flops(tr, "forward")
    assert not any("multi_head" in r.op or "encoder_layer" in r.op for r in train.records)


def test_transformer_encoder_fast_path_output_is_booked():
    # the fused layer's output (2·10·32 fp32 = 2,560 bytes) is an allocation the memory model replays
    tr = traced(Encoder(1).eval(), torch.randn(2, 10, 32))
    (rec,) = [r for r in tr.records if "_transformer_encoder_layer_fwd" in r.op]
    assert rec.alloc_bytes == 2560
    assert any(e.index == rec.index and e.delta == 2560 for e in tr.events)


def test_packed_encoder_counts_real_tokens_only():
    # With enable_nested_tensor and a padding mask, eval packs the batch into a nested tensor (lengths 7 and 10):
    # 17 tokens. QKV 2·17·32·96 = 104,448; attention 4·(7² + 10²)·32 = 19,072; out 2·17·32·32 = 34,816;
    # feed-forward 2·2·17·32·64 = 139,264 → 297,600 (on real tensors: the lengths are values).
    from mlfootprint.trace.mode import RecordingMode

    enc = Encoder(1, nested=True).eval()
    x, pad = _encoder_inputs(True)
    rec = RecordingMode()
    with torch.no_grad(), rec:
        enc(x, pad)
    assert sum(r.model_flops for r in rec.records) == 297_600
    assert not rec.unsupported


@pytest.mark.parametrize("fake", [True, False])
def test_multihead_attention_fast_path_with_weights(fake):
    # nn.MultiheadAttention(32, 4) in eval, self-attention on (2, 10, 32) (its fast path needs query is key is
    # value), need_weights averaged over heads: QKV 2·2·10·32·96 = 122,880; Q·Kᵀ and P·V 2·(2·2·10·10·32) = 25,600;
    # out projection 2·2·10·32·32 = 40,960 → 189,440. Other: biases 2·30·32 + 2·10·32 = 2,560; softmax
    # 5·2·4·10·10 = 4,000; the head average 2·4·10·10 + 2·10·10 = 1,000 → 7,560.
    class SelfAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.mha = nn.MultiheadAttention(32, 4, batch_first=True)

        def forward(self, x):
            return self.mha(x, x, x)

    tr = traced(SelfAttention().eval(), torch.randn(2, 10, 32), fake=fake)
    assert _flops_by_op(tr, "_native_multi_head_attention") == (189_440, 7_560)
    assert sum(r.attention_flops for r in tr.records) == 25_600
    assert not tr.unsupported


# Packed (varlen) attention: 4 sequences of lengths 2, 8, 2, 4 (16 tokens), 2 heads of width 8.
# Exact score pairs per head Σ q_i·k_i = 4 + 64 + 4 + 16 = 88; forward products 2·2·88·8 (Q·Kᵀ) + 2·2·88·8 (P·V)
# = 5,632. With fake offsets: the bound min(16·8, 8·16) = 128 pairs → 8,192 (the dense 16·16 = 256 would be 16,384).
VARLEN_LENGTHS = [2, 8, 2, 4]


def _varlen_args(kernel: str, offsets):
    q = torch.empty(16, 2, 8, device="meta")
    if kernel == "flash":
        return torch.ops.aten._flash_attention_forward.default, (q, q, q, offsets, offsets, 8, 8, 0.0, False, False)
    q4 = q[None]
    return torch.ops.aten._efficient_attention_forward.default, (q4, q4, q4, None, offsets, offsets, 8, 8, 0.0, 0)


@pytest.mark.parametrize("kernel", ["flash", "efficient"])
def test_varlen_attention_exact_with_readable_offsets(kernel):
    from mlfootprint.formulas import cost_of

    offsets = torch.tensor([0, 2, 10, 12, 16], dtype=torch.int32)
    func, args = _varlen_args(kernel, offsets)
    cost = cost_of(func, args, {}, None)
    assert (cost.model, cost.attention, cost.other, cost.upper_bound) == (5_632, 5_632, 5 * 2 * 88, False)


@pytest.mark.parametrize("kernel", ["flash", "efficient"])
def test_varlen_attention_bound_with_fake_offsets(kernel):
    from torch._subclasses.fake_tensor import FakeTensorMode

    from mlfootprint.formulas import cost_of

    with FakeTensorMode():
        offsets = torch.tensor([0, 2, 10, 12, 16], dtype=torch.int32)
    func, args = _varlen_args(kernel, offsets)
    cost = cost_of(func, args, {}, None)
    assert (cost.model, cost.upper_bound) == (8_192, True)


def test_varlen_attention_bound_is_stated_in_the_report():
    class Packed(nn.Module):
        def forward(self, x):
            q = x.view(16, 2, 8)
            offsets = torch.tensor([0, 2, 10, 12, 16], dtype=torch.int32)
            return torch.ops.aten._flash_attention_forward(q, q, q, offsets, offsets, 8, 8, 0.0, False, False)[0]

    rep = mf.count(Packed(), mf.Workload(), inputs=[torch.randn(16, 16)])
    assert rep.sections["flops"]["attention"] == 8_192
    assert any("upper bound" in a and "_flash_attention_forward" in a for a in rep.assumptions)


@pytest.mark.parametrize("layers", [1, 2])
def test_default_encoder_with_padding_mask_traces_on_fake_tensors(layers):
    # nn.TransformerEncoder's default (enable_nested_tensor) would pack the batch by the mask's values, which fake
    # tensors lack: the trace runs the padded batch with the mask, the full analytic count (2 × 10 tokens).
    tr = traced(Encoder(layers, nested=True).eval(), *_encoder_inputs(True))
    assert model_flops(tr, "forward") == layers * ENCODER_LAYER_FLOPS
    assert not tr.unsupported
