"""clusterdeck's engine: run specs, run records, dispatch and the step payloads.

Nothing in this package imports Textual or ``app``; heavy libraries (torch,
torchvision, webdataset) are imported only inside payloads.
"""

__version__ = "0.1.0"
