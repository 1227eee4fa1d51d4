"""One small script per DVC stage (`python -m evolinstruct.stages.<name>`), each reading its own
params group. dvc.yaml declares the same params, deps and outs."""
