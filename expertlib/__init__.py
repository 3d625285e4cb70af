"""expertlib: Scalable Transfer Learning with Expert Models (Puigcerver et al., ICLR 2021), reproduced.

Importing the package tunes glibc's allocator once (see :mod:`expertlib.runtime`); set
``EXPERTLIB_NO_MALLOC_TUNING=1`` to turn that off.
"""

from expertlib.runtime import allocator_status, tune_allocator

tune_allocator()

__version__ = "0.1.0"
__all__ = ["__version__", "allocator_status", "tune_allocator"]
