//! Model download (0x20): fetch an .onnx over http(s) into the model folder, with limits.
