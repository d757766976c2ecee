"""The data kinds, one package each: curves, video (frames), translation (sentences)."""
