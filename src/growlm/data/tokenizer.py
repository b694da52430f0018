"""One way to load any tokenizer a user names, as a transformers tokenizer.

growlm tokenizes everything -- training data, evaluation prompts, ``generate`` --
with the same transformers tokenizer, which is saved into every data folder and
every checkpoint. That is what makes a checkpoint folder self-sufficient and keeps
training and inference tokenization identical.

Accepted specs:

* a SentencePiece ``.model`` file, converted once by transformers' own converter to a
  fast (``tokenizers``) Llama-style tokenizer, the form in which the Hugging Face hub
  ships Mistral's 32k vocabulary. It differs from the raw ``sentencepiece`` library
  only in how runs of several spaces split (about 0.05% of tokens on the shared
  corpus); see docs/data.md;
* a ``tokenizer.json`` file (a ``tokenizers`` serialisation);
* a folder holding a saved transformers tokenizer, a ``tokenizer.model`` or GPT-2 style
  ``vocab.json`` + ``merges.txt``;
* any other string is a Hugging Face hub name, loaded through transformers (online).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from transformers import AutoTokenizer, GPT2Tokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from growlm.errors import DataError


def _from_sentencepiece(model_file: Path) -> PreTrainedTokenizerBase:
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(model_file, Path(tmp) / "tokenizer.model")
        (Path(tmp) / "tokenizer_config.json").write_text(json.dumps(
            {"tokenizer_class": "LlamaTokenizer", "add_bos_token": False, "add_eos_token": False}
        ))
        return AutoTokenizer.from_pretrained(tmp)


def _from_gpt2_files(folder: Path) -> PreTrainedTokenizerBase:
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("vocab.json", "merges.txt"):
            shutil.copy(folder / name, Path(tmp) / name)
        return GPT2Tokenizer.from_pretrained(tmp)


def load_tokenizer(spec: str | Path) -> PreTrainedTokenizerBase:
    """Load the tokenizer named by ``spec`` (see the module docstring)."""
    path = Path(spec).expanduser()
    try:
        if path.is_file():
            if path.suffix == ".model":
                return _from_sentencepiece(path)
            if path.suffix == ".json":
                return PreTrainedTokenizerFast(tokenizer_file=str(path))
            raise DataError(f"tokenizer file {path} is neither a SentencePiece .model nor a tokenizer.json")
        if path.is_dir():
            if (path / "tokenizer.json").exists() or (path / "tokenizer_config.json").exists():
                return AutoTokenizer.from_pretrained(str(path))
            if (path / "tokenizer.model").exists():
                return _from_sentencepiece(path / "tokenizer.model")
            if (path / "vocab.json").exists() and (path / "merges.txt").exists():
                return _from_gpt2_files(path)
            raise DataError(
                f"tokenizer folder {path} holds no tokenizer.json, tokenizer.model or vocab.json + merges.txt"
            )
    except DataError:
        raise
    except Exception as exc:  # the libraries raise many kinds; the user needs the path and the reason
        raise DataError(f"cannot load tokenizer from {path}: {exc}") from exc
    if str(spec).startswith((".", "/", "~")) or path.suffix in {".model", ".json"}:
        raise DataError(f"tokenizer {spec} does not exist")
    try:
        return AutoTokenizer.from_pretrained(str(spec))
    except Exception as exc:
        raise DataError(
            f"tokenizer '{spec}' is not a local file or folder, and loading it from the Hugging Face hub "
            f"failed: {exc}"
        ) from exc


def end_of_document_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The token written between documents: the tokenizer's EOS token."""
    if tokenizer.eos_token_id is None:
        raise DataError("the tokenizer has no end-of-sequence token to separate documents with")
    return int(tokenizer.eos_token_id)
