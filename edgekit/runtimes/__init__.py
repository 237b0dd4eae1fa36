"""Runtimes: backends that run a bundle's graph, and the task APIs apps embed.

Imports numpy and onnxruntime only (Pillow when decoding images); torch only in `torch_ref`.
"""
