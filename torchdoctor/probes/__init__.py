"""Probes observe a run through PyTorch's own hook points; they measure, they never judge."""
