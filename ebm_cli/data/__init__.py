"""Datasets: curves (curves.py), video frames (video.py), translation pairs (translation.py)."""

def data_kind(dataset_cfg) -> str:
    """curves | video | translation: which data pipeline (and metrics, figures) a dataset config
    uses (curves and curves_csv are both curves)."""
    return dataset_cfg.name if dataset_cfg.name in ("video", "translation") else "curves"
