"""Image I/O and preprocessing."""

from .io import ImageError, image_to_tensor, load_image, save_grid, save_image, tensor_to_image
from .preprocess import PreprocessResult, preprocess_image, valid_size

__all__ = [
    "ImageError",
    "image_to_tensor",
    "load_image",
    "save_image",
    "save_grid",
    "tensor_to_image",
    "PreprocessResult",
    "preprocess_image",
    "valid_size",
]
