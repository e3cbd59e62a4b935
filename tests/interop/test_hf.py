"""Hugging Face checkpoints in and out, checked against transformers itself.

For each family a tiny random model is built with transformers' own config
class (norm weights and biases perturbed so they matter), saved, imported,
run, exported and loaded back by transformers.
"""
import dataclasses
import json

import jax
import numpy as np
import pytest
from flax import nnx

from midtrain_jax import config as config_lib
from midtrain_jax.evals import scoring
from midtrain_jax.interop import families, hf
from midtrain_jax.kernels import native
from midtrain_jax.model import layer_stack, sampling
from midtrain_jax.parallel import sharding
from midtrain_jax.train import checkpoint
from midtrain_jax.train import step as ts

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
# The comparison helpers of the parity benchmark, shared with its tests.
from benchmarks.interop_parity import hf_logits, our_logits  # noqa: E402

VOCAB, LENGTH = 300, 24
_COMMON = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=4,
               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
               rms_norm_eps=1e-6)


def _hf_model(family: str):
  """A tiny random transformers model of `family` exercising its switches."""
  if family == "llama":  # Untied head, Llama 3 RoPE scaling.
    config = transformers.LlamaConfig(**_COMMON, tie_word_embeddings=False, rope_scaling={
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 32})
  elif family == "qwen2":  # q/k/v biases, tied head.
    config = transformers.Qwen2Config(**_COMMON, tie_word_embeddings=True)
  elif family == "qwen3":  # Per-head QK-norm, head_dim wider than d_model / heads.
    config = transformers.Qwen3Config(**_COMMON, head_dim=32, tie_word_embeddings=False)
  elif family == "olmo2":  # Reordered norms, QK-norm over the whole projection.
    config = transformers.Olmo2Config(**_COMMON)
  else:  # OLMo 3: sliding/full layer types, YaRN on full layers only.
    config = transformers.Olmo3Config(
        **_COMMON, sliding_window=5,
        layer_types=["sliding_attention"] * 3 + ["full_attention"],
        rope_scaling={"rope_type": "yarn", "factor": 8.0, "beta_fast": 32, "beta_slow": 1,
                      "original_max_position_embeddings": 16})
  torch.manual_seed(0)
  model = transformers.AutoModelForCausalLM.from_config(config).eval()
  with torch.no_grad():
    for name, param in model.named_parameters():
      if "norm" in name or name.endswith("bias"):
        param.add_(0.3 * torch.randn_like(param))
  return model


def _ids(batch=2, seed=0):
  return np.random.RandomState(seed).randint(0, VOCAB, size=(batch, LENGTH))


@pytest.fixture(scope="module", params=sorted(families.FAMILIES))
def imported(request, tmp_path_factory):
  family = request.param
  root = tmp_path_factory.mktemp(family)
  model = _hf_model(family)
  model.save_pretrained(root / "hf")
  hf.import_model(str(root / "hf"), str(root / "run"), log=lambda _: None)
  return family, model, root


def test_imported_logits_equal_transformers(imported):
  family, model, root = imported
  config = json.loads((root / "run" / "config.json").read_text())["model"]
  assert families.family_of(scoring.load_model(str(root / "run")).model_cfg) == family
  assert config["size"] == "custom"
  ids = _ids()
  diff = np.abs(our_logits(scoring.load_model(str(root / "run")), ids) - hf_logits(model, ids))
  assert diff.max() < 1e-4, (family, diff.max())


def test_imported_logits_on_the_native_cpu_kernels_equal_transformers(imported):
  # On one CPU device the attention (RoPE with Llama 3 / YaRN scaling, windows,
  # QK-norm) and the GEMMs run on the native kernels, not on XLA's ops.
  ready, why = native.status()
  if not ready:
    pytest.skip(f"native CPU kernels unavailable: {why}")
  family, model, root = imported
  loaded = scoring.load_model(str(root / "run"))
  native_cfg = dataclasses.replace(loaded.model_cfg, attention="cpu_native", matmul="cpu_native")
  loaded = dataclasses.replace(loaded, graphdef=ts.abstract_model(native_cfg)[0])
  ids = _ids(seed=2)
  mesh = sharding.make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, jax.devices()[:1])
  with jax.set_mesh(mesh):
    positions = np.tile(np.arange(ids.shape[1], dtype=np.int32), (ids.shape[0], 1))
    forward = nnx.merge(loaded.graphdef, loaded.params)
    jaxpr = str(jax.make_jaxpr(forward)(ids.astype(np.int32), positions, np.ones_like(positions)))
    assert "midtrain_cpu_attention_fwd" in jaxpr and "midtrain_cpu_gemm" in jaxpr
    ours = our_logits(loaded, ids)
  diff = np.abs(ours - hf_logits(model, ids))
  assert diff.max() < 1e-4, (family, diff.max())


def test_exported_model_loads_in_transformers_with_the_same_logits(imported):
  family, model, root = imported
  hf.export_model(str(root / "run"), str(root / "export"), log=lambda _: None)
  back = transformers.AutoModelForCausalLM.from_pretrained(root / "export").eval()
  assert type(back).__name__ == type(model).__name__
  ids = _ids(seed=1)
  assert np.abs(hf_logits(back, ids) - hf_logits(model, ids)).max() < 1e-5


def test_greedy_decoding_equals_transformers(imported):
  family, model, root = imported
  loaded = scoring.load_model(str(root / "run"))
  prompt = _ids(batch=1, seed=2)[0, :7].tolist()
  ours = sampling.generate(loaded.params, loaded.graphdef, loaded.model_cfg, [prompt],
                           sampling.SampleConfig(max_new_tokens=10))[0]
  with torch.no_grad():
    theirs = model.generate(torch.tensor([prompt]), max_new_tokens=10, do_sample=False,
                            min_new_tokens=10, pad_token_id=0)[0, 7:].tolist()
  assert ours == theirs, family


def test_our_checkpoint_round_trips_bit_identically(imported, tmp_path):
  family, _, root = imported
  hf.export_model(str(root / "run"), str(tmp_path / "hf"), log=lambda _: None)
  hf.import_model(str(tmp_path / "hf"), str(tmp_path / "again"), log=lambda _: None)
  first, _, _ = checkpoint.load_params(str(root / "run"))
  again, _, _ = checkpoint.load_params(str(tmp_path / "again"))
  assert jax.tree.structure(first) == jax.tree.structure(again)
  for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(again)):
    np.testing.assert_array_equal(a, b)


def test_bad_sources_are_named(tmp_path):
  model = _hf_model("llama")
  model.save_pretrained(tmp_path / "hf")
  config = json.loads((tmp_path / "hf" / "config.json").read_text())
  (tmp_path / "hf" / "config.json").write_text(json.dumps({**config, "model_type": "gpt9"}))
  with pytest.raises(ValueError, match="model_type='gpt9'"):
    hf.import_model(str(tmp_path / "hf"), str(tmp_path / "a"), log=lambda _: None)
  (tmp_path / "hf" / "config.json").write_text(json.dumps({**config, "intermediate_size": 128}))
  with pytest.raises(ValueError, match=r"mlp\.\w+_proj\.weight' has shape .* implies"):
    hf.import_model(str(tmp_path / "hf"), str(tmp_path / "b"), log=lambda _: None)
  (tmp_path / "hf" / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 5}))
  with pytest.raises(ValueError, match=r"missing tensors \['model.layers.4"):
    hf.import_model(str(tmp_path / "hf"), str(tmp_path / "c"), log=lambda _: None)
  with pytest.raises(FileNotFoundError, match="no config.json"):
    hf.import_model(str(tmp_path), str(tmp_path / "d"), log=lambda _: None)


@pytest.mark.parametrize("add_bos", [True, False])
def test_the_bos_rule_of_an_hf_folder_is_imported_and_exported_back(tmp_path, add_bos):
  """tokenizer_config.json's add_bos_token (here against a post-processor that adds
  nothing) is the rule of the imported run and goes back out on export, in both
  files, so transformers 5 (which reads only tokenizer.json) encodes alike."""
  import tokenizers
  from tokenizers import decoders, models, pre_tokenizers, trainers

  from midtrain_jax.data import tokenizer as tokenizer_lib
  model = _hf_model("llama")  # bos_token_id 1, eos_token_id 2.
  model.save_pretrained(tmp_path / "hf")
  vocab = tokenizers.Tokenizer(models.BPE())
  vocab.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  vocab.decoder = decoders.ByteLevel()
  vocab.train_from_iterator(["hello world", "the quick brown fox"] * 50, trainers.BpeTrainer(
      vocab_size=280, special_tokens=["<unk>", "<s>", "</s>"]))
  vocab.save(str(tmp_path / "hf" / "tokenizer.json"))
  (tmp_path / "hf" / "tokenizer_config.json").write_text(json.dumps(
      {"tokenizer_class": "PreTrainedTokenizerFast", "add_bos_token": add_bos}))
  hf.import_model(str(tmp_path / "hf"), str(tmp_path / "run"), log=lambda _: None)
  run = scoring.load_model(str(tmp_path / "run"))
  tok = tokenizer_lib.load_tokenizer(run.config.data.tokenizer)
  assert tok.adds_bos is add_bos
  assert tok.encode_prompt("hello") == [1] * add_bos + tok.encode("hello")
  hf.export_model(str(tmp_path / "run"), str(tmp_path / "export"), log=lambda _: None)
  config = json.loads((tmp_path / "export" / "tokenizer_config.json").read_text())
  assert config["add_bos_token"] is add_bos and config["add_eos_token"] is False
  theirs = transformers.AutoTokenizer.from_pretrained(tmp_path / "export")
  assert theirs("hello fox").input_ids == tok.encode_prompt("hello fox")


def test_families_without_an_hf_class_are_refused():
  from tests import helpers
  cfg = helpers.tiny_model(norm="reordered", qk_norm="head")
  with pytest.raises(ValueError, match="No Hugging Face family has norm='reordered'"):
    families.family_of(cfg)


@pytest.mark.slow
def test_a_model_trained_here_exports_with_its_sentencepiece_vocabulary(tmp_path):
  from midtrain_jax.data import tokenizer as tokenizer_lib
  from midtrain_jax.train import loop
  from tests import helpers
  loop.run(helpers.small_config(2), str(tmp_path / "run"))
  hf.export_model(str(tmp_path / "run"), str(tmp_path / "hf"), log=lambda _: None)
  model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
  tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
  assert type(model).__name__ == "Olmo3ForCausalLM"  # Reordered norms, windows: OLMo 3.
  ours = tokenizer_lib.load_tokenizer(tokenizer_lib.DEMO_SPM)
  text = "def add(a, b):\n    return a + b\n\n  Two  spaces, Grüße 東京 12345.\t"
  ids = tokenizer(text, add_special_tokens=False).input_ids
  assert ids == ours.encode(text) and tokenizer.decode(ids) == text
  # Trained with BOS first: the export says so, and transformers encodes a text alike.
  assert json.loads((tmp_path / "hf" / "tokenizer_config.json").read_text())["add_bos_token"]
  assert tokenizer(text).input_ids == ours.encode_prompt(text) == [ours.bos_id] + ids
  loaded = scoring.load_model(str(tmp_path / "run"))
  x = np.asarray([[ours.bos_id] + ids], np.int32)
  with torch.no_grad():
    theirs = model(torch.tensor(x)).logits.numpy()
  assert np.abs(our_logits(loaded, x) - theirs).max() < 1e-4


@pytest.mark.parametrize("size", ["7b", "32b"])
def test_olmo3_presets_have_the_published_checkpoints_tensor_shapes(size):
  cfg = config_lib.model_config(config_lib.base_config(size).model)
  assert cfg.scan_layers  # Deep presets scan; HF names one tensor per layer.
  assert families.family_of(cfg) == "olmo3"
  hf_config = families.hf_config(cfg, "olmo3", bos_id=100257, eos_id=100257, pad_id=100277)
  with torch.device("meta"):  # Shapes only: nothing is allocated.
    reference = transformers.AutoModelForCausalLM.from_config(
        transformers.AutoConfig.for_model(**hf_config))
  theirs = {name: tuple(t.shape) for name, t in reference.state_dict().items()}
  _, abstract, _ = ts.abstract_model(cfg)
  abstract = layer_stack.unscan_tree(abstract, cfg)
  ours = {name: hf._hf_shape(t, families.get_path(abstract, t.path).shape, cfg.vocab_size)
          for name, t in families.tensor_names(cfg, "olmo3").items()}
  assert ours == theirs


def test_large_exports_are_sharded_with_an_index(imported, tmp_path, monkeypatch):
  family, model, root = imported
  monkeypatch.setattr(hf, "_SHARD_BYTES", 40_000)  # A tiny model becomes several shards.
  hf.export_model(str(root / "run"), str(tmp_path / "hf"), log=lambda _: None)
  index = json.loads((tmp_path / "hf" / "model.safetensors.index.json").read_text())
  assert len(set(index["weight_map"].values())) > 2
  back = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
  ids = _ids(seed=3)
  assert np.abs(hf_logits(back, ids) - hf_logits(model, ids)).max() < 1e-5


def test_scanned_layout_imports_exports_and_decodes_alike(imported, tmp_path):
  family, model, root = imported
  if family != "olmo3":
    pytest.skip("one family suffices: the layout is the same for all")
  checkpoint.relayout(str(root / "run"), str(tmp_path / "scanned"), scan_layers=True)
  loaded = scoring.load_model(str(tmp_path / "scanned"))
  assert loaded.model_cfg.scan_layers and "layers" in loaded.params
  ids = _ids()
  assert np.abs(our_logits(loaded, ids) - hf_logits(model, ids)).max() < 1e-4
  prompt = ids[0, :7].tolist()
  ours = sampling.generate(loaded.params, loaded.graphdef, loaded.model_cfg, [prompt],
                           sampling.SampleConfig(max_new_tokens=6))[0]
  with torch.no_grad():
    theirs = model.generate(torch.tensor([prompt]), max_new_tokens=6, do_sample=False,
                            min_new_tokens=6, pad_token_id=0)[0, 7:].tolist()
  assert ours == theirs
  hf.export_model(str(tmp_path / "scanned"), str(tmp_path / "export"), log=lambda _: None)
  back = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "export").eval()
  assert np.abs(hf_logits(back, ids) - hf_logits(model, ids)).max() < 1e-5
