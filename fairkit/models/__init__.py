"""Classifiers (torchvision-style CNNs) and, later, conditional diffusion models."""
