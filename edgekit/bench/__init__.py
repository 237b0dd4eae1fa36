"""`edgekit bench`: latency of every backend on one bundle, side by side with PyTorch."""
