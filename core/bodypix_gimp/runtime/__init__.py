"""Find, verify and run a model file: the packaged manifest, the models folder, onnxruntime sessions.

No network here, and the ``onnx`` package is optional: ``rvm_graph`` uses it once per user to
derive RVM's alpha-only graph and falls back to the model file without it.
"""
