"""The benchmark's books: the corpus, rewritten copies of it, and samples of its chunks."""

from __future__ import annotations

import os
import shutil
import zipfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from alexandria.children import child_context
from alexandria.errors import UsageError
from alexandria.tools.bench.synthetic import SYNTHETIC, build_synthetic_model, synthetic_alias

COPY_MARKER = "META-INF/alexandria-copy.txt"


def corpus_books(corpus: Path) -> list[Path]:
    corpus = Path(corpus).expanduser()
    if not corpus.is_dir():
        raise UsageError(f"The corpus folder {corpus} does not exist.")
    books = sorted(p for p in corpus.rglob("*") if p.is_file() and p.suffix.lower() == ".epub")
    if not books:
        raise UsageError(f"The corpus folder {corpus} holds no .epub files.")
    return books


def corpus_texts(books: list[Path]) -> list[str]:
    """Every chapter's text, for the synthetic models' tokenizer; a book that fails to extract is
    left out here (the dry pass reports it)."""
    from alexandria.sources.epub import extract_epub

    texts: list[str] = []
    for path in books:
        try:
            texts.extend(c.text for c in extract_epub(path.read_bytes(), str(path)).chapters)
        except Exception:
            continue
    return texts


def copy_epub(src: Path, dst: Path, copy_no: int) -> None:
    """A readable copy with its own content hash: the same entries (mimetype first and stored)
    plus one small marker entry, so that plain-folder book keys (content hashes) differ."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        infos = zin.infolist()
        infos.sort(key=lambda i: i.filename != "mimetype")  # stable: mimetype first
        for info in infos:
            if info.is_dir():
                continue
            data = zin.read(info)
            out = zipfile.ZipInfo(info.filename, date_time=info.date_time)
            out.external_attr = info.external_attr
            if info.filename == "mimetype":
                out.compress_type = zipfile.ZIP_STORED
            elif info.compress_type in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                out.compress_type = info.compress_type
            else:
                out.compress_type = zipfile.ZIP_DEFLATED
            zout.writestr(out, data)
        marker = zipfile.ZipInfo(COPY_MARKER, date_time=(2020, 1, 1, 0, 0, 0))
        marker.compress_type = zipfile.ZIP_STORED
        zout.writestr(marker, f"alexandria bench copy {copy_no} of {src.name}\n")


def make_copies(books: list[Path], copies: int, dest: Path) -> Path:
    """dest/copy_000/<book>.epub ... dest/copy_<K-1>/<book>.epub."""
    shutil.rmtree(dest, ignore_errors=True)
    for i in range(copies):
        for book in books:
            copy_epub(book, dest / f"copy_{i:03d}" / book.name, i)
    return dest


@dataclass
class PassBook:
    path: Path
    title: str  # what the pipeline uses as the title for a plain file: the file's stem
    texts: list[str]  # what the model reads (document prompt applied, as in the pipeline)
    tokens: list[int]  # per chunk, counted as the pipeline counts them


def dry_pass(books: list[Path], tokenizer_json: str, max_seq_length: int, settings,
             document_template: str | None, spec) -> tuple[list[PassBook], list[dict]]:
    """Every book prepared once with the pipeline's own code: chunks and token counts."""

    from alexandria.run.prepare import PrepareTask, init_worker, prepare

    tasks = [PrepareTask(str(i), str(p), "epub", p.stem) for i, p in enumerate(books)]
    initargs = (tokenizer_json, max_seq_length, settings, document_template)
    workers = max(1, min(len(tasks), (os.cpu_count() or 2) - 1, 8))
    if workers == 1:
        init_worker(*initargs)
        prepared = [prepare(t) for t in tasks]
    else:
        with ProcessPoolExecutor(workers, mp_context=child_context(), initializer=init_worker,
                                 initargs=initargs) as pool:
            prepared = list(pool.map(prepare, tasks))
    good: list[PassBook] = []
    excluded: list[dict] = []
    for path, p in zip(books, prepared, strict=True):
        if p.reason or not p.chunks:
            excluded.append({"book": path.name, "reason": p.reason or "no-chunks"})
            continue
        title = path.stem
        good.append(PassBook(path, title, [spec.document_text(c.text, title) for c in p.chunks],
                             [c.tokens for c in p.chunks]))
    return good, excluded


# -- measurements ----------------------------------------------------------------------------------


def corpus_sample(corpus: Path, model: str, synthetic_weights: bool, device: str, chunks: int,
                  work: Path):
    """(spec, embedder, token ids of `chunks` chunks spread over the corpus): what the GPU
    scripts time the model on, outside the bench."""
    from alexandria.chunking.chunker import Chunker, ChunkSettings
    from alexandria.embedding.embedder import get_embedder
    from alexandria.embedding.models import ModelSpec, resolve_model
    from alexandria.run.prepare import model_inputs

    books = corpus_books(corpus)
    if synthetic_weights:
        alias = synthetic_alias(model)
        folder = build_synthetic_model(alias, corpus_texts(books), Path(work) / alias, device)
        spec = ModelSpec(alias, str(folder), cuda_dtype=SYNTHETIC[alias].cuda_dtype)
    else:
        spec = resolve_model(model)
    embedder = get_embedder(spec, device, "auto")
    passbooks, _ = dry_pass(books, embedder.tokenizer_json(), embedder.max_seq_length,
                            ChunkSettings(), spec.document_template, spec)
    texts = [t for b in passbooks for t in b.texts]
    texts = spread(texts, min(chunks, len(texts)))
    chunker = Chunker(embedder.tokenizer_json(), embedder.max_seq_length, ChunkSettings())
    return spec, embedder, model_inputs(chunker, texts)


def spread(items: list, keep: int) -> list:
    """`keep` items evenly spread over the list (all of them when there are fewer)."""
    if keep >= len(items):
        return list(items)
    step = len(items) / keep
    return [items[int(i * step)] for i in range(keep)]


