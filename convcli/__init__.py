"""convcli: convolution and cross-correlation of images and volumes, and a layer-shape calculator."""

from .engine.api import conv_layer, convolve, correlate
from .geometry import output_shape

__all__ = ["conv_layer", "convolve", "correlate", "output_shape", "__version__"]
__version__ = "0.1.0"
