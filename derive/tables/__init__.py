"""Data: one table each for activations, costs, layer kinds and notations; nothing outside them branches on a name."""
