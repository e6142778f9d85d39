"""Random-weight stand-ins of the real models, with tokenizers trained on the corpus: the speed
of bge-m3 and EmbeddingGemma where their weights cannot be had (the vectors mean nothing)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alexandria.errors import UsageError

SYNTHETIC_TOKENIZER = "trained on the corpus (synthetic)"
TOKENIZER_VOCAB = 30_000
TOKENIZER_SAMPLE_CHARS = 2_000_000  # Unigram training: about 4 s on 2 cores for this much text
Progress = Callable[[str], None]


@dataclass(frozen=True)
class SyntheticArch:
    alias: str
    cuda_dtype: str
    max_seq_length: int
    pooling: str  # what the real model's sentence-transformers config uses
    specials: tuple[str, ...]  # in id order: the trained tokenizer's first ids
    bos: str
    eos: str
    pad: str
    unk: str
    dense: tuple[int, ...] = ()  # EmbeddingGemma's two projection layers after pooling
    # SentencePiece's nmt_nfkc (XLM-R, so bge-m3): NFKC, then these become spaces, and the
    # converted tokenizer folds runs of spaces into one
    nmt_spaces: bool = False
    # Gemma 3's own tokenizer pre-splits no words (BPE over the whole text, spaces as the marker),
    # so a chunk's tokens in its chapter are never reused there (alexandria.chunking.chunker.IdReuse): its
    # stand-in is trained on words, then runs unsplit (the same tokens, no piece spans a marker).
    presplit: bool = True


NMT_SPACES = "[\t\n\f\r\u1680\u200b\u200c\u200e\u200f\u2028\u2029\u2581\ufeff\ufffd]"


SYNTHETIC = {
    # BAAI/bge-m3: XLM-RoBERTa large, CLS pooling, 8192 positions.
    "bge-m3": SyntheticArch("bge-m3", "float16", 8192, "cls",
                            ("<s>", "<pad>", "</s>", "<unk>", "<mask>"), "<s>", "</s>", "<pad>", "<unk>",
                            nmt_spaces=True),
    # google/embeddinggemma-300m: Gemma 3 text, bidirectional, mean pooling, 768 -> 3072 -> 768.
    "embeddinggemma": SyntheticArch("embeddinggemma", "bfloat16", 2048, "mean",
                                    ("<pad>", "<eos>", "<bos>", "<unk>", "<mask>"), "<bos>", "<eos>",
                                    "<pad>", "<unk>", dense=(3072,), presplit=False),
}


def synthetic_alias(model: str) -> str:
    from alexandria.embedding.models import resolve_model

    name = resolve_model(model).name
    if name not in SYNTHETIC:
        raise UsageError(
            f"--synthetic-weights builds bge-m3 or embeddinggemma only, not {model!r}."
        )
    return name


def synthetic_config(alias: str):
    """The exact architecture of the real model, as a transformers config (no weights)."""
    if alias == "bge-m3":
        from transformers import XLMRobertaConfig

        return XLMRobertaConfig(
            vocab_size=250002, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
            intermediate_size=4096, hidden_act="gelu", max_position_embeddings=8194,
            type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0, eos_token_id=2,
        )
    if alias == "embeddinggemma":
        import inspect

        from transformers import Gemma3TextConfig

        kw: dict[str, Any] = dict(
            vocab_size=262144, hidden_size=768, num_hidden_layers=24, num_attention_heads=3,
            num_key_value_heads=1, head_dim=256, intermediate_size=1152, sliding_window=512,
            max_position_embeddings=2048, query_pre_attn_scalar=256, rms_norm_eps=1e-6,
            hidden_activation="gelu_pytorch_tanh", pad_token_id=0, eos_token_id=1, bos_token_id=2,
            use_cache=False,
        )
        if "use_bidirectional_attention" in inspect.signature(Gemma3TextConfig.__init__).parameters:
            kw["use_bidirectional_attention"] = True
        return Gemma3TextConfig(**kw)
    raise UsageError(f"No synthetic architecture for {alias!r}.")


def parameter_counts(model) -> tuple[int, int]:
    """(all parameters, non-embedding parameters): embeddings and BERT-style poolers excluded."""
    import torch

    skip: set[int] = set()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Embedding) or name.split(".")[-1] == "pooler":
            skip.update(id(p) for p in module.parameters())
    total = sum(p.numel() for p in model.parameters())
    non_embedding = sum(p.numel() for p in model.parameters() if id(p) not in skip)
    return total, non_embedding


def config_parameter_counts(config) -> tuple[int, int]:
    """Parameter counts of an architecture, built on the meta device: no memory, no weights."""
    import torch
    from transformers import AutoModel

    with torch.device("meta"):
        model = AutoModel.from_config(config)
    return parameter_counts(model)


def train_tokenizer(texts: list[str], arch: SyntheticArch, vocab_size: int = TOKENIZER_VOCAB):
    """A SentencePiece-like Unigram tokenizer trained on (a sample of) the corpus text."""
    from tokenizers import (
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    total = sum(len(t) for t in texts) or 1
    share = min(1.0, TOKENIZER_SAMPLE_CHARS / total)
    sample = [t[: max(200, int(len(t) * share))] for t in texts if t.strip()]
    tk = Tokenizer(models.Unigram())
    tk.normalizer = normalizers.NFKC()
    if arch.nmt_spaces:
        tk.normalizer = normalizers.Sequence([
            normalizers.NFKC(), normalizers.Replace(Regex(NMT_SPACES), " "),
            normalizers.Replace(Regex(" {2,}"), " "),
        ])
    tk.pre_tokenizer = pre_tokenizers.Metaspace()
    tk.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=list(arch.specials), unk_token=arch.unk,
        show_progress=False,
    )
    tk.train_from_iterator(sample, trainer)
    if not arch.presplit:
        tk.pre_tokenizer = pre_tokenizers.Metaspace(split=False)
    bos, eos = tk.token_to_id(arch.bos), tk.token_to_id(arch.eos)
    tk.post_processor = processors.TemplateProcessing(
        single=f"{arch.bos} $A {arch.eos}", pair=f"{arch.bos} $A {arch.eos} $B {arch.eos}",
        special_tokens=[(arch.bos, bos), (arch.eos, eos)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, bos_token=arch.bos, eos_token=arch.eos, pad_token=arch.pad,
        unk_token=arch.unk, mask_token="<mask>", cls_token=arch.bos, sep_token=arch.eos,
        model_max_length=arch.max_seq_length,
    )


def build_synthetic_model(alias: str, texts: list[str], folder: Path, device: str,
                          progress: Progress | None = None) -> Path:
    """Random weights of the exact architecture + a corpus-trained tokenizer, saved as a
    sentence-transformers folder that `alexandria.embed` loads like any local model."""
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel

    from alexandria.embedding.embedder import quiet_libraries

    quiet_libraries()
    quiet_transformers()
    arch = SYNTHETIC[alias]
    say = progress or (lambda _m: None)
    folder = Path(folder)
    raw = folder.parent / (folder.name + ".raw")
    shutil.rmtree(raw, ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)
    t = time.perf_counter()
    tokenizer = train_tokenizer(texts, arch)
    say(f"trained a {tokenizer.vocab_size}-token Unigram tokenizer on the corpus "
        f"({time.perf_counter() - t:.1f}s)")
    config = synthetic_config(alias)
    if tokenizer.vocab_size > config.vocab_size:
        raise UsageError("The trained tokenizer is larger than the model's vocabulary.")
    t = time.perf_counter()
    torch.manual_seed(0)
    dtype = getattr(torch, arch.cuda_dtype)
    init_device = device if device.startswith("cuda") else "cpu"
    with torch.device(init_device):
        model = AutoModel.from_config(config, dtype=dtype)
    model.save_pretrained(raw)
    tokenizer.save_pretrained(raw)
    del model
    say(f"random {alias} weights built and saved ({time.perf_counter() - t:.1f}s)")
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer

    modules: list[Any] = [Transformer(str(raw), max_seq_length=arch.max_seq_length,
                                      model_kwargs={"dtype": dtype})]
    hidden = config.hidden_size
    modules.append(Pooling(hidden, arch.pooling))
    width = hidden
    for size in arch.dense:
        modules.append(Dense(width, size, bias=False, activation_function=torch.nn.Identity()))
        width = size
    if arch.dense:
        modules.append(Dense(width, hidden, bias=False, activation_function=torch.nn.Identity()))
    modules.append(Normalize())
    st = SentenceTransformer(modules=modules, device="cpu")
    st.save(str(folder))
    del st, modules
    shutil.rmtree(raw, ignore_errors=True)
    return folder


def quiet_transformers() -> None:
    try:
        from transformers.utils import logging as tlog

        tlog.disable_progress_bar()
        tlog.set_verbosity_error()
    except Exception:  # only cosmetics
        pass


# -- the corpus and its copies ---------------------------------------------------------------------


