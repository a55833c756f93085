"""Operators that only move, create, view or select data: 0 FLOPs by definition.

Their bytes are still recorded by the trace: what they write, and what the ones that copy their inputs read
(:func:`movement_bytes_read`). View operators (whose schema returns an alias) are recognised from the schema and
need no entry here.
"""
from __future__ import annotations

import torch

ZERO_FLOP_OPS: frozenset[str] = frozenset({
    # copies and casts
    "copy", "copy_", "clone", "_to_copy", "contiguous", "_copy_from", "_copy_from_and_resize", "lift_fresh",
    "lift_fresh_copy", "detach", "detach_", "alias", "_unsafe_view", "view_copy", "expand_copy", "_reshape_copy",
    "resize_", "set_", "_assert_async", "_assert_scalar", "_local_scalar_dense", "_functional_assert_async",
    "record_stream", "_conj", "_neg_view", "_unsafe_index", "_unsafe_index_put",
    # creation
    "empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "zeros", "zeros_like",
    "new_zeros", "ones", "ones_like", "new_ones", "full", "full_like", "new_full", "fill", "fill_", "zero_",
    "zero", "arange", "linspace", "scalar_tensor", "eye", "tril_indices", "triu_indices",
    # random generation (not floating-point arithmetic in the FLOP sense)
    "rand", "rand_like", "randn", "randn_like", "randint", "randint_like", "randperm", "normal", "normal_",
    "uniform", "uniform_", "bernoulli", "bernoulli_", "multinomial", "exponential_", "random_",
    # gathering, concatenation, indexing
    "cat", "stack", "index", "index_select", "gather", "take", "masked_select", "masked_scatter", "scatter",
    "embedding", "slice_backward", "select_backward", "diagonal_backward", "as_strided_scatter",
    "slice_scatter", "select_scatter", "diagonal_scatter", "index_copy", "index_fill", "repeat",
    "repeat_interleave", "unsafe_split", "unsafe_split_with_sizes", "unsafe_chunk", "split", "split_with_sizes", "chunk", "unbind", "transpose_", "t_", "squeeze_", "unsqueeze_", "as_strided_", "swapdims_", "constant_pad_nd", "reflection_pad1d", "reflection_pad2d", "replication_pad1d",
    "replication_pad2d", "roll", "flip", "tril", "triu", "one_hot", "nonzero", "nonzero_static",
    "split_with_sizes_copy", "unbind_copy", "_pad_packed_sequence", "_pack_padded_sequence", "pad",
    "im2col", "col2im", "pixel_shuffle", "pixel_unshuffle", "channel_shuffle", "unfold_backward",
    "upsample_nearest1d", "upsample_nearest2d", "upsample_nearest3d", "_upsample_nearest_exact2d",
    "max_pool2d_with_indices_backward",
    # ordering, comparison-only selections
    "sort", "argsort", "topk", "kthvalue", "unique", "_unique2", "unique_consecutive", "histc", "bincount",
    "bucketize", "searchsorted", "max_pool2d_with_indices", "max_pool3d_with_indices", "argmax", "argmin",
    "_embedding_bag", "_embedding_bag_backward", "isin",
    # profiler markers (record_function) and structure
    "_record_function_enter", "_record_function_enter_new", "_record_function_exit", "_nested_tensor_from_mask", "_nested_tensor_from_mask_left_aligned", "to_padded_tensor", "_has_compatible_shallow_copy_type", "is_same_size", "sym_size", "sym_stride",
    "sym_numel", "sym_storage_offset", "_version", "equal", "is_nonzero", "item",
})


def is_view(func: torch._ops.OpOverload) -> bool:
    """An operator returning an alias of an input without writing it (t, view, expand, …)."""
    schema = func._schema
    if not schema.returns:
        return False
    info = schema.returns[0].alias_info
    return info is not None and not info.is_write


def is_zero_flop(func: torch._ops.OpOverload) -> bool:
    name = func.overloadpacket.__name__
    return name in ZERO_FLOP_OPS or name.rstrip("_") in ZERO_FLOP_OPS or is_view(func)


# Zero-FLOP operators that read their tensor inputs to write a new output: copies and casts, gathers and
# concatenations, pads and reorders, scatters, and the backward of slicing (which writes zeros around the gradient it
# reads). Creation, random, ordering and profiler operators are left out: they read nothing, or too little to matter.
READING_MOVES: frozenset[str] = frozenset({
    # copies and casts
    "copy", "clone", "_to_copy", "contiguous", "_copy_from", "_copy_from_and_resize", "lift_fresh_copy", "view_copy",
    "expand_copy", "_reshape_copy", "split_with_sizes_copy", "unbind_copy",
    # gathers, concatenation, indexing
    "cat", "stack", "index", "_unsafe_index", "index_select", "gather", "take", "masked_select", "embedding", "repeat",
    "repeat_interleave",
    # pads and reorders
    "constant_pad_nd", "reflection_pad1d", "reflection_pad2d", "replication_pad1d", "replication_pad2d", "roll",
    "flip", "tril", "triu", "pixel_shuffle", "pixel_unshuffle", "channel_shuffle", "im2col", "col2im",
    "upsample_nearest1d", "upsample_nearest2d", "upsample_nearest3d", "_upsample_nearest_exact2d",
    # scatters into a copy of a base
    "scatter", "masked_scatter", "slice_scatter", "select_scatter", "diagonal_scatter", "as_strided_scatter",
    "index_copy", "_unsafe_index_put",
    # the backward of slicing and selecting
    "slice_backward", "select_backward", "diagonal_backward", "unfold_backward",
})


def movement_bytes_read(func: torch._ops.OpOverload, inputs: list[object], outputs: list[object]) -> int:
    """Bytes a zero-FLOP operator that made new outputs reads from memory.

    One of :data:`READING_MOVES` reads as many elements as it writes, each in its source's dtype (its first tensor
    input), and never more than its tensor inputs hold: a cast from fp32 to bf16 reads 4 bytes and writes 2 per
    element; a gather (an embedding lookup, ``index_select``) reads the rows it writes, not the whole table; a
    concatenation reads its inputs; the backward of a slice reads the gradient it places. A scatter is charged its
    base's bytes (the source it writes in is not added). Every other zero-FLOP operator reads nothing.
    """
    name = func.overloadpacket.__name__
    if name not in READING_MOVES and name.rstrip("_") not in READING_MOVES:
        return 0
    tensors = [t for t in inputs if isinstance(t, torch.Tensor)]
    if not tensors:
        return 0
    held = sum(t.numel() * t.element_size() for t in tensors)
    written = sum(t.numel() for t in outputs if isinstance(t, torch.Tensor))
    return min(held, written * tensors[0].element_size())
