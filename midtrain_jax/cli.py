"""The one command-line convention: absl flags, `--help`, quiet logs.

Every command is `python -m midtrain_jax.<verb>` (or `python -m
midtrain_jax.<package>.<verb>`): a thin module that declares its absl flags
at the top and whose `main(argv)` calls library functions. Library modules
declare no flags, so importing them never changes a command line. `run(main)`
parses the flags, applies `--log_level` (default "warning": the command's own
lines and the warnings that matter, no library INFO logs) and runs `main`.
A command whose config flag holds declared settings passes them as
`settings_flag=(section, flag name)`: `--help_config` then lists every key
with its type, default, allowed values and help, generated from the
declarations (midtrain_jax/settings.py).
"""
import sys

from absl import app, flags

from midtrain_jax import logs, settings

_LOG_LEVEL = flags.DEFINE_enum(
    "log_level", "warning", logs.LEVELS,
    "Level of library logs (absl, orbax, clu, jax); 'info' shows them all.")


def names(values: list[str] | None) -> list[str]:
  """A comma-list flag's values without empty entries (`--x=a,,b,` -> [a, b])."""
  return [v.strip() for v in values or () if v.strip()]


class _SettingsHelpFlag(flags.BooleanFlag):
  """`--help_config`: prints every key of a settings section and exits (like --help)."""

  def __init__(self, section: settings.Section, name: str):
    super().__init__("help_config", False, f"List every --{name}.<section>.<key>: its type, "
                     "default, allowed values and what it does.", allow_hide_cpp=True)
    self._section, self._name = section, name

  def parse(self, argument):
    if self._parse(argument):
      print("\n".join(settings.help_lines(self._section, self._name)))
      sys.exit(0)


def run(main, required: tuple[str, ...] = (),
        settings_flag: tuple[settings.Section, str] | None = None,
        forward_unknown: bool = False) -> None:
  """Parses flags (failing on a missing `required` one) and runs `main(argv)`.

  Args:
    main: the command's main(argv).
    required: flags that must be given.
    settings_flag: (declared section, name of the flag holding it) for
      `--help_config`, e.g. (config.ROOT, "config").
    forward_unknown: leave flags no module declared in `argv`, in order, for
      a command that hands them to another program's parser (lm_harness).
  """
  if required:
    flags.mark_flags_as_required(list(required))
  # --help lists the command's own flags; --log_level belongs to every command.
  flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS["log_level"])
  if settings_flag is not None and "help_config" not in flags.FLAGS:
    flags.DEFINE_flag(_SettingsHelpFlag(*settings_flag))
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS["help_config"])

  def configured_main(argv):
    logs.configure(_LOG_LEVEL.value)
    return main(argv)

  if forward_unknown:
    app.run(configured_main, flags_parser=lambda argv: flags.FLAGS(argv, known_only=True))
  else:
    app.run(configured_main)
