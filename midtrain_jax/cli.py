"""The one command-line convention: absl flags, `--help`, quiet logs.

Every command is `python -m midtrain_jax.<verb>` (or `python -m
midtrain_jax.<package>.<verb>`): a thin module that declares its absl flags
at the top and whose `main(argv)` calls library functions. Library modules
declare no flags, so importing them never changes a command line. `run(main)`
parses the flags, applies `--log_level` (default "warning": the command's own
lines and the warnings that matter, no library INFO logs) and runs `main`.
"""
import sys

from absl import app, flags

from midtrain_jax import logs

_LOG_LEVEL = flags.DEFINE_enum(
    "log_level", "warning", logs.LEVELS,
    "Level of library logs (absl, orbax, clu, jax); 'info' shows them all.")


def names(values: list[str] | None) -> list[str]:
  """A comma-list flag's values without empty entries (`--x=a,,b,` -> [a, b])."""
  return [v.strip() for v in values or () if v.strip()]


def run(main, required: tuple[str, ...] = ()) -> None:
  """Parses flags (failing on a missing `required` one) and runs `main(argv)`."""
  if required:
    flags.mark_flags_as_required(list(required))
  # --help lists the command's own flags; --log_level belongs to every command.
  flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS["log_level"])

  def configured_main(argv):
    logs.configure(_LOG_LEVEL.value)
    return main(argv)

  app.run(configured_main)
