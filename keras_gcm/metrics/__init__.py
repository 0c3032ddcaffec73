"""Sample-quality metrics: 2-D distances, Frechet distances, FID machinery."""

from keras_gcm.metrics.digits import DigitsClassifier
from keras_gcm.metrics.digits import digits_classifier
from keras_gcm.metrics.digits import digits_features
from keras_gcm.metrics.digits import digits_quality
from keras_gcm.metrics.digits import frechet_digits_distance
from keras_gcm.metrics.digits import pixel_energy_distance
from keras_gcm.metrics.distances import energy_distance
from keras_gcm.metrics.distances import sliced_wasserstein2
from keras_gcm.metrics.frechet import FrechetInceptionDistance
from keras_gcm.metrics.frechet import compute_statistics
from keras_gcm.metrics.frechet import frechet_distance
from keras_gcm.metrics.frechet import load_statistics
from keras_gcm.metrics.frechet import quantize_to_uint8_levels
from keras_gcm.metrics.frechet import save_statistics
from keras_gcm.metrics.inception import fid_inception_v3
from keras_gcm.metrics.inception import load_pytorch_fid_weights

__all__ = [
    "DigitsClassifier", "FrechetInceptionDistance", "compute_statistics", "digits_classifier",
    "digits_features", "digits_quality", "energy_distance", "fid_inception_v3",
    "frechet_digits_distance", "frechet_distance", "load_pytorch_fid_weights",
    "load_statistics", "pixel_energy_distance", "quantize_to_uint8_levels", "save_statistics", "sliced_wasserstein2",
]
