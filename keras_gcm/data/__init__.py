"""Data sets and input pipelines.

Image loaders need the `data` extra (TensorFlow, tensorflow-datasets,
scikit-learn); they import those lazily.
"""

from keras_gcm.data.images import DIGITS_NUM_HELDOUT
from keras_gcm.data.images import DIGITS_NUM_TRAIN
from keras_gcm.data.images import check_images
from keras_gcm.data.images import cifar10
from keras_gcm.data.images import digits
from keras_gcm.data.images import digits_split_indices
from keras_gcm.data.images import image_folder
from keras_gcm.data.images import image_folder_classes
from keras_gcm.data.images import list_image_files
from keras_gcm.data.images import npz_images
from keras_gcm.data.imagenet import IMAGENET_NUM_CLASSES
from keras_gcm.data.imagenet import imagenet64
from keras_gcm.data.imagenet import imagenet64_npz
from keras_gcm.data.imagenet import read_downsampled_imagenet_npz
from keras_gcm.data.step_indexed_batches import StepIndexedBatches
from keras_gcm.data import latents
from keras_gcm.data.toy2d import TOY2D_NAMES
from keras_gcm.data.toy2d import toy2d

__all__ = [
    "DIGITS_NUM_HELDOUT", "DIGITS_NUM_TRAIN", "StepIndexedBatches", "TOY2D_NAMES", "check_images", "cifar10",
    "digits", "digits_split_indices", "image_folder", "image_folder_classes", "latents",
    "list_image_files", "npz_images",
    "toy2d", "IMAGENET_NUM_CLASSES", "imagenet64", "imagenet64_npz",
    "read_downsampled_imagenet_npz",
]
