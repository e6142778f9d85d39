"""What the embedder does differently for a model's CPU variants: an ONNX session's device and
dtype, a static (model2vec) model's input, and the Matryoshka cut (--dims)."""

from __future__ import annotations

from typing import Any

import numpy as np

from alexandria.embedding.models import ModelSpec
from alexandria.errors import UsageError

# A static model's texts are cut at this many tokens (it has no window of its own; chunks are
# never longer, and a longer query adds little to an average).
STATIC_MAX_LENGTH = 8192


def is_static(model: Any) -> bool:
    try:
        first = model[0]
    except (TypeError, IndexError, KeyError):
        return False
    return type(first).__name__ == "StaticEmbedding"


def static_features(input_ids, attention) -> dict[str, Any]:
    """Padded rows as a static model's input: their real tokens end to end, with row offsets."""
    import torch

    lengths = attention.sum(dim=1)
    offsets = torch.cat([lengths.new_zeros(1), torch.cumsum(lengths, 0)[:-1]])
    return {"input_ids": input_ids[attention.bool()], "offsets": offsets}


def variant_device_dtype(spec: ModelSpec, device: str, dtype: str) -> tuple[str, str]:
    """An ONNX variant runs on the CPU (onnxruntime's CPU build) in fp32 or int8 weights."""
    if spec.backend == "openvino":
        raise UsageError("--backend openvino is not available: it needs optimum-intel[openvino], "
                         "which requires transformers < 5.6 (the tested one is 5.25); use "
                         "--backend onnx.")
    if (device or "auto").strip().lower() not in ("auto", "cpu"):
        raise UsageError(f"--backend {spec.backend} runs on the CPU: give --device cpu (or auto), "
                         "or --backend torch for a GPU.")
    if (dtype or "auto").strip().lower() not in ("auto", "fp32", "float32"):
        raise UsageError(f"--backend {spec.backend} runs fp32 weights (or int8 with --quantize "
                         "int8): leave --dtype at auto.")
    return "cpu", spec.quantize or "float32"


def cut_dims(vectors: np.ndarray, dims: int | None) -> np.ndarray:
    """--dims: the first N dimensions, normalised again (EmbeddingGemma is trained for it)."""
    if not dims or dims >= vectors.shape[1]:
        return vectors
    vectors = np.ascontiguousarray(vectors[:, :dims])
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
