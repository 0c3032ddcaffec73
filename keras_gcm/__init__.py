"""keras_gcm: consistency models with the playbook of "A Guide to Training
Consistency Models", in Keras 3 on JAX, TensorFlow or PyTorch."""

from keras_gcm import callbacks
from keras_gcm import interpolants
from keras_gcm import losses
from keras_gcm import schedules
from keras_gcm import time_sampling
from keras_gcm import weighting
from keras_gcm import optimizers
from keras_gcm import networks
from keras_gcm import data
from keras_gcm import distribute
from keras_gcm import metrics
from keras_gcm import presets
from keras_gcm import samplers
from keras_gcm import utils
from keras_gcm.consistency_model import ConsistencyModel

__version__ = "0.1.0"

__all__ = [
    "ConsistencyModel",
    "callbacks",
    "data",
    "distribute",
    "interpolants",
    "losses",
    "metrics",
    "networks",
    "optimizers",
    "presets",
    "samplers",
    "schedules",
    "time_sampling",
    "utils",
    "weighting",
]
