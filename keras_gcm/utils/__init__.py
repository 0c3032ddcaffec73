"""Small helpers shared by the callbacks, recipes and docs: image grids."""

from keras_gcm.utils.image_grids import image_grid
from keras_gcm.utils.image_grids import images_to_uint8
from keras_gcm.utils.image_grids import save_image_grid

__all__ = ["image_grid", "images_to_uint8", "save_image_grid"]
