"""Adversarial Supervised Contrastive Learning (Bui et al., arXiv 2101.10027) in PyTorch.

Importing the package does not import torch: `ascl.config` is usable by a torch-free API server.
"""

__version__ = "0.1.0"
