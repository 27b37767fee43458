"""The shard step and the readers of its inputs: list an input, shuffle it globally, write webdataset tars and an index.

The inputs are an ImageFolder tree, a flat ILSVRC2012 val set with its ground truth, the ILSVRC2012 tars read in
place, or downsampled-ImageNet ``.npz`` batches. ``clusterdeck inspect`` and ``val-sort`` read them here too.
"""
