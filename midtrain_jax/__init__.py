"""midtrain_jax: sharded Flax decoder, Dolmino-style mixtures and evaluation for midtraining."""

__version__ = "0.1.0"
