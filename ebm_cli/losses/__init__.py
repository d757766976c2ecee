"""Training objectives, one module each: nll, free_energy, hinge, cd."""
