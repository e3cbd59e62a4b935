"""The embedded demo's config (`configs/demo.py`, and `configs/anneal.py` by default)."""
import ml_collections

from midtrain_jax import config as config_lib


def demo_config(scale: float = 1.0) -> ml_collections.ConfigDict:
  """The demo workflow's config: a tiny model, base + two anneals in minutes on CPU.

  Args:
    scale: multiplies every step count (e.g. 4 for a longer, more telling demo).

  Returns:
    A locked config with `workflow="demo"`.
  """
  c = config_lib.base_config("tiny")
  c.workflow = "demo"
  # Smaller than `tiny` so that three runs fit in minutes on two CPU cores.
  c.model.update(d_model=128, n_layers=4, n_heads=4, n_kv_heads=2, mlp_dim=512,
                 window_pattern=(64, 64, 64, 0))
  c.data.update(mixture="dolmino_demo", seq_len=128, batch_size=16)
  # Decontaminated against exactly the benchmarks the runs are evaluated on.
  c.data.decontam.benchmarks = c.eval.benchmarks
  # Quality-aware upsampling (data/load/upsampling.py): the best-scored documents of each task
  # repeat more; the scorer trains in seconds and the report shows the bucket shares.
  c.data.qau.enabled = True
  # Exact and near copies removed within and across tasks (about 2 s on the demo corpus).
  c.data.dedup.levels = ("exact", "near")
  # A copy is kept in the first task that has it: the curated, highest-quality
  # tasks first (the rest follow in mixture order), so a web page's copy of an
  # instruction or a Wikipedia article is the one removed.
  c.data.dedup.priority = ("instruction_alpaca", "qa_python_docs", "web_wikipedia",
                           "code_python_stdlib")
  # Generated math and program traces share a template, not content: at Jaccard
  # 0.4 over 3-grams the near level would remove 46% and 70% of them, so these
  # two lose exact repeats only (26% and 25%).
  c.data.dedup.exact_only = ("math_synthetic", "thinking_program_traces")
  # The anneals (the base run's settings are in the `demo` section).
  # The anneals start from the LR the base had where they branch off (demo.py).
  c.optim.update(schedule="anneal", lr=3e-3, warmup_steps=0)
  c.train.update(steps=max(1, int(60 * scale)), log_every_steps=10)
  c.ckpt.update(every_steps=c.train.steps, keep=1, async_save=False)
  # Held-out BPB every 5 steps: the anneals' last evaluations give each metric's
  # checkpoint-to-checkpoint noise, against which the report ranks the metrics
  # by signal-to-noise (evals/signal_noise.py).
  c.eval.update(every_steps=max(1, int(5 * scale)), batches=4, mixture="dolmino_demo")
  # One cheap OLMES task, scored with the held-out evaluation and in the report:
  # the tiny model is at chance on it (the report says so); it shows the wiring
  # and its cost.
  c.eval.update(downstream=("arc_easy:rc",), downstream_items=50)

  # Settings only this workflow reads (workflows/settings.py).
  c.demo.update(base_steps=max(10, int(250 * scale)), base_warmup_steps=max(1, int(25 * scale)))
  return config_lib.finalize(c)
