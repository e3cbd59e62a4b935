"""The `workflow` key and the `demo` settings, declared once (read by main.py
and workflows/demo.py; configs/demo.py sets them)."""
from midtrain_jax import settings

S = settings.Setting

WORKFLOW = S("train", "What main.py runs: train (one training run) or demo (prepare, base, "
             "two anneals, evaluation and a report; workflows/demo.py).",
             choices=("train", "demo"))

DEMO = settings.Section({
    "base_steps": S(250, "Steps of the demo's base run (WSD on web_only).",
                    check=settings.POSITIVE),
    "base_warmup_steps": S(25, "Warmup steps of the base run.", check=settings.NON_NEGATIVE),
    "base_decay_fraction": S(0.2, "WSD decay of the base run as a fraction of its steps; the "
                             "anneals branch off where it starts.", check=settings.FRACTION),
    "base_lr": S(3e-3, "Peak learning rate of the base run.", check=settings.NON_NEGATIVE),
    "bpb_items": S(16, "Benchmark BPB items per benchmark in the report.",
                   check=settings.NON_NEGATIVE),
    "gen_items": S(0, "GSM8K/HumanEval generative items in the report (0: skip).",
                   check=settings.NON_NEGATIVE),
    "eval_batches": S(0, "Held-out batches per task in the report (0: all).",
                      check=settings.NON_NEGATIVE),
}, help="the demo workflow's own settings (workflow=demo); the anneals use the "
        "other sections.")


def check_workflow(config, path: str) -> None:
  """The demo trains its own base: a given base checkpoint would be ignored."""
  if config.workflow == "demo" and config.train.init_from:
    raise ValueError(f"The demo workflow trains its own base, so {path}.train.init_from "
                     "is not used; to anneal a given base use e.g. "
                     "--config=configs/anneal.py:size=tiny --config.train.init_from=...")
