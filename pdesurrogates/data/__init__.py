"""Data layer: our HDF5 format (writer with resume and shards), readers for it and for PDEBench,
FNO ``.mat`` and neuraloperator ``.pt`` files, datasets from arrays, and streaming Gaussian
normalizers.

Modules: :mod:`.hdf5` (writer), :mod:`.readers` (``open_dataset``, format detection), one reader
module per format (:mod:`.ours`, :mod:`.pdebench`, :mod:`.fno_mat`, :mod:`.neuralop_pt`),
:mod:`.dataset` (the dataset type, stride views, loader), :mod:`.arrays` (``from_arrays``,
``write_arrays``), :mod:`.neuralop_small` (the small real files shipped with the repository),
:mod:`.files` (file checks and errors), :mod:`.normalize`.

Schema: ``datasets/README.md``.
"""

from pdesurrogates.data import neuralop_small
from pdesurrogates.data.arrays import from_arrays, write_arrays
from pdesurrogates.data.dataset import FieldDataset, make_loader
from pdesurrogates.data.files import DataFormatError
from pdesurrogates.data.hdf5 import SCHEMA_VERSION, DatasetWriter, write_dataset
from pdesurrogates.data.normalize import GaussianNormalizer
from pdesurrogates.data.readers import FORMATS, detect_format, inspect_file, open_dataset

__all__ = [
    "FORMATS",
    "SCHEMA_VERSION",
    "DataFormatError",
    "DatasetWriter",
    "FieldDataset",
    "GaussianNormalizer",
    "detect_format",
    "from_arrays",
    "inspect_file",
    "make_loader",
    "neuralop_small",
    "open_dataset",
    "write_arrays",
    "write_dataset",
]
