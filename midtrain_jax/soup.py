"""Average (soup) the parameters of several checkpoints into one.

  python -m midtrain_jax.soup --inputs=runs/seed_0,runs/seed_1,runs/seed_2 --out=runs/soup

Inputs are workdirs (latest step) or step directories of the same
architecture; the soup is written at step 0 of `--out` with the first input's
config, and evaluates like any run (`python -m midtrain_jax.evaluate`).
"""
from absl import flags

from midtrain_jax import cli
from midtrain_jax.train import checkpoint

_INPUTS = flags.DEFINE_list("inputs", None, "Checkpoints to average (workdirs or step dirs).")
_OUT = flags.DEFINE_string("out", None, "Output workdir for the averaged checkpoint.")


def main(argv):
  del argv
  inputs = cli.names(_INPUTS.value)
  written = checkpoint.soup(inputs, _OUT.value)
  print(f"soup of {len(inputs)} checkpoints -> {written}")


if __name__ == "__main__":
  cli.run(main, required=("inputs", "out"))
