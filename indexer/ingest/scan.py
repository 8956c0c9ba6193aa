"""Walking user-supplied paths for image files (the walker itself lives in ``model.files``)."""

from model.files import IMAGE_EXTENSIONS, iter_image_paths

__all__ = ["IMAGE_EXTENSIONS", "iter_image_paths"]
