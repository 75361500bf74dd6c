"""edgevision: train an image classifier, convert it to TensorFlow Lite, run it on a small device.

Importing this package is cheap: nothing heavy (TensorFlow, Keras, OpenCV, Streamlit) is imported
until a subpackage that needs it is used.
"""

__version__ = "0.1.0"
