"""Find, verify and run a model file: the packaged manifest, the models folder, onnxruntime sessions.

No network and no ``onnx`` package here: this is all the GIMP worker needs to load a model.
"""
