"""A seccomp filter for the sandbox: system calls a generated program never needs.

The namespaces of `jail.py` decide what a program can see; this narrows how
much of the kernel it can reach. Refused (EPERM): new namespaces of any kind
(`unshare`, `setns`, `clone` with CLONE_NEWUSER; `clone3`, whose flags a
classic BPF filter cannot read, answers ENOSYS so the C library falls back to
`clone`), mounts, the keyring, BPF, perf events, userfaultfd, io_uring,
ptrace and cross-process memory access, kernel modules and kexec, and file
handles. Any other architecture's system calls (x32, 32-bit) kill the process.
The judge sets its limits and changes its user before the program runs; none
of that is refused.

Known architectures: x86_64 and aarch64; elsewhere `program()` is None and the
sandbox runs without the filter (the namespaces still hold).
"""
import errno
import platform
import struct

CLONE_NEWUSER = 0x10000000
_DENIED = ("unshare", "setns", "mount", "umount2", "pivot_root", "keyctl", "add_key",
           "request_key", "bpf", "perf_event_open", "userfaultfd", "ptrace", "process_vm_readv",
           "process_vm_writev", "io_uring_setup", "io_uring_enter", "io_uring_register",
           "kexec_load", "init_module", "finit_module", "open_by_handle_at")
# machine: (AUDIT_ARCH_*, system call numbers).
_ARCHES = {
    "x86_64": (0xC000003E, {
        "clone": 56, "clone3": 435, "unshare": 272, "setns": 308, "mount": 165, "umount2": 166,
        "pivot_root": 155, "keyctl": 250, "add_key": 248, "request_key": 249, "bpf": 321,
        "perf_event_open": 298, "userfaultfd": 323, "ptrace": 101, "process_vm_readv": 310,
        "process_vm_writev": 311, "io_uring_setup": 425, "io_uring_enter": 426,
        "io_uring_register": 427, "kexec_load": 246, "init_module": 175, "finit_module": 313,
        "open_by_handle_at": 304}),
    "aarch64": (0xC00000B7, {
        "clone": 220, "clone3": 435, "unshare": 97, "setns": 268, "mount": 40, "umount2": 39,
        "pivot_root": 41, "keyctl": 219, "add_key": 217, "request_key": 218, "bpf": 280,
        "perf_event_open": 241, "userfaultfd": 282, "ptrace": 117, "process_vm_readv": 270,
        "process_vm_writev": 271, "io_uring_setup": 425, "io_uring_enter": 426,
        "io_uring_register": 427, "kexec_load": 104, "init_module": 105, "finit_module": 273,
        "open_by_handle_at": 265}),
}
_X32_BIT = 0x40000000  # x86_64 system call numbers of the x32 ABI carry this bit.
# Classic BPF: load word (absolute), jump if equal / if bits set, return.
_LD, _JEQ, _JSET, _RET = 0x20, 0x15, 0x45, 0x06
_ALLOW, _KILL, _ERRNO = 0x7FFF0000, 0x80000000, 0x00050000
# Offsets in struct seccomp_data: nr, arch, args[0] (its low 32 bits, little-endian).
_NR, _ARCH, _ARG0 = 0, 4, 16


def _op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
  return struct.pack("<HBBI", code, jt, jf, k)


def program(machine: str | None = None) -> bytes | None:
  """The filter as bwrap's `--seccomp` reads it (struct sock_filter[]), or None when unknown."""
  arch, numbers = _ARCHES.get(machine or platform.machine(), (None, None))
  if arch is None:
    return None
  ops = [_op(_LD, _ARCH), _op(_JEQ, arch, 1, 0), _op(_RET, _KILL), _op(_LD, _NR)]
  if arch == _ARCHES["x86_64"][0]:
    ops += [_op(_JSET, _X32_BIT, 0, 1), _op(_RET, _KILL)]
  for name in _DENIED:
    ops += [_op(_JEQ, numbers[name], 0, 1), _op(_RET, _ERRNO | errno.EPERM)]
  ops += [_op(_JEQ, numbers["clone3"], 0, 1), _op(_RET, _ERRNO | errno.ENOSYS)]
  # clone: refused only with CLONE_NEWUSER (fork and threads use clone too).
  ops += [_op(_JEQ, numbers["clone"], 0, 4), _op(_LD, _ARG0),
          _op(_JSET, CLONE_NEWUSER, 0, 1), _op(_RET, _ERRNO | errno.EPERM), _op(_RET, _ALLOW)]
  ops.append(_op(_RET, _ALLOW))
  return b"".join(ops)
