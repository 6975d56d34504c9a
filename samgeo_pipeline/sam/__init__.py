"""Segment Anything through transformers: loading and the predictor, its geometry, the prompted
decoder, memory-saving attention and the weight files. The model families plug in from
:mod:`samgeo_pipeline.models`."""
