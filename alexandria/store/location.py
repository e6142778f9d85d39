"""Where the vectors live: one object built once from the options, used by every command.

The store folder or server URL, its API key, the collection, the model, the manifest, the lock
and the chunker fingerprint used to be passed loose and derived in several places; with the
manifest given elsewhere, some commands then looked at another lock than the ingest took.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from alexandria.chunking.settings import STRATEGIES, ChunkSettings
from alexandria.embedding.models import ModelSpec, resolve_model
from alexandria.errors import UsageError
from alexandria.store.base import VectorStore
from alexandria.store.lock import LOCK_NAME

if TYPE_CHECKING:
    from alexandria.store.catalog import StoredCollection

DEFAULT_STORE = Path("data/qdrant")
MANIFEST_NAME = "manifest.sqlite"
LOCAL_MODE = "local:"  # a --qdrant-url of qdrant-client's in-process mode, used by tests


def check_chunker(chunker: str) -> None:
    if chunker not in STRATEGIES:
        raise UsageError(f"--chunker must be one of {', '.join(STRATEGIES)}, not {chunker!r}.")


def default_collection(spec: ModelSpec, chunker: str = "structural") -> str:
    """One collection per model and chunking strategy: strategies never mix in one collection
    (structural keeps the plain name, so existing stores stay where they are)."""
    check_chunker(chunker)
    suffix = "" if chunker == "structural" else f"_{chunker}"
    return f"alexandria_{spec.slug}{suffix}"


@dataclass(frozen=True)
class Location:
    """A collection in an embedded store folder or on a Qdrant server, with its manifest and lock.

    Build it with `Location.of(...)`; `store` is the embedded store's folder (and, unless
    `manifest` says otherwise, the manifest's), `url` a Qdrant server (then `store` only holds
    the manifest and the lock).
    """

    spec: ModelSpec
    collection: str
    store: Path = DEFAULT_STORE
    url: str | None = None
    api_key: str | None = field(default=None, repr=False)  # never printed, logged or reported
    manifest: Path = DEFAULT_STORE / MANIFEST_NAME
    settings: ChunkSettings = field(default_factory=ChunkSettings)
    # The embedded store's configuration options a user gave (alexandria.store.config: None or
    # absent = not given): a new collection is created with them, an existing one must match.
    store_config: dict[str, Any] | None = field(default=None, hash=False, compare=False)

    @classmethod
    def of(cls, model: str | ModelSpec = "bge-m3", *, store: Path | str | None = None,
           url: str | None = None, api_key: str | None = None, collection: str | None = None,
           manifest: Path | str | None = None, settings: ChunkSettings | None = None,
           store_config: dict[str, Any] | None = None,
           variant: tuple[str | None, str | None, int | None] | None = None) -> Location:
        """`variant`: (backend, quantize, dims) of the model (ModelSpec.with_variant); None: as
        published."""
        spec = model if isinstance(model, ModelSpec) else resolve_model(model, *(variant or ()))
        settings = settings or ChunkSettings()
        folder = Path(store).expanduser() if store is not None else DEFAULT_STORE
        return cls(
            spec=spec,
            collection=collection or default_collection(spec, settings.strategy),
            store=folder,
            url=url or None,
            api_key=api_key or None,
            manifest=Path(manifest).expanduser() if manifest else folder / MANIFEST_NAME,
            settings=settings,
            store_config={k: v for k, v in (store_config or {}).items() if v is not None} or None,
        )

    @classmethod
    def find(cls, model: str | None = None, *, chunker: str | None = None,
             store: Path | str | None = None, url: str | None = None, api_key: str | None = None,
             collection: str | None = None, manifest: Path | str | None = None,
             settings: ChunkSettings | None = None,
             variant: tuple[str | None, str | None, int | None] | None = None,
             ) -> tuple[Location, StoredCollection]:
        """An existing collection (search, status): the one --collection names, or the store's
        only one for the --model, --chunker and variant given (None: any), with the model, chunker
        and variant its ingest recorded. Nothing is created; none or several is one sentence
        (UsageError)."""
        from alexandria.store.catalog import choose

        folder = Path(store).expanduser() if store is not None else DEFAULT_STORE
        mpath = Path(manifest).expanduser() if manifest else folder / MANIFEST_NAME
        try:
            found = choose(folder, mpath, url or None, model=model, chunker=chunker,
                           collection=collection, variant=variant)
        except UsageError:
            if not (url and model):
                raise
            # A server collection this manifest never wrote (an export, another machine's
            # ingest): the server itself says whether it exists; it is opened, never created.
            where = cls.of(model, store=folder, url=url, api_key=api_key, collection=collection,
                           manifest=mpath, settings=settings or ChunkSettings(
                               strategy=chunker or "structural"), variant=variant)
            return where, unrecorded(where)
        if found.model is None and model is None:
            raise UsageError(f"The manifest {mpath} does not say which model made {found.name}; "
                             "give its --model.")
        if settings is None:
            settings = found.settings or ChunkSettings(strategy=chunker or "structural")
        # The collection's own variant: its vectors are only comparable with that one's.
        where = cls.of(model if model is not None else cast(str, found.model), store=folder,
                       url=url, api_key=api_key, collection=found.name, manifest=mpath,
                       settings=settings, variant=found.variant_options)
        if variant is not None and where.spec.with_variant(*variant).variant != found.variant:
            raise UsageError(f"Collection {found.name!r} holds vectors of "
                             f"{found.variant or 'the model as published (torch)'}, not "
                             f"{where.spec.with_variant(*variant).variant or 'torch'}; search it "
                             "without --backend, --quantize and --dims, or with its own.")
        return where, found

    @property
    def lock(self) -> Path:
        """The run lock sits beside the manifest: whoever writes one manifest takes one lock."""
        return self.manifest.parent / LOCK_NAME

    @property
    def where(self) -> str:
        """The collection as a user would find it (the server URL, or the shard's folder)."""
        return self.url or str(self.store / self.collection)

    @cached_property
    def max_seq_length(self) -> int:
        from alexandria.embedding.embedder import load_tokenizer_json

        return load_tokenizer_json(self.spec)[1]

    @property
    def fingerprint(self) -> str:
        """The chunker settings and model variant each manifest row records: a change means its
        chunks are stale (a change of variant is refused instead: check_variant)."""
        return fingerprint(self.settings, self.max_seq_length, self.spec.variant)

    def open_store(self, dimension: int | None = None, **server: Any) -> VectorStore:
        """dimension=None opens an existing collection only (search, status: never creates one).

        `server` goes to ServerStore: timeout, prefer_grpc, retry (RetryPolicy), bulk_load,
        wrap_client.
        """
        return open_store(self.collection, dimension, self.store, self.url, self.api_key,
                          store_config=self.store_config, **server)


def unrecorded(where: Location) -> StoredCollection:
    """What is known of a collection only the options name: its model and chunker, nothing stored."""
    from alexandria.store.catalog import StoredCollection

    return StoredCollection(name=where.collection, model=where.spec.name, dtype=None, device=None,
                            settings=where.settings, dimension=None, books=0, done=0, in_store=True,
                            variant=where.spec.variant)


def fingerprint(settings: ChunkSettings, max_seq_length: int, variant: str = "") -> str:
    """The model as published adds nothing, so rows written before variants existed still match."""
    tail = f"|variant={variant}" if variant else ""
    return f"{settings.fingerprint()}|max={max_seq_length}{tail}"


def variant_of(fingerprint: str | None) -> str:
    """The model variant a row's fingerprint records ("" for the model as published)."""
    for part in (fingerprint or "").split("|")[1:]:
        if part.startswith("variant="):
            return part[len("variant="):]
    return ""


def check_variant(where: Location, recorded: dict[str, int]) -> None:
    """Vectors of two variants (backend, quantization, --dims) in one collection would be
    compared as if alike: a collection holding another variant's books is refused.
    `recorded`: the fingerprints of the collection's finished rows, with their counts."""
    ours = where.spec.variant
    others = sorted({variant_of(f) for f in recorded} - {ours})
    if others:
        theirs = others[0] or "torch, as published"
        raise UsageError(
            f"Collection {where.collection!r} holds vectors of {where.spec.name} as {theirs}, not "
            f"{ours or 'torch, as published'}: give the --backend, --quantize and --dims of its "
            "ingest, or another --collection.")


def open_store(collection: str, dimension: int | None, store_dir: Path | None = None,
               qdrant_url: str | None = None, api_key: str | None = None,
               store_config: dict[str, Any] | None = None, **server: Any) -> VectorStore:
    if qdrant_url:
        if store_config:
            raise UsageError(
                f"{', '.join('--' + k.replace('_', '-') for k in store_config)} configure the "
                "embedded store; a Qdrant server's collection is configured on the server.")
        from alexandria.store.server import ServerStore

        if qdrant_url.startswith(LOCAL_MODE):
            return ServerStore(collection, dimension, path=qdrant_url[len(LOCAL_MODE):], **server)
        return ServerStore(collection, dimension, url=qdrant_url, api_key=api_key, **server)
    from alexandria.store.process import StoreProcess

    # The shard's owner process serves it (alexandria.store.owner): a search during an ingest works.
    return cast(VectorStore, StoreProcess(Path(store_dir or DEFAULT_STORE), collection, dimension,
                                          store_config))
