"""Training objectives, one module each: nll, free_energy, cd, energy, nce, score_matching (dsm, ssm),
and the losses against the most offending incorrect answer (offending.py's search; hinge.py,
margin.py). README.md's "The loss zoo" has the table."""
