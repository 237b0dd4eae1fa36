"""`edgekit serve`: bundles over HTTP with the KServe v2 protocol Triton's clients speak, and
`edgekit triton`: a Triton model repository from a bundle. Needs the `serve` extra (torch-free)."""
