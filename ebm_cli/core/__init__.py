"""The contracts: energies and their capabilities, inference methods, losses, datasets, spaces, metrics."""
