"""Every family's RoPE imported as transformers reads it, decoded and exported back.

Each case is a tiny random transformers model (fp32, its own config class,
norm weights and biases perturbed), with sliding windows shorter than the
sequence where the family has them and a RoPE setting of its own: Llama 3 and
linear scaling, YaRN on every layer (Qwen3) or on full-attention layers only
(OLMo 3), and OLMo 3's distinct theta per layer type. It is saved, imported,
decoded greedily for 32 tokens against transformers' `generate` (token ids and
the logits each was picked from), exported, and read back by transformers.
"""
import json

import numpy as np
import pytest

from midtrain_jax import config as config_lib
from midtrain_jax.evals import scoring
from midtrain_jax.interop import families, hf, rope_params
from midtrain_jax.model import sampling
from tests import helpers

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

VOCAB, PROMPT, NEW_TOKENS = 300, 8, 32
SLIDING, FULL = rope_params.SLIDING, rope_params.FULL
# The cases and the comparison helpers are the benchmark's, so both measure the same models.
from benchmarks.interop_parity import (  # noqa: E402
  CASES,
  COMMON,
  LLAMA3,
  YARN,
  hf_logits,
  hf_model,
  our_logits,
  rope_by_layer_type,
)


@pytest.fixture(scope="module", params=sorted(CASES))
def imported(request, tmp_path_factory):
  case = request.param
  root = tmp_path_factory.mktemp(case)
  model = hf_model(case)
  model.save_pretrained(root / "hf")
  hf.import_model(str(root / "hf"), str(root / "run"), log=lambda _: None)
  return case, model, root, scoring.load_model(str(root / "run"))


def test_greedy_decoding_and_its_logits_equal_transformers(imported):
  case, model, _, loaded = imported
  prompt = np.random.RandomState(0).randint(0, VOCAB, size=PROMPT).tolist()
  with torch.no_grad():
    out = model.generate(torch.tensor([prompt]), max_new_tokens=NEW_TOKENS, do_sample=False,
                         pad_token_id=0, output_logits=True, return_dict_in_generate=True)
  theirs = out.sequences[0, PROMPT:].tolist()
  ours, step_logits = sampling.generate(
      loaded.params, loaded.graphdef, loaded.model_cfg, [prompt],
      sampling.SampleConfig(max_new_tokens=NEW_TOKENS), return_logits=True)
  assert ours[0] == theirs, case
  decode = np.abs(step_logits[0, :, :VOCAB] - torch.stack(out.logits, 1)[0].numpy()).max()
  ids = np.asarray([prompt + theirs])
  prefill = np.abs(our_logits(loaded, ids) - hf_logits(model, ids)).max()
  assert decode < 2e-5 and prefill < 2e-5, (case, decode, prefill)


def test_export_writes_back_the_rope_parameters_of_each_layer_type(imported, tmp_path):
  case, model, root, loaded = imported
  hf.export_model(str(root / "run"), str(tmp_path / "hf"), log=lambda _: None)
  back = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
  assert rope_by_layer_type(back.config) == rope_by_layer_type(model.config), case
  ids = np.random.RandomState(1).randint(0, VOCAB, size=(2, PROMPT + NEW_TOKENS))
  assert np.abs(hf_logits(back, ids) - our_logits(loaded, ids)).max() < 2e-5, case


def test_olmo3_sliding_layers_keep_their_own_theta(tmp_path):
  model = hf_model("olmo3")
  assert model.config.rope_parameters[SLIDING]["rope_theta"] == 500_000.0  # transformers' rule.
  model.save_pretrained(tmp_path / "hf")
  hf.import_model(str(tmp_path / "hf"), str(tmp_path / "run"), log=lambda _: None)
  section = json.loads((tmp_path / "run" / "config.json").read_text())["model"]
  assert (section["rope_theta"], section["rope_theta_sliding"]) == (10_000.0, 500_000.0)


# config.json forms transformers reads: rope_theta / rope_scaling (transformers 4)
# and rope_parameters (5), flat or per layer type.
_FORMS = [
    {"model_type": "olmo3", "rope_theta": 10_000.0},
    {"model_type": "olmo3"},
    {"model_type": "olmo3", "rope_theta": 10_000.0, "rope_scaling": {
        "rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64,
        "attention_factor": 1.2, "beta_fast": 16}},
    {"model_type": "olmo3", "rope_parameters": {
        FULL: {"rope_type": "linear", "factor": 2.0, "rope_theta": 7.0e4},
        SLIDING: {"rope_type": "linear", "factor": 2.0, "rope_theta": 3.0e4}}},
    {"model_type": "llama", "rope_theta": 5e5, "rope_scaling": {"type": "linear", "factor": 2.0}},
    {"model_type": "llama", "rope_scaling": dict(LLAMA3)},
    {"model_type": "qwen2", "rope_theta": 1e6, "use_sliding_window": True, "sliding_window": 8,
     "max_window_layers": 1},
    {"model_type": "qwen3", "rope_parameters": {"rope_type": "default", "rope_theta": 2e4}},
    {"model_type": "olmo2"},
]


@pytest.mark.parametrize("form", _FORMS, ids=lambda f: json.dumps(f)[:60])
def test_rope_parameters_are_read_as_transformers_reads_them(form):
  hf_config = {**COMMON, **form}
  reference = transformers.AutoConfig.for_model(**json.loads(json.dumps(hf_config)))
  expected = rope_by_layer_type(reference)
  per_type = rope_params.by_layer_type(hf_config, form["model_type"])
  layer_types = getattr(reference, "layer_types", None) or [FULL] * 4
  assert families._layer_types(hf_config, families.FAMILIES[form["model_type"]]) == list(
      layer_types)
  ours = {t: {k: float(v) if isinstance(v, int) else v for k, v in per_type[t].items()
              if k != "type"} for t in expected}
  for p in ours.values():
    if p["rope_type"] == "yarn":
      p.setdefault("beta_fast", 32.0)
      p.setdefault("beta_slow", 1.0)
  assert ours == {t: {k: v for k, v in p.items() if k != "type"} for t, p in expected.items()}
  families.model_section(hf_config)  # Every form here is one the model expresses.


@pytest.mark.parametrize("form, named", [
    ({"model_type": "llama", "rope_scaling": {"rope_type": "dynamic", "factor": 2.0}},
     "rope_type 'dynamic'"),
    ({"model_type": "llama", "rope_scaling": {"rope_type": "longrope", "factor": 2.0}},
     "rope_type 'longrope'"),
    ({"model_type": "qwen2", "partial_rotary_factor": 0.5}, "partial_rotary_factor=0.5"),
    # transformers' OLMo 3 keeps rope_type 'default' here (the old key names YaRN).
    ({"model_type": "olmo3", "rope_scaling": {"type": "yarn", "factor": 8.0,
                                              "original_max_position_embeddings": 16}},
     r"full_attention\.type='yarn' but rope_type='default'"),
    ({"model_type": "llama", "rope_scaling": {**YARN, "mscale": 0.7}}, r"\.mscale=0\.7"),
    ({"model_type": "llama", "rope_scaling": {**YARN, "truncate": False}}, "truncate=False"),
    ({"model_type": "llama", "rope_scaling": {**YARN, "factor": 1.0, "attention_factor": 1.5}},
     "attention_factor=1.5 with factor 1"),
    ({"model_type": "llama", "rope_scaling": {"rope_type": "llama3", "factor": 8.0}},
     "lacks 'low_freq_factor'"),
    ({"model_type": "olmo3", "rope_parameters": {FULL: dict(LLAMA3), SLIDING: {}}},
     r"rope_parameters\.sliding_attention scales RoPE as \{'rope_type': 'default'\}"),
    ({"model_type": "olmo3", "rope_parameters": {FULL: {}, SLIDING: dict(YARN)}},
     r"rope_parameters\.sliding_attention scales RoPE as \{.*'yarn'"),
    ({"model_type": "olmo3", "rope_parameters": {"rope_type": "default", "rope_theta": 1e4}},
     r"flat key\(s\) \['rope_theta', 'rope_type'\]"),
    ({"model_type": "qwen2", "rope_parameters": {FULL: {"rope_theta": 1e4}}},
     r"rope_parameters\.full_attention: qwen2 applies one set"),
])
def test_rope_the_model_cannot_express_is_refused_by_name(form, named):
  with pytest.raises(ValueError, match=named):
    families.model_section({**COMMON, **form, "layer_types": [SLIDING] * 3 + [FULL],
                            "sliding_window": 8, "use_sliding_window": True})


def test_refusal_reaches_the_import(tmp_path):
  model = hf_model("llama_linear")
  model.save_pretrained(tmp_path / "hf")
  config = json.loads((tmp_path / "hf" / "config.json").read_text())
  config["rope_parameters"] = {**config["rope_parameters"], "rope_type": "dynamic"}
  (tmp_path / "hf" / "config.json").write_text(json.dumps(config))
  with pytest.raises(ValueError, match="Unsupported rope_type 'dynamic'"):
    hf.import_model(str(tmp_path / "hf"), str(tmp_path / "run"), log=lambda _: None)
  assert not (tmp_path / "run").exists()


def test_export_refuses_per_layer_type_rope_where_the_family_holds_one():
  cfg = helpers.tiny_model(norm="pre", qk_norm="none", qkv_bias=True, rope_theta_sliding=5e5)
  assert families.family_of(cfg) == "qwen2"
  with pytest.raises(ValueError, match="qwen2 configs hold one set of RoPE parameters"):
    families.hf_config(cfg, "qwen2", bos_id=1, eos_id=2, pad_id=0)
  olmo3 = helpers.tiny_model(rope_theta_sliding=5e5)
  rope = families.hf_config(olmo3, "olmo3", bos_id=1, eos_id=2, pad_id=0)["rope_parameters"]
  assert (rope[FULL]["rope_theta"], rope[SLIDING]["rope_theta"]) == (olmo3.rope_theta, 5e5)


def test_two_rope_scalings_at_once_are_refused():
  config = config_lib.base_config("tiny")
  config.model.update(llama3_factor=8.0, rope_linear_factor=2.0)
  with pytest.raises(ValueError, match="llama3_factor=8.0 and rope_linear_factor=2.0"):
    config_lib.validate(config)
