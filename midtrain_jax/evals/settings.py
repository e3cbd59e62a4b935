"""The `eval` settings, declared once (read by train/loop.py's in-training
evaluation, evals/heldout.py, evals/contamination.py and the signal-and-noise
tables of the reports)."""
from midtrain_jax import settings
from midtrain_jax.benchmark_data import items

S = settings.Setting

SECTION = settings.Section({
    "every_steps": S(0, "Steps between evaluations; 0: evaluate only at the end.",
                     check=settings.NON_NEGATIVE),
    "batches": S(4, "Held-out batches per task in training; 0: no evaluation.",
                 check=settings.NON_NEGATIVE),
    "heldout_stride": S(0, "Held-out documents longer than data.seq_len are scored in "
                        "overlapping windows of seq_len tokens, each scoring the "
                        "`heldout_stride` targets after the previous window's (the rest "
                        "is their context): every target once, with at least seq_len - "
                        "stride tokens before it. Cost: about seq_len / stride rows per "
                        "seq_len tokens of a long document. 0 = seq_len // 2 (2 rows, at "
                        "least half a row of context).", check=settings.NON_NEGATIVE),
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
}, help="evaluation during and after training.")
