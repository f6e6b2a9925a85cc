"""spark-submit entry points, one module per job; `hcmrm <job>` runs the same functions."""
