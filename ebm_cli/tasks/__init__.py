"""The tasks a run can do (task=...): train, infer, landscape, compare_inference; plain functions of a
composed config, callable from Python without Hydra's entry point."""
