//! Inference: ONNX Runtime backend, preprocessing, the detector+classifier pipeline.
