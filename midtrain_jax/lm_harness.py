"""lm-eval-harness's command line with this codebase's model registered as `midtrain_jax`.

  python -m midtrain_jax.lm_harness --model midtrain_jax \\
      --model_args path=runs/anneal,step=2000,batch_size=8 \\
      --tasks arc_easy,hellaswag [--include_path my_tasks/] [--log_samples --output_path out/]

Every argument is lm-eval's (`lm_eval --help`); `path` is a run, a
`checkpoints/<step>` directory, an HF model folder or a GGUF file, and the
other model_args are those of `MidtrainLM` (midtrain_jax/lm_eval_model.py).
lm-eval 0.4 discovers no models from installed packages, so this command
registers the model and then runs `lm_eval` itself. Its log level is set by
the LMEVAL_LOG_LEVEL environment variable (`--verbosity` is absl's here).
"""
import sys

from midtrain_jax import cli


def main(argv):
  from lm_eval import __main__ as lm_eval_main  # noqa: PLC0415 (the optional lm_eval extra)

  from midtrain_jax import lm_eval_model  # noqa: F401, PLC0415 (registers the model)
  sys.argv = ["lm_eval", *argv[1:]]
  lm_eval_main.cli_evaluate()


if __name__ == "__main__":
  cli.run(main, forward_unknown=True)
