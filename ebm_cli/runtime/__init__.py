"""Run machinery: checkpoints, stop signals, TensorBoard, the console, sweep summaries, the run folder."""
