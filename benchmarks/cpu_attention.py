"""Causal attention forward + backward on CPU: the native kernel, XLA's ops, PyTorch's SDPA.

  python -m benchmarks.cpu_attention                       # batch 16, seq 256, 4 heads of 64
  python -m benchmarks.cpu_attention --batch=4 --seq=1024 --heads=12
  python -m benchmarks.cpu_attention --rope     # q and k rotated by RoPE first, as the model does

Times one attention layer's forward and backward (float32, one document per
row, full causal) three ways, alternating so the host's drift hits all alike:
the native kernel the model runs on one CPU device (kernels/cpu_attention.py),
the model's XLA path (query blocks against the keys they see, rematerialised;
model/attention.py) and PyTorch's scaled_dot_product_attention (when torch is
importable). With `--rope` every form first rotates q and k by RoPE, and the
native kernel runs twice: rotating inside the kernel (what the model does) and
with the rotation as XLA ops before it. Each figure is the best of
`--samples` synchronised runs of `--reps` calls; the native kernel is checked
against XLA's path first.
"""
import argparse
import functools
import importlib.util
import sys

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import train_step
from midtrain_jax.kernels import cpu_attention, native
from midtrain_jax.model import attention, rope


def _rope_tables(shape, use: bool):
  """RoPE's (cos, sin) [B, T, H/2] for positions 0.. of every row, or None."""
  if not use:
    return None
  positions = jnp.tile(jnp.arange(shape[1]), (shape[0], 1))
  return rope.rotation_tables(positions, rope.inverse_frequencies(shape[3], 10_000.0))


def _jax_forms(q, k, v, g, segment_ids, scale: float, tables) -> dict:
  xla_attend = functools.partial(attention.grouped_attention, scale=scale)
  block = attention.causal_query_block(0, q.shape[1], "xla")

  def rotated(q, k):
    return (q, k) if tables is None else (rope.rotate(q, *tables), rope.rotate(k, *tables))

  def xla(q, k, v):
    q, k = rotated(q, k)
    if block:
      return attention.causal_blocked_attention(q, k, v, segment_ids, block, xla_attend)
    slots = jnp.arange(q.shape[1])
    return xla_attend(q, k, v, attention.attention_mask(slots, slots, segment_ids,
                                                        segment_ids, 0))

  def ours(q, k, v):
    return cpu_attention.attention(q, k, v, segment_ids, 0, scale, tables)

  def ours_rotated_by_xla(q, k, v):
    return cpu_attention.attention(*rotated(q, k), v, segment_ids, 0, scale)

  named = [("native kernel", ours), ("jax xla ops", xla)]
  if tables is not None:
    named.insert(1, ("native, RoPE in XLA", ours_rotated_by_xla))
  forms = {}
  for name, f in named:
    step = jax.jit(lambda q, k, v, g, f=f: jax.vjp(f, q, k, v)[1](g))
    forms[name] = lambda step=step: jax.block_until_ready(step(q, k, v, g))
  outputs = [jax.jit(f)(q, k, v) for f in (ours, xla)]
  np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-4, atol=1e-5)
  return forms


def _torch_form(q, k, v, g, tables) -> dict:
  if importlib.util.find_spec("torch") is None:
    return {}
  import torch  # Optional: only for the side-by-side figure.
  tq, tk, tv, tg = (torch.from_numpy(np.array(x)).transpose(1, 2).contiguous()
                    for x in (q, k, v, g))
  for x in (tq, tk, tv):
    x.requires_grad_()
  if tables is not None:  # [B, 1, T, H] as transformers' Llama applies them.
    cos, sin = (torch.from_numpy(np.array(x))[:, None].repeat(1, 1, 1, 2) for x in tables)

  def rotated(x):
    if tables is None:
      return x
    half = x.shape[-1] // 2
    return x * cos + torch.cat([-x[..., half:], x[..., :half]], dim=-1) * sin

  def run():
    out = torch.nn.functional.scaled_dot_product_attention(rotated(tq), rotated(tk), tv,
                                                           is_causal=True)
    out.backward(tg)
  return {"torch sdpa": run}


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--seq", type=int, default=256)
  p.add_argument("--heads", type=int, default=4)
  p.add_argument("--head_dim", type=int, default=64)
  p.add_argument("--reps", type=int, default=3)
  p.add_argument("--samples", type=int, default=5)
  p.add_argument("--rope", action="store_true", help="rotate q and k by RoPE first")
  args = p.parse_args()
  ready, why = native.status()
  if not ready:
    sys.exit(f"native CPU kernels unavailable: {why}")
  rng = np.random.default_rng(0)
  shape = (args.batch, args.seq, args.heads, args.head_dim)
  q, k, v, g = (jnp.asarray(rng.normal(size=shape), jnp.float32) for _ in range(4))
  segment_ids = jnp.ones(shape[:2], jnp.int32)
  tables = _rope_tables(shape, args.rope)
  forms = {**_jax_forms(q, k, v, g, segment_ids, 1 / np.sqrt(args.head_dim), tables),
           **_torch_form(q, k, v, g, tables)}
  best = train_step.best_seconds(forms, args.samples, args.reps)
  print(f"batch={args.batch} seq={args.seq} heads={args.heads} head_dim={args.head_dim}, "
        f"causal, float32{', RoPE' if args.rope else ''}; forward + backward, best of "
        f"{args.samples} x {args.reps}")
  for name, seconds in best.items():
    print(f"{name:20s} {seconds * 1e3:8.1f} ms")


if __name__ == "__main__":
  sys.exit(main())
