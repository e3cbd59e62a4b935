"""HF RoPE parameters <-> the model's rope settings, per layer type.

transformers 5 keeps a model's RoPE in `config.rope_parameters`: one dict
(rope_type, rope_theta, the scaling's own keys) for every layer, or, for
families that read it per layer type (OLMo 3), one per `full_attention` /
`sliding_attention`. config.json files written before it hold `rope_theta`
and `rope_scaling` instead. `by_layer_type` reads either form as transformers
5.25 does for each family, defaults included (OLMo 3's sliding layers get
500000 unless the file names their theta: transformers gives `rope_theta`
to the full-attention layers only). `model_values` turns the result into
`model` settings, or refuses, naming the key, whatever they cannot express
(an unknown rope_type, a partial rotary factor, scalings that differ per layer
type in a way the model cannot, an unknown key). `hf_values` writes the
settings back in the family's form.
"""
from typing import Any

from midtrain_jax.model.config import FULL_ATTENTION, ModelConfig

SLIDING, FULL = "sliding_attention", "full_attention"
# Families whose transformers class reads rope_parameters per layer type.
PER_LAYER_TYPE = ("olmo3",)
# transformers' default theta of each family's config class (`default_theta`).
_DEFAULT_THETA = {"olmo3": 500_000.0}
_TYPE_KEYS = {  # The keys each rope_type reads, besides rope_type and rope_theta.
    "default": (),
    "linear": ("factor",),
    "llama3": ("factor", "low_freq_factor", "high_freq_factor",
               "original_max_position_embeddings"),
    "yarn": ("factor", "original_max_position_embeddings", "beta_fast", "beta_slow",
             "attention_factor", "truncate"),
}
# Keys that may be present and are ignored when they change nothing.
_NEUTRAL = {"partial_rotary_factor": 1.0, "truncate": True}
_YARN_DEFAULTS = {"beta_fast": 32.0, "beta_slow": 1.0, "attention_factor": None}


def by_layer_type(hf: dict, family: str) -> dict[str, dict]:
  """{FULL: params, SLIDING: params} as transformers reads `hf` (a config.json dict).

  Raises:
    ValueError: when rope_parameters is nested per layer type for a family
      that reads one dict, or flat for one that reads them per type.
  """
  theta = hf.get("rope_theta")
  params = hf.get("rope_parameters") or {}
  nested = [k for k in params if k in (FULL, SLIDING)]
  if family in PER_LAYER_TYPE:
    flat = sorted(k for k in params if k not in (FULL, SLIDING))
    if flat:
      raise ValueError(f"config.json rope_parameters has flat key(s) {flat}; {family} reads "
                       f"RoPE parameters per layer type ({FULL!r}, {SLIDING!r}).")
    default = _DEFAULT_THETA[family]
    # As transformers: rope_scaling updates a dict that already names its rope_type.
    full = dict(params.get(FULL) or {"rope_type": "default"}) | dict(hf.get("rope_scaling") or {})
    full.setdefault("rope_theta", default if theta is None else theta)
    # transformers hands rope_theta to the full-attention layers only.
    sliding = dict(params.get(SLIDING) or {})
    sliding.setdefault("rope_theta", default)
    out = {FULL: full, SLIDING: sliding}
  else:
    if nested:
      raise ValueError(f"config.json rope_parameters.{nested[0]}: {family} applies one set of "
                       "RoPE parameters to every layer; transformers cannot run per-layer-type "
                       "ones for it.")
    one = dict(hf.get("rope_scaling") or params)
    one.setdefault("rope_theta", 10_000.0 if theta is None else theta)
    out = {FULL: one, SLIDING: dict(one)}
  for p in out.values():
    p.setdefault("rope_type", p.get("type") or "default")
    if hf.get("partial_rotary_factor") is not None:
      p.setdefault("partial_rotary_factor", hf["partial_rotary_factor"])
    if p["rope_type"] in ("llama3", "yarn"):
      p.setdefault("original_max_position_embeddings", hf.get("max_position_embeddings"))
  return out


def _checked(params: dict, where: str) -> dict:
  """`params` with neutral keys dropped; refuses what the model cannot express."""
  kind = params["rope_type"]
  if kind not in _TYPE_KEYS:
    raise ValueError(f"Unsupported rope_type {kind!r} in config.json {where} (supported: "
                     f"{', '.join(_TYPE_KEYS)}).")
  out = {}
  for key, value in params.items():
    if key == "type" and value != kind:
      raise ValueError(f"config.json {where}.type={value!r} but rope_type={kind!r}: "
                       f"transformers runs {kind!r}; name one rope_type.")
    if key == "type":  # The older name of rope_type, which it already set.
      continue
    if key in _NEUTRAL and value in (None, _NEUTRAL[key]):
      continue
    if key == "partial_rotary_factor":
      raise ValueError(f"config.json {where}.partial_rotary_factor={value}: this model rotates "
                       "the whole head (partial rotary embeddings are not supported).")
    if key == "truncate":
      raise ValueError(f"config.json {where}.truncate={value}: this model's YaRN ramp is "
                       "truncated to whole dimensions (transformers' default).")
    if key not in ("rope_type", "rope_theta", *_TYPE_KEYS[kind]) and value is not None:
      raise ValueError(f"config.json {where}.{key}={value!r} is not supported with rope_type "
                       f"{kind!r} (it reads {', '.join(_TYPE_KEYS[kind]) or 'rope_theta only'}).")
    if value is not None:
      out[key] = value
  missing = [k for k in _TYPE_KEYS[kind] if k not in out and k not in _YARN_DEFAULTS
             and k not in _NEUTRAL]
  if missing:
    raise ValueError(f"config.json {where} lacks {missing[0]!r} (rope_type {kind!r}).")
  if kind == "yarn" and out["factor"] == 1 and out.get("attention_factor", 1) != 1:
    # The model's YaRN is off at factor 1, scale included; transformers' is not.
    raise ValueError(f"config.json {where}.attention_factor={out['attention_factor']} with "
                     "factor 1 is not supported (YaRN at factor 1 is plain RoPE here).")
  if kind == "yarn":
    out = {**{k: v for k, v in _YARN_DEFAULTS.items() if v is not None}, **out}
  return out


def _scaling(params: dict) -> dict[str, Any]:
  """The `model` settings of one layer type's (checked) scaling."""
  kind = params["rope_type"]
  if kind == "linear":
    return dict(rope_linear_factor=float(params["factor"]))
  if kind == "llama3":
    return dict(llama3_factor=float(params["factor"]),
                llama3_low_freq_factor=float(params["low_freq_factor"]),
                llama3_high_freq_factor=float(params["high_freq_factor"]),
                llama3_original_max_len=int(params["original_max_position_embeddings"]))
  if kind == "yarn":
    return dict(yarn_factor=float(params["factor"]), yarn_beta_fast=float(params["beta_fast"]),
                yarn_beta_slow=float(params["beta_slow"]),
                yarn_original_max_len=int(params["original_max_position_embeddings"]),
                yarn_attention_factor=float(params.get("attention_factor") or 0.0))
  return {}


def model_values(hf: dict, family: str, layer_types: list[str]) -> dict[str, Any]:
  """The `model` settings of `hf`'s RoPE for layers of `layer_types`.

  Raises:
    ValueError: naming the config.json key the model cannot express.
  """
  per_type = by_layer_type(hf, family)
  flat = "rope_scaling" if hf.get("rope_scaling") else "rope_parameters"
  where = (lambda t: f"rope_parameters.{t}") if family in PER_LAYER_TYPE else (
      lambda t: flat)
  present = [t for t in (FULL, SLIDING) if t in layer_types]
  checked = {t: _checked(per_type[t], where(t)) for t in present}
  main = checked[present[0]]  # The full-attention layers', when there are any.
  values = dict(rope_theta=float(main["rope_theta"]), **_scaling(main))
  if present == [SLIDING] and main["rope_type"] == "yarn":
    values["yarn_full_layers_only"] = False  # Every layer slides; YaRN applies to them.
  if len(present) == 2:
    sliding = checked[SLIDING]
    if float(sliding["rope_theta"]) != values["rope_theta"]:
      values["rope_theta_sliding"] = float(sliding["rope_theta"])
    if _without_theta(sliding) == _without_theta(main):
      if main["rope_type"] == "yarn":
        values["yarn_full_layers_only"] = False
    elif main["rope_type"] == "yarn" and sliding["rope_type"] == "default":
      values["yarn_full_layers_only"] = True
    else:
      raise ValueError(
          f"config.json {where(SLIDING)} scales RoPE as {_describe(sliding)} and "
          f"{where(FULL)} as {_describe(main)}: this model applies one scaling to every "
          "layer, except YaRN, which may leave sliding-window layers unscaled.")
  return values


def _without_theta(params: dict) -> dict:
  return {k: v for k, v in params.items() if k != "rope_theta"}


def _describe(params: dict) -> str:
  return repr(_without_theta(params))


def _layer_params(cfg: ModelConfig, sliding: bool) -> dict[str, Any]:
  """The HF RoPE parameters of cfg's sliding or full-attention layers."""
  theta = cfg.rope_theta_sliding if sliding and cfg.rope_theta_sliding else cfg.rope_theta
  if cfg.yarn_factor != 1.0 and not (sliding and cfg.yarn_full_layers_only):
    params = {"rope_type": "yarn", "rope_theta": theta, "factor": cfg.yarn_factor,
              "beta_fast": cfg.yarn_beta_fast, "beta_slow": cfg.yarn_beta_slow,
              "original_max_position_embeddings": cfg.yarn_original_max_len}
    if cfg.yarn_attention_factor:
      params["attention_factor"] = cfg.yarn_attention_factor
    return params
  if cfg.llama3_factor != 1.0:
    return {"rope_type": "llama3", "rope_theta": theta, "factor": cfg.llama3_factor,
            "low_freq_factor": cfg.llama3_low_freq_factor,
            "high_freq_factor": cfg.llama3_high_freq_factor,
            "original_max_position_embeddings": cfg.llama3_original_max_len}
  if cfg.rope_linear_factor != 1.0:
    return {"rope_type": "linear", "rope_theta": theta, "factor": cfg.rope_linear_factor}
  return {"rope_type": "default", "rope_theta": theta}


def hf_values(cfg: ModelConfig, family: str) -> dict[str, Any]:
  """config.json's `rope_theta` and `rope_parameters` for `cfg` as a `family` model.

  Raises:
    ValueError: when the family holds one set of RoPE parameters and cfg's
      sliding-window and full-attention layers differ.
  """
  windows = cfg.layer_windows()
  types = [FULL] if FULL_ATTENTION in windows else []
  types += [SLIDING] if any(w != FULL_ATTENTION for w in windows) else []
  per_type = {FULL: _layer_params(cfg, sliding=False), SLIDING: _layer_params(cfg, sliding=True)}
  main = per_type[types[0]]
  if family in PER_LAYER_TYPE:
    return {"rope_theta": main["rope_theta"], "rope_parameters": per_type}
  if len(types) > 1 and per_type[FULL] != per_type[SLIDING]:
    raise ValueError(f"{family} configs hold one set of RoPE parameters; this model's "
                     f"sliding-window layers use {per_type[SLIDING]} and its full-attention "
                     f"layers {per_type[FULL]} (families with RoPE per layer type: "
                     f"{', '.join(PER_LAYER_TYPE)}).")
  return {"rope_theta": main["rope_theta"], "rope_parameters": main}
