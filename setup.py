"""midtrain_jax: a JAX/Flax codebase for LLM midtraining (annealing) research."""
import setuptools

_CORE = [
    "jax>=0.7",
    "flax>=0.11",
    "optax>=0.2.5",
    "orbax-checkpoint>=0.11",
    "grain>=0.2.12",
    "array-record>=0.7",
    "seqio>=0.0.19",
    "tensorflow-datasets>=4.9",
    "ml-collections>=1.0",
    "clu>=0.0.12",
    "sentencepiece>=0.2",
    "tokenizers>=0.20",
    "numpy>=1.26",
    "zstandard>=0.22",
    "pyarrow>=15",
]

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
    install_requires=_CORE,
    extras_require={
        "tpu": ["jax[tpu]"],
        "cuda": ["jax[cuda12]"],
        "test": ["pytest>=8", "pytest-xdist>=3", "nbclient>=0.10",
                 "ipykernel>=6", "nbformat>=5"],
        "notebooks": ["matplotlib>=3.8", "pandas>=2", "ipykernel>=6",
                      "nbclient>=0.10", "nbformat>=5"],
        "beam": ["apache-beam>=2.60"],
    },
)
