"""The files of a run directory. Torch-free, so the API and the control plane name them too."""

CONFIG = "config.json"  # the resolved ExperimentConfig of the run
LAST = "last.pt"  # written atomically after every epoch
BEST = "best.pt"  # the best validation robust accuracy so far
REPORT = "report.json"  # the final evaluation report
PLOT = "eps_sweep.png"  # robust accuracy against epsilon
