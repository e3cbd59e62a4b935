"""Train-step cost of sliding-window layers: window 256 vs full attention at seq 2048.

  python -m benchmarks.window_attention
  python -m benchmarks.window_attention --seq=4096 --window=512

The tiny preset's shape (4 layers: every layer but the last windowed when
--window is set, the last one full) trained at a long sequence, once with
windows and once with full attention everywhere, each over several
synchronised samples. Window layers run block-local attention (scores T x 2w
instead of T x T, model/attention.py), so their cost falls with the window.
Last line: `window_tokens_per_s=X full_tokens_per_s=Y speedup=Z`.
"""
import argparse
import statistics

from benchmarks import train_step


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--size", default="tiny")
  p.add_argument("--seq", type=int, default=2048)
  p.add_argument("--batch", type=int, default=2)
  p.add_argument("--window", type=int, default=256)
  p.add_argument("--steps", type=int, default=3)
  p.add_argument("--samples", type=int, default=3)
  p.add_argument("--dtype", default="float32")
  args = p.parse_args()
  rates = {}
  for window in (args.window, 0):
    run = argparse.Namespace(**{**vars(args), "window": window, "attention": "xla"})
    rates[window] = train_step.jax_samples(run)["rates"]
    label = f"window {window}" if window else "full"
    print(f"{label:>11}: tokens/s median {statistics.median(rates[window]):,.0f} "
          f"(min {min(rates[window]):,.0f}, max {max(rates[window]):,.0f}, "
          f"n={len(rates[window])})", flush=True)
  windowed, full = (statistics.median(rates[w]) for w in (args.window, 0))
  print(f"window_tokens_per_s={windowed:.0f} full_tokens_per_s={full:.0f} "
        f"speedup={windowed / full:.2f}")


if __name__ == "__main__":
  main()
