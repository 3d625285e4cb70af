"""expertlib: Scalable Transfer Learning with Expert Models (Puigcerver et al., ICLR 2021), reproduced."""

__version__ = "0.1.0"
__all__ = ["__version__"]
