"""Data layer: our HDF5 format (writer with resume and shards), readers for it and for PDEBench,
FNO ``.mat`` and neuraloperator ``.pt`` files, and streaming Gaussian normalizers.

Schema: ``datasets/README.md``.
"""

from pdesurrogates.data.hdf5 import (
    SCHEMA_VERSION,
    DataFormatError,
    DatasetWriter,
    write_dataset,
)
from pdesurrogates.data.normalize import GaussianNormalizer
from pdesurrogates.data.readers import (
    FORMATS,
    FieldDataset,
    detect_format,
    inspect_file,
    make_loader,
    open_dataset,
)

__all__ = [
    "FORMATS",
    "SCHEMA_VERSION",
    "DataFormatError",
    "DatasetWriter",
    "FieldDataset",
    "GaussianNormalizer",
    "detect_format",
    "inspect_file",
    "make_loader",
    "open_dataset",
    "write_dataset",
]
