"""--dry-run: extract and chunk only; no model weights (but for semantic breaks), no store, no
manifest. The report says per book how many chunks of what length a real run would make."""

from __future__ import annotations

from alexandria.embedding.models import ModelSpec
from alexandria.run.options import IngestOptions, default_token_budget
from alexandria.run.prepare import PrepareTask, complete_semantic, init_worker, prepare
from alexandria.run.report import BookResult, RunReport, path_text
from alexandria.sources.library import Book


def dry_run(opts: IngestOptions, spec: ModelSpec, report: RunReport, books: list[Book]) -> None:
    from alexandria.chunking.chunker import Chunker
    from alexandria.embedding.embedder import load_tokenizer_json

    tokenizer_json, max_len = load_tokenizer_json(spec)
    init_worker(tokenizer_json, max_len, opts.chunk_settings(), spec.document_template)
    r = report
    r.dry_run = True
    r.books_total = len(books)
    chunker: Chunker | None = None
    for b in books:
        if b.fail_reason or b.skip_reason:
            status = "failed" if b.fail_reason else "skipped"
            r.add(BookResult(b.key, b.title, path_text(b.path), status,
                             b.fail_reason or b.skip_reason))
            continue
        prepared = prepare(PrepareTask(b.key, str(b.path), b.fmt or "epub", b.title,
                                        title_is_file_name=b.calibre_id is None))
        if prepared.reason:
            r.add(BookResult(b.key, b.title, path_text(b.path), "failed", prepared.reason))
            continue
        if prepared.sentences is not None:  # semantic: its breaks need the model after all
            from alexandria.embedding.embedder import get_embedder

            chunker = chunker or Chunker(tokenizer_json, max_len, opts.chunk_settings())
            embedder = get_embedder(spec, opts.device, opts.dtype)
            complete_semantic([prepared], chunker, spec.document_template, embedder,
                              default_token_budget(opts, max_len, "cpu"), 4096)
        result = BookResult(b.key, prepared.title if b.calibre_id is None else b.title,
                            path_text(b.path), "done", None, len(prepared.chunks),
                            prepared.tokens, prepared.seconds)
        r.add(result)
        lengths = sorted(c.tokens for c in prepared.chunks if c.kind == "chunk")
        r.books[-1]["parents"] = sum(c.kind == "parent" for c in prepared.chunks)
        r.books[-1]["token_lengths"] = {
            "min": lengths[0], "median": lengths[len(lengths) // 2], "max": lengths[-1],
            "mean": round(sum(lengths) / len(lengths), 1),
        }
        r.books[-1]["chapters"] = len({c.chapter_index for c in prepared.chunks})
        step = max(1, len(prepared.chunks) // max(1, opts.samples))
        r.books[-1]["samples"] = [
            {"chapter": c.chapter, "tokens": c.tokens, "text": c.text[:300]}
            for c in prepared.chunks[::step][: opts.samples]
        ]
