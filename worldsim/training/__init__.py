"""Lightning training for both stages: the frame autoencoder, then the latent dynamics model.

LightningModules here only wire steps, optimisers, EMA and logging around the plain modules of
``worldsim.models`` and the objective of ``worldsim.flow``.
"""
