"""The model (cached, on the hub, its dimension) and the collection it would write to."""

from __future__ import annotations

import json
import os
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from alexandria.store.base import CollectionMissing, StoreBusy
from alexandria.tools.doctor.files import check_store_folder
from alexandria.tools.doctor.report import Check, error_text, guarded, one_line, safe_url

if TYPE_CHECKING:
    from alexandria.store.location import Location


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


@dataclass
class Context:
    """What later checks learn from earlier ones (the model's dimension, the collection name)."""

    where: Location
    device: str
    load_model: bool
    dimension: int | None = None

    @property
    def spec(self) -> Any:
        return self.where.spec

    @property
    def store(self) -> Path:
        return self.where.store

    @property
    def qdrant_url(self) -> str | None:
        return self.where.url

    @property
    def api_key(self) -> str | None:
        return self.where.api_key

    def collection_name(self) -> str | None:
        return self.where.collection

    def model_checks(self) -> list[Check]:
        spec = self.spec
        status, where, local = model_availability(spec)
        if local is not None:
            self.dimension = static_dimension(local)
            if self.dimension is not None:
                where += f"; {self.dimension}-dimensional (from its config)"
        checks = [Check("model", status, where if spec.name == spec.source else f"{spec.name}: {where}")]
        if not self.load_model:
            return checks
        if status != "ok":
            checks.append(Check("model load", "info", "skipped: the model is not available offline"))
            return checks
        checks.append(guarded("model load", self._load)[0])
        return checks

    def _load(self) -> list[Check]:
        from alexandria.embedding.embedder import get_embedder

        started = time.perf_counter()
        try:
            emb = get_embedder(self.spec, self.device)
        except Exception as e:
            return [Check("model load", "fail", one_line(e))]
        self.dimension = emb.dimension
        took = time.perf_counter() - started
        return [Check("model load", "ok",
                      f"dimension {emb.dimension}, max_seq_length {emb.max_seq_length}, "
                      f"device {emb.device}, dtype {emb.dtype} ({took:.1f}s)")]

    def store_checks(self) -> list[Check]:
        checks = guarded("store folder", lambda: [check_store_folder(self.store)])
        if self.qdrant_url:
            if self.api_key:
                checks.append(api_key_check(self.qdrant_url))
            checks.extend(guarded("store collection", self._server_collection))
        else:
            checks.extend(guarded("store collection", self._edge_collection))
        return checks

    def _dimension_clash(self, name: str, stored: int | None, where: str) -> Check | None:
        if stored is None or self.dimension is None or stored == self.dimension:
            return None
        return Check("store collection", "fail",
                     f"{name} in {where} holds {stored}-dimensional vectors but model "
                     f"{self.spec.name} makes {self.dimension}; use another --collection or the "
                     "model that built it")

    def _dimension_note(self, stored: int | None) -> str:
        if stored is None:
            return "dimension unknown"
        if self.dimension is None:
            return f"{stored}-dimensional (model dimension not known without loading it)"
        return f"{stored}-dimensional, matches the model"

    def _edge_collection(self) -> list[Check]:
        name = self.collection_name()
        if name is None:
            return [Check("store collection", "fail", "no collection name: the model did not resolve")]
        config = self.store / name / "edge_config.json"
        if not config.is_file():
            return [Check("store collection", "warn",
                          f"{name} does not exist yet in {self.store}; the first ingest creates it")]
        stored = edge_config_dimension(config)
        clash = self._dimension_clash(name, stored, str(self.store))
        if clash:
            return [clash]
        note = self._dimension_note(stored)
        from alexandria.store.process import StoreProcess

        try:
            edge = StoreProcess(self.store, name, None)  # its owner serves it, even mid-ingest
        except Exception as e:
            if isinstance(e, StoreBusy):
                return [Check("store collection", "warn",
                              f"{name}: {note}; in use by a running ingest, points not counted")]
            return [Check("store collection", "fail", f"{name} cannot be opened: {one_line(e)}")]
        try:
            points = edge.count()
        finally:
            edge.close()
        return [Check("store collection", "ok", f"{name}: {note}, {points} points")]

    def _server_collection(self) -> list[Check]:
        url = safe_url(self.qdrant_url or "")
        name = self.collection_name()
        if name is None:
            return [Check("store collection", "fail", "no collection name: the model did not resolve")]
        try:
            with warnings.catch_warnings():  # the insecure-key warning is a row of its own
                warnings.simplefilter("ignore", UserWarning)
                server = self.where.open_store()
        except Exception as e:
            text = one_line(e)
            if isinstance(e, CollectionMissing):
                return [Check("store collection", "warn",
                              f"{url} is reachable; {name} does not exist yet, the first ingest "
                              "creates it")]
            reason = root_reason(e)
            if reason:
                text = f"The Qdrant server at {url} is not reachable ({reason})"
            return [Check("store collection", "fail", text.replace(self.qdrant_url or "\0", url))]
        try:
            stored = None
            client = getattr(server, "client", None)
            if client is not None:
                info = client.get_collection(name)
                size = getattr(info.config.params.vectors, "size", None)
                stored = int(size) if size is not None else None
            clash = self._dimension_clash(name, stored, url)
            if clash:
                return [clash]
            points = server.count()
        finally:
            server.close()
        return [Check("store collection", "ok",
                      f"{url} is reachable; {name}: {self._dimension_note(stored)}, {points} points")]


def api_key_check(url: str) -> Check:
    if urlsplit(url).scheme == "http":
        return Check("qdrant api key", "warn", "set (not shown), but the URL is http:// so it travels "
                     "unencrypted; use https://")
    return Check("qdrant api key", "ok", "set (not shown)")


def root_reason(e: BaseException) -> str | None:
    """gRPC errors print as '<_InactiveRpcError ...>'; their code and details say what happened."""
    cause = e.__cause__
    details = getattr(cause, "details", None)
    code = getattr(cause, "code", None)
    if callable(details) and callable(code):
        try:
            return one_line(f"{getattr(code(), 'name', code())}: {details()}")
        except Exception:
            return None
    return None


def model_availability(spec: Any) -> tuple[str, str, Path | None]:
    """(status, detail, local folder or None) without downloading anything but a yes/no."""
    source = Path(spec.source).expanduser()
    if source.is_dir():
        kind = "bundled test model" if spec.name == "minilm" else "local folder"
        return "ok", f"{kind} {source}", source
    repo = spec.source
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError as e:
        return "fail", f"huggingface_hub is missing ({e})", None
    try:
        config = try_to_load_from_cache(repo, "config.json")
    except Exception:  # an id that cannot exist, e.g. a folder path that is not there
        return "fail", f"{repo!r} is not an existing folder, nor a valid Hugging Face id", None
    if isinstance(config, str):
        snapshot = Path(config).parent
        if any(isinstance(try_to_load_from_cache(repo, f), str) for f in WEIGHT_FILES):
            return "ok", f"{repo} in the Hugging Face cache ({snapshot})", snapshot
        return ("warn", f"{repo}: config in the Hugging Face cache but no weights; the first "
                "ingest downloads them", snapshot)
    return hub_reachability(repo)


def hub_reachability(repo: str) -> tuple[str, str, Path | None]:
    """Not cached: whether the first ingest could download it (one metadata request, no weights)."""
    if hub_offline():
        return ("fail", f"{repo} is not in the Hugging Face cache and HF_HUB_OFFLINE is set; "
                "download it once with the hub reachable or use a local folder", None)
    from huggingface_hub import auth_check

    outcome: dict[str, BaseException | None] = {}

    def ask() -> None:
        try:
            auth_check(repo)
            outcome["error"] = None
        except BaseException as e:  # kept and reported by the caller
            outcome["error"] = e

    worker = threading.Thread(target=ask, daemon=True)
    worker.start()
    worker.join(20)
    if "error" not in outcome:
        return "fail", f"{repo} is not cached and the Hugging Face Hub did not answer in 20 s", None
    error = outcome["error"]
    if error is None:
        return "warn", f"{repo} is not cached; the first ingest downloads it from the Hugging Face Hub", None
    kind = type(error).__name__
    if kind == "GatedRepoError":
        reason = "it is gated: accept its licence on huggingface.co and set HF_TOKEN"
    elif kind == "RepositoryNotFoundError":
        reason = "no such model on the Hugging Face Hub (or it is private)"
    else:
        reason = f"the Hugging Face Hub is not reachable ({error_text(error)})"
    return "fail", f"{repo} is not cached and cannot be loaded: {reason}", None


def hub_offline() -> bool:
    try:
        from huggingface_hub import constants

        if getattr(constants, "HF_HUB_OFFLINE", False):
            return True
    except ImportError:
        pass
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def static_dimension(folder: Path) -> int | None:
    """The embedding size from a sentence-transformers folder's configs, without loading weights."""
    try:
        modules = json.loads((folder / "modules.json").read_text())
    except (OSError, ValueError):
        return None
    dimension = None
    for module in modules if isinstance(modules, list) else []:
        kind = str(module.get("type", ""))
        cfg_file = folder / str(module.get("path", "")) / "config.json"
        try:
            cfg = json.loads(cfg_file.read_text())
        except (OSError, ValueError):
            continue
        if kind.endswith("Pooling") and "word_embedding_dimension" in cfg:
            modes = sum(bool(v) for k, v in cfg.items() if k.startswith("pooling_mode") and
                        isinstance(v, bool))
            dimension = int(cfg["word_embedding_dimension"]) * max(modes, 1)
        elif kind.endswith("Dense") and "out_features" in cfg:
            dimension = int(cfg["out_features"])
    return dimension


def edge_config_dimension(config: Path) -> int | None:
    try:
        return int(json.loads(config.read_text())["vectors"][""]["size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


