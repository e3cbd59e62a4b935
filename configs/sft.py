"""Supervised fine-tuning probe: fine-tune a model on chat data (loss on responses only),
then evaluate held-out response bits per byte and the target's benchmark.

  python -m midtrain_jax.main --config=configs/sft.py --workdir=runs/sft_math \
      --config.train.init_from=runs/anneal
  python -m midtrain_jax.main --config=configs/sft.py:target=code --workdir=runs/sft_code \
      --config.train.init_from=path/to/SmolLM2-135M-Instruct.Q4_1.gguf

`train.init_from` is any run directory (pretraining, anneal, `soup` output,
`convert import` output) or an HF model folder or .gguf file (imported once);
the model section and the tokenizer are the base's (workflows/sft.py). The
learning rate is constant, then decays linearly to zero over the last
`optim.decay_fraction` of the run (a WSD schedule without warmup); the run
makes `sft.epochs` passes over the target's training conversations. Results:
DIR/sft_results.json.

Arguments after `:`: target=math|code|instruction (the mixture
sft/sft_math_synthetic, sft/sft_code_stdlib or sft/sft_instruction_alpaca and
its benchmark: gsm8k, humaneval, none), init=SRC (the same as
--config.train.init_from=SRC).
"""
from midtrain_jax import config as config_lib

_TARGETS = {"math": ("sft/sft_math_synthetic", "gsm8k"),
            "code": ("sft/sft_code_stdlib", "humaneval"),
            "instruction": ("sft/sft_instruction_alpaca", "")}


def get_config(arg=None):
  args = config_lib.parse_arg(arg, target="math", init="")
  if args.target not in _TARGETS:
    raise ValueError(f"Unknown SFT target {args.target!r}; expected one of {sorted(_TARGETS)}.")
  mixture, benchmark = _TARGETS[args.target]
  c = config_lib.base_config("tiny")  # The model section is replaced by the base's.
  c.workflow = "sft"
  c.data.update(mixture=mixture, seq_len=256, batch_size=16)
  # The training conversations are decontaminated against the benchmark scored at the end
  # (drop: a chat document is never cut), and the run checks exactly that one.
  c.data.decontam.update(benchmarks=(benchmark,) if benchmark else (), mode="drop")
  c.eval.benchmarks = c.data.decontam.benchmarks
  # Constant, then linear to zero over the last 30% (WSD without warmup).
  c.optim.update(schedule="wsd", lr=1e-4, warmup_steps=0, decay_fraction=0.3,
                 decay_shape="linear", weight_decay=0.0)
  c.train.update(init_from=args.init, init_optimizer=False, steps=100, z_loss=0.0,
                 log_every_steps=10)
  c.ckpt.update(every_steps=50, keep=2)
  # Held-out response BPB on a few batches during the run; all of it at the end.
  c.eval.update(every_steps=50, batches=2)
  c.sft.update(epochs=2.0, benchmark=benchmark, benchmark_items=32)
  if args.init:
    return config_lib.finalize(c)
  # Without a base the config only validates once --config.train.init_from is given.
  c.lock()
  return c
