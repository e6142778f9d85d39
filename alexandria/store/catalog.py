"""The collections a store holds, and which one a command means when it is not told.

`search`, `status` and `plan` used to build the collection's name from --model and --chunker
defaults: after an ingest with minilm, a bare `status` reported an empty bge-m3 collection and a
bare `search` created one. Here the store itself answers: each collection's model, dtype, chunker
and dimension come from what its ingests recorded (the manifest's rows and run reports, the shard's
config), never from defaults, and nothing is created to find out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from alexandria.chunking.settings import STRATEGIES, ChunkSettings
from alexandria.embedding.models import ALIASES, HUB_ALIASES, ModelSpec, parse_variant
from alexandria.errors import UsageError
from alexandria.store.edge import edge_dimension
from alexandria.store.location import variant_of
from alexandria.store.manifest import Manifest, ManifestCorrupt


@dataclass(frozen=True)
class StoredCollection:
    name: str
    model: str | None  # what --model takes: the alias or hub id or folder the ingest was given
    dtype: str | None  # the last finished ingest's
    device: str | None
    settings: ChunkSettings | None  # from the rows' chunker fingerprint
    dimension: int | None  # the embedded shard's; None on a server
    books: int  # rows that are not removed
    done: int
    in_store: bool  # the embedded shard exists (always True on a server: its manifest says so)
    variant: str = ""  # the model variant its rows record (ModelSpec.variant; "": as published)

    @property
    def chunker(self) -> str | None:
        return self.settings.strategy if self.settings else None

    @property
    def variant_options(self) -> tuple[str, str | None, int | None]:
        """(backend, quantize, dims) as the ingest was given them."""
        return parse_variant(self.variant)

    def describe(self) -> str:
        parts = [self.model or "model unknown", self.chunker or "chunker unknown"]
        if self.variant:
            parts.insert(1, self.variant)
        if self.dimension:
            parts.append(f"{self.dimension} dimensions")
        parts.append(f"{self.done} book{'s' if self.done != 1 else ''} done")
        return f"{self.name} ({', '.join(parts)})"


def settings_of(fingerprint: str | None) -> ChunkSettings | None:
    """A row's chunker fingerprint (ChunkSettings.fingerprint() + '|max=N') back to its settings."""
    if not fingerprint:
        return None
    try:
        return ChunkSettings(**json.loads(fingerprint.split("|", 1)[0]))
    except (ValueError, TypeError):
        return None


def model_name(source: str | None, report: dict | None) -> str | None:
    """The name an ingest was given: its report has it; else the alias whose source its rows
    record (minilm's is a path inside its package), else that source itself."""
    if report and report.get("model"):
        return str(report["model"])
    if not source:
        return None
    if source in HUB_ALIASES:
        return HUB_ALIASES[source]
    for alias, make in ALIASES.items():
        if make().source == source:
            return alias
    return source


def same_model(stored: str | None, name: str, source: str) -> bool:
    from alexandria.embedding.models import resolve_model

    if stored is None:
        return False
    if stored == name:
        return True
    try:
        return resolve_model(stored).source == source
    except UsageError:  # a folder since moved: only its name can match
        return False


def stored_collections(store: Path, manifest: Path, url: str | None = None) -> list[StoredCollection]:
    """Every collection the manifest or the embedded store folder knows; reads only."""
    known: dict = {}
    if manifest.is_file():
        try:
            m = Manifest(manifest, read_only=True)
        except ManifestCorrupt:  # the store's folders still tell; status names the damage itself
            m = None
        if m is not None:
            try:
                known = m.collections()
            finally:
                m.close()
    names = set(known)
    if url is None and store.is_dir():
        names |= {p.parent.name for p in store.glob("*/edge_config.json")}
    out = []
    for name in sorted(names):
        e = known.get(name) or {"statuses": {}, "models": {}, "chunkers": {}, "report": None}
        report = e["report"] or {}
        source = max(e["models"], key=e["models"].get) if e["models"] else None
        fingerprint = max(e["chunkers"], key=e["chunkers"].get) if e["chunkers"] else None
        variant = variant_of(fingerprint)
        shard = store / name / "edge_config.json"
        statuses = e["statuses"]
        out.append(StoredCollection(
            name=name, model=model_name(source, report), dtype=report.get("dtype") or None,
            device=report.get("device") or None, settings=settings_of(fingerprint),
            dimension=edge_dimension(shard) if url is None else None,
            books=sum(n for s, n in statuses.items() if s != "removed"),
            done=statuses.get("done", 0), in_store=url is not None or shard.is_file(),
            variant=variant))
    return out


def choose(store: Path, manifest: Path, url: str | None, *, model: str | None = None,
           chunker: str | None = None, collection: str | None = None,
           variant: tuple[str | None, str | None, int | None] | None = None) -> StoredCollection:
    """The one collection the options mean: named by --collection, or the only one matching
    --model and --chunker (either may be None: any) and, when given, the variant (--backend,
    --quantize, --dims). None match, or several: one sentence."""
    from alexandria.embedding.models import resolve_model
    from alexandria.store.location import default_collection

    spec = resolve_model(model) if model is not None else None  # a bad name: its own sentence
    if spec is not None and variant is not None:
        spec = spec.with_variant(*variant)
    where = url or str(store)
    found = stored_collections(store, manifest, url)
    if not found:
        raise UsageError(f"There is no store at {where} (nothing has been ingested there): run "
                         "`alexandria ingest --directory LIBRARY --model MODEL` first, or give "
                         "--store/--qdrant-url where the ingest wrote.")
    listing = "; ".join(c.describe() for c in found)
    if collection:
        for c in found:
            if c.name == collection:
                return c
        raise UsageError(f"There is no collection {collection!r} in {where}; it has: {listing}.")
    candidates = found
    if spec is not None:
        # Rows that record no model or chunker (hand-made, or very old): the name the options give.
        named = {default_collection(spec, k) for k in ([chunker] if chunker else STRATEGIES)}
        candidates = [c for c in candidates if same_model(c.model, spec.name, spec.source)
                      or (c.model is None and c.name in named)]
    if variant is not None:
        wanted = ModelSpec("", "").with_variant(*variant).variant
        candidates = [c for c in candidates if c.variant == wanted]
    if chunker is not None:
        candidates = [c for c in candidates if c.chunker == chunker
                      or (c.chunker is None and spec is not None
                          and c.name == default_collection(spec, chunker))]
    if len(candidates) == 1:
        return candidates[0]
    asked = " ".join(f"--{k} {v}" for k, v in (("model", model), ("chunker", chunker)) if v)
    if not candidates:
        raise UsageError(f"{where} has no collection for {asked or 'these options'}; it has: "
                         f"{listing}. Give the --model and --chunker of the ingest.")
    raise UsageError(f"{where} has {len(candidates)} collections{' for ' + asked if asked else ''}"
                     f": {'; '.join(c.describe() for c in candidates)}. Choose one with --model, "
                     "--chunker, --backend, --quantize and --dims, or --collection.")
