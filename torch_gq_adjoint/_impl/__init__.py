"""Private implementation of :mod:`torch_gq_adjoint`; import from the package instead."""
