"""The ONNX variants of a model (--backend onnx, --quantize int8), run by onnxruntime on the CPU.

The whole sentence-transformers pipeline (transformer, pooling, dense layers, normalisation) is
exported once into one graph and cached: for a hub model in the Alexandria cache folder, keyed by
the model id and the revision of its cached snapshot; for a local model folder beside it (FOLDER/
onnx). sentence-transformers' own ONNX backend and `export_dynamic_quantized_onnx_model` need
optimum-onnx, which requires transformers < 5 (Alexandria needs 5): the export is torch's own
(torch.onnx.export, the dynamo exporter) and the quantization onnxruntime's own, with the settings
optimum's AutoQuantizationConfig picks for the CPU's instruction set.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from alexandria.embedding.cache import cache_root
from alexandria.embedding.hub import local_folder
from alexandria.embedding.models import ModelSpec
from alexandria.errors import UsageError

log = logging.getLogger("alexandria")

EXPORT_NAME = "model.onnx"

# Dynamic int8 per instruction set, as optimum's AutoQuantizationConfig.<name>(is_static=False):
# weight type and whether to use 7-bit ranges (CPUs without VNNI saturate 8-bit products).
QUANT_SETTINGS = {
    "avx512_vnni": {"weight_type": "QInt8", "reduce_range": False},
    "avx512": {"weight_type": "QInt8", "reduce_range": True},
    "avx2": {"weight_type": "QUInt8", "reduce_range": True},
    "arm64": {"weight_type": "QUInt8", "reduce_range": False},
}


def cpu_flags() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def quant_flavour(flags: str | None = None, machine: str | None = None) -> str:
    """The int8 settings this CPU runs fastest: arm64, avx512_vnni, avx512 or avx2."""
    machine = (machine or platform.machine()).lower()
    if machine in ("arm64", "aarch64"):
        return "arm64"
    flags = cpu_flags() if flags is None else flags
    words = set(flags.split())
    if "avx512_vnni" in words or "avx512vnni" in words:
        return "avx512_vnni"
    if "avx512f" in words:
        return "avx512"
    return "avx2"


def export_dir(spec: ModelSpec) -> Path:
    """Where the model's ONNX files live: beside a local folder, else in the cache by id and
    revision (a new revision of the model is exported anew)."""
    folder = local_folder(spec)
    if Path(spec.source).is_dir():
        return folder / "onnx"
    revision = folder.name  # snapshots/<commit>
    return cache_root() / "onnx" / spec.source.replace("/", "--") / revision


def onnx_path(spec: ModelSpec) -> Path:
    """The variant's model file, exported (and quantized) now if it is not there yet."""
    folder = export_dir(spec)
    exported = folder / EXPORT_NAME
    if not exported.is_file():
        export(spec, folder)
    if not spec.quantize:
        return exported
    flavour = quant_flavour()
    quantized = folder / f"model_q{spec.quantize}_{flavour}.onnx"
    if not quantized.is_file():
        quantize(exported, quantized, flavour)
    return quantized


def export(spec: ModelSpec, folder: Path) -> Path:
    """The fp32 pipeline as one ONNX graph: input_ids, attention_mask -> sentence_embedding.
    Written to a scratch folder and moved into place, so a crash leaves no half export."""
    import torch
    from sentence_transformers import SentenceTransformer

    from alexandria.embedding.tokenizer import quiet_libraries

    quiet_libraries()
    log.info("exporting %s to ONNX (once; cached in %s) …", spec.name, folder)
    model = SentenceTransformer(str(local_folder(spec)), device="cpu",
                                model_kwargs={"dtype": torch.float32})
    model.eval()

    class Pipeline(torch.nn.Module):
        def __init__(self, inner) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            return self.inner({"input_ids": input_ids, "attention_mask": attention_mask})[
                "sentence_embedding"]

    scratch = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
    shutil.rmtree(scratch, ignore_errors=True)
    warnings.filterwarnings("ignore", module=r"torch\.(onnx|export)")  # its notes on dynamic shapes
    scratch.mkdir(parents=True)
    ids = torch.full((2, 16), 5, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 10:] = 0
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    try:
        with torch.no_grad():
            torch.onnx.export(
                Pipeline(model).eval(), (ids, mask), str(scratch / EXPORT_NAME), dynamo=True,
                input_names=["input_ids", "attention_mask"], output_names=["sentence_embedding"],
                dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}},
                external_data=True, verbose=False)
    except Exception as e:
        shutil.rmtree(scratch, ignore_errors=True)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(f"Model {spec.name!r} could not be exported to ONNX ({first[:200]}); "
                         "use --backend torch.") from e
    folder.mkdir(parents=True, exist_ok=True)
    # The weights first, the graph that names them last: a graph in place means a whole export.
    for path in sorted(scratch.iterdir(), key=lambda p: p.name == EXPORT_NAME):
        os.replace(path, folder / path.name)
    shutil.rmtree(scratch, ignore_errors=True)
    return folder / EXPORT_NAME


def quantize(exported: Path, target: Path, flavour: str) -> Path:
    """Dynamic int8 weights of the graph's matrix products and token embeddings (activations
    quantized per batch), except the projections down to the hidden size: their inputs carry
    the activation outliers that int8 clips (with them quantized, EmbeddingGemma's vectors fell
    to a cosine of 0.955 to fp32: docs/performance.md)."""
    import onnxruntime.quantization as ortq

    settings = QUANT_SETTINGS[flavour]
    log.info("quantizing %s to int8 for %s (once) …", exported, flavour)
    scratch = target.with_name(f"{target.name}.partial-{os.getpid()}")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice to pre-process the graph, printed on every call
    try:
        ortq.quantize_dynamic(
            exported, scratch, per_channel=True, reduce_range=settings["reduce_range"],
            weight_type=getattr(ortq.QuantType, settings["weight_type"]),
            op_types_to_quantize=["MatMul", "Gather"], nodes_to_exclude=down_projections(exported),
            extra_options={"MatMulConstBOnly": True, "WeightSymmetric": True})
    finally:
        root.setLevel(level)
    os.replace(scratch, target)
    return target


def down_projections(path: Path) -> list[str]:
    """The MatMul nodes whose constant weight reads a width other than the hidden size (the one
    most weights read): the MLPs' down projections, and a dense layer back from a wider one."""
    from collections import Counter

    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    shapes = {i.name: tuple(i.dims) for i in graph.initializer}
    weights = {n.name: shapes[n.input[1]] for n in graph.node
               if n.op_type == "MatMul" and len(n.input) == 2 and len(shapes.get(n.input[1], ())) == 2}
    if not weights:
        return []
    hidden = Counter(dims[0] for dims in weights.values()).most_common(1)[0][0]
    return [name for name, dims in weights.items() if dims[0] != hidden]


class OnnxModel:
    """What the embedder uses of a SentenceTransformer, run by an onnxruntime session."""

    def __init__(self, path: Path, tokenizer: Any, max_seq_length: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3  # its warnings about unused initializers are noise here
        self.path = path
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.tokenizer = tokenizer
        self.max_seq_length = max_seq_length
        shape = self.session.get_outputs()[0].shape
        self._dimension = shape[-1] if isinstance(shape[-1], int) else self._probe()

    def _probe(self) -> int:
        ids = np.full((1, 4), 5, dtype=np.int64)
        return int(self.run(ids, np.ones_like(ids)).shape[-1])

    def get_sentence_embedding_dimension(self) -> int:
        return int(self._dimension)

    def eval(self) -> OnnxModel:
        return self

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"input_ids": input_ids.astype(np.int64, copy=False),
                                       "attention_mask": attention_mask.astype(np.int64, copy=False)})[0]

    def __call__(self, features: dict[str, Any]) -> dict[str, Any]:
        import torch

        out = self.run(features["input_ids"].cpu().numpy(), features["attention_mask"].cpu().numpy())
        return {"sentence_embedding": torch.from_numpy(out)}

    def encode(self, texts: list[str], batch_size: int = 32, normalize_embeddings: bool = True,
               convert_to_numpy: bool = True, show_progress_bar: bool = False) -> np.ndarray:
        """Texts in batches of similar length, rows back in input order."""
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.zeros((len(texts), self.get_sentence_embedding_dimension()), dtype=np.float32)
        for start in range(0, len(texts), max(1, batch_size)):
            rows = order[start:start + batch_size]
            enc = self.tokenizer([texts[i] for i in rows], padding=True, truncation=True,
                                 max_length=self.max_seq_length, return_tensors="np")
            out[rows] = self.run(enc["input_ids"], enc["attention_mask"])
        if normalize_embeddings:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out


def load_onnx(spec: ModelSpec, max_seq_length: int) -> OnnxModel:
    """The variant ready to run: exported and quantized on first use, loaded from the cache after."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError as e:
        raise UsageError("--backend onnx needs onnxruntime: pip install 'alexandria[cpu]'.") from e
    from transformers import AutoTokenizer

    path = onnx_path(spec)
    tokenizer = AutoTokenizer.from_pretrained(str(local_folder(spec)))
    return OnnxModel(path, tokenizer, max_seq_length)
