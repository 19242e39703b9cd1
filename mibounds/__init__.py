"""mibounds: variational lower bounds on mutual information, pairwise and poly-view, in PyTorch."""

__version__ = "0.1.0"
