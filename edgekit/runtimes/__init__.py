"""Runtimes: backends that run a bundle's graph, and the task APIs apps embed.

Imports numpy and onnxruntime only (Pillow when decoding images; tensorrt and cuda-python inside the
TensorRT backend). Never torch, exporters, training or models: tests/test_imports.py proves it.

    registry        name -> can it run here (and why not) -> open a bundle
    base, layout    the Backend role; where batch and time sit in a recurrent bundle
    stepper         recurrent stepping: IO-bound ping-pong (ONNX Runtime) or through the host
    onnxruntime     ort-cpu, ort-cuda, ort-cuda-graph, ort-trt
    tensorrt        trt (native engines; formats shared with the builder in engine_format)
    loader          edgekit.load -> Classifier, Regressor, Generator (classifier, generator)
"""
