"""Hugging Face checkpoints in and out: a model folder or a GGUF file <-> a run directory.

`import_model` turns an HF model folder (`config.json`, `*.safetensors`,
sharded or not, tokenizer files) or a `.gguf` file into a run directory:
`config.json` with the model section derived from the source, an orbax
checkpoint at step 0 (params only) and the model's tokenizer, so
`--config.train.init_from=DIR` works like any checkpoint. Tensors stream one at
a time, so the host holds the model once (as the new params) plus one tensor.

`export_model` writes a checkpoint of this package as an HF folder that
`transformers.AutoModelForCausalLM.from_pretrained` and `AutoTokenizer` load
with no code of ours (`interop/families.py` picks the family).
"""
import hashlib
import json
import math
import os
import pathlib
import shutil
import tempfile
from collections.abc import Callable, Iterator

import jax
import ml_dtypes
import numpy as np
import safetensors.numpy
import tokenizers

from midtrain_jax import cache, files
from midtrain_jax import config as config_lib
from midtrain_jax.data import tokenizer as tokenizer_lib
from midtrain_jax.interop import families, gguf
from midtrain_jax.model import layer_stack
from midtrain_jax.train import checkpoint
from midtrain_jax.train import step as ts

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16,
           "BF16": ml_dtypes.bfloat16}
# Exports above this many bytes are split into shards with an index file, as HF does.
_SHARD_BYTES = 5 << 30


def read_safetensors(path: str | os.PathLike) -> Iterator[tuple[str, np.ndarray]]:
  """(name, array) of every tensor of a .safetensors file, memory-mapped, in file order.

  Read here rather than with `safetensors.numpy`, which has no bfloat16.
  """
  path = pathlib.Path(path)
  with open(path, "rb") as f:
    header_len = int.from_bytes(f.read(8), "little")
    header = json.loads(f.read(header_len))
  data = np.memmap(path, np.uint8, mode="r", offset=8 + header_len)
  entries = sorted(((k, v) for k, v in header.items() if k != "__metadata__"),
                   key=lambda kv: kv[1]["data_offsets"][0])
  for name, entry in entries:
    if entry["dtype"] not in _DTYPES:
      raise ValueError(f"{path}: tensor {name!r} has dtype {entry['dtype']}, not one of "
                       f"{sorted(_DTYPES)}.")
    start, end = entry["data_offsets"]
    yield name, data[start:end].view(_DTYPES[entry["dtype"]]).reshape(entry["shape"])


def _hf_tensors(src: pathlib.Path) -> Iterator[tuple[str, np.ndarray]]:
  shards = sorted(src.glob("*.safetensors"))
  if not shards:
    raise FileNotFoundError(f"{src} has no *.safetensors files.")
  for shard in shards:
    yield from read_safetensors(shard)


def _token(tok: tokenizer_lib.HFJsonTokenizer, token_id: int | None) -> str | None:
  return None if token_id is None else tok.tokenizer.id_to_token(token_id)


def _write_tokenizer(out: pathlib.Path, tokenizer_text: str, special_ids: dict,
                     ends: dict[str, bool], chat_template: str | None = None) -> str:
  """Writes tokenizer.json and a tokenizer_config.json naming its special tokens.

  `ends` ({"add_bos_token", "add_eos_token"}: whether a text gets BOS/EOS)
  goes into both files: tokenizer_config.json states it and tokenizer.json's
  post-processor does it (transformers 5 reads only the latter), so every
  reader encodes a text alike. A key left out is what the post-processor
  does, stated as well. The source's chat template, when it has one, is kept
  as `chat_template` (supervised fine-tuning renders conversations with it).
  """
  bos, eos = special_ids["bos"], special_ids["eos"]
  tokenizer_text = tokenizer_lib.with_ends(tokenizer_text, bos, eos, ends)
  files.write_text(out / TOKENIZER_FILE, tokenizer_text)
  bare = tokenizers.Tokenizer.from_str(tokenizer_text)
  names = {f"{key}_token": bare.id_to_token(i) if i is not None else None
           for key, i in special_ids.items()}
  rule = dict(zip(tokenizer_lib.ADD_KEYS, tokenizer_lib.post_processor_ends(bare, bos, eos)))
  template = {"chat_template": chat_template} if chat_template else {}
  files.write_json(out / TOKENIZER_CONFIG, {"tokenizer_class": "PreTrainedTokenizerFast",
                                            **names, **rule, **template})
  return str(out / TOKENIZER_FILE)


def import_tokenizer(src: str | pathlib.Path, out: str | pathlib.Path) -> str | None:
  """Writes the tokenizer of an HF model folder or a .gguf file into `out`.

  tokenizer.json, and a tokenizer_config.json naming the special tokens of
  the model's config, both carrying the source's BOS/EOS rule: a GGUF's
  `tokenizer.ggml.add_bos_token`/`add_eos_token`, an HF folder's
  `add_bos_token`/`add_eos_token` where its tokenizer_config.json has them,
  else what its tokenizer.json's post-processor does.

  Returns:
    The tokenizer.json written (what `data.tokenizer` names), or None when
    the source has no tokenizer.
  """
  source, out = pathlib.Path(src), pathlib.Path(out)
  if source.suffix == ".gguf":
    hf_config, text, ends = gguf.read_config(source), gguf.tokenizer_json(source), (
        gguf.tokenizer_ends(source))
    template = gguf.chat_template(source)
  else:
    hf_config = json.loads((source / "config.json").read_text())
    tok_path, config_path = source / TOKENIZER_FILE, source / TOKENIZER_CONFIG
    if not tok_path.exists():
      return None
    text = tok_path.read_text()
    config = json.loads(config_path.read_text()) if config_path.exists() else {}
    ends = {key: bool(config[key]) for key in tokenizer_lib.ADD_KEYS
            if config.get(key) is not None}
    template = _hf_chat_template(source, config)
  out.mkdir(parents=True, exist_ok=True)
  special = {key: hf_config.get(f"{key}_token_id") for key in ("bos", "eos", "pad")}
  return _write_tokenizer(out.resolve(), text, special, ends, template)


def _hf_chat_template(source: pathlib.Path, config: dict) -> str | None:
  """An HF folder's chat template: chat_template.jinja, else tokenizer_config.json's."""
  path = source / "chat_template.jinja"
  if path.exists():
    return path.read_text()
  template = config.get("chat_template")
  return template if isinstance(template, str) else None


def is_foreign(path: str) -> bool:
  """True for what `import_model` reads (a .gguf file, an HF model folder), not a run."""
  p = pathlib.Path(path)
  if p.suffix == ".gguf":
    return True
  config = p / "config.json"
  # A run directory's config.json holds config sections; an HF one names its model_type.
  return p.is_dir() and config.exists() and "model_type" in json.loads(config.read_text())


def imported_run(src: str, log: Callable[[str], None] = print) -> str:
  """A run directory of an HF folder or GGUF file, imported once into the cache.

  Keyed by the source's absolute path, size and modification time, so an
  edited file is imported again and an unchanged one only once.
  """
  path = pathlib.Path(src).resolve()
  if not path.exists():
    raise FileNotFoundError(f"{src} does not exist.")
  stamp = path.stat()
  key = hashlib.sha256(f"{path}:{stamp.st_size}:{stamp.st_mtime_ns}".encode()).hexdigest()
  out = cache.cache_root() / "imported" / f"{path.stem}-{key[:12]}"
  if not (out / checkpoint.CKPT_SUBDIR).exists():
    log(f"[convert] importing {src} -> {out}")
    import_model(str(path), str(out), log)
  elif _lacks_chat_template(path, out):
    # Imported before chat templates were kept: only the tokenizer files are rewritten.
    import_tokenizer(path, out)
  return str(out)


def _lacks_chat_template(source: pathlib.Path, out: pathlib.Path) -> bool:
  """Whether an import's tokenizer_config.json misses the source's chat template."""
  config = out / TOKENIZER_CONFIG
  if not config.exists() or "chat_template" in json.loads(config.read_text()):
    return False
  if source.suffix == ".gguf":
    return gguf.chat_template(source) is not None
  tok_config = source / TOKENIZER_CONFIG
  return _hf_chat_template(source, json.loads(tok_config.read_text())
                           if tok_config.exists() else {}) is not None


def import_model(src: str, out: str, log: Callable[[str], None] = print) -> str:
  """Converts an HF model folder or a .gguf file into a run directory.

  Args:
    src: HF model folder or GGUF file.
    out: the new run directory.
    log: progress printer.

  Returns:
    The checkpoint step directory written.

  Raises:
    ValueError: naming an unknown architecture, a missing or unexpected
      tensor, or a tensor whose shape does not fit.
  """
  source, out_dir = pathlib.Path(src), pathlib.Path(out)
  if source.suffix == ".gguf":
    hf_config, tensors = gguf.read_config(source), gguf.iter_tensors(source)
  else:
    config_path = source / "config.json"
    if not config_path.exists():
      raise FileNotFoundError(f"{source} is neither a .gguf file nor an HF model folder "
                              "(no config.json).")
    hf_config, tensors = json.loads(config_path.read_text()), _hf_tensors(source)
  config = config_lib.base_config(config_lib.CUSTOM_SIZE)
  config.model.update(families.model_section(hf_config))
  config_lib.validate(config)
  model_cfg = config_lib.model_config(config.model)
  names = families.tensor_names(model_cfg, hf_config["model_type"])
  _, abstract, _ = ts.abstract_model(model_cfg)
  log(f"[convert] {src}: {hf_config['model_type']}, {model_cfg.n_layers} layers, "
      f"d_model {model_cfg.d_model}, vocab {model_cfg.vocab_size}")

  params, seen = {}, set()
  for name, weight in tensors:
    if name == "lm_head.weight" and model_cfg.tie_embeddings:
      continue  # Some tied checkpoints store the shared matrix twice.
    if name not in names:
      raise ValueError(f"{src}: tensor {name!r} has no place in a {hf_config['model_type']} "
                       "model of this shape (unexpected tensor).")
    tensor = names[name]
    shape = families.get_path(abstract, tensor.path).shape
    expected = _hf_shape(tensor, shape, model_cfg.vocab_size)
    if tuple(weight.shape) != expected:
      raise ValueError(f"{src}: tensor {name!r} has shape {tuple(weight.shape)}, the config "
                       f"implies {expected}.")
    # On the device at once: orbax then saves from device buffers instead of
    # copying a host tree, so the host holds the model about once.
    families.set_path(params, tensor.path,
                      jax.device_put(families.to_ours(tensor, weight, shape)))
    seen.add(name)
  missing = sorted(set(names) - seen)
  if missing:
    raise ValueError(f"{src}: missing tensors {missing[:5]}{' ...' if len(missing) > 5 else ''}.")

  out_dir.mkdir(parents=True, exist_ok=True)
  tokenizer_path = import_tokenizer(source, out_dir)
  if tokenizer_path is not None:
    config.data.tokenizer = tokenizer_path
  else:
    log(f"[convert] {src} has no {TOKENIZER_FILE}; data.tokenizer keeps its default.")
  # The imported model has no optimiser state; anneals start from optim.lr.
  config.train.init_optimizer = False
  written = checkpoint.write_params(str(out_dir), params, config, imported_from=str(source))
  log(f"[convert] wrote {written} ({sum(x.size for x in jax.tree.leaves(params)):,} params)")
  return written


def _hf_shape(tensor: families.Tensor, shape: tuple[int, ...], vocab: int) -> tuple[int, ...]:
  """The HF shape of a parameter of this package's `shape`."""
  if tensor.kind == "linear":
    return (math.prod(shape[tensor.n_in:]), math.prod(shape[:tensor.n_in]))
  if tensor.kind == "vector":
    return (math.prod(shape),)
  return (vocab, shape[1] if tensor.kind == "embed" else shape[0])


def export_model(src: str, out: str, log: Callable[[str], None] = print) -> str:
  """Writes a checkpoint (run directory or step directory) as an HF model folder.

  Returns:
    The folder written (config.json, model.safetensors or shards + index,
    generation_config.json, tokenizer files).
  """
  params, config, step = checkpoint.load_params(src)
  model_cfg = config_lib.model_config(config.model)
  if model_cfg.moe_experts:
    raise ValueError(f"{src} is a mixture-of-experts model ({model_cfg.moe_experts} experts); "
                     "HF export covers the dense families only (interop/families.py).")
  params = layer_stack.unscan_tree(params, model_cfg)  # HF names one tensor per layer.
  family = families.family_of(model_cfg)
  tok = tokenizer_lib.load_tokenizer(config.data.tokenizer) if config.data.tokenizer != (
      tokenizer_lib.DEMO_SPM) or tokenizer_lib.demo_spm_path().exists() else None
  ids = dict(bos_id=tok.bos_id, eos_id=tok.eos_id, pad_id=tok.pad_id) if tok else dict(
      bos_id=None, eos_id=None, pad_id=None)
  hf_config = families.hf_config(model_cfg, family, **ids)
  out_dir = pathlib.Path(out)
  out_dir.mkdir(parents=True, exist_ok=True)
  tensors = {name: families.to_hf(t, families.get_path(params, t.path), model_cfg.vocab_size)
             for name, t in families.tensor_names(model_cfg, family).items()}
  _write_safetensors(out_dir, tensors)
  files.write_json(out_dir / "config.json", hf_config, indent=2)
  files.write_json(out_dir / "generation_config.json",
                   {"bos_token_id": ids["bos_id"], "eos_token_id": ids["eos_id"],
                    "pad_token_id": ids["pad_id"], "do_sample": False}, indent=2)
  if tok is not None:
    _export_tokenizer(tok, out_dir)
  log(f"[convert] {src} (step {step}) -> {out_dir} as {hf_config['architectures'][0]}")
  return str(out_dir)


def _write_safetensors(out_dir: pathlib.Path, tensors: dict[str, np.ndarray]) -> None:
  total = sum(t.nbytes for t in tensors.values())
  if total <= _SHARD_BYTES:
    files.write_with(out_dir / "model.safetensors",
                     lambda tmp: safetensors.numpy.save_file(tensors, tmp,
                                                             metadata={"format": "pt"}))
    return
  shards, current, size = [], {}, 0
  for name, tensor in tensors.items():
    if current and size + tensor.nbytes > _SHARD_BYTES:
      shards.append(current)
      current, size = {}, 0
    current[name], size = tensor, size + tensor.nbytes
  shards.append(current)
  weight_map = {}
  for i, shard in enumerate(shards):
    name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
    files.write_with(out_dir / name, lambda tmp, s=shard: safetensors.numpy.save_file(
        s, tmp, metadata={"format": "pt"}))
    weight_map.update(dict.fromkeys(shard, name))
  files.write_json(out_dir / "model.safetensors.index.json",
                   {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2)


def _export_tokenizer(tok: tokenizer_lib.Tokenizer, out_dir: pathlib.Path) -> None:
  """tokenizer.json and tokenizer_config.json of the vocabulary the model was trained with.

  Both files carry the BOS/EOS rule the model was trained and evaluated with
  (`Tokenizer.adds_bos`: an imported model's own, BOS first for a vocabulary
  trained here), so transformers' AutoTokenizer encodes a text alike; an
  imported model's chat template goes with it.
  """
  special = {"bos": tok.bos_id, "eos": tok.eos_id, "pad": tok.pad_id}
  ends = {"add_bos_token": tok.adds_bos, "add_eos_token": tok.adds_eos}
  if isinstance(tok, tokenizer_lib.HFJsonTokenizer):
    text = tok.tokenizer.to_str()  # With any FIM sentinels the data pipeline appended.
    _write_tokenizer(out_dir, text, special, ends, tok.chat_template)
    return
  _write_tokenizer(out_dir, _spm_tokenizer_json(tok), special, ends)


def _spm_tokenizer_json(tok: tokenizer_lib.SentencePieceTokenizer) -> str:
  """A `tokenizers` JSON for a SentencePiece BPE model (the demo vocabulary).

  transformers converts the model file (vocab, merges, byte fallback); the
  pre-tokenizer is then set to SentencePiece's own rule: one "▁" dummy prefix
  at the start, spaces as "▁", no splitting. Ids equal SentencePiece's except
  where a text starts with whitespace or a special token (there SentencePiece
  puts one more "▁" in front).
  """
  import transformers  # noqa: PLC0415 (the optional interop extra; only this path needs it)

  with tempfile.TemporaryDirectory() as tmp:
    shutil.copyfile(tok.model_path, pathlib.Path(tmp) / "tokenizer.model")
    (pathlib.Path(tmp) / TOKENIZER_CONFIG).write_text(json.dumps(
        {"tokenizer_class": "LlamaTokenizer", "legacy": False}))
    converted = json.loads(
        transformers.AutoTokenizer.from_pretrained(tmp).backend_tokenizer.to_str())
  converted["normalizer"] = None
  converted["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581",
                                "prepend_scheme": "first", "split": False}
  return json.dumps(converted, ensure_ascii=False)

