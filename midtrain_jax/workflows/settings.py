"""The `workflow` key and the `demo` and `sft` settings, declared once (read by
main.py, workflows/demo.py and workflows/sft.py; configs/demo.py and
configs/sft.py set them)."""
from midtrain_jax import settings

S = settings.Setting

WORKFLOW = S("train", "What main.py runs: train (one training run), demo (prepare, base, "
             "two anneals, evaluation and a report; workflows/demo.py) or sft (a supervised "
             "fine-tuning probe of train.init_from: workflows/sft.py).",
             choices=("train", "demo", "sft"))

SFT = settings.Section({
    "epochs": S(2.0, "Passes over the SFT mixture's training tokens: sets train.steps "
                "(at least 1) once the data is prepared; 0 keeps train.steps.",
                check=settings.NON_NEGATIVE),
    "benchmark": S("", "Benchmark of the probe's target, scored at the end on its test "
                   "split with chat-formatted prompts: gsm8k (exact match), humaneval or "
                   "mbpp (pass@1, in the sandbox); empty: none.",
                   choices=("", "gsm8k", "humaneval", "mbpp")),
    "benchmark_items": S(32, "Items of the benchmark scored (0: all).",
                         check=settings.NON_NEGATIVE),
    "max_new_tokens": S(128, "Tokens generated per benchmark item.", check=settings.POSITIVE),
    "eval_base": S(True, "Also evaluate the base model (train.init_from) the same way, so "
                   "the results hold what the fine-tuning changed."),
}, help="the supervised fine-tuning probe (workflow=sft; configs/sft.py).")

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
  """The demo trains its own base: a given base checkpoint would be ignored; an SFT
  probe needs the model it probes."""
  if config.workflow == "sft" and not config.train.init_from:
    raise ValueError(f"The sft workflow fine-tunes a given model: set {path}.train.init_from "
                     "to a run directory, a soup, an HF model folder or a .gguf file.")
  if config.workflow == "demo" and config.train.init_from:
    raise ValueError(f"The demo workflow trains its own base, so {path}.train.init_from "
                     "is not used; to anneal a given base use e.g. "
                     "--config=configs/anneal.py:size=tiny --config.train.init_from=...")
