"""GGUF reading: small files written here, then SmolLM2 against transformers' own GGUF loader."""
import json
import pathlib
import re

import numpy as np
import pytest

gguf_lib = pytest.importorskip("gguf")

from midtrain_jax.interop import families, gguf  # noqa: E402  (after the importorskip above)

# Digits, code with indentation, Unicode and chat markup: what the model sees in midtraining.
TEXTS = [
    "In 2024, 12345 apples cost $3.50.",
    "def area(r):\n    \"\"\"Circle area.\"\"\"\n    if r < 0:\n        raise ValueError(r)\n"
    "    return 3.14159 * r ** 2\n\n\nclass Point:\n\tdef __init__(self, x=0, y=1):\n"
    "\t\tself.xy = (x, y)\n",
    "Crème brûlée, naïve façade; Ångström — “quotes” …",
    "日本語のテキスト。中文字符，한국어 텍스트",
    "Emoji: 😀👍🏽 👨‍👩‍👧 🇫🇷!",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>",
    "<|endoftext|><file_sep>a.py<filename>  tabs\t\tand   spaces  \n\n\r\n",
    "",
]
# Whitespace before a number character: where SmolLM2's own digit splitting and transformers'
# fallback (plain GPT-2 splitting) disagree: runs of whitespace before an ASCII digit, and even a
# single space before other numerals, whose first byte the vocabulary can merge with the space.
NUMBER_AFTER_SPACE = ["x =  10", "items:\n    1. one\n    2. two", "a\t 7", "½ ² ① ٣"]


# --- Small files written here: every error path, no download needed. -------------------------

def _permute(weight, heads):
  """llama.cpp's converter (convert_hf_to_gguf.py, LlamaModel.permute)."""
  return (weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:])
          .swapaxes(1, 2).reshape(weight.shape))


def _tiny_hf(rng, tied=True):
  """A 1-layer Llama state dict: d_model 8, 2 heads of 4, 1 KV head, FFN 12, vocab 6."""
  shapes = {"model.embed_tokens.weight": (6, 8), "model.norm.weight": (8,),
            "model.layers.0.input_layernorm.weight": (8,),
            "model.layers.0.post_attention_layernorm.weight": (8,),
            "model.layers.0.self_attn.q_proj.weight": (8, 8),
            "model.layers.0.self_attn.k_proj.weight": (4, 8),
            "model.layers.0.self_attn.v_proj.weight": (4, 8),
            "model.layers.0.self_attn.o_proj.weight": (8, 8),
            "model.layers.0.mlp.gate_proj.weight": (12, 8),
            "model.layers.0.mlp.up_proj.weight": (12, 8),
            "model.layers.0.mlp.down_proj.weight": (8, 12)}
  if not tied:
    shapes["lm_head.weight"] = (6, 8)
  return {name: rng.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()}


def _write(path, hf=None, arch="llama", extra=None, tokenizer=None, metadata=None):
  """Writes a GGUF from an HF state dict the way llama.cpp's converter lays it out.

  `extra` maps GGUF tensor names to arrays written as they are; `tokenizer`
  holds keyword overrides for a 6-token byte-level BPE vocabulary; `metadata`
  is called with the writer to add keys of its own.
  """
  writer = gguf_lib.GGUFWriter(str(path), arch)
  writer.add_block_count(1)
  writer.add_context_length(64)
  writer.add_embedding_length(8)
  writer.add_feed_forward_length(12)
  writer.add_head_count(2)
  writer.add_head_count_kv(1)
  writer.add_rope_dimension_count(4)
  writer.add_rope_freq_base(500000.0)
  writer.add_layer_norm_rms_eps(1e-6)
  writer.add_rope_scaling_type(gguf_lib.RopeScalingType.LINEAR)
  writer.add_rope_scaling_factor(4.0)
  if metadata is not None:
    metadata(writer)
  vocab = {"model": "gpt2", "pre": "smollm", "tokens": ["<s>", "</s>", "a", "b", "ab", "Ġ"],
           "types": [3, 3, 1, 1, 1, 1], "merges": ["a b"], "bos": 0, "eos": 1,
           "add_bos": True, "add_eos": False, **(tokenizer or {})}
  writer.add_tokenizer_model(vocab["model"])
  writer.add_tokenizer_pre(vocab["pre"])
  writer.add_token_list(vocab["tokens"])
  writer.add_token_types(vocab["types"])
  writer.add_token_merges(vocab["merges"])
  writer.add_bos_token_id(vocab["bos"])
  writer.add_eos_token_id(vocab["eos"])
  writer.add_add_bos_token(vocab["add_bos"])
  writer.add_add_eos_token(vocab["add_eos"])
  renames = {v: k for k, v in gguf._GLOBAL_NAMES.items()}
  renames |= {f"model.layers.0.{v}": f"blk.0.{k}" for k, v in gguf._LAYER_NAMES.items()}
  for name, weight in (hf or {}).items():
    if name.endswith("q_proj.weight"):
      weight = _permute(weight, 2)
    elif name.endswith("k_proj.weight"):
      weight = _permute(weight, 1)
    writer.add_tensor(renames[name], weight)
  for name, weight in (extra or {}).items():
    writer.add_tensor(name, weight)
  writer.write_header_to_file()
  writer.write_kv_data_to_file()
  writer.write_tensors_to_file()
  writer.close()
  return path


@pytest.mark.parametrize("tied", [True, False])
def test_tensors_come_back_in_hf_layout(tmp_path, tied):
  hf = _tiny_hf(np.random.default_rng(0), tied)
  path = _write(tmp_path / "tiny.gguf", hf)
  got = dict(gguf.iter_tensors(path))
  assert got.keys() == hf.keys()
  for name, weight in hf.items():
    assert got[name].dtype == np.float32 and got[name].flags.writeable
    np.testing.assert_array_equal(got[name], weight, err_msg=name)
  assert gguf.read_config(path)["tie_word_embeddings"] is tied


def test_half_precision_is_widened_exactly(tmp_path):
  hf = _tiny_hf(np.random.default_rng(1))
  hf["model.layers.0.mlp.up_proj.weight"] = hf["model.layers.0.mlp.up_proj.weight"].astype(
      np.float16)
  got = dict(gguf.iter_tensors(_write(tmp_path / "f16.gguf", hf)))
  assert got["model.layers.0.mlp.up_proj.weight"].dtype == np.float32
  np.testing.assert_array_equal(got["model.layers.0.mlp.up_proj.weight"],
                                hf["model.layers.0.mlp.up_proj.weight"].astype(np.float32))


def test_config_of_a_small_file(tmp_path):
  config = gguf.read_config(_write(tmp_path / "tiny.gguf", _tiny_hf(np.random.default_rng(2))))
  assert config == {
      "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 6,
      "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
      "num_key_value_heads": 1, "head_dim": 4, "intermediate_size": 12, "hidden_act": "silu",
      "attention_bias": False, "mlp_bias": False, "rope_theta": 500000.0,
      "rms_norm_eps": 1e-6,  # Stored as float32; given back as the decimal it was.
      "max_position_embeddings": 64, "tie_word_embeddings": True, "bos_token_id": 0,
      "eos_token_id": 1, "pad_token_id": None,
      "rope_scaling": {"rope_type": "linear", "factor": 4.0}}
  json.dumps(config)  # Writable as config.json.


def test_linear_rope_scaling_imports_as_the_models_setting(tmp_path):
  config = gguf.read_config(_write(tmp_path / "tiny.gguf", _tiny_hf(np.random.default_rng(2))))
  section = families.model_section(config)
  assert (section["rope_theta"], section["rope_linear_factor"]) == (500000.0, 4.0)


def test_yarn_keys_map_to_rope_scaling(tmp_path):
  def yarn(writer):
    writer.add_rope_scaling_type(gguf_lib.RopeScalingType.YARN)
    writer.add_rope_scaling_orig_ctx_len(16)
    writer.add_rope_scaling_yarn_beta_fast(24.0)
    writer.add_rope_scaling_finetuned(True)
  # The writer keeps the last value of a key: YaRN replaces the default linear type.
  config = gguf.read_config(_write(tmp_path / "yarn.gguf", _tiny_hf(np.random.default_rng(2)),
                                   metadata=yarn))
  assert config["rope_scaling"] == {"rope_type": "yarn", "factor": 4.0,
                                    "original_max_position_embeddings": 16, "beta_fast": 24.0}
  section = families.model_section(config)
  assert (section["yarn_factor"], section["yarn_beta_fast"], section["yarn_original_max_len"]) == (
      4.0, 24.0, 16)


@pytest.mark.parametrize("metadata, named", [
    (lambda w: w.add_rope_scaling_yarn_ext_factor(0.5), "llama.rope.scaling.yarn_ext_factor"),
    (lambda w: w.add_rope_freq_base_swa(10000.0), "llama.rope.freq_base_swa"),
])
def test_rope_metadata_without_a_counterpart_is_named(tmp_path, metadata, named):
  path = _write(tmp_path / "odd.gguf", _tiny_hf(np.random.default_rng(2)), metadata=metadata)
  with pytest.raises(ValueError, match=re.escape(named)):
    gguf.read_config(path)


def test_partial_rotary_dimensions_are_refused(tmp_path):
  def partial(writer):
    writer.add_key_length(4)
    writer.add_value_length(4)
    writer.add_rope_dimension_count(2)
  config = gguf.read_config(_write(tmp_path / "partial.gguf", _tiny_hf(np.random.default_rng(2)),
                                   metadata=partial))
  assert config["head_dim"] == 4 and config["partial_rotary_factor"] == 0.5
  with pytest.raises(ValueError, match="partial_rotary_factor=0.5"):
    families.model_section(config)


def test_llama3_frequency_factors_are_refused_by_name(tmp_path):
  path = _write(tmp_path / "llama3.gguf", _tiny_hf(np.random.default_rng(2)),
                extra={"rope_freqs.weight": np.ones(2, np.float32)})
  with pytest.raises(ValueError, match="'rope_freqs.weight' .* RoPE frequency factors"):
    list(gguf.iter_tensors(path))


def test_not_a_gguf_file_is_named(tmp_path):
  bad = tmp_path / "weights.safetensors"
  bad.write_bytes(b"\x08\x00\x00\x00not a gguf")
  for read in (gguf.read_config, gguf.tokenizer_json, lambda p: next(gguf.iter_tensors(p))):
    with pytest.raises(ValueError, match="weights.safetensors is not a GGUF file"):
      read(bad)
  truncated = tmp_path / "cut.gguf"
  truncated.write_bytes(b"GGUF\x03\x00\x00\x00\xff")
  with pytest.raises(ValueError, match="cut.gguf is not a readable GGUF file"):
    gguf.read_config(truncated)


def test_unknown_architecture_is_named(tmp_path):
  path = _write(tmp_path / "other.gguf", arch="falcon")
  with pytest.raises(ValueError, match="'falcon'"):
    gguf.read_config(path)
  with pytest.raises(ValueError, match="'falcon'"):
    next(gguf.iter_tensors(path))


def test_unexpected_tensor_is_named_before_any_is_yielded(tmp_path):
  hf = _tiny_hf(np.random.default_rng(3))
  bias = np.zeros(8, np.float32)
  path = _write(tmp_path / "bias.gguf", hf, extra={"blk.0.attn_q.bias": bias})
  with pytest.raises(ValueError, match="'blk.0.attn_q.bias'"):
    next(gguf.iter_tensors(path))
  path = _write(tmp_path / "layer.gguf", hf, extra={"blk.1.attn_norm.weight": bias})
  with pytest.raises(ValueError, match="'blk.1.attn_norm.weight'"):  # Only 1 layer.
    next(gguf.iter_tensors(path))


def test_missing_tensor_is_named(tmp_path):
  hf = _tiny_hf(np.random.default_rng(4))
  del hf["model.layers.0.mlp.up_proj.weight"]
  with pytest.raises(ValueError, match="model.layers.0.mlp.up_proj.weight"):
    next(gguf.iter_tensors(_write(tmp_path / "short.gguf", hf)))


def test_unsupported_quantisation_is_named(tmp_path):
  hf = _tiny_hf(np.random.default_rng(5))
  hf["model.norm.weight"] = np.arange(8, dtype=np.int8)  # I8: no dequantisation exists.
  with pytest.raises(ValueError, match="'output_norm.weight'.*I8"):
    next(gguf.iter_tensors(_write(tmp_path / "int.gguf", hf)))


def test_small_tokenizer_adds_bos_where_the_file_says(tmp_path):
  from tokenizers import Tokenizer
  tok = Tokenizer.from_str(gguf.tokenizer_json(_write(tmp_path / "tok.gguf")))
  assert tok.encode("ab b</s>").tokens == ["<s>", "ab", "Ġ", "b", "</s>"]
  assert tok.decode(tok.encode("ab b").ids, skip_special_tokens=False) == "<s>ab b"
  assert gguf.tokenizer_ends(tmp_path / "tok.gguf") == {"add_bos_token": True,
                                                       "add_eos_token": False}
  path = _write(tmp_path / "eos.gguf", tokenizer={"add_bos": False, "add_eos": True})
  assert gguf.tokenizer_ends(path) == {"add_bos_token": False, "add_eos_token": True}
  assert Tokenizer.from_str(gguf.tokenizer_json(path)).encode("ab").tokens == ["ab", "</s>"]


@pytest.mark.parametrize("pre", ["gpt2", "smollm", "llama-bpe"])
def test_each_pre_tokenizer_builds(tmp_path, pre):
  from tokenizers import Tokenizer
  tok = Tokenizer.from_str(gguf.tokenizer_json(_write(tmp_path / "tok.gguf",
                                                      tokenizer={"pre": pre, "add_bos": False})))
  assert tok.encode("ab ab").tokens == ["ab", "Ġ", "ab"]


@pytest.mark.parametrize("tokenizer, message", [
    ({"model": "llama"}, "'llama' tokenizer"),
    ({"pre": "made-up"}, "pre-tokenizer 'made-up'"),
])
def test_unsupported_tokenizers_are_named(tmp_path, tokenizer, message):
  with pytest.raises(ValueError, match=message):
    gguf.tokenizer_json(_write(tmp_path / "tok.gguf", tokenizer=tokenizer))


# --- SmolLM2-135M-Instruct (Q4_1) against transformers' GGUF loader. --------------------------

@pytest.fixture(scope="module")
def smollm2() -> pathlib.Path:
  return gguf.smollm2_path()


@pytest.fixture(scope="module")
def hf_tokenizer(smollm2):
  transformers = pytest.importorskip("transformers")
  return transformers.AutoTokenizer.from_pretrained(str(smollm2.parent), gguf_file=smollm2.name)


@pytest.mark.slow
def test_smollm2_is_cached_once(smollm2):
  assert smollm2.stat().st_size > 90e6
  assert gguf.smollm2_path() == smollm2
  assert gguf.read_config(smollm2) | {"rms_norm_eps": None} == {
      "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 49152,
      "hidden_size": 576, "num_hidden_layers": 30, "num_attention_heads": 9,
      "num_key_value_heads": 3, "head_dim": 64, "intermediate_size": 1536,
      "hidden_act": "silu", "attention_bias": False, "mlp_bias": False,
      "rope_theta": 100000.0, "rms_norm_eps": None, "max_position_embeddings": 8192,
      "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2}


@pytest.mark.slow
def test_smollm2_config_matches_transformers(smollm2):
  transformers = pytest.importorskip("transformers")
  reference = transformers.AutoConfig.from_pretrained(str(smollm2.parent),
                                                      gguf_file=smollm2.name)
  config = gguf.read_config(smollm2)
  assert config["model_type"] == reference.model_type
  for key in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
              "num_key_value_heads", "head_dim", "intermediate_size",
              "max_position_embeddings", "tie_word_embeddings", "bos_token_id", "eos_token_id",
              "pad_token_id", "hidden_act", "attention_bias", "mlp_bias"):
    assert config[key] == getattr(reference, key), key
  # transformers keeps the float32 value widened (9.999999747378752e-06): same float32.
  assert np.float32(config["rms_norm_eps"]) == np.float32(reference.rms_norm_eps)
  assert config["rms_norm_eps"] == 1e-5
  # transformers 5 moved rope_theta into rope_parameters.
  theta = getattr(reference, "rope_theta", None) or reference.rope_parameters["rope_theta"]
  assert config["rope_theta"] == theta
  assert "rope_scaling" not in config


@pytest.mark.slow
def test_smollm2_tensors_match_transformers(smollm2):
  transformers = pytest.importorskip("transformers")
  model = transformers.AutoModelForCausalLM.from_pretrained(str(smollm2.parent),
                                                            gguf_file=smollm2.name)
  reference = {name: t.detach().numpy() for name, t in model.state_dict().items()}
  assert model.lm_head.weight is model.model.embed_tokens.weight  # Tied: no lm_head of ours.
  seen = set()
  for name, weight in gguf.iter_tensors(smollm2):
    assert name not in seen
    seen.add(name)
    assert weight.dtype == np.float32 and weight.shape == reference[name].shape, name
    np.testing.assert_allclose(weight, reference[name], rtol=0, atol=1e-6, err_msg=name)
  assert seen == set(reference) - {"lm_head.weight"}
  assert len(seen) == 2 + 30 * 9


@pytest.mark.slow
def test_smollm2_tokenizer_like_transformers_is_identical(smollm2, hf_tokenizer):
  from tokenizers import Tokenizer
  ours = Tokenizer.from_str(gguf.tokenizer_json(smollm2, like_transformers=True))
  # The same tokenizer, serialised by the same `tokenizers`: every component agrees.
  assert json.loads(ours.to_str()) == json.loads(hf_tokenizer.backend_tokenizer.to_str())
  source = pathlib.Path(gguf.__file__).read_text()
  for text in TEXTS + NUMBER_AFTER_SPACE + [source]:
    assert ours.encode(text).ids == hf_tokenizer.encode(text), text[:40]


@pytest.mark.slow
def test_smollm2_tokenizer_matches_transformers(smollm2, hf_tokenizer):
  from tokenizers import Tokenizer
  ours = Tokenizer.from_str(gguf.tokenizer_json(smollm2))
  for text in TEXTS:
    ids = ours.encode(text).ids
    assert ids == hf_tokenizer.encode(text), text
    assert ours.decode(ids, skip_special_tokens=False) == text
    assert ours.decode(ids, skip_special_tokens=False) == hf_tokenizer.decode(ids)
    assert ours.decode(ids) == hf_tokenizer.decode(ids, skip_special_tokens=True)
  chat = ours.encode("<|im_start|>user\nhi<|im_end|>")
  assert chat.tokens == ["<|im_start|>", "user", "Ċ", "hi", "<|im_end|>"]
  assert chat.ids[0] == 1 and chat.ids[-1] == 2
  assert ours.encode("2024").tokens == ["2", "0", "2", "4"]


@pytest.mark.slow
def test_smollm2_tokenizer_splits_digits_like_the_model(smollm2, hf_tokenizer):
  """SmolLM2's own tokenizer (and llama.cpp's "smollm") isolates each number character before
  GPT-2's split; transformers 5.x has no "smollm" entry and splits like GPT-2, which differs
  where whitespace precedes a number."""
  from tokenizers import Tokenizer, pre_tokenizers
  ours = Tokenizer.from_str(gguf.tokenizer_json(smollm2))
  model_like = Tokenizer.from_str(hf_tokenizer.backend_tokenizer.to_str())
  model_like.pre_tokenizer = pre_tokenizers.Sequence([
      pre_tokenizers.Digits(individual_digits=True),
      pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
  source = pathlib.Path(gguf.__file__).read_text()
  for text in TEXTS + NUMBER_AFTER_SPACE + [source]:
    ids = ours.encode(text).ids
    assert ids == model_like.encode(text).ids, text[:40]
    assert ours.decode(ids, skip_special_tokens=False) == text
  assert ours.encode("x =  10").tokens == ["x", "Ġ=", "ĠĠ", "1", "0"]
  assert hf_tokenizer.tokenize("x =  10") == ["x", "Ġ=", "Ġ", "Ġ", "1", "0"]
  assert ours.encode("a ½").tokens == ["a", "Ġ", "Â½"]  # ½ is one character: two bytes.
  assert hf_tokenizer.tokenize("a ½") == ["a", "ĠÂ", "½"]


@pytest.mark.slow
def test_smollm2_imported_tokenizer_starts_texts_as_transformers_does(smollm2, hf_tokenizer,
                                                                     tmp_path):
  """The GGUF says add_bos_token = False: the imported tokenizer_config.json says so
  too, and a prompt is encoded without BOS, as transformers encodes it."""
  from midtrain_jax.data import tokenizer as tokenizer_lib
  from midtrain_jax.interop import hf
  path = hf.import_tokenizer(smollm2, tmp_path)
  config = json.loads((tmp_path / "tokenizer_config.json").read_text())
  assert (config["add_bos_token"], config["add_eos_token"]) == (False, False)
  tok = tokenizer_lib.load_tokenizer(path)
  assert not tok.adds_bos and tok.start_ids() == []
  for text in TEXTS:
    assert tok.encode_prompt(text) == hf_tokenizer(text).input_ids, text
