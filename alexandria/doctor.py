"""`alexandria doctor`: everything a run depends on, checked up front and reported in one table.

Every check is read-only (apart from a temporary file to prove the store folder is writable) and
never raises: a check that blows up becomes a "fail" row, so one broken piece never hides the others.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

STATUSES = ("ok", "warn", "fail", "info")
LOW_DISK_BYTES = 1 << 30
GIB = float(1 << 30)

# (distribution, import name): the import proves native parts load, not just that pip has a record.
PACKAGES = [
    ("torch", "torch"),
    ("sentence-transformers", "sentence_transformers"),
    ("transformers", "transformers"),
    ("qdrant-edge-py", "qdrant_edge"),
    ("qdrant-client", "qdrant_client"),
    ("ebooklib", "ebooklib"),
    ("beautifulsoup4", "bs4"),
    ("lxml", "lxml.etree"),
    ("semantic-text-splitter", "semantic_text_splitter"),
]
# Importing these takes ~10 s; loading the model imports them anyway, so only then are they imported.
HEAVY_IMPORTS = {"sentence_transformers", "transformers"}
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


@dataclass
class Check:
    name: str
    status: str  # "ok" | "warn" | "fail" | "info"
    detail: str


def run_checks(
    model: str,
    device: str,
    store: Path,
    qdrant_url: str | None,
    api_key: str | None,
    collection: str | None,
    directory: Path | None,
    manifest: Path | None,
    load_model: bool = True,
) -> list[Check]:
    """All checks in the order a run meets them; load_model=False skips the seconds-long load."""
    try:
        from .embed import quiet_libraries

        quiet_libraries()  # before transformers is imported, or its loading bars land in cron mail
    except Exception:  # a broken install shows up in the package rows below
        pass
    store = Path(store).expanduser()
    ctx = _Context(model=model, device=device, store=store, qdrant_url=qdrant_url,
                   api_key=api_key, collection=collection, load_model=load_model,
                   manifest=Path(manifest).expanduser() if manifest else None)
    checks: list[Check] = []
    sections: list[tuple[str, Callable[[], list[Check]]]] = [
        ("python", _python),
        ("packages", lambda: _packages(import_heavy=load_model)),
        ("cuda", lambda: _cuda(device)),
        ("model", ctx.model_checks),
        ("store", ctx.store_checks),
        ("library", lambda: _library(Path(directory).expanduser()) if directory else []),
        ("manifest", lambda: _manifest(ctx)),
        ("disk", lambda: _disk(store)),
        ("lock", lambda: _lock(store)),
    ]
    for name, section in sections:
        checks.extend(_guarded(name, section))
    return [_scrub(c, api_key) for c in checks]


def render_table(checks: list[Check]) -> str:
    """Aligned columns and one summary line: readable in a terminal, in cron mail and in grep."""
    rows = [("CHECK", "STATUS", "DETAIL")] + [(c.name, c.status, _one_line(c.detail)) for c in checks]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    lines = [f"{a:<{w0}}  {b:<{w1}}  {c}".rstrip() for a, b, c in rows]
    lines.insert(1, f"{'-' * w0}  {'-' * w1}  {'-' * 6}")
    lines.append("")
    lines.append(summary(checks))
    return "\n".join(lines)


def summary(checks: list[Check]) -> str:
    counts = {s: sum(c.status == s for c in checks) for s in STATUSES}
    return (f"{counts['ok']} ok, {counts['warn']} warnings, {counts['fail']} failures, "
            f"{counts['info']} notes")


def exit_code(checks: list[Check]) -> int:
    """1 when anything failed, so `alexandria doctor && alexandria ingest` stops on a broken setup."""
    return 1 if any(c.status == "fail" for c in checks) else 0


# -- plumbing --------------------------------------------------------------------------------------


def _one_line(text: object) -> str:
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    line = lines[0] if lines else ""
    return line if len(line) <= 240 else line[:237] + "..."


def _error(e: BaseException) -> str:
    text = _one_line(e)
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _guarded(name: str, section: Callable[[], list[Check]]) -> list[Check]:
    try:
        return section()
    except Exception as e:
        return [Check(name, "fail", _error(e))]


def _scrub(check: Check, api_key: str | None) -> Check:
    """The API key never reaches the screen, a log or cron mail, whatever an error message quoted."""
    detail = _one_line(check.detail)
    if api_key:
        detail = detail.replace(api_key, "***")
    return Check(check.name, check.status, detail)


def _safe_url(url: str) -> str:
    """Drop user:password@ from a URL before it is shown."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.username or parts.password:
        host = parts.hostname or ""
        if parts.port:
            host += f":{parts.port}"
        parts = parts._replace(netloc=f"***@{host}")
    return urlunsplit(parts)


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _gib(n: float) -> str:
    return f"{n / GIB:.1f} GiB"


# -- environment -----------------------------------------------------------------------------------


def _python() -> list[Check]:
    v = sys.version_info
    detail = f"{platform.python_version()} ({platform.python_implementation()}, {sys.executable})"
    if v < (3, 10):
        return [Check("python", "fail", f"{detail}; Alexandria needs 3.10 or newer")]
    return [Check("python", "ok", detail)]


def _packages(import_heavy: bool) -> list[Check]:
    return [_guarded(dist, lambda d=dist, m=module: [_package(d, m, import_heavy)])[0]
            for dist, module in PACKAGES]


def _package(dist: str, module: str, import_heavy: bool) -> Check:
    try:
        version = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return Check(dist, "fail", f"not installed (pip install {dist})")
    if module in HEAVY_IMPORTS and not import_heavy:
        return Check(dist, "ok", version)
    try:
        importlib.import_module(module)
    except Exception as e:
        return Check(dist, "fail", f"{version} is installed but `import {module}` fails: {_error(e)}")
    return Check(dist, "ok", version)


def _cuda(device: str) -> list[Check]:
    wants_cuda = (device or "auto").strip().lower().startswith("cuda")
    checks: list[Check] = []
    import torch

    built = torch.version.cuda
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        checks.append(Check("cuda", "ok", f"available: CUDA {built}, {n} device(s)"))
    else:
        why = (f"torch {torch.__version__} is a CPU-only build" if built is None
               else f"not available (torch built for CUDA {built})")
        if wants_cuda:
            checks.append(Check("cuda", "fail", f"--device {device} was requested but {why}"))
        else:
            checks.append(Check("cuda", "info", f"{why}; embedding runs on the CPU"))
    checks.extend(_guarded("nvidia driver", _driver))
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            checks.extend(_guarded(f"gpu {i}", lambda i=i: [_gpu(torch, i)]))
    return checks


def _driver() -> list[Check]:
    try:
        import pynvml
    except ImportError:
        return [Check("nvidia driver", "info", "nvidia-ml-py is not installed; driver not checked")]
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return [Check("nvidia driver", "info", "no NVIDIA driver")]
    try:
        version = pynvml.nvmlSystemGetDriverVersion()
        if isinstance(version, bytes):
            version = version.decode()
        try:
            cuda = pynvml.nvmlSystemGetCudaDriverVersion_v2()
            version = f"{version} (supports CUDA {cuda // 1000}.{cuda % 1000 // 10})"
        except Exception:
            pass
        return [Check("nvidia driver", "ok", str(version))]
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def _gpu(torch: Any, index: int) -> Check:
    name = torch.cuda.get_device_name(index)
    free, total = torch.cuda.mem_get_info(index)
    detail = f"{name}: {_gib(free)} free of {_gib(total)}"
    if total and free < 0.25 * total:
        return Check(f"gpu {index}", "warn", f"{detail}; other processes use most of its memory")
    return Check(f"gpu {index}", "ok", detail)


# -- model -----------------------------------------------------------------------------------------


@dataclass
class _Context:
    """What later checks learn from earlier ones (the model's dimension, the collection name)."""

    model: str
    device: str
    store: Path
    qdrant_url: str | None
    api_key: str | None
    collection: str | None
    load_model: bool
    manifest: Path | None = None
    spec: Any = None
    dimension: int | None = None

    def collection_name(self) -> str | None:
        if self.collection:
            return self.collection
        if self.spec is None:
            return None
        from .pipeline import default_collection

        return default_collection(self.spec)

    def model_checks(self) -> list[Check]:
        from .models import resolve_model

        try:
            self.spec = resolve_model(self.model)
        except Exception as e:
            return [Check("model", "fail", f"{self.model!r}: {_error(e)}")]
        spec = self.spec
        status, where, local = _model_availability(spec)
        if local is not None:
            self.dimension = _static_dimension(local)
            if self.dimension is not None:
                where += f"; {self.dimension}-dimensional (from its config)"
        checks = [Check("model", status, where if spec.name == spec.source else f"{spec.name}: {where}")]
        if not self.load_model:
            return checks
        if status != "ok":
            checks.append(Check("model load", "info", "skipped: the model is not available offline"))
            return checks
        checks.append(_guarded("model load", self._load)[0])
        return checks

    def _load(self) -> list[Check]:
        from .embed import get_embedder

        started = time.perf_counter()
        try:
            emb = get_embedder(self.spec, self.device)
        except Exception as e:
            return [Check("model load", "fail", _one_line(e))]
        self.dimension = emb.dimension
        took = time.perf_counter() - started
        return [Check("model load", "ok",
                      f"dimension {emb.dimension}, max_seq_length {emb.max_seq_length}, "
                      f"device {emb.device}, dtype {emb.dtype} ({took:.1f}s)")]

    def store_checks(self) -> list[Check]:
        checks = _guarded("store folder", lambda: [_store_folder(self.store)])
        if self.qdrant_url:
            if self.api_key:
                checks.append(_api_key_check(self.qdrant_url))
            checks.extend(_guarded("store collection", self._server_collection))
        else:
            checks.extend(_guarded("store collection", self._edge_collection))
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
        stored = _edge_config_dimension(config)
        clash = self._dimension_clash(name, stored, str(self.store))
        if clash:
            return [clash]
        note = self._dimension_note(stored)
        from .store import EdgeStore

        try:
            edge = EdgeStore(self.store, name, None)
        except Exception as e:
            text = str(e)
            if "another process" in text or "WouldBlock" in text:
                return [Check("store collection", "warn",
                              f"{name}: {note}; in use by a running ingest, points not counted")]
            return [Check("store collection", "fail", f"{name} cannot be opened: {_one_line(e)}")]
        try:
            points = edge.count()
        finally:
            edge.close()
        return [Check("store collection", "ok", f"{name}: {note}, {points} points")]

    def _server_collection(self) -> list[Check]:
        from .store import open_store

        url = _safe_url(self.qdrant_url or "")
        name = self.collection_name()
        if name is None:
            return [Check("store collection", "fail", "no collection name: the model did not resolve")]
        try:
            with warnings.catch_warnings():  # the insecure-key warning is a row of its own
                warnings.simplefilter("ignore", UserWarning)
                server = open_store(name, None, None, self.qdrant_url, self.api_key)
        except Exception as e:
            text = _one_line(e)
            if "There is no collection" in text:
                return [Check("store collection", "warn",
                              f"{url} is reachable; {name} does not exist yet, the first ingest "
                              "creates it")]
            reason = _root_reason(e)
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


def _api_key_check(url: str) -> Check:
    if urlsplit(url).scheme == "http":
        return Check("qdrant api key", "warn", "set (not shown), but the URL is http:// so it travels "
                     "unencrypted; use https://")
    return Check("qdrant api key", "ok", "set (not shown)")


def _root_reason(e: BaseException) -> str | None:
    """gRPC errors print as '<_InactiveRpcError ...>'; their code and details say what happened."""
    cause = e.__cause__
    details = getattr(cause, "details", None)
    code = getattr(cause, "code", None)
    if callable(details) and callable(code):
        try:
            return _one_line(f"{getattr(code(), 'name', code())}: {details()}")
        except Exception:
            return None
    return None


def _model_availability(spec: Any) -> tuple[str, str, Path | None]:
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
    return _hub_reachability(repo)


def _hub_reachability(repo: str) -> tuple[str, str, Path | None]:
    """Not cached: whether the first ingest could download it (one metadata request, no weights)."""
    if _offline():
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
        reason = f"the Hugging Face Hub is not reachable ({_error(error)})"
    return "fail", f"{repo} is not cached and cannot be loaded: {reason}", None


def _offline() -> bool:
    try:
        from huggingface_hub import constants

        if getattr(constants, "HF_HUB_OFFLINE", False):
            return True
    except ImportError:
        pass
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _static_dimension(folder: Path) -> int | None:
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


def _edge_config_dimension(config: Path) -> int | None:
    try:
        return int(json.loads(config.read_text())["vectors"][""]["size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


# -- store, library, manifest, disk, lock ----------------------------------------------------------


def _writable(folder: Path) -> str | None:
    """None when a file can be created (and removed) in folder, else why not."""
    try:
        fd, name = tempfile.mkstemp(prefix=".alexandria-doctor-", dir=folder)
    except OSError as e:
        return e.strerror or str(e)
    os.close(fd)
    try:
        os.unlink(name)
    except OSError:
        pass
    return None


def _store_folder(store: Path) -> Check:
    if store.exists():
        if not store.is_dir():
            return Check("store folder", "fail", f"{store} exists but is not a folder")
        problem = _writable(store)
        if problem:
            return Check("store folder", "fail", f"{store} is not writable ({problem})")
        return Check("store folder", "ok", f"{store} exists and is writable")
    parent = _nearest_existing(store)
    if not parent.is_dir():
        return Check("store folder", "fail", f"{store} cannot be created: {parent} is not a folder")
    problem = _writable(parent)
    if problem:
        return Check("store folder", "fail", f"{store} cannot be created: {parent} is not writable "
                     f"({problem})")
    return Check("store folder", "ok", f"{store} does not exist yet; the first run creates it")


def _library(directory: Path) -> list[Check]:
    from .library import is_calibre_library, scan

    if not directory.exists():
        return [Check("library", "fail", f"{directory} does not exist")]
    if not directory.is_dir():
        return [Check("library", "fail", f"{directory} is not a folder")]
    if not os.access(directory, os.R_OK | os.X_OK):
        return [Check("library", "fail", f"{directory} is not readable")]
    if is_calibre_library(directory):
        books = scan(directory)
        readable = sum(1 for b in books if b.path is not None and not b.skip_reason and not b.fail_reason)
        missing = sum(1 for b in books if b.fail_reason)
        skipped = sum(1 for b in books if b.skip_reason)
        detail = (f"calibre library {directory}: {len(books)} books ({readable} to ingest, "
                  f"{skipped} without an EPUB, {missing} with a missing file)")
        status = "warn" if missing or not books else "ok"
        return [Check("library", status, detail)]
    count = 0
    for _dirpath, dirnames, filenames in os.walk(directory):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        count += sum(1 for f in filenames if f.lower().endswith(".epub"))
    if not count:
        return [Check("library", "warn", f"{directory} has no metadata.db and no .epub files")]
    return [Check("library", "ok", f"folder of EPUBs {directory}: {count} books")]


def _manifest(ctx: _Context) -> list[Check]:
    from .pipeline import manifest_path

    return [_manifest_check(manifest_path(ctx.store, ctx.manifest), ctx.collection_name())]


def _manifest_check(path: Path, collection: str | None) -> Check:
    if not path.exists():
        return Check("manifest", "info", f"{path} does not exist yet; the first ingest creates it")
    if not path.is_file():
        return Check("manifest", "fail", f"{path} is not a file")
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error as e:
        return Check("manifest", "fail", f"{path} cannot be opened ({_one_line(e)})")
    try:
        result = [r[0] for r in con.execute("PRAGMA integrity_check").fetchall()]
        if result != ["ok"]:
            return Check("manifest", "fail", f"{path} is damaged ({_one_line(result[0] if result else '?')});"
                         " run `alexandria repair` to rebuild it from the store")
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "books" not in tables:
            return Check("manifest", "fail", f"{path} is a SQLite file but not an Alexandria manifest")
        rows = con.execute(
            "SELECT collection, status, count(*) FROM books GROUP BY collection, status"
        ).fetchall()
    except sqlite3.Error as e:
        return Check("manifest", "fail", f"{path} is unreadable ({_one_line(e)}); run "
                     "`alexandria repair` to rebuild it from the store")
    finally:
        con.close()
    mine = {status: n for coll, status, n in rows if coll == collection}
    others = {coll for coll, _status, _n in rows if coll != collection}
    order = ["done", "failed", "skipped", "pending", "in-progress", "removed"]
    parts = [f"{mine[s]} {s}" for s in order if mine.get(s)]
    parts += [f"{n} {s}" for s, n in sorted(mine.items()) if s not in order]
    books = sum(n for s, n in mine.items() if s != "removed")
    detail = f"{path}: integrity ok; {collection}: {books} books"
    if parts:
        detail += f" ({', '.join(parts)})"
    if others:
        detail += f"; also {len(others)} other collection(s)"
    status = "ok"
    if mine.get("in-progress"):
        status = "info"
        detail += "; in-progress rows are from a running or killed run, the next run redoes them"
    return Check("manifest", status, detail)


def _disk(store: Path) -> list[Check]:
    where = _nearest_existing(store)
    usage = shutil.disk_usage(where)
    detail = f"{_gib(usage.free)} free of {_gib(usage.total)} at {where}"
    if usage.free < LOW_DISK_BYTES:
        return [Check("disk space", "warn", f"{detail}; the store and manifest may fill it")]
    return [Check("disk space", "ok", detail)]


def _lock(store: Path) -> list[Check]:
    from .lock import lock_path, probe

    path = lock_path(store)
    if not path.exists():
        return [Check("lock", "info", f"{path} does not exist yet; no run has taken it")]
    holder = probe(path)
    if holder is None:
        return [Check("lock", "ok", f"{path} is free")]
    who = f"PID {holder.pid}" if holder.pid is not None else "an unknown process"
    if holder.host:
        who += f" on {holder.host}"
    since = f" since {holder.started}" if holder.started else ""
    return [Check("lock", "info", f"{path} is held by {who}{since}: a run is in progress")]
