"""Convert checkpoints: Hugging Face / GGUF in, Hugging Face out.

  python -m midtrain_jax.convert import --from=HF_DIR_OR_GGUF --out=RUN_DIR
  python -m midtrain_jax.convert export --from=RUN_OR_CKPT --out=HF_DIR
  python -m midtrain_jax.convert layout --from=RUN_OR_CKPT --out=RUN_DIR --scan_layers=true

`import` writes a run directory (config.json, a step-0 checkpoint, the
model's tokenizer): anneal it with `--config=configs/anneal.py:init=RUN_DIR`.
`export` writes a folder `transformers.AutoModelForCausalLM` and
`AutoTokenizer` load (midtrain_jax/interop/hf.py; families in
midtrain_jax/interop/families.py). `layout` rewrites a checkpoint with its
layers scanned (stacked groups) or unscanned (model/layer_stack.py).
"""
import sys

from absl import flags

from midtrain_jax import cli
from midtrain_jax.interop import hf
from midtrain_jax.train import checkpoint

_FROM = flags.DEFINE_string("from", None, "import: an HF model folder or a .gguf file; "
                            "export: a run directory or checkpoint step directory.")
_OUT = flags.DEFINE_string("out", None, "import: the new run directory; export: the HF folder.")
_SCAN = flags.DEFINE_bool("scan_layers", True, "layout: write the scanned layout (false: "
                          "one entry per layer).")
_VERBS = {"import": hf.import_model, "export": hf.export_model,
          "layout": lambda src, out: print(checkpoint.relayout(src, out, _SCAN.value))}


def main(argv):
  if len(argv) != 2 or argv[1] not in _VERBS:
    sys.exit("usage: python -m midtrain_jax.convert import|export|layout --from=SRC --out=DIR")
  _VERBS[argv[1]](_FROM.value, _OUT.value)


if __name__ == "__main__":
  cli.run(main, required=("from", "out"))
