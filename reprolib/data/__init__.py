"""Data sets and weights: the registry (``data_manifest.yaml``), getting them, and reading them.

Every data set and weight file the studies use is an entry of ``data_manifest.yaml`` at the
repository root. :func:`prepare` makes an entry usable and returns its folder:

* **synthetic** entries (``sid-sony-mini``, ``raw-nod-mini``, ``zurich-mini``) are generated once
  by their ``generator`` into a cache folder, in the real data set's on-disk format, with a stamp
  file recording the generator, its parameters, a hash of its source and the sha256 of every file;
* **real** data sets are checked where the user put them (``root``); when something is missing
  the error says what to download, from where, and where to put it;
* **small files** (SID lists, RAW-NOD annotations, weights) are downloaded with pooch and checked
  by sha256 — unless downloads are disabled (``download=False`` or ``REPROLIB_OFFLINE=1``).

The readers (:func:`read_sid_list`, :func:`sid_pairs`, :func:`read_raw_nod`,
:class:`RawNODDetection`, :class:`ZurichRawToRGB`) work the same on the real data and on the synthetic miniatures.

Environment variables: ``REPROLIB_DATA`` (cache folder, default ``~/.cache/reprolib``),
``REPROLIB_MANIFEST`` (another manifest file), ``REPROLIB_OFFLINE=1`` (never download).
"""
from .manifest import *  # noqa: F401,F403
from .manifest import __all__ as _m
from .raw_nod import *  # noqa: F401,F403
from .raw_nod import __all__ as _r
from .sid import *  # noqa: F401,F403
from .sid import __all__ as _s
from .zurich import *  # noqa: F401,F403
from .zurich import __all__ as _z

__all__ = [*_m, *_s, *_r, *_z]
