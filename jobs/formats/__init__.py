"""Input formats: one module per layout of images the shard step, ``inspect`` and ``export`` read.

- ``base``: what a format is (``InputFormat``): its spec fields and checks, ``detect``, the listing the shard step
  uses, what ``inspect`` reports, what ``export`` reads.
- ``registry``: the formats, listed once, in detection order; ``register()`` adds one (a plugin, a test's).
- ``imagefolder``, ``ilsvrc_val``, ``ilsvrc_train_tar``, ``ilsvrc_val_tar``, ``npz``, ``shards``: the formats.
- ``vallabels``: the labels of the ILSVRC2012 val formats (devkit, or ground truth and synsets).
- ``report``: an image input's ``inspect`` report, from its listing.

Light at import (the spec and the CLI read the registry): numpy, PIL and the readers load inside the methods.
"""
