"""``clusterdeck export`` and the ``[export]`` step: dense matrices of a shard set or npz batches for Apache SystemDS.

- ``inputs``: what is read (npz batches or a shard set) as a pool of samples, and the seeded choice of samples.
- ``images``: a shard image decoded and fitted to image_size × image_size (PIL, reduced-scale JPEG decoding).
- ``ordered``: shard images decoded by worker processes, returned in order, with bounded queues.
- ``encode``: rows as CSV text or float32, one-hot labels, ``.mtd`` metadata.
- ``plan``: the sample count (from a GB target and the measured bytes per row), file names, checks; the inspect view.
- ``write``: the streaming writer: temporary files, renamed into place once every file is complete.

No torch, torchvision or webdataset: an export runs in a small process on a login node or a CPU job.
"""

from clusterdeck.jobs.errors import UserError


class ExportFailed(UserError):
    """The export could not finish for a reason other than its settings (a full disk, a worker killed):
    said without a traceback, like a settings problem, but with exit code 1."""

    exit_code = 1
