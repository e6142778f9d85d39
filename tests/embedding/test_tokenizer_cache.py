"""The tokenizer cache: AutoTokenizer's own tokenizer, read back without transformers or torch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from alexandria.embedding.cache import CACHE_ENV
from alexandria.embedding.models import resolve_model
from alexandria.embedding.tokenizer import _from_transformers, load_tokenizer_json, tokenizer_key
from tests.conftest import REPO
from tests.infinity import minilm_folder


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(folder))
    return folder


@pytest.fixture
def model_copy(tmp_path):
    """A model folder of our own, so that a test may change its tokenizer files."""
    folder = tmp_path / "minilm"
    shutil.copytree(minilm_folder(), folder)
    return folder


def test_the_first_load_stores_exactly_what_auto_tokenizer_makes(cache):
    spec = resolve_model("minilm")
    made = load_tokenizer_json(spec)
    assert made == _from_transformers(spec)
    stored = list((cache / "tokenizers").glob("*.json"))
    assert len(stored) == 1
    assert json.loads(stored[0].read_text())["tokenizer"] == made[0]


def test_a_later_load_reads_the_cache_without_importing_transformers_or_torch(cache):
    spec = resolve_model("minilm")
    first = load_tokenizer_json(spec)
    code = ("import sys, json; from alexandria.embedding.models import resolve_model; "
            "from alexandria.embedding.tokenizer import load_tokenizer_json; "
            "t, n = load_tokenizer_json(resolve_model('minilm')); "
            "print(json.dumps([t == sys.stdin.read(), n, 'transformers' in sys.modules, "
            "'torch' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], input=first[0], cwd=REPO,
                         capture_output=True, text=True, check=True)
    same, max_len, transformers, torch = json.loads(out.stdout)
    assert same and max_len == first[1]
    assert not transformers and not torch


def test_a_changed_tokenizer_file_makes_a_new_entry(cache, model_copy):
    spec = resolve_model(str(model_copy))
    before = tokenizer_key(spec)
    load_tokenizer_json(spec)
    config = model_copy / "tokenizer_config.json"
    data = json.loads(config.read_text())
    data["model_max_length"] = 77
    config.write_text(json.dumps(data))
    assert tokenizer_key(spec) != before
    load_tokenizer_json(spec)
    assert len(list((cache / "tokenizers").glob("*.json"))) == 2


def test_a_damaged_entry_is_made_again(cache):
    spec = resolve_model("minilm")
    good = load_tokenizer_json(spec)
    (entry,) = (cache / "tokenizers").glob("*.json")
    entry.write_text('{"tokenizer": ')
    assert load_tokenizer_json(spec) == good
    assert json.loads(entry.read_text())["tokenizer"] == good[0]


def test_an_unwritable_cache_costs_nothing_but_time(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(CACHE_ENV, str(blocker))
    spec = resolve_model("minilm")
    assert load_tokenizer_json(spec) == _from_transformers(spec)
    assert not list(tmp_path.glob("*.tmp"))
