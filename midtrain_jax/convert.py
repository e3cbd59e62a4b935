"""Convert checkpoints: Hugging Face / GGUF in, Hugging Face out, dense -> MoE.

  python -m midtrain_jax.convert import --from=HF_DIR_OR_GGUF --out=RUN_DIR
  python -m midtrain_jax.convert export --from=RUN_OR_CKPT --out=HF_DIR
  python -m midtrain_jax.convert layout --from=RUN_OR_CKPT --out=RUN_DIR --scan_layers=true
  python -m midtrain_jax.convert upcycle --from=DENSE_RUN_OR_CKPT --out=RUN_DIR \
      --experts=8 --top_k=2 --drop_ratio=0.5 [--seed=0] [--every=1]

`import` writes a run directory (config.json, a step-0 checkpoint, the
model's tokenizer): anneal it with `--config=configs/anneal.py:init=RUN_DIR`.
`export` writes a folder `transformers.AutoModelForCausalLM` and
`AutoTokenizer` load (midtrain_jax/interop/hf.py; families in
midtrain_jax/interop/families.py). `layout` rewrites a checkpoint with its
layers scanned (stacked groups) or unscanned (model/layer_stack.py).
`upcycle` turns a dense checkpoint into a mixture-of-experts run directory by
(drop-)upcycling (midtrain_jax/interop/upcycle.py).
"""
import sys

from absl import flags

from midtrain_jax import cli
from midtrain_jax.interop import hf, upcycle
from midtrain_jax.train import checkpoint

_FROM = flags.DEFINE_string("from", None, "import: an HF model folder or a .gguf file; "
                            "export: a run directory or checkpoint step directory.")
_OUT = flags.DEFINE_string("out", None, "import: the new run directory; export: the HF folder.")
_SCAN = flags.DEFINE_bool("scan_layers", True, "layout: write the scanned layout (false: "
                          "one entry per layer).")
_EXPERTS = flags.DEFINE_integer("experts", 8, "upcycle: experts per MoE layer.")
_TOP_K = flags.DEFINE_integer("top_k", 2, "upcycle: experts each token is routed to.")
_DROP = flags.DEFINE_float("drop_ratio", 0.5, "upcycle: fraction of each expert's "
                           "intermediate dimensions re-initialised (0 = plain upcycling).")
_SEED = flags.DEFINE_integer("seed", 0, "upcycle: random seed of the re-initialisation.")
_EVERY = flags.DEFINE_integer("every", 1, "upcycle: layer i becomes MoE when "
                              "(i + 1) % every == 0.")
_VERBS = {"import": hf.import_model, "export": hf.export_model,
          "layout": lambda src, out: print(checkpoint.relayout(src, out, _SCAN.value)),
          "upcycle": lambda src, out: upcycle.upcycle(
              src, out, experts=_EXPERTS.value, top_k=_TOP_K.value, drop_ratio=_DROP.value,
              seed=_SEED.value, every=_EVERY.value)}


def main(argv):
  if len(argv) != 2 or argv[1] not in _VERBS:
    sys.exit("usage: python -m midtrain_jax.convert import|export|layout|upcycle "
             "--from=SRC --out=DIR")
  _VERBS[argv[1]](_FROM.value, _OUT.value)


if __name__ == "__main__":
  cli.run(main, required=("from", "out"))
