"""Getting models onto a machine (install time): ``install`` (offline or online), ``download``,
``npm`` (TF.js packages), ``convert`` (TF.js and TFLite files to ONNX, no TensorFlow)."""
