"""The `eval` settings, declared once (read by train/loop.py's in-training
evaluation, evals/heldout.py, evals/downstream.py, evals/contamination.py,
evals/generative.py's decoding and the signal-and-noise tables of the reports)."""
from midtrain_jax import settings
from midtrain_jax.benchmark_data import items, olmes

S = settings.Setting


def _check_downstream(values, path: str) -> None:
  """Every `downstream` name is an OLMES task (read from the request files' wheel)."""
  names = tuple(values.downstream)
  if not names:
    return
  known = olmes.task_names()
  for name in names:
    if name in known:
      continue
    try:
      olmes.load_task(name)  # `<task>:<variant folder>` forms are not listed.
    except ValueError as e:
      raise ValueError(f"{path}.downstream: {name!r} is not an OLMES task ({e}). Known "
                       f"tasks: {', '.join(known)}.") from None

SECTION = settings.Section({
    "every_steps": S(0, "Steps between evaluations; 0: evaluate only at the end.",
                     check=settings.NON_NEGATIVE),
    "batches": S(4, "Held-out batches per task in training; 0: no held-out evaluation.",
                 check=settings.NON_NEGATIVE),
    "heldout_stride": S(0, "Held-out documents longer than data.seq_len are scored in "
                        "overlapping windows of seq_len tokens, each scoring the "
                        "`heldout_stride` targets after the previous window's (the rest "
                        "is their context): every target once, with at least seq_len - "
                        "stride tokens before it. Cost: about seq_len / stride rows per "
                        "seq_len tokens of a long document. 0 = seq_len // 2 (2 rows, at "
                        "least half a row of context).", check=settings.NON_NEGATIVE),
    "downstream": S((), "OLMES multiple-choice tasks scored during training with the held-out "
                    "evaluation (every eval.every_steps and at the end), a tuple: "
                    "--config.eval.downstream=\"('arc_easy:rc', 'hellaswag:rc')\" "
                    "(python -m midtrain_jax.evaluate --list_tasks). Each metric is "
                    "logged as downstream/<task>/<metric>; the seconds each evaluation "
                    "took are printed to size it."),
    "downstream_items": S(100, "Items per eval.downstream task: a seeded sample "
                          "stratified over its subjects (as evaluate --items), drawn once "
                          "so every evaluation scores the same items; 0 = all.",
                          check=settings.NON_NEGATIVE),
    "noise_checkpoints": S(5, "A metric's noise is its standard deviation over the last "
                           "this many evaluated checkpoints of a run (0: all of them; at "
                           "least 3 either way, else the noise is unknown); the reports "
                           "rank metrics by signal-to-noise (evals/signal_noise.py).",
                           check=settings.Check("must be 0 (all) or at least 3",
                                                lambda v: v == 0 or v >= 3)),
    "mixture": S("", "Mixture whose held-out splits are scored; '' = data.mixture. Anneals "
                 "on a narrow mix set it to the full mix to see every capability."),
    "benchmarks": S(items.EVAL_SUITE, "Benchmarks the run is evaluated on, a tuple: "
                    "--config.eval.benchmarks=\"('gsm8k', 'humaneval')\".",
                    choices=tuple(items.SPECS)),
    "decontam_check": S("warn", "Training checks that every task of the mixture was "
                        "decontaminated against eval.benchmarks and warns, fails, or does "
                        "not check.", choices=("warn", "error", "off")),
    "decode_batch": S(0, "Prompts per decoding batch of the generative benchmarks (gsm8k, "
                      "humaneval, mbpp: evals/batch_decode.py); 0 = planned: the most rows "
                      "whose KV cache and prefill activations fit eval.decode_memory_gb.",
                      check=settings.NON_NEGATIVE),
    "decode_memory_gb": S(0.0, "Memory budget (GiB) of a planned decoding batch "
                          "(eval.decode_batch = 0); 0 = half the device's free memory.",
                          check=settings.NON_NEGATIVE),
    "unsafe_exec": S(False, "Run generated code (humaneval, mbpp) even where the operating-"
                     "system sandbox (bubblewrap, user namespaces) is unavailable: then only "
                     "resource limits and Python-level guards hold it. Never for untrusted "
                     "models on a machine that holds credentials."),
}, help="evaluation during and after training.", checks=(_check_downstream,))
