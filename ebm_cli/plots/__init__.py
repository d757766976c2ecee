"""Figures: energy landscapes, Gibbs slices, latent views (matplotlib, for TensorBoard and figures/)."""
