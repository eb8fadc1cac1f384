"""Data sets and weights: the registry (``data_manifest.yaml`` at the repository root), getting
them, and reading them. :func:`prepare` makes an entry usable and returns its folder:

* **synthetic** entries (``sid-sony-mini``, ``raw-nod-mini``, ``zurich-mini``) are generated once
  into a cache folder in the real set's on-disk format, stamped with generator, parameters, a hash
  of its source and every file's sha256;
* **real** data sets are checked where the user put them; the error says what is missing, where
  to download it and where to put it;
* **small files** (SID lists, RAW-NOD annotations, weights) are downloaded with pooch and checked
  by sha256, unless ``download=False`` or ``REPROLIB_OFFLINE=1``.

The readers (:func:`read_sid_list`, :func:`sid_pairs`, :func:`read_raw_nod`,
:class:`RawNODDetection`, :class:`ZurichRawToRGB`) read real data and synthetic miniatures alike.
Environment: ``REPROLIB_DATA`` (cache, default ``~/.cache/reprolib``), ``REPROLIB_MANIFEST``
(another manifest file), ``REPROLIB_OFFLINE=1`` (never download), ``REPROLIB_FINGERPRINT=sha256``
(a data set's identity from the content of the files a study reads, not their sizes: :func:`fingerprint`)."""
from . import manifest, raw_nod, sid, zurich
from .manifest import *  # noqa: F401,F403
from .raw_nod import *  # noqa: F401,F403
from .sid import *  # noqa: F401,F403
from .zurich import *  # noqa: F401,F403

__all__ = [*manifest.__all__, *sid.__all__, *raw_nod.__all__, *zurich.__all__]
