"""The sandbox's seccomp filter: a well-formed BPF program for the known architectures."""
import struct

import pytest

from midtrain_jax.evals import seccomp


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_the_filter_checks_the_architecture_then_refuses_the_listed_calls(machine):
  program = seccomp.program(machine)
  assert program and len(program) % 8 == 0
  ops = [struct.unpack("<HBBI", program[i:i + 8]) for i in range(0, len(program), 8)]
  arch, numbers = seccomp._ARCHES[machine]
  assert ops[0] == (0x20, 0, 0, 4) and ops[1][3] == arch  # Load the arch, compare it.
  refused = {k for code, _, _, k in ops if code == 0x15}  # Every number compared against.
  assert {numbers[name] for name in seccomp._DENIED} | {numbers["clone"]} <= refused
  assert ops[-1] == (0x06, 0, 0, 0x7FFF0000)  # Anything else is allowed.
  for i, (code, jt, jf, _) in enumerate(ops):  # Jumps stay inside the program.
    if code in (0x15, 0x45):
      assert i + 1 + max(jt, jf) < len(ops)


def test_unknown_architectures_get_no_filter():
  assert seccomp.program("riscv64") is None
