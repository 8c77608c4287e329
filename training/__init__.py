"""Training side: simulated datasets, Keras models, int8 quantisation, evaluation, bundles.

Windows and features come from `edge.signal` and `edge.features`, the code the runtime runs,
so a model sees in training exactly what it will see on the device. Importing this package
does not import TensorFlow; the modules that need it import it when they are used.
"""

__version__ = "0.1.0"
