"""Gradient accuracy of the GQ adjoint against direct backprop and closed forms."""
