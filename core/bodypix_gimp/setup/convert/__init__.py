"""TF.js and TFLite model files to ONNX (no TensorFlow): ``tfjs`` (BodyPix's layer graphs),
``tfjs_graph`` (general TF.js graphs such as RVM), ``tflite`` (MediaPipe's .tflite files)."""
