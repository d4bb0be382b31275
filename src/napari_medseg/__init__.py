"""napari-medseg: volumetric CT/MRI segmentation for napari.

Importing the package is deliberately cheap: it imports neither napari, torch nor
monai. Everything heavy is imported inside the functions that need it.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
