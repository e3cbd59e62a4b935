"""Tokenizers: the demo SentencePiece model and a Hugging Face JSON adapter.

Both are plain Python (no TensorFlow), lazy (the model file is opened on first
use) and picklable (only the path travels), so Grain workers and prepare
processes can carry them. `vocabulary.py` wraps them as seqio Vocabularies.

Special ids of the demo model: pad=0, eos=1, bos=2, unk=3, then the FIM
sentinels. HF tokenizers keep their own ids; missing FIM sentinels are
appended as added special tokens so the same FIM code works for both.
"""
import hashlib
import io
import json
import pathlib
from collections.abc import Iterable, Sequence

import sentencepiece
import tokenizers

from midtrain_jax import cache, files

DEMO_SPM = "demo_spm"
DEMO_VOCAB_SIZE = 8192
FIM_PREFIX = "<|fim_prefix|>"
FIM_MIDDLE = "<|fim_middle|>"
FIM_SUFFIX = "<|fim_suffix|>"
FIM_PAD = "<|fim_pad|>"
FIM_SENTINELS = (FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX, FIM_PAD)
# Newline and tab as whole pieces keep code layout cheap and exact.
_DEMO_USER_SYMBOLS = FIM_SENTINELS + ("\n", "\t")
# tokenizer_config.json's keys of the rule: whether a text gets BOS first, EOS last.
ADD_KEYS = ("add_bos_token", "add_eos_token")


class Tokenizer:
  """Common interface: encode/decode plus the special ids the pipeline needs."""

  name: str
  vocab_size: int
  pad_id: int
  eos_id: int
  bos_id: int

  def encode(self, text: str) -> list[int]:
    raise NotImplementedError

  def decode(self, ids: Sequence[int]) -> str:
    raise NotImplementedError

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    """Encodes many documents (backends use their own threads)."""
    return [self.encode(text) for text in texts]

  def token_id(self, piece: str) -> int:
    raise NotImplementedError

  @property
  def adds_bos(self) -> bool:
    """Whether a sequence starts with BOS when this tokenizer encodes it for its model.

    The one rule for where BOS goes: prompts (generation), contexts
    (evaluation) and prepared documents all start with `start_ids()`. Models
    trained here with a SentencePiece vocabulary start every document with
    BOS; a Hugging Face tokenizer says (HFJsonTokenizer.adds_bos).
    """
    return True

  @property
  def adds_eos(self) -> bool:
    """Whether this tokenizer ends an encoded text with EOS for its model.

    Only carried through import and export (tokenizer_config.json's
    `add_eos_token`): prompts never end with EOS, and a prepared document
    always does, because EOS is what separates documents.
    """
    return False

  def start_ids(self) -> list[int]:
    """What a sequence holds before its first text token: [bos] when `adds_bos`, else []."""
    return [self.bos_id] if self.adds_bos else []

  def encode_prompt(self, text: str) -> list[int]:
    """`text` encoded as the start of a sequence (a prompt, a context, a document's
    text): `start_ids()` then its tokens, as the model's own tokenizer encodes it."""
    return self.start_ids() + self.encode(text)

  @property
  def chat_template(self) -> str | None:
    """The model's own chat template (jinja2), or None (data/chat.py then uses its default)."""
    return None

  def fim_ids(self) -> dict[str, int] | None:
    """The ids of the FIM sentinels keyed prefix/middle/suffix/pad (None: it has none)."""
    try:
      return {key: self.token_id(piece) for key, piece in
              zip(("prefix", "middle", "suffix", "pad"), FIM_SENTINELS)}
    except KeyError:
      return None

  def files(self) -> list[pathlib.Path]:
    """The files the tokenizer loads, its model first."""
    raise NotImplementedError

  def fingerprint(self) -> str:
    """Returns a short hash of the files it loads, recorded next to shards."""
    digest = hashlib.sha256()
    for path in self.files():
      digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


class SentencePieceTokenizer(Tokenizer):
  """A SentencePiece model file, loaded on first use."""

  def __init__(self, model_path: str, name: str | None = None):
    self.model_path = str(model_path)
    self.name = name or self.model_path
    self._processor = None

  def __getstate__(self):
    return {"model_path": self.model_path, "name": self.name, "_processor": None}

  @property
  def processor(self):
    if self._processor is None:
      if not pathlib.Path(self.model_path).is_file():
        raise FileNotFoundError(
            f"SentencePiece model {self.model_path} does not exist; for "
            f"'{DEMO_SPM}' run `python -m midtrain_jax.data.prepare "
            f"--mixture=dolmino_demo`, which trains it.")
      self._processor = sentencepiece.SentencePieceProcessor(model_file=self.model_path)
    return self._processor

  @property
  def vocab_size(self) -> int:
    return self.processor.get_piece_size()

  @property
  def pad_id(self) -> int:
    return self.processor.pad_id()

  @property
  def eos_id(self) -> int:
    return self.processor.eos_id()

  @property
  def bos_id(self) -> int:
    return self.processor.bos_id()

  def encode(self, text: str) -> list[int]:
    return self.processor.encode(text)

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    return self.processor.encode(list(texts), num_threads=2)

  def decode(self, ids: Sequence[int]) -> str:
    return self.processor.decode([int(i) for i in ids])

  def token_id(self, piece: str) -> int:
    token = self.processor.piece_to_id(piece)
    if token == self.processor.unk_id():
      raise KeyError(f"{piece!r} is not a piece of {self.model_path}")
    return token

  def files(self) -> list[pathlib.Path]:
    return [pathlib.Path(self.model_path)]


class HFJsonTokenizer(Tokenizer):
  """A Hugging Face `tokenizers` JSON file (e.g. OLMo's), loaded on first use.

  A bare tokenizer file gets the FIM sentinels it lacks appended, and its
  special tokens are found by their usual names. A model's own tokenizer (a
  `tokenizer_config.json` beside the file, as `convert import` writes and HF
  model folders hold) keeps its vocabulary, which the model's embedding is
  sized for, and names its BOS/EOS/pad tokens there.
  """

  _EOS_NAMES = ("<|endoftext|>", "</s>", "<eos>", "<|end_of_text|>")
  _BOS_NAMES = ("<|begin_of_text|>", "<s>", "<bos>")
  _PAD_NAMES = ("<|padding|>", "<pad>", "[PAD]")

  def __init__(self, json_path: str):
    self.json_path = str(json_path)
    self.name = self.json_path
    self._tokenizer = None
    self._special = None
    self._ends = None

  def __getstate__(self):
    return {"json_path": self.json_path, "name": self.name, "_tokenizer": None,
            "_special": None, "_ends": None}

  def _config_path(self) -> pathlib.Path:
    return pathlib.Path(self.json_path).with_name("tokenizer_config.json")

  def _config(self) -> dict | None:
    """tokenizer_config.json beside the file, or None without one."""
    path = self._config_path()
    return json.loads(path.read_text()) if path.exists() else None

  @property
  def special_tokens(self) -> dict[str, str] | None:
    """{"bos", "eos", "pad": token} from tokenizer_config.json, or None without one."""
    if self._special is None:
      config = self._config()
      if config is None:
        return None

      def content(key):
        value = config.get(f"{key}_token")
        return value.get("content") if isinstance(value, dict) else value
      self._special = {key: content(key) for key in ("bos", "eos", "pad")}
    return self._special

  @property
  def chat_template(self) -> str | None:
    """The model's chat template (tokenizer_config.json's `chat_template`), or None."""
    template = (self._config() or {}).get("chat_template")
    return template if isinstance(template, str) else None

  @property
  def tokenizer(self):
    if self._tokenizer is None:
      tok = tokenizers.Tokenizer.from_file(self.json_path)
      if self.special_tokens is None:
        missing = [s for s in FIM_SENTINELS if tok.token_to_id(s) is None]
        # Appended ids are deterministic for a given file, so shards stay valid.
        tok.add_special_tokens(missing)
      self._tokenizer = tok
    return self._tokenizer

  def _first_known(self, names: Iterable[str | None]) -> int | None:
    for name in names:
      token = self.tokenizer.token_to_id(name) if name else None
      if token is not None:
        return token
    return None

  def _named(self, key: str, usual: tuple[str, ...]) -> int | None:
    special = self.special_tokens
    return self._first_known(((special or {}).get(key),) + usual)

  @property
  def vocab_size(self) -> int:
    return self.tokenizer.get_vocab_size(with_added_tokens=True)

  @property
  def eos_id(self) -> int:
    token = self._named("eos", self._EOS_NAMES)
    if token is None:
      raise ValueError(f"{self.json_path} has none of the end-of-text tokens "
                       f"{self._EOS_NAMES}.")
    return token

  @property
  def bos_id(self) -> int:
    # GPT-NeoX style vocabularies use end-of-text as document separator.
    token = self._named("bos", self._BOS_NAMES)
    return self.eos_id if token is None else token

  @property
  def pad_id(self) -> int:
    token = self._named("pad", self._PAD_NAMES)
    return self.eos_id if token is None else token

  @property
  def adds_bos(self) -> bool:
    """`add_bos_token` of tokenizer_config.json where it says, else whether the
    tokenizer's post-processor puts BOS before a text (a bare file: it does not).

    An explicit `add_bos_token` wins, as a model's authors state it and as
    transformers 4's Llama-style tokenizers apply it (transformers 5 reads
    only the post-processor). `convert import` and `export` write both,
    agreeing (interop/hf.py), so every reader encodes alike.
    """
    return self._added_ends()[0]

  @property
  def adds_eos(self) -> bool:
    """`add_eos_token` of tokenizer_config.json where it says, else whether the
    post-processor puts EOS after a text."""
    return self._added_ends()[1]

  def _added_ends(self) -> tuple[bool, bool]:
    """(adds BOS, adds EOS), read once (every prepared document asks)."""
    if self._ends is None:
      config = self._config() or {}
      processed = post_processor_ends(self.tokenizer, self.bos_id, self.eos_id)
      self._ends = tuple(bool(config[key]) if config.get(key) is not None else found
                         for key, found in zip(ADD_KEYS, processed))
    return self._ends

  def encode(self, text: str) -> list[int]:
    return self.tokenizer.encode(text, add_special_tokens=False).ids

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    return [e.ids for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]

  def decode(self, ids: Sequence[int]) -> str:
    return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)

  def token_id(self, piece: str) -> int:
    token = self.tokenizer.token_to_id(piece)
    if token is None:
      raise KeyError(f"{piece!r} is not a token of {self.json_path}")
    return token

  def files(self) -> list[pathlib.Path]:
    # The config names the special tokens, so it is part of the tokenizer.
    config = self._config_path()
    return [pathlib.Path(self.json_path), *([config] if config.exists() else [])]


def post_processor_ends(tok: tokenizers.Tokenizer, bos_id: int | None,
                        eos_id: int | None) -> tuple[bool, bool]:
  """(puts BOS first, puts EOS last): what the post-processor of `tok` adds to a text."""
  plain = tok.encode("a", add_special_tokens=False).ids
  special = tok.encode("a", add_special_tokens=True).ids
  extra = len(special) > len(plain)
  return (extra and bos_id is not None and special[0] == bos_id,
          extra and eos_id is not None and special[-1] == eos_id)


def template_processor(bos: tuple[str, int] | None, eos: tuple[str, int] | None) -> dict:
  """A `tokenizers` TemplateProcessing, as JSON, putting `bos` before and `eos` after
  each sequence of a text or pair ((token, id) pairs; None: nothing there)."""
  def template(type_id: int) -> list[dict]:
    piece = lambda end: [{"SpecialToken": {"id": end[0], "type_id": type_id}}] if end else []
    return piece(bos) + [{"Sequence": {"id": "AB"[type_id], "type_id": type_id}}] + piece(eos)

  special = {token: {"id": token, "ids": [i], "tokens": [token]}
             for token, i in (e for e in (bos, eos) if e)}
  return {"type": "TemplateProcessing", "single": template(0),
          "pair": template(0) + template(1), "special_tokens": special}


def with_ends(tokenizer_text: str, bos_id: int | None, eos_id: int | None,
              ends: dict[str, bool]) -> str:
  """A tokenizer.json text whose post-processor adds BOS/EOS as `ends` says.

  Args:
    tokenizer_text: the `tokenizers` JSON.
    bos_id: the BOS token's id (None: the vocabulary names none).
    eos_id: the EOS token's id, likewise.
    ends: {"add_bos_token", "add_eos_token"} (tokenizer_config.json's names);
      a key left out keeps what the post-processor does.

  Returns:
    The text unchanged when its post-processor already agrees, else with a
    TemplateProcessing post-processor that does.

  Raises:
    ValueError: BOS or EOS is to be added but the vocabulary has no such token.
  """
  tok = tokenizers.Tokenizer.from_str(tokenizer_text)
  found = dict(zip(ADD_KEYS, post_processor_ends(tok, bos_id, eos_id)))
  wanted = {**found, **ends}
  if wanted == found:
    return tokenizer_text
  ends_ids = dict(zip(ADD_KEYS, (bos_id, eos_id)))
  missing = [key for key in ADD_KEYS if wanted[key] and ends_ids[key] is None]
  if missing:
    raise ValueError(f"{missing} is set but the tokenizer has no such special token.")
  pick = lambda key: (tok.id_to_token(ends_ids[key]), ends_ids[key]) if wanted[key] else None
  data = json.loads(tokenizer_text)
  data["post_processor"] = template_processor(*(pick(key) for key in ADD_KEYS))
  return json.dumps(data, ensure_ascii=False)


def demo_spm_path() -> pathlib.Path:
  """Returns where the demo SentencePiece model lives in the cache."""
  return cache.cache_root() / "tokenizers" / f"{DEMO_SPM}_{DEMO_VOCAB_SIZE}.model"


def load_tokenizer(spec: str) -> Tokenizer:
  """Returns the tokenizer named by the `data.tokenizer` config value.

  Args:
    spec: "demo_spm", a SentencePiece `.model` path or an HF `.json` path.

  Returns:
    A lazy, picklable Tokenizer.
  """
  if spec == DEMO_SPM:
    return SentencePieceTokenizer(str(demo_spm_path()), name=DEMO_SPM)
  if spec.endswith(".model"):
    return SentencePieceTokenizer(spec)
  if spec.endswith(".json"):
    return HFJsonTokenizer(spec)
  raise ValueError(f"Unknown tokenizer {spec!r}: use '{DEMO_SPM}', a "
                   "SentencePiece .model file or a tokenizers .json file.")


def vocab_size(spec: str) -> int:
  """Returns the vocabulary size of a tokenizer spec without training anything."""
  if spec == DEMO_SPM:
    return DEMO_VOCAB_SIZE
  return load_tokenizer(spec).vocab_size


def train_demo_spm(texts: Iterable[str], out_path: pathlib.Path,
                   vocab: int = DEMO_VOCAB_SIZE) -> pathlib.Path:
  """Trains the demo SentencePiece model (BPE, byte fallback) and saves it.

  Args:
    texts: training documents (whole documents; newlines are kept).
    out_path: the .model file to write (atomically).
    vocab: vocabulary size including special and sentinel tokens.

  Returns:
    out_path.
  """
  model = io.BytesIO()
  sentencepiece.SentencePieceTrainer.train(
      sentence_iterator=iter(texts), model_writer=model, vocab_size=vocab,
      model_type="bpe", pad_id=0, eos_id=1, bos_id=2, unk_id=3,
      user_defined_symbols=list(_DEMO_USER_SYMBOLS), byte_fallback=True,
      split_digits=True, remove_extra_whitespaces=False,
      normalization_rule_name="identity", allow_whitespace_only_pieces=True,
      max_sentence_length=1 << 20, character_coverage=0.9995,
      num_threads=2, minloglevel=2)
  out_path.parent.mkdir(parents=True, exist_ok=True)
  files.write_bytes(out_path, model.getvalue())
  return out_path
