"""midtrain_jax: a JAX/Flax codebase for LLM midtraining (annealing) research."""
import setuptools

# Compatible-release pins (~=): the versions this code is tested with, minor
# updates allowed. JAX APIs move quickly, so it is held to one minor series.
_CORE = [
    "jax~=0.10.2",
    "flax~=0.12.8",
    "optax~=0.2.8",
    "orbax-checkpoint~=0.12.8",
    "grain~=0.2.18",
    "array-record~=0.8.6",
    "seqio~=0.0.20",
    "tensorflow-datasets~=4.9.10",
    "ml-collections~=1.1.0",
    "clu~=0.0.12",
    "tensorboard~=2.21",
    # 0.2.3's generated protobuf code needs the protobuf 7 runtime, which
    # apache-beam (the `beam` extra, in the test extra) does not accept yet.
    "sentencepiece>=0.2.1,<0.2.3",
    "tokenizers>=0.20,<1",
    "numpy>=1.26,<3",
    "zstandard>=0.22",
    "pyarrow>=15",
    "safetensors>=0.4",  # HF checkpoints in and out (interop/).
    "gguf>=0.10",        # GGUF checkpoints in (interop/gguf.py).
]
# MKL's sgemm behind the native CPU kernels (midtrain_jax/kernels/native.py):
# optional, so accelerator hosts pull no MKL, OpenMP or TBB runtimes.
_CPU = ["mkl>=2025; platform_system == 'Linux' and platform_machine == 'x86_64'"]
# transformers converts SentencePiece vocabularies on export and is the
# reference the interop tests compare against; torch is pinned to the CPU
# build these machines carry.
_INTEROP = ["torch==2.13.0", "transformers>=5,<6", "accelerate>=1"]
# lm-eval-harness for `lm_eval --model midtrain_jax` (midtrain_jax/lm_eval_model.py):
# without its `hf` extra, so it pulls no torch of its own (interop pins the CPU one).
_LM_EVAL = ["lm-eval~=0.4.13"]
# Apache Beam runs the preparation on Dataflow, Flink or Spark (and locally on
# the DirectRunner); it shares one environment with the core and the tests.
_BEAM = ["apache-beam~=2.78.0"]
# What benchmarks/prepare_throughput.py compares the preparation with:
# datatrove's tokenizer step and MinHash deduplication (spaCy is its English
# word tokenizer; no model is downloaded; its hashing needs xxhash 3, as its
# `processing` extra says), and psutil to watch the processes.
# Not in the test extra: no test imports them.
_BENCH = ["datatrove~=0.10.1", "spacy>=3.8,<4", "xxhash<4", "psutil>=5.9"]

setuptools.setup(
    name="midtrain_jax",
    version="0.1.0",
    description="JAX/Flax codebase for LLM midtraining: sharded decoder, "
    "Dolmino-style mixtures, decontamination, evaluation.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=setuptools.find_packages(include=["midtrain_jax", "midtrain_jax.*"]),
    package_data={"midtrain_jax.kernels": ["*.cc", "*.h"]},
    install_requires=_CORE,
    extras_require={
        "tpu": ["jax[tpu]~=0.10.2"],
        "cuda": ["jax[cuda12]~=0.10.2"],
        "cpu": _CPU,
        # The tests exercise the native CPU kernels too.
        "test": ["pytest>=8", "pytest-xdist>=3", "ruff>=0.6", "nbclient>=0.10",
                 "ipykernel>=6", "nbformat>=5", "matplotlib>=3.8", "pandas>=2"] + _INTEROP + _CPU
        + _LM_EVAL + _BEAM,
        "interop": _INTEROP,
        "lm_eval": _LM_EVAL,
        "notebooks": ["matplotlib>=3.8", "pandas>=2", "ipykernel>=6",
                      "nbclient>=0.10", "nbformat>=5"],
        "beam": _BEAM,
        "bench": _BENCH,
    },
)
