"""HCMRM: a multimodal query-to-video relevance model, and the pieces around it.

Pure Python and PyTorch: nothing in this package imports pyspark.
"""

__version__ = "0.1.0"
