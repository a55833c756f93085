"""Memory: model states, optimizers, ZeRO/offload, PEFT, quantization, KV cache and the traced peak.

    from mlfootprint.analysis.memory import memory_model
    mm = memory_model(spec, workload, trace)          # classify one trace once
    mm.per_device(Layout(tp=8, pp=4, dp=32, zero=1, micro_batch=2, precision="bf16-mixed"))
"""
from .model import MemoryEstimate, MemoryModel, estimate_memory, max_batch, memory_model

__all__ = ["MemoryEstimate", "MemoryModel", "estimate_memory", "max_batch", "memory_model"]
